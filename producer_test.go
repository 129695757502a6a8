package weir_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

func TestProducerSendAndReadBack(t *testing.T) {
	leakCheck(t)
	b := weirtest.Start(t, func(c *broker.Config) { c.DefaultPartitions = 3 })
	ctx := testCtx(t, 30*time.Second)
	p := newProducer(t, ctx, weir.Brokers(b.Addr()), weir.Topic("orders"), weir.AllowAutoTopicCreation())

	keyed, err := p.Send(ctx, weir.Event{Key: []byte("basket-1"), Value: []byte("apple"),
		Headers: []weir.Header{{Key: "source", Value: []byte("test")}}})
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.Send(ctx, weir.Event{Key: []byte("basket-1"), Value: []byte("pear")})
	if err != nil {
		t.Fatal(err)
	}
	if keyed.Partition != again.Partition || again.Offset != keyed.Offset+1 {
		t.Errorf("same key: got %d/%d then %d/%d, want the same partition, next offset",
			keyed.Partition, keyed.Offset, again.Partition, again.Offset)
	}
	explicit, err := p.Send(ctx, weir.Event{Value: []byte("plum"), Partition: weir.AtPartition(2)})
	if err != nil {
		t.Fatal(err)
	}
	if explicit.Partition != 2 {
		t.Errorf("explicit partition 2: stored in %d", explicit.Partition)
	}
	_, err = p.Send(ctx, weir.Event{Key: []byte("k"), Value: []byte("v"), Partition: weir.AtPartition(0)})
	if !errors.Is(err, weir.ErrInvalidEvent) {
		t.Errorf("key and partition: err %v, want ErrInvalidEvent", err)
	}
	_, err = p.Send(ctx, weir.Event{Value: []byte("v"), Partition: weir.AtPartition(3)})
	if !errors.Is(err, weir.ErrInvalidEvent) {
		t.Errorf("partition 3 of 3: err %v, want ErrInvalidEvent", err)
	}

	batch := make([]weir.Event, 100)
	for i := range batch {
		batch[i] = weir.Event{Value: fmt.Appendf(nil, "batch-%d", i)}
	}
	rs, err := p.SendBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(batch) {
		t.Fatalf("%d results for %d events", len(rs), len(batch))
	}

	async := make(chan weir.Result, 1)
	p.SendAsync(ctx, weir.Event{Value: []byte("async")}, func(r weir.Result) { async <- r })
	asyncResult := <-async
	if asyncResult.Err != nil {
		t.Fatal(asyncResult.Err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(ctx, weir.Event{Value: []byte("late")}); !errors.Is(err, weir.ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	s := p.Stats()
	// 3 single events, 2 invalid, 100 in a batch, 1 async, 1 after Close.
	if s.Sent != 107 || s.Acknowledged != 104 || s.Failed != 3 || s.Buffered != 0 {
		t.Errorf("stats %+v, want 107 sent, 104 acknowledged, 3 failed", s)
	}

	got := readBack(t, ctx, b.Addr(), "orders")
	want := map[string]weir.Result{"apple": keyed, "pear": again, "plum": explicit, "async": asyncResult}
	for i, r := range rs {
		want[fmt.Sprintf("batch-%d", i)] = r
	}
	for v, r := range want {
		checkStoredOnceAt(t, got, v, r)
	}
	if len(got) != len(want) { // the rejected events and the one sent after Close are not stored
		t.Errorf("read back %d distinct events, %d acknowledged", len(got), len(want))
	}
}

// The topic's max.message.bytes is learned at start: an event that can
// never fit is rejected at once, by the producer itself before it is
// buffered (no produce request reaches the broker, which would reject it
// too), and one the topic allows above kgo's 1 MB default batch size goes
// through.
func TestProducerEventSizeLimit(t *testing.T) {
	leakCheck(t)
	var produces atomic.Int64 // produce requests the broker answered
	b, px := weirtest.StartProxied(t, func(r weirtest.Response) ([]byte, bool) {
		if r.Key == kmsg.Produce {
			produces.Add(1)
		}
		return r.Frame, true
	})
	ctx := testCtx(t, 30*time.Second)
	if _, err := b.Log().CreateTopic("small", 1, map[string]string{"max.message.bytes": "2000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Log().CreateTopic("big", 1, map[string]string{"max.message.bytes": "4194304"}); err != nil {
		t.Fatal(err)
	}
	rejectedLocally := func(p *weir.Producer, topic string, size int, what string) {
		t.Helper()
		before := produces.Load()
		start := time.Now()
		_, err := p.Send(ctx, weir.Event{Value: make([]byte, size)})
		var we *weir.Error
		if !errors.Is(err, weir.ErrEventTooLarge) || !errors.As(err, &we) || we.Topic != topic {
			t.Errorf("%s: %v, want an *Error of kind ErrEventTooLarge", what, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: rejecting took %v; it should not reach the network", what, took)
		}
		if n := produces.Load() - before; n != 0 {
			t.Errorf("%s: %d produce requests reached the broker; the producer must reject the event before buffering it", what, n)
		}
	}
	small := newProducer(t, ctx, weir.Brokers(px.Addr()), weir.Topic("small"))
	if _, err := small.Send(ctx, weir.Event{Value: make([]byte, 1000)}); err != nil {
		t.Errorf("1000 bytes into max.message.bytes 2000: %v", err)
	}
	if produces.Load() == 0 {
		t.Fatal("the proxy saw no produce response for an acknowledged event: it cannot tell where events are rejected")
	}
	rejectedLocally(small, "small", 3000, "3000 bytes into max.message.bytes 2000")
	big := newProducer(t, ctx, weir.Brokers(px.Addr()), weir.Topic("big"))
	if _, err := big.Send(ctx, weir.Event{Value: make([]byte, 3<<20)}); err != nil {
		t.Errorf("3 MiB into max.message.bytes 4 MiB: %v", err)
	}
	rejectedLocally(big, "big", 5<<20, "5 MiB into max.message.bytes 4 MiB")
}

// With NonBlocking, a full buffer is ErrBufferFull at once; by default the
// sender waits for room instead.
func TestProducerNonBlockingBufferFull(t *testing.T) {
	leakCheck(t)
	c := kfakeCluster(t, kfake.SeedTopics(1, "t"))
	_, release := holdRequests(t, c, kmsg.Produce)
	ctx := testCtx(t, 30*time.Second)
	p := newProducer(t, ctx, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"), weir.NonBlocking(), weir.MaxBuffered(10, 1<<20))
	o := newOutcomes()
	for i := range 50 {
		v := fmt.Sprint(i)
		p.SendAsync(ctx, weir.Event{Value: []byte(v)}, o.callback(v))
	}
	// The first 10 fill the buffer; the other 40 come back at once.
	for {
		_, failed, _ := o.counts()
		if failed >= 40 || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	release()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ok, failed, multiple := o.counts()
	if ok != 10 || failed != 40 || multiple != 0 {
		t.Fatalf("%d acknowledged, %d returned, %d extra; want 10, 40, 0", ok, failed, multiple)
	}
	for v, err := range o.failed {
		if !errors.Is(err, weir.ErrBufferFull) {
			t.Errorf("%s: %v, want ErrBufferFull", v, err)
		}
	}
}
