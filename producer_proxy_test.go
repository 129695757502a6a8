package weir_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// overloadedHub plays an overloaded hub on the produce responses passing
// back through a weirtest.Proxy: every throttleEvery-th gets a KIP-219
// throttle_time_ms, every delayEvery-th is held back, and every dropEvery-th
// is never delivered: the connection is cut after the broker stored the
// batch.
type overloadedHub struct {
	throttleEvery, delayEvery, dropEvery int64
	throttle                             time.Duration

	produces, throttled, delayed, dropped atomic.Int64
}

func (h *overloadedHub) edit(r weirtest.Response) ([]byte, bool) {
	if r.Key != kmsg.Produce {
		return r.Frame, true
	}
	n := h.produces.Add(1)
	switch {
	case n%h.dropEvery == 0:
		h.dropped.Add(1)
		return nil, false
	case n%h.delayEvery == 0:
		h.delayed.Add(1)
		time.Sleep(time.Duration(10+n%40) * time.Millisecond)
	case n%h.throttleEvery == 0:
		if out, ok := withThrottle(r.Frame, r.Version, h.throttle); ok {
			h.throttled.Add(1)
			return out, true
		}
	}
	return r.Frame, true
}

// withThrottle re-encodes a produce response frame (correlation id, header
// tags if flexible, body) with throttle_time_ms set.
func withThrottle(frame []byte, version int16, d time.Duration) ([]byte, bool) {
	resp := kmsg.NewPtrProduceResponse()
	resp.SetVersion(version)
	hdr := 4
	if resp.IsFlexible() {
		if len(frame) < 5 || frame[4] != 0 { // tagged fields we would have to keep
			return nil, false
		}
		hdr = 5
	}
	if err := resp.ReadFrom(frame[hdr:]); err != nil {
		return nil, false
	}
	resp.ThrottleMillis = int32(d / time.Millisecond)
	return resp.AppendTo(append([]byte(nil), frame[:hdr]...)), true
}

// TestProducerBurstIntoThrottlingWeir is the burst test against weir
// itself: 200k events through a proxy that throttles (KIP-219), delays and
// loses produce responses. Lost responses are of batches weir stored: the
// idempotent retries must not store them twice.
func TestProducerBurstIntoThrottlingWeir(t *testing.T) {
	if testing.Short() {
		t.Skip("200k events; skipped with -short")
	}
	leakCheck(t)
	const topic, events = "burst", 200_000
	hub := &overloadedHub{throttleEvery: 3, delayEvery: 7, dropEvery: 29, throttle: 30 * time.Millisecond}
	b, px := weirtest.StartProxied(t, hub.edit, func(c *broker.Config) { c.DefaultPartitions = 6 })

	ctx := testCtx(t, 3*time.Minute)
	p, err := weir.NewProducer(ctx, weir.Brokers(px.Addr()), weir.Topic(topic), weir.AllowAutoTopicCreation(),
		weir.RetryBackoff(10*time.Millisecond, 200*time.Millisecond), weir.MaxBuffered(5_000, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	o := burst(t, ctx, p, events)
	s := p.Stats()
	t.Logf("proxy: %d produce responses, %d throttled, %d delayed, %d lost",
		hub.produces.Load(), hub.throttled.Load(), hub.delayed.Load(), hub.dropped.Load())
	if hub.throttled.Load() == 0 || hub.dropped.Load() == 0 || s.Throttled == 0 {
		t.Errorf("not throttled enough to test anything: proxy %d throttled %d lost, producer saw %d throttles",
			hub.throttled.Load(), hub.dropped.Load(), s.Throttled)
	}
	checkStoredAsAcknowledged(t, readBack(t, ctx, b.Addr(), topic), o)
}
