package weir_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
)

// busyBroker makes a kfake cluster behave like an overloaded hub: of every
// run of produce requests, some are answered "busy" (THROTTLING_QUOTA_
// EXCEEDED with a KIP-219 throttle_time_ms) without being stored, some are
// held back before being served, some lose their connection before being
// served, and some are stored but answered REQUEST_TIMED_OUT (the client
// cannot tell and must retry, and idempotence must keep the retry from
// storing twice).
type busyBroker struct {
	requests, busy, delayed, dropped atomic.Int64
	timedOut                         *kfake.FaultHandle
}

func (b *busyBroker) install(c *kfake.Cluster) {
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		n := b.requests.Add(1)
		switch {
		case n%23 == 0:
			b.dropped.Add(1)
			return nil, errors.New("connection dropped by the test"), true
		case n%5 == 0:
			b.busy.Add(1)
			return busyResponse(req.(*kmsg.ProduceRequest)), nil, true
		case n%11 == 0:
			b.delayed.Add(1)
			time.Sleep(time.Duration(5+n%40) * time.Millisecond)
		}
		return nil, nil, false // served normally
	})
	b.timedOut = c.Fault(kfake.Fault{
		Keys:  []kmsg.Key{kmsg.Produce},
		Err:   kerr.RequestTimedOut, // stored, then answered with a timeout
		Count: -1,
		When:  func(kmsg.Request) bool { return b.requests.Load()%17 == 0 },
	})
}

func busyResponse(req *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	resp := produceErrorResponse(req, kerr.ThrottlingQuotaExceeded.Code)
	resp.ThrottleMillis = 20
	return resp
}

// TestProducerBurstIntoThrottledBrokerLosesNothing sends a burst as fast as
// SendAsync takes it into a busy broker. Every event must end acknowledged
// or returned, exactly once, and the topic must hold exactly the
// acknowledged events, each once, where its acknowledgement said.
func TestProducerBurstIntoThrottledBrokerLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("200k events; skipped with -short")
	}
	leakCheck(t)
	const topic, events = "burst", 200_000
	c := kfakeCluster(t, kfake.NumBrokers(3), kfake.SeedTopics(6, topic))
	var bb busyBroker
	bb.install(c)

	ctx := testCtx(t, 3*time.Minute)
	p, err := weir.NewProducer(ctx, weir.Brokers(c.ListenAddrs()...), weir.Topic(topic),
		weir.RetryBackoff(10*time.Millisecond, 200*time.Millisecond),
		// A smaller buffer than the default makes more, smaller requests,
		// so more of them meet the broker's faults.
		weir.MaxBuffered(5_000, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	o := burst(t, ctx, p, events)
	s := p.Stats()
	t.Logf("broker: %d produce requests, %d busy, %d delayed, %d connections dropped, %d stored but answered REQUEST_TIMED_OUT",
		bb.requests.Load(), bb.busy.Load(), bb.delayed.Load(), bb.dropped.Load(), bb.timedOut.Hits())
	if bb.busy.Load() == 0 || bb.dropped.Load() == 0 || s.Throttled == 0 {
		t.Errorf("the broker was not busy enough to test anything: %d busy, %d dropped, %d throttled", bb.busy.Load(), bb.dropped.Load(), s.Throttled)
	}
	checkStoredAsAcknowledged(t, readBack(t, ctx, c.ListenAddrs()[0], topic), o)
}
