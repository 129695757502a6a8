package weir_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/weirtest"
)

// Helpers shared by the producer tests.

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

type place struct {
	Partition int32
	Offset    int64
	Count     int
}

// readBack reads every record of topic up to the end offsets the broker
// reports now, and returns where each value is stored and how often.
func readBack(t *testing.T, ctx context.Context, addr, topic string) map[string]place {
	t.Helper()
	out := map[string]place{}
	for _, rs := range weirtest.ReadAll(ctx, t, addr, topic) {
		for _, r := range rs {
			pl := out[string(r.Value)]
			out[string(r.Value)] = place{r.Partition, r.Offset, pl.Count + 1}
		}
	}
	return out
}

// outcomes counts SendAsync callbacks.
type outcomes struct {
	mu       sync.Mutex
	ok       map[string]weir.Result
	failed   map[string]error
	multiple int // callbacks for an event that already had one
}

func newOutcomes() *outcomes {
	return &outcomes{ok: map[string]weir.Result{}, failed: map[string]error{}}
}

func (o *outcomes) callback(value string) func(weir.Result) {
	return func(r weir.Result) {
		o.mu.Lock()
		defer o.mu.Unlock()
		_, seenOK := o.ok[value]
		_, seenFail := o.failed[value]
		if seenOK || seenFail {
			o.multiple++
		}
		if r.Err != nil {
			o.failed[value] = r.Err
		} else {
			o.ok[value] = r
		}
	}
}

// sendAsync sends n events, with values prefix-0000000 on, through
// SendAsync, each with its callback.
func (o *outcomes) sendAsync(ctx context.Context, p *weir.Producer, prefix string, n int) {
	for i := range n {
		v := fmt.Sprintf("%s-%07d", prefix, i)
		p.SendAsync(ctx, weir.Event{Value: []byte(v)}, o.callback(v))
	}
}

func (o *outcomes) counts() (ok, failed, multiple int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.ok), len(o.failed), o.multiple
}

// checkStats fails the test unless the producer's counters add up and
// nothing is left buffered.
func checkStats(t *testing.T, p *weir.Producer, sent, acked, failed int64) {
	t.Helper()
	s := p.Stats()
	if s.Sent != s.Acknowledged+s.Failed+s.Buffered {
		t.Errorf("stats %+v: Sent != Acknowledged + Failed + Buffered", s)
	}
	if s.Sent != sent || s.Acknowledged != acked || s.Failed != failed || s.Buffered != 0 {
		t.Errorf("stats %+v: want %d sent, %d acknowledged, %d failed, none buffered", s, sent, acked, failed)
	}
}

// holdRequests makes the kfake cluster hold every request of one kind
// until the returned release is called (also at cleanup). asked receives
// once the first such request arrives.
func holdRequests(t *testing.T, c *kfake.Cluster, key kmsg.Key) (asked <-chan struct{}, release func()) {
	t.Helper()
	arrived := make(chan struct{}, 1)
	held := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(held) }) }
	t.Cleanup(release)
	c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case arrived <- struct{}{}:
		default:
		}
		c.SleepControl(func() { <-held })
		return nil, nil, false
	})
	return arrived, release
}

// checkStoredOnceAt fails the test unless value v was read back once, where
// its result says it was stored.
func checkStoredOnceAt(t *testing.T, stored map[string]place, v string, r weir.Result) {
	t.Helper()
	if at := stored[v]; at.Count != 1 || at.Partition != r.Partition || at.Offset != r.Offset {
		t.Errorf("%s: acknowledged at %d/%d, read back %d times, at %d/%d", v, r.Partition, r.Offset, at.Count, at.Partition, at.Offset)
	}
}

// burst sends events values as fast as SendAsync takes them, then closes
// p. It fails the test unless every event ended acknowledged or returned,
// exactly once, and Stats agree with the callbacks; with unlimited retries
// within the delivery timeout nothing should be returned either.
func burst(t *testing.T, ctx context.Context, p *weir.Producer, events int) *outcomes {
	t.Helper()
	o := newOutcomes()
	start := time.Now()
	o.sendAsync(ctx, p, "burst", events)
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	elapsed := time.Since(start)
	ok, failed, multiple := o.counts()
	s := p.Stats()
	t.Logf("%d events in %v: %d acknowledged, %d returned; producer: %d throttled (%v), %d requests retried",
		events, elapsed.Round(time.Millisecond), ok, failed, s.Throttled, s.ThrottleTime, s.Retried)
	if ok+failed != events || multiple != 0 {
		t.Fatalf("%d acknowledged + %d returned != %d sent, or %d events had two outcomes", ok, failed, events, multiple)
	}
	if s.Sent != int64(events) || s.Acknowledged != int64(ok) || s.Failed != int64(failed) || s.Buffered != 0 {
		t.Errorf("stats %+v disagree with the callbacks", s)
	}
	for v, err := range o.failed {
		// A failure is not a loss, but say why.
		t.Errorf("%s returned: %v", v, err)
		break
	}
	return o
}

// checkStoredAsAcknowledged fails the test unless the topic, as read back,
// holds exactly the acknowledged events, each once, where its
// acknowledgement said.
func checkStoredAsAcknowledged(t *testing.T, stored map[string]place, o *outcomes) {
	t.Helper()
	var missing, extra, dups int
	for v, r := range o.ok {
		at, found := stored[v]
		if !found || at.Partition != r.Partition || at.Offset != r.Offset {
			if missing++; missing <= 3 {
				t.Errorf("%s acknowledged at %d/%d, stored at %+v (found %v)", v, r.Partition, r.Offset, at, found)
			}
		}
	}
	for v, at := range stored {
		if _, acked := o.ok[v]; !acked {
			extra++
		}
		dups += at.Count - 1
	}
	if missing+extra+dups > 0 {
		t.Errorf("read back %d events: %d acknowledged ones missing or misplaced, %d not acknowledged, %d duplicates",
			len(stored), missing, extra, dups)
	}
}

// produceErrorResponse answers every partition of req with code, as a
// broker that refuses the produce.
func produceErrorResponse(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			sp.BaseOffset = -1
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
