package weir_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir"
)

// TestProcessorScaleUnderLoad runs a producer into 32 partitions while the
// fleet goes 1 → 4 → 8 → 2 instances with graceful stops, and checks that
// every produced event is processed exactly once.
func TestProcessorScaleUnderLoad(t *testing.T) { forEachBackend(t, testScaleUnderLoad) }

func testScaleUnderLoad(t *testing.T, b backend) {
	const partitions = 32
	seeds := b.start(t, partitions, "load")
	l := newLedger()
	prod := startProducer(t, seeds, "load", l, 3000)
	defer prod.stop()

	handler := func(name string) weir.Handler {
		return weir.HandlerFunc(func(ctx context.Context, e *kgo.Record) error {
			l.record(name, e.Partition, e.Offset)
			time.Sleep(50 * time.Microsecond) // a little work, so events are in flight at handoffs
			return nil
		})
	}
	opts := []weir.ProcessorOpt{weir.Brokers(seeds...), weir.Topic("load"), weir.Group("scale"),
		weir.Logger(quietLogger()), fastGroup(), weir.CheckpointEvery(200, 500*time.Millisecond)}

	var fleet []*instance
	next := 0
	scaleTo := func(n int) {
		start := time.Now()
		for len(fleet) < n {
			name := fmt.Sprintf("i%d", next)
			next++
			fleet = append(fleet, startInstance(t, name, handler(name), opts...))
		}
		var wg sync.WaitGroup
		for len(fleet) > n {
			in := fleet[len(fleet)-1]
			fleet = fleet[:len(fleet)-1]
			wg.Add(1)
			go func() { defer wg.Done(); in.stop(t) }()
		}
		wg.Wait()
		took := waitBalanced(t, fleet, partitions, 60*time.Second)
		t.Logf("scaled to %d instances: balanced %v after the change began (stops took %v)",
			n, time.Since(start).Round(time.Millisecond), (time.Since(start) - took).Round(time.Millisecond))
		time.Sleep(time.Second) // process under load for a while at this size
	}
	for _, n := range []int{1, 4, 8, 2} {
		scaleTo(n)
	}
	prod.stop()
	l.waitAllProcessed(t, 60*time.Second)
	for _, in := range fleet {
		in.stop(t)
	}
	lost, twice, _ := l.result()
	l.mu.Lock()
	total := len(l.produced)
	l.mu.Unlock()
	t.Logf("produced %d events: lost %d, processed twice %d", total, lost, twice)
	if lost != 0 || twice != 0 {
		t.Fatalf("lost %d, processed twice %d; want 0, 0", lost, twice)
	}
}
