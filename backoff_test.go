package weir

import (
	"math"
	"testing"
	"time"
)

// TestBackoffDoublesWithJitterWithinBounds steps the SDK's one backoff:
// each delay is the exponential value (first doubling, capped at max) give
// or take 20%, and the delays are not all equal (jitter).
func TestBackoffDoublesWithJitterWithinBounds(t *testing.T) {
	first, max := 100*time.Millisecond, time.Second
	next := backoff(first, max)
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		seen := map[time.Duration]bool{}
		for range 200 {
			d := next(i + 1)
			if d < w-w/5 || d > w+w/5 {
				t.Fatalf("try %d: %v, want %v ±20%%", i+1, d, w)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Fatalf("try %d: 200 delays all %v: no jitter", i+1, w)
		}
	}
	// A huge max or try count neither overflows nor goes negative.
	if d := backoff(time.Second, math.MaxInt64)(1000); d <= 0 {
		t.Fatalf("backoff(1s, MaxInt64)(1000) = %v", d)
	}
	if d := backoff(time.Nanosecond, time.Nanosecond)(1); d != time.Nanosecond {
		t.Fatalf("backoff(1ns, 1ns)(1) = %v", d)
	}
}
