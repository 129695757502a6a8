package weir_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

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

func (o *outcomes) counts() (ok, failed, multiple int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.ok), len(o.failed), o.multiple
}

// Close with a healthy broker delivers everything still buffered, and every
// callback has run when it returns.
func TestProducerCloseDeliversBuffered(t *testing.T) {
	leakCheck(t)
	b := weirtest.Start(t, func(c *broker.Config) { c.DefaultPartitions = 4 })
	ctx := testCtx(t, time.Minute)
	// A long linger keeps events buffered until Close flushes them.
	p, err := weir.NewProducer(ctx, weir.Brokers(b.Addr()), weir.Topic("close"),
		weir.AllowAutoTopicCreation(), weir.Linger(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	o := newOutcomes()
	for i := range n {
		v := fmt.Sprintf("e-%d", i)
		p.SendAsync(ctx, weir.Event{Value: []byte(v)}, o.callback(v))
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ok, failed, multiple := o.counts()
	if ok != n || failed != 0 || multiple != 0 {
		t.Fatalf("when Close returned: %d acknowledged, %d failed, %d extra callbacks; want %d, 0, 0", ok, failed, multiple, n)
	}
	got := readBack(t, ctx, b.Addr(), "close")
	if len(got) != n {
		t.Errorf("read back %d events, want %d", len(got), n)
	}
	for v, r := range o.ok {
		if at := got[v]; at.Count != 1 || at.Partition != r.Partition || at.Offset != r.Offset {
			t.Errorf("%s acknowledged at %d/%d, stored %+v", v, r.Partition, r.Offset, at)
			break
		}
	}
}

// Close against a broker that stopped answering: when Close's context
// ends, every buffered and in-flight event is returned with ErrClosed, and
// all callbacks have run before Close returns.
func TestProducerCloseReturnsWhatItCannotDeliver(t *testing.T) {
	leakCheck(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var blackholed atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		blackholed.Add(1)
		return nil, nil, true // no answer, connection kept open
	})
	ctx := testCtx(t, time.Minute)
	p, err := weir.NewProducer(ctx, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	o := newOutcomes()
	for i := range n {
		v := fmt.Sprintf("e-%d", i)
		p.SendAsync(ctx, weir.Event{Value: []byte(v)}, o.callback(v))
	}
	for blackholed.Load() == 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond) // until something is in flight
	}
	closeCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.Close(closeCtx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close: %v, want the context's deadline", err)
	}
	ok, failed, multiple := o.counts()
	if ok != 0 || failed != n || multiple != 0 {
		t.Fatalf("when Close returned: %d acknowledged, %d failed, %d extra callbacks; want 0, %d, 0", ok, failed, multiple, n)
	}
	for v, err := range o.failed {
		if !errors.Is(err, weir.ErrClosed) {
			t.Errorf("%s: %v, want ErrClosed", v, err)
			break
		}
	}
	if s := p.Stats(); s.Sent != n || s.Failed != n || s.Buffered != 0 {
		t.Errorf("stats %+v, want %d sent and failed, none buffered", s, n)
	}
	if took > fatalBound {
		t.Errorf("Close took %v with a 300ms context", took)
	}
	if err := p.Close(ctx); !errors.Is(err, weir.ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	if err := p.Flush(ctx); !errors.Is(err, weir.ErrClosed) {
		t.Errorf("Flush after Close: %v, want ErrClosed", err)
	}
}
