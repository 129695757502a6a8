package weir_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir"
)

// TestProcessorRollingRestartWithStaticMembership restarts each of four
// instances in turn under load. With static membership the group does not
// rebalance: the other instances keep their partitions (no close, no
// reopen), the restarted one gets its own back, and every event is
// processed exactly once.
func TestProcessorRollingRestartWithStaticMembership(t *testing.T) {
	forEachBackend(t, testRollingRestartWithStaticMembership)
}

func testRollingRestartWithStaticMembership(t *testing.T, b backend) {
	const partitions = 16
	seeds := b.start(t, partitions, "rolling")
	l := newLedger()
	prod := startProducer(t, seeds, "rolling", l, 2000)
	defer prod.stop()

	start := func(i, gen int) (*instance, *recordingHandler) {
		name := fmt.Sprintf("r%d.%d", i, gen)
		h := &recordingHandler{HandlerFunc: weir.HandlerFunc(func(_ context.Context, e *kgo.Record) error {
			l.record(name, e.Partition, e.Offset)
			return nil
		})}
		in := startInstance(t, name, h, weir.Brokers(seeds...), weir.Topic("rolling"), weir.Group("rolling"),
			weir.Logger(quietLogger()), fastGroup(), weir.InstanceID(fmt.Sprintf("pod-%d", i)),
			weir.CheckpointEvery(100, 300*time.Millisecond))
		return in, h
	}
	fleet := make([]*instance, 4)
	handlers := make([]*recordingHandler, 4)
	for i := range fleet {
		fleet[i], handlers[i] = start(i, 0)
	}
	waitBalanced(t, fleet, partitions, 30*time.Second)
	before := make([][]int32, len(fleet))
	for i, in := range fleet {
		before[i] = owned(in)
	}
	waitFor(t, 10*time.Second, "handlers opened what their instances own", func() bool {
		for i, h := range handlers {
			if !h.settled(owned(fleet[i])) {
				return false
			}
		}
		return true
	})
	// Count opens and closes from here on: the initial convergence moves
	// partitions, the rolling restart must not.
	for _, h := range handlers {
		h.mu.Lock()
		h.opens, h.closes, h.closedParts = nil, nil, nil
		h.mu.Unlock()
	}
	time.Sleep(500 * time.Millisecond)

	var all []*recordingHandler
	all = append(all, handlers...)
	for i := range fleet {
		restartedAt := time.Now()
		fleet[i].stop(t)
		fleet[i], handlers[i] = start(i, 1)
		all = append(all, handlers[i])
		waitFor(t, 30*time.Second, fmt.Sprintf("pod-%d owns its partitions again", i), func() bool {
			return slices.Equal(owned(fleet[i]), before[i])
		})
		t.Logf("pod-%d restarted: partitions back after %v", i, time.Since(restartedAt).Round(time.Millisecond))
		for j, in := range fleet {
			if got := owned(in); !slices.Equal(got, before[j]) {
				t.Fatalf("after restarting pod-%d, pod-%d owns %v, want %v", i, j, got, before[j])
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	prod.stop()
	l.waitAllProcessed(t, 60*time.Second)
	for _, in := range fleet {
		in.stop(t)
	}
	for i, h := range all {
		h.mu.Lock()
		if h.closes[weir.Rebalanced] != 0 || h.closes[weir.OwnershipLost] != 0 {
			t.Errorf("a partition moved during the rolling restart: closes %v", h.closes)
		}
		if i < len(fleet) && len(h.opens) != 0 {
			t.Errorf("an instance that was running before the restarts opened partitions %v", h.opens)
		}
		for p, n := range h.opens {
			if n != 1 {
				t.Errorf("partition %d opened %d times by one instance", p, n)
			}
		}
		h.mu.Unlock()
	}
	lost, twice, _ := l.result()
	t.Logf("produced %d: lost %d, processed twice %d", len(l.produced), lost, twice)
	if lost != 0 || twice != 0 {
		t.Fatalf("lost %d, processed twice %d; want 0, 0", lost, twice)
	}
}
