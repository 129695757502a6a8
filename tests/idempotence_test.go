package tests

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/weirtest"
)

// responseDropper, as a weirtest.Proxy's edit, cuts the connection instead
// of passing on every dropEvery-th Produce response: the broker has written
// the batch, the client never hears so.
type responseDropper struct {
	dropEvery int64

	produces atomic.Int64 // produce responses seen
	dropped  atomic.Int64
}

func (d *responseDropper) edit(r weirtest.Response) ([]byte, bool) {
	if r.Key != kmsg.Produce {
		return r.Frame, true
	}
	if d.produces.Add(1)%d.dropEvery == 0 {
		d.dropped.Add(1)
		return nil, false
	}
	return r.Frame, true
}

// TestIdempotentProducerLostResponses: the broker writes a batch but its
// answer is lost (the connection drops). franz-go's idempotent producer
// retries the batch with the same sequence numbers; weir answers with the
// original offsets and does not store it again. Every record ends up
// stored exactly once, at the offset its acknowledgement reported.
func TestIdempotentProducerLostResponses(t *testing.T) {
	dropper := &responseDropper{dropEvery: 4}
	b, proxy := weirtest.StartProxied(t, dropper.edit)
	const topic, partitions, n = "idem", 3, 3000
	createTopic(t, b.Addr(), topic, partitions)

	ctx := testContext(t, 60*time.Second)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(proxy.Addr()),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	type ack struct {
		partition int32
		offset    int64
	}
	var mu sync.Mutex
	acked := map[string]ack{}
	var errs []error
	for i := range n {
		r := &kgo.Record{Value: fmt.Appendf(nil, "v-%06d", i)}
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			acked[string(r.Value)] = ack{r.Partition, r.Offset}
		})
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // several produce requests, not one
		}
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(errs) > 0 {
		t.Fatalf("%d records failed, first: %v", len(errs), errs[0])
	}
	if dropper.dropped.Load() == 0 {
		t.Fatalf("no produce response was dropped (%d seen): the test exercised nothing", dropper.produces.Load())
	}

	stored := readAll(t, b.Addr(), topic)
	total := 0
	seen := map[string]int{}
	for _, rs := range stored {
		for _, r := range rs {
			seen[string(r.Value)]++
			total++
		}
	}
	for v, c := range seen {
		if c > 1 {
			t.Errorf("record %s stored %d times", v, c)
		}
	}
	for v, a := range acked {
		rs := stored[a.partition]
		if a.offset < 0 || a.offset >= int64(len(rs)) || string(rs[a.offset].Value) != v {
			t.Errorf("acknowledged record %s is not at %d/%d", v, a.partition, a.offset)
		}
	}
	if len(acked) != n || total != n {
		t.Errorf("%d records produced, %d acknowledged, %d stored", n, len(acked), total)
	}
	t.Logf("%d produce responses, %d dropped after the broker wrote the batch", dropper.produces.Load(), dropper.dropped.Load())
}
