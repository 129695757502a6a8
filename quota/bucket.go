package quota

import (
	"math"
	"time"
)

// Bucket is a token bucket driven by explicit time. Tokens refill at Rate
// per second up to a capacity of Burst worth of rate. Usage is always taken
// in full, so tokens can go negative: the debt is what the caller must wait
// off (KIP-219: the request is served, and the client is held back
// afterwards). The bucket does not bound the debt: its callers do, by
// holding each client back for the whole Throttle. A Bucket with rate 0 is
// unlimited.
type Bucket struct {
	rate     float64 // tokens per second; 0 = unlimited
	capacity float64
	tokens   float64
	last     time.Time
}

// NewBucket returns a full bucket of rate tokens per second holding burst
// worth of them.
func NewBucket(rate float64, burst time.Duration, now time.Time) Bucket {
	b := Bucket{last: now}
	b.SetRate(rate, burst)
	b.tokens = b.capacity
	return b
}

// SetRate changes the rate and capacity, keeping the tokens (clamped to the
// new capacity). Debt stays: it is paid off at the new rate.
func (b *Bucket) SetRate(rate float64, burst time.Duration) {
	b.rate = rate
	b.capacity = rate * burst.Seconds()
	b.tokens = min(b.tokens, b.capacity)
}

// Advance refills the bucket up to now and returns how long of the elapsed
// interval the bucket spent in debt. Time going backwards is ignored.
func (b *Bucket) Advance(now time.Time) (inDebt time.Duration) {
	el := now.Sub(b.last)
	if el <= 0 {
		return 0
	}
	b.last = now
	if b.rate == 0 {
		b.tokens = 0
		return 0
	}
	if b.tokens < 0 {
		inDebt = min(el, secondsToDuration(-b.tokens/b.rate))
	}
	b.tokens = min(b.tokens+b.rate*el.Seconds(), b.capacity)
	return inDebt
}

// Take takes n tokens, going into debt if there are not enough.
func (b *Bucket) Take(n float64) {
	if b.rate == 0 {
		return
	}
	b.tokens -= n
}

// Throttle returns how long the caller must wait for the debt to be paid
// off: zero when the bucket is not in debt.
func (b *Bucket) Throttle() time.Duration {
	if b.rate == 0 || b.tokens >= 0 {
		return 0
	}
	return secondsToDuration(-b.tokens / b.rate)
}

func secondsToDuration(s float64) time.Duration {
	if s >= math.MaxInt64/float64(time.Second) {
		return math.MaxInt64
	}
	// Round up: a throttle shorter than the debt lets the client back too early.
	return time.Duration(math.Ceil(s * float64(time.Second)))
}
