package weir_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir"
)

// BenchmarkProcessorBalance1To8 measures the time from starting 7 more
// instances next to one that owns all 32 partitions to a balanced
// assignment (4 partitions each). Target: under 2s.
func BenchmarkProcessorBalance1To8(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { benchBalance1To8(b, be) })
	}
}

func benchBalance1To8(b *testing.B, be backend) {
	const partitions = 32
	var total time.Duration
	for i := range b.N {
		b.StopTimer()
		seeds := be.start(b, partitions, "bal")
		opts := []weir.ProcessorOpt{weir.Brokers(seeds...), weir.Topic("bal"), weir.Group(fmt.Sprint("bal", i)),
			weir.Logger(quietLogger()), fastGroup()}
		noop := weir.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
		fleet := []*instance{startInstance(b, "0", noop, opts...)}
		waitBalanced(b, fleet, partitions, 30*time.Second)
		b.StartTimer()
		start := time.Now()
		for j := 1; j < 8; j++ {
			fleet = append(fleet, startInstance(b, fmt.Sprint(j), noop, opts...))
		}
		waitBalanced(b, fleet, partitions, 30*time.Second)
		total += time.Since(start)
		b.StopTimer()
		for _, in := range fleet {
			in.stop(b)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/balance")
}

// BenchmarkProcessorThroughput consumes the same pre-produced events with a
// bare kgo group consumer and with a Processor running a no-op handler, and
// reports the processor's throughput as a ratio of the bare consumer's.
// Target: ratio >= 0.8.
func BenchmarkProcessorThroughput(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { benchThroughput(b, be) })
	}
}

func benchThroughput(b *testing.B, be backend) {
	const events, partitions = 1_000_000, 8
	seeds := be.start(b, partitions, "tput")
	produceN(b, seeds, "tput", nil, events, func(i int) string { return fmt.Sprint(i % 1000) })
	var bareTotal, procTotal time.Duration
	for i := range b.N {
		bareTotal += bareConsume(b, seeds, fmt.Sprint("bare", i), events)
		procTotal += processorConsume(b, seeds, fmt.Sprint("proc", i), events)
	}
	b.ReportMetric(float64(events*b.N)/bareTotal.Seconds(), "bare-events/s")
	b.ReportMetric(float64(events*b.N)/procTotal.Seconds(), "processor-events/s")
	b.ReportMetric(bareTotal.Seconds()/procTotal.Seconds(), "ratio")
}

func bareConsume(b *testing.B, seeds []string, group string, events int) time.Duration {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics("tput"), kgo.ConsumerGroup(group),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.DisableAutoCommit())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	n := 0
	for n < events {
		fs := cl.PollRecords(ctx, 2000)
		if err := ctx.Err(); err != nil {
			b.Fatal(err)
		}
		fs.EachRecord(func(*kgo.Record) { n++ })
	}
	took := time.Since(start)
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		b.Fatal(err)
	}
	return took
}

func processorConsume(b *testing.B, seeds []string, group string, events int) time.Duration {
	noop := weir.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
	start := time.Now()
	in := startInstance(b, group, noop, weir.Brokers(seeds...), weir.Topic("tput"), weir.Group(group),
		weir.Logger(quietLogger()), weir.KgoOpts(kgo.FetchMaxWait(200*time.Millisecond)))
	deadline := time.Now().Add(5 * time.Minute)
	for in.p.Stats().Processed < int64(events) {
		if time.Now().After(deadline) {
			b.Fatalf("processed %d of %d events in 5 minutes", in.p.Stats().Processed, events)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	in.stop(b)
	return took
}
