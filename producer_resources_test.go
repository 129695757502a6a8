package weir_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/weirtest"
)

// connectCounter counts failed connection attempts.
type connectCounter struct{ failed atomic.Int64 }

func (c *connectCounter) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		c.failed.Add(1)
	}
}

func heapAndGoroutines() (uint64, int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, runtime.NumGoroutine()
}

// TestProducerResourcesStayFlat: a producer whose broker has gone away
// makes over a thousand failed connection attempts while events keep
// failing, and producers keep failing to start against the closed port.
// Afterwards goroutines and heap are back at their baseline.
//
// A send's context bounds only its wait, so the events sent into the void
// come back by DeliveryTimeout, kept short here.
func TestProducerResourcesStayFlat(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t, 2*time.Minute)
	b := weirtest.Start(t)
	addr := b.Addr()

	heap0, g0 := heapAndGoroutines()
	var cc connectCounter
	p, err := weir.NewProducer(ctx, weir.Brokers(addr), weir.Topic("flat"), weir.AllowAutoTopicCreation(),
		weir.RetryBackoff(time.Millisecond, 5*time.Millisecond), weir.KgoOpts(kgo.WithHooks(&cc)),
		weir.TryTimeout(200*time.Millisecond), weir.DeliveryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(ctx, weir.Event{Value: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil { // the port is closed from now on
		t.Fatal(err)
	}

	// Sends fail while the producer keeps trying to reconnect.
	sends, failedSends := 0, 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := p.Send(sctx, weir.Event{Value: []byte("into the void")})
		cancel()
		sends++
		if err != nil {
			failedSends++
		}
	}
	if failedSends != sends {
		t.Errorf("%d of %d sends to a closed port succeeded", sends-failedSends, sends)
	}
	if err := p.Close(ctx); err != nil {
		t.Errorf("Close once every event came back: %v", err)
	}
	if s := p.Stats(); s.Acknowledged != 1 || s.Failed != int64(sends) || s.Buffered != 0 {
		t.Errorf("stats %+v: want the one event before acknowledged and all %d after returned", s, sends)
	}
	// Then producers that cannot start, each giving up when its context
	// ends, until the attempts add up.
	const attempts = 1000
	starts := 0
	for cc.failed.Load() < attempts {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := weir.NewProducer(sctx, weir.Brokers(addr), weir.Topic("flat"),
			weir.RetryBackoff(time.Millisecond, 2*time.Millisecond), weir.KgoOpts(kgo.WithHooks(&cc)))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("NewProducer against a closed port: %v, want the context's deadline", err)
		}
		starts++
	}
	t.Logf("%d failed connection attempts: %d sends returned errors, %d producers failed to start", cc.failed.Load(), failedSends, starts)

	// Goroutines exit asynchronously after Close; give them a moment.
	var heap1 uint64
	var g1 int
	for deadline := time.Now().Add(5 * time.Second); ; {
		heap1, g1 = heapAndGoroutines()
		if g1 <= g0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	const heapSlack = 8 << 20
	t.Logf("goroutines %d -> %d, heap %d KiB -> %d KiB", g0, g1, heap0>>10, heap1>>10)
	if g1 > g0 {
		t.Errorf("goroutines: %d before, %d after", g0, g1)
	}
	if heap1 > heap0+heapSlack {
		t.Errorf("heap: %d KiB before, %d KiB after (allowed %d KiB more)", heap0>>10, heap1>>10, heapSlack>>10)
	}
}
