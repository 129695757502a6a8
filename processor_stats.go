package weir

import (
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ProcessorStats is a snapshot of a Processor's counters.
type ProcessorStats struct {
	// Partitions are the partitions owned now, by partition number.
	Partitions []PartitionStats
	// Processed counts events whose handler succeeded.
	Processed int64
	// Failed counts handler calls that returned an error (each retry
	// counts).
	Failed int64
	// DeadLettered counts events sent to the dead-letter topic.
	DeadLettered int64
	// Redelivered counts records the client fetched again within one
	// ownership of a partition (offsets already taken), skipped so that
	// they are not processed twice.
	Redelivered int64
	// Rebalances counts assignments received (the first one included).
	Rebalances int64
	// HandlerCalls and HandlerTime give the mean handler latency; the
	// Prometheus collector has the histogram. Calls faster than 20µs are
	// timed one in 16 (weighted), so both are estimates for fast handlers.
	HandlerCalls int64
	HandlerTime  time.Duration
}

// PartitionStats describes one owned partition.
type PartitionStats struct {
	Partition int32
	// Processed counts events processed since the partition was opened.
	Processed int64
	// Checkpoint is the offset after the contiguous completed prefix (what
	// the next commit writes), -1 before the first completed event.
	Checkpoint int64
	// Committed is the last offset committed by this instance, -1 if none.
	Committed int64
	// HighWatermark is the partition's end offset at the last fetch, -1 if
	// unknown.
	HighWatermark int64
	// Lag is HighWatermark minus Checkpoint: events not yet completed.
	// -1 if unknown.
	Lag int64
	// Stopped is true when the StopPartition policy stopped the partition.
	Stopped bool
}

// Stats returns a snapshot of the counters and the owned partitions.
func (p *Processor) Stats() ProcessorStats {
	s, _ := p.stats()
	return s
}

// stats returns the snapshot and the handler latency histogram's counts.
func (p *Processor) stats() (ProcessorStats, latencyCounts) {
	s := ProcessorStats{
		Processed:    p.counters.processed.Load(),
		Failed:       p.counters.failed.Load(),
		DeadLettered: p.counters.deadLettered.Load(),
		Rebalances:   p.counters.rebalances.Load(),
	}
	var lat latencyCounts
	p.counters.latency.addToCounts(&lat)
	p.mu.Lock()
	runners := make([]*partitionRunner, 0, len(p.mu.runners))
	for _, r := range p.mu.runners {
		runners = append(runners, r)
	}
	p.mu.Unlock()
	s.Redelivered = p.counters.redelivered.Load()
	for _, r := range runners {
		s.Redelivered += r.redelivered.Load()
		s.Processed += r.processed.Load()
		r.latency.addToCounts(&lat)
		ps := PartitionStats{
			Partition:     r.tp.Partition,
			Processed:     r.processed.Load(),
			HighWatermark: r.hwm.Load(),
			Stopped:       r.halted.Load(),
			Lag:           -1,
		}
		r.mu.Lock()
		ps.Checkpoint, _, _ = r.mu.tracker.checkpoint()
		ps.Committed = r.mu.committed
		r.mu.Unlock()
		if ps.HighWatermark >= 0 {
			ps.Lag = ps.HighWatermark - max(ps.Checkpoint, 0)
		}
		s.Partitions = append(s.Partitions, ps)
	}
	slices.SortFunc(s.Partitions, func(a, b PartitionStats) int { return int(a.Partition - b.Partition) })
	for _, n := range lat.counts {
		s.HandlerCalls += int64(n)
	}
	s.HandlerTime = time.Duration(lat.sumNanos)
	return s, lat
}

// latencyBounds are the handler latency histogram's upper bounds.
var latencyBounds = [...]time.Duration{
	100 * time.Microsecond, 400 * time.Microsecond, 1600 * time.Microsecond, 6400 * time.Microsecond,
	25600 * time.Microsecond, 102400 * time.Microsecond, 409600 * time.Microsecond,
	1638400 * time.Microsecond, 6553600 * time.Microsecond, 26214400 * time.Microsecond,
}

// latencyHist is a handler latency histogram cheap enough for every event:
// each runner has its own (uncontended atomics), merged into the
// processor's when the runner exits.
type latencyHist struct {
	counts   [len(latencyBounds) + 1]atomic.Uint64 // last: above every bound
	sumNanos atomic.Int64
}

type latencyCounts struct {
	counts   [len(latencyBounds) + 1]uint64
	sumNanos int64
}

// observe counts weight calls that took d each.
func (h *latencyHist) observe(d time.Duration, weight uint64) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(weight)
	h.sumNanos.Add(int64(d) * int64(weight))
}

func (h *latencyHist) addTo(dst *latencyHist) {
	for i := range h.counts {
		dst.counts[i].Add(h.counts[i].Load())
	}
	dst.sumNanos.Add(h.sumNanos.Load())
}

func (h *latencyHist) addToCounts(dst *latencyCounts) {
	for i := range h.counts {
		dst.counts[i] += h.counts[i].Load()
	}
	dst.sumNanos += h.sumNanos.Load()
}

// Collector returns Prometheus collectors for the processor's metrics, all
// labeled with group and topic: weir_processor_owned_partitions,
// weir_processor_events_processed_total, weir_processor_handler_failures_total,
// weir_processor_events_dead_lettered_total, weir_processor_rebalances_total,
// weir_processor_partition_lag{partition} and the
// weir_processor_handler_seconds histogram. Register it with
// prometheus.MustRegister(p.Collector()).
func (p *Processor) Collector() prometheus.Collector {
	c := newStatsCollector("weir_processor_", prometheus.Labels{"group": p.cfg.group, "topic": p.cfg.client.topic})
	owned := c.desc("owned_partitions", "Partitions this instance owns.")
	processed := c.desc("events_processed_total", "Events whose handler succeeded.")
	failed := c.desc("handler_failures_total", "Handler calls that returned an error, retries included.")
	deadLettered := c.desc("events_dead_lettered_total", "Events sent to the dead-letter topic.")
	rebalances := c.desc("rebalances_total", "Assignments received from the group.")
	lag := c.desc("partition_lag", "High watermark minus the checkpoint, per owned partition.", "partition")
	latency := c.desc("handler_seconds", "Time spent in Handler.ProcessEvent per call.")
	c.collect = func(ch chan<- prometheus.Metric) {
		s, lat := p.stats()
		gauge(ch, owned, float64(len(s.Partitions)))
		counter(ch, processed, float64(s.Processed))
		counter(ch, failed, float64(s.Failed))
		counter(ch, deadLettered, float64(s.DeadLettered))
		counter(ch, rebalances, float64(s.Rebalances))
		for _, ps := range s.Partitions {
			if ps.Lag >= 0 {
				gauge(ch, lag, float64(ps.Lag), strconv.Itoa(int(ps.Partition)))
			}
		}
		buckets := make(map[float64]uint64, len(latencyBounds))
		var cum uint64
		for i, b := range latencyBounds {
			cum += lat.counts[i]
			buckets[b.Seconds()] = cum
		}
		ch <- prometheus.MustNewConstHistogram(latency, uint64(s.HandlerCalls), time.Duration(lat.sumNanos).Seconds(), buckets)
	}
	return c
}
