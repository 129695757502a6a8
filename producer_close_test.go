package weir_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// Close with a healthy broker delivers everything still buffered, and every
// callback has run when it returns.
func TestProducerCloseDeliversBuffered(t *testing.T) {
	leakCheck(t)
	b := weirtest.Start(t, func(c *broker.Config) { c.DefaultPartitions = 4 })
	ctx := testCtx(t, time.Minute)
	// A long linger keeps events buffered until Close flushes them.
	p := newProducer(t, ctx, weir.Brokers(b.Addr()), weir.Topic("close"),
		weir.AllowAutoTopicCreation(), weir.Linger(time.Minute))
	const n = 5000
	o := newOutcomes()
	o.sendAsync(ctx, p, "e", n)
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ok, failed, multiple := o.counts()
	if ok != n || failed != 0 || multiple != 0 {
		t.Fatalf("when Close returned: %d acknowledged, %d failed, %d extra callbacks; want %d, 0, 0", ok, failed, multiple, n)
	}
	checkStoredAsAcknowledged(t, readBack(t, ctx, b.Addr(), "close"), o)
}

// Close against a broker that stopped answering: when Close's context
// ends, every buffered and in-flight event is returned with ErrClosed, and
// all callbacks have run before Close returns.
func TestProducerCloseReturnsWhatItCannotDeliver(t *testing.T) {
	leakCheck(t)
	c := kfakeCluster(t, kfake.SeedTopics(3, "t"))
	var blackholed atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		blackholed.Add(1)
		return nil, nil, true // no answer, connection kept open
	})
	ctx := testCtx(t, time.Minute)
	p := newProducer(t, ctx, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"))
	const n = 2000
	o := newOutcomes()
	o.sendAsync(ctx, p, "e", n)
	for blackholed.Load() == 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond) // until something is in flight
	}
	closeCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Close(closeCtx)
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
	checkStats(t, p, n, 0, n)
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
