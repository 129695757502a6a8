package weir

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ProducerStats is a snapshot of a producer's counters since it started.
// Sent = Acknowledged + Failed + Buffered at all times.
type ProducerStats struct {
	// Sent counts events handed to Send, SendBatch or SendAsync.
	Sent int64
	// Acknowledged counts events the broker stored and acknowledged.
	Acknowledged int64
	// Failed counts events returned to the caller with an error, including
	// events rejected before sending (too large, invalid, after Close).
	Failed int64
	// Buffered is the number of events sent but not yet acknowledged or
	// returned.
	Buffered int64
	// Retried counts produce requests that failed as a whole (the write
	// failed, the connection was lost, or the try timed out before the
	// answer), once per request, not per partition or event; their events
	// are tried again unless DeliveryTimeout, MaxRetries or Close ends
	// them first. Not counted: a partition that franz-go retries because
	// an answered request gave it a retriable error code (not leader, not
	// enough replicas, timed out, a leader move), since franz-go has no
	// hook that reports it. See docs/SDK.md.
	Retried int64
	// Throttled counts broker responses that asked the producer to slow
	// down (KIP-219 throttle_time_ms > 0), and ThrottleTime sums the delays
	// asked for. Throttling slows the producer; it fails no event.
	Throttled    int64
	ThrottleTime time.Duration
}

type producerCounters struct {
	sent, acked, failed atomic.Int64
	retried, throttled  atomic.Int64
	throttleNanos       atomic.Int64
}

// Stats returns a snapshot of the producer's counters.
func (p *Producer) Stats() ProducerStats {
	// Read the outcomes before sent, so that Buffered is never negative.
	acked, failed := p.stats.acked.Load(), p.stats.failed.Load()
	sent := p.stats.sent.Load()
	return ProducerStats{
		Sent:         sent,
		Acknowledged: acked,
		Failed:       failed,
		Buffered:     max(0, sent-acked-failed),
		Retried:      p.stats.retried.Load(),
		Throttled:    p.stats.throttled.Load(),
		ThrottleTime: time.Duration(p.stats.throttleNanos.Load()),
	}
}

// producerHooks counts what franz-go reports about requests.
type producerHooks struct{ p *Producer }

var (
	_ kgo.HookBrokerThrottle = (*producerHooks)(nil)
	_ kgo.HookBrokerE2E      = (*producerHooks)(nil)
	_ kgo.HookBrokerConnect  = (*producerHooks)(nil)

	_ kgo.HookProduceRecordUnbuffered = (*producerHooks)(nil)
)

// OnProduceRecordUnbuffered counts a record's outcome and gives its buffer
// room back. kgo calls it once for every record it was handed, just before
// the record's promise, on the promise goroutine, and before a Flush that
// waits for the record can return: so Stats is up to date when Flush
// returns, even for an event whose Send stopped waiting.
func (h *producerHooks) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	h.p.room.give(recordSize(r))
	if err != nil {
		h.p.stats.failed.Add(1)
	} else {
		h.p.stats.acked.Add(1)
	}
}

func (h *producerHooks) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	if d <= 0 {
		return
	}
	h.p.stats.throttled.Add(1)
	h.p.stats.throttleNanos.Add(int64(d))
}

func (h *producerHooks) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	err := e2e.Err()
	if err == nil || errors.Is(err, kgo.ErrClientClosed) || errors.Is(err, context.Canceled) {
		return
	}
	switch kmsg.Key(key) {
	case kmsg.Produce:
		h.p.stats.retried.Add(1)
	case kmsg.SASLHandshake, kmsg.SASLAuthenticate:
		h.p.login.refusedBy(err, false, h.p.topic)
	}
}

// Collector returns Prometheus collectors for the producer's counters, to
// register with a prometheus.Registerer:
//
//	prometheus.MustRegister(p.Collector())
//
// The metrics are weir_producer_events_{sent,acknowledged,failed}_total,
// weir_producer_events_buffered, weir_producer_requests_retried_total,
// weir_producer_throttled_total and weir_producer_throttle_seconds_total,
// labelled with the topic and the client id.
func (p *Producer) Collector() prometheus.Collector {
	c := newStatsCollector("weir_producer_", prometheus.Labels{"topic": p.topic, "client_id": p.cfg.client.clientID})
	sent := c.desc("events_sent_total", "Events handed to the producer.")
	acked := c.desc("events_acknowledged_total", "Events the broker acknowledged.")
	failed := c.desc("events_failed_total", "Events returned to the caller with an error.")
	buffered := c.desc("events_buffered", "Events sent but not yet acknowledged or returned.")
	retried := c.desc("requests_retried_total", "Produce requests that failed on the way and were sent again.")
	throttled := c.desc("throttled_total", "Broker responses that asked the producer to slow down.")
	throttleTime := c.desc("throttle_seconds_total", "Total delay the brokers asked for by throttling.")
	c.collect = func(ch chan<- prometheus.Metric) {
		s := p.Stats()
		counter(ch, sent, float64(s.Sent))
		counter(ch, acked, float64(s.Acknowledged))
		counter(ch, failed, float64(s.Failed))
		gauge(ch, buffered, float64(s.Buffered))
		counter(ch, retried, float64(s.Retried))
		counter(ch, throttled, float64(s.Throttled))
		counter(ch, throttleTime, s.ThrottleTime.Seconds())
	}
	return c
}
