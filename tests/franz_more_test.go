package tests

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// TestFranzGoTail starts a consumer at the end of an empty topic, then
// produces: the waiting consumer must receive the new records (Fetch long
// poll wakes up on new data).
func TestFranzGoTail(t *testing.T) {
	b := weirtest.Start(t)
	createTopic(t, b.Addr(), "tail", 2)
	ctx := testContext(t, 30*time.Second)
	consumer, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("tail"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	got := make(chan []record, 1)
	go func() {
		var out []record
		for len(out) < 10 && ctx.Err() == nil {
			consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, fromKgo(r)) })
		}
		got <- out
	}()

	producer, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic("tail"))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	time.Sleep(200 * time.Millisecond) // let the consumer reach its long poll (it also works if it has not)
	recs := makeRecords(400, 10, true)
	for i := range recs {
		kr := &kgo.Record{Key: recs[i].Key, Value: recs[i].Value}
		for _, h := range recs[i].Headers {
			kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		if err := producer.ProduceSync(ctx, kr).FirstErr(); err != nil {
			t.Fatal(err)
		}
		recs[i].Partition, recs[i].Offset = kr.Partition, kr.Offset
	}
	checkRecords(t, recs, <-got, true)
}

// TestFranzGoLargeRecords round-trips a record just under the default
// max.message.bytes, and checks that a batch over it is refused with
// MESSAGE_TOO_LARGE without harming the records already stored.
func TestFranzGoLargeRecords(t *testing.T) {
	b := weirtest.Start(t)
	createTopic(t, b.Addr(), "large", 1)
	ctx := testContext(t, 30*time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic("large"),
		kgo.ProducerBatchMaxBytes(8<<20),                  // let the broker, not the client, judge the size
		kgo.ProducerBatchCompression(kgo.NoCompression()), // the limit applies to the batch as sent
		kgo.RecordRetries(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	big := bytes.Repeat([]byte{0x00, 0xff, 'w', 'e', 'i', 'r', 0x7f, 0x80}, 900<<10/8)
	kr := &kgo.Record{Key: []byte("big"), Value: big}
	if err := cl.ProduceSync(ctx, kr).FirstErr(); err != nil {
		t.Fatalf("produce a %d-byte record: %v", len(big), err)
	}
	tooBig := &kgo.Record{Key: []byte("too-big"), Value: bytes.Repeat([]byte{'x', 0x01}, 1<<20)}
	err = cl.ProduceSync(ctx, tooBig).FirstErr()
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("producing a 2 MiB record: got %v, want MESSAGE_TOO_LARGE", err)
	}
	after := &kgo.Record{Key: []byte("after"), Value: []byte("still works")}
	if err := cl.ProduceSync(ctx, after).FirstErr(); err != nil {
		t.Fatalf("produce after a refused record: %v", err)
	}
	checkRecords(t, []record{
		{Key: kr.Key, Value: big, Partition: 0, Offset: kr.Offset},
		{Key: after.Key, Value: after.Value, Partition: 0, Offset: after.Offset},
	}, consumeKgo(t, b.Addr(), "large", 2), false)
}

// TestFranzGoUnknownTopicNoAutoCreate checks that with auto-create off a
// producer to a missing topic gets UNKNOWN_TOPIC_OR_PARTITION, and the
// topic is not created.
func TestFranzGoUnknownTopicNoAutoCreate(t *testing.T) {
	b := weirtest.Start(t, func(c *broker.Config) { c.DisableAutoCreateTopics = true })
	ctx := testContext(t, 30*time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.AllowAutoTopicCreation(), kgo.UnknownTopicRetries(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: "missing", Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("produce to a missing topic with auto-create off: got %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	if _, ok := b.Log().Topic("missing"); ok {
		t.Error("topic was created although auto-create is off")
	}
}

// TestRestartKeepsRecords closes an embedded broker and starts a new one on
// the same data directory: the records, and the offsets after them, carry on.
func TestRestartKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	onDir := func(c *broker.Config) { c.DataDir = dir }
	var recs []record
	produce := func(t *testing.T, addr string, from, n int) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("restart"))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for i := from; i < from+n; i++ {
			kr := &kgo.Record{Key: fmt.Appendf(nil, "k%d", i%3), Value: fmt.Appendf(nil, "v%d\x00\xff", i)}
			if err := cl.ProduceSync(testContext(t, 20*time.Second), kr).FirstErr(); err != nil {
				t.Fatal(err)
			}
			recs = append(recs, record{Key: kr.Key, Value: kr.Value, Partition: kr.Partition, Offset: kr.Offset})
		}
	}
	t.Run("first", func(t *testing.T) {
		b := weirtest.Start(t, onDir)
		createTopic(t, b.Addr(), "restart", 3)
		produce(t, b.Addr(), 0, 30)
	})
	b := weirtest.Start(t, onDir)
	produce(t, b.Addr(), 30, 30)
	checkRecords(t, recs, consumeKgo(t, b.Addr(), "restart", len(recs)), false)
}
