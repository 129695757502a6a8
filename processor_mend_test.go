package weir_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir"
)

// TestProcessorHandlerRetriesBackOff checks the waits between a failing
// event's handler calls: HandlerRetries' minimum, doubling up to its
// maximum, each at least 80% of that (±20% jitter). Only lower bounds are
// asserted: a busy machine makes waits longer, never shorter.
func TestProcessorHandlerRetriesBackOff(t *testing.T) {
	seeds := kfakeBroker(t, 1, "retries")
	produceTo(t, seeds, "retries", 0, nil, "poison")

	var (
		mu    sync.Mutex
		calls []time.Time
	)
	h := weir.HandlerFunc(func(context.Context, *kgo.Record) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, time.Now())
		return errPoison
	})
	in := startInstance(t, "a", h, weir.Brokers(seeds...), weir.Topic("retries"), weir.Group("g"),
		weir.Logger(quietLogger()), fastGroup(),
		weir.HandlerRetries(4, 100*time.Millisecond, 200*time.Millisecond))
	defer in.stop(t)
	waitFor(t, 30*time.Second, "the partition stopped after 4 attempts", func() bool {
		for _, ps := range in.p.Stats().Partitions {
			if ps.Stopped {
				return true
			}
		}
		return false
	})
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 4 {
		t.Fatalf("%d handler calls, want 4", len(calls))
	}
	for i, nominal := range []time.Duration{100, 200, 200} {
		nominal *= time.Millisecond
		if gap := calls[i+1].Sub(calls[i]); gap < nominal-nominal/5 {
			t.Errorf("wait before attempt %d: %v, want at least %v (%v -20%%)", i+2, gap, nominal-nominal/5, nominal)
		}
	}
}
