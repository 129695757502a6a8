package weir_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// leakCheck fails the test if it leaves goroutines behind. Call it first:
// its cleanup runs last, after brokers and clients are closed.
func leakCheck(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newProducer(t *testing.T, ctx context.Context, opts ...weir.ProducerOpt) *weir.Producer {
	t.Helper()
	p, err := weir.NewProducer(ctx, opts...)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

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
	if r := <-async; r.Err != nil {
		t.Fatal(r.Err)
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
	want := map[string]weir.Result{"apple": keyed, "pear": again, "plum": explicit}
	for i, r := range rs {
		want[fmt.Sprintf("batch-%d", i)] = r
	}
	for v, r := range want {
		at, ok := got[v]
		if !ok || at.Partition != r.Partition || at.Offset != r.Offset {
			t.Errorf("%s acknowledged at %d/%d, read back at %+v (found %v)", v, r.Partition, r.Offset, at, ok)
		}
	}
}

type place struct {
	Partition int32
	Offset    int64
	Count     int
}

// readBack reads every record of topic up to the end offsets the broker
// reports now, and returns where each value is stored and how often.
func readBack(t *testing.T, ctx context.Context, addr, topic string) map[string]place {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	left := map[int32]int64{} // partition -> end offset not yet reached
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	out := map[string]place{}
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read back %s: timed out with partitions %v left", topic, left)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Errorf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			pl := out[string(r.Value)]
			out[string(r.Value)] = place{r.Partition, r.Offset, pl.Count + 1}
			if end, ok := left[r.Partition]; ok && r.Offset >= end-1 {
				delete(left, r.Partition)
			}
		})
	}
	return out
}
