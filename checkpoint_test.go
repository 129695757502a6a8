package weir

import (
	"math/rand/v2"
	"testing"
)

func TestOffsetTrackerContiguousPrefix(t *testing.T) {
	tr := newOffsetTracker()
	if _, _, ok := tr.checkpoint(); ok {
		t.Fatal("checkpoint before any completion")
	}
	// Offsets with gaps, as after compaction or transaction markers.
	for _, o := range []int64{10, 11, 13, 14, 20} {
		tr.dispatched(o, 3)
	}
	step := func(done int64, want int64, wantOK bool) {
		t.Helper()
		if !tr.completed(done) {
			t.Fatalf("completed(%d) = false", done)
		}
		got, epoch, ok := tr.checkpoint()
		if ok != wantOK || (ok && (got != want || epoch != 3)) {
			t.Fatalf("after completing %d: checkpoint = %d, %d, %v; want %d, 3, %v", done, got, epoch, ok, want, wantOK)
		}
	}
	step(13, 0, false) // 10 and 11 still running
	step(11, 0, false)
	step(10, 14, true) // 10, 11, 13 done: next is 14
	step(20, 14, true) // 14 still running
	step(14, 21, true)
	if tr.inFlight() != 0 {
		t.Fatalf("inFlight = %d, want 0", tr.inFlight())
	}
	if tr.completed(14) {
		t.Fatal("completing an offset twice succeeded")
	}
	if tr.completed(99) {
		t.Fatal("completing an undispatched offset succeeded")
	}
}

// TestOffsetTrackerRandomOrder steps the tracker through many seeded random
// completion orders and compares it with a brute-force model.
func TestOffsetTrackerRandomOrder(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		tr := newOffsetTracker()
		var offsets []int64
		off := int64(0)
		for range 3000 {
			off += 1 + int64(rng.IntN(3))
			offsets = append(offsets, off)
			tr.dispatched(off, 1)
		}
		done := make([]bool, len(offsets))
		// Complete in a random order that stays within a window, like a
		// worker pool would.
		order := rng.Perm(len(offsets))
		for i, idx := range order {
			done[idx] = true
			if !tr.completed(offsets[idx]) {
				t.Fatalf("seed %d: completed(%d) = false", seed, offsets[idx])
			}
			want := int64(-1)
			for j := range offsets {
				if !done[j] {
					break
				}
				want = offsets[j] + 1
			}
			if i%97 == 0 || i == len(order)-1 {
				got, _, ok := tr.checkpoint()
				if (want >= 0) != ok || (ok && got != want) {
					t.Fatalf("seed %d step %d: checkpoint = %d, %v; want %d", seed, i, got, ok, want)
				}
			}
		}
		if got, _, _ := tr.checkpoint(); got != offsets[len(offsets)-1]+1 {
			t.Fatalf("seed %d: final checkpoint %d, want %d", seed, got, offsets[len(offsets)-1]+1)
		}
	}
}

func TestOffsetTrackerMemoryStaysBounded(t *testing.T) {
	tr := newOffsetTracker()
	for o := int64(0); o < 100_000; o++ {
		tr.dispatched(o, 0)
		if o >= 10 {
			tr.completed(o - 10)
		}
	}
	if tr.inFlight() != 10 {
		t.Fatalf("inFlight = %d, want 10", tr.inFlight())
	}
	if len(tr.pending) > 4096 {
		t.Fatalf("pending grew to %d entries for 10 in flight", len(tr.pending))
	}
}
