package weir

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func rec(key string, offset int64) *kgo.Record {
	r := &kgo.Record{Offset: offset}
	if key != "" {
		r.Key = []byte(key)
	}
	return r
}

func TestKeySchedulerSameKeyWaits(t *testing.T) {
	s := newKeyScheduler()
	a0, b1, a2, n3, a4 := rec("a", 0), rec("b", 1), rec("a", 2), rec("", 3), rec("a", 4)
	for _, r := range []*kgo.Record{a0, b1, a2, n3, a4} {
		s.add(r)
	}
	take := func(want *kgo.Record) {
		t.Helper()
		got, ok := s.next()
		if !ok || got != want {
			t.Fatalf("next = offset %v, %v; want offset %d", offsetOf(got), ok, want.Offset)
		}
	}
	take(a0)
	take(b1)
	take(n3) // a2 must wait for a0; keyless events never wait
	if r, ok := s.next(); ok {
		t.Fatalf("next = offset %d while a0 runs; want nothing", r.Offset)
	}
	s.done(b1)
	if _, ok := s.next(); ok {
		t.Fatal("b finishing made an a event runnable")
	}
	s.done(a0)
	take(a2)
	s.done(n3)
	s.done(a2)
	take(a4)
	s.done(a4)
	if s.len() != 0 || len(s.keys) != 0 {
		t.Fatalf("len = %d, keys = %d after all done", s.len(), len(s.keys))
	}
}

func offsetOf(r *kgo.Record) any {
	if r == nil {
		return nil
	}
	return r.Offset
}

// TestKeySchedulerSimulatedWorkers steps a scheduler with n simulated
// workers finishing in a seeded random order, and checks that same-key
// events never overlap and run in offset order, that different keys do run
// in parallel, and that every event runs exactly once.
func TestKeySchedulerSimulatedWorkers(t *testing.T) {
	const workers, events = 16, 5000
	for seed := uint64(0); seed < 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 2))
		s := newKeyScheduler()
		var running []*kgo.Record
		lastRun := map[string]int64{}
		runningKey := map[string]bool{}
		ran := 0
		maxParallel := 0
		added := int64(0)
		for ran < events {
			// Fetch a few events now and then, as the poll loop does.
			for range rng.IntN(8) {
				if added < events {
					key := ""
					if rng.IntN(10) > 0 {
						key = fmt.Sprintf("k%d", rng.IntN(40))
					}
					s.add(rec(key, added))
					added++
				}
			}
			for len(running) < workers {
				r, ok := s.next()
				if !ok {
					break
				}
				if k := string(r.Key); k != "" {
					if runningKey[k] {
						t.Fatalf("seed %d: key %s runs twice at once", seed, k)
					}
					if last, ok := lastRun[k]; ok && last > r.Offset {
						t.Fatalf("seed %d: key %s ran offset %d after %d", seed, k, r.Offset, last)
					}
					runningKey[k], lastRun[k] = true, r.Offset
				}
				running = append(running, r)
			}
			maxParallel = max(maxParallel, len(running))
			if len(running) == 0 {
				if added == events {
					t.Fatalf("seed %d: stalled with %d of %d run", seed, ran, events)
				}
				continue
			}
			i := rng.IntN(len(running))
			r := running[i]
			running = append(running[:i], running[i+1:]...)
			runningKey[string(r.Key)] = false
			s.done(r)
			ran++
		}
		if s.len() != 0 {
			t.Fatalf("seed %d: len = %d at the end", seed, s.len())
		}
		if maxParallel < 2 {
			t.Fatalf("seed %d: never ran two events at once", seed)
		}
	}
}
