package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/storage"
)

// ErrBenchStalled is returned when a bench phase makes no progress.
var ErrBenchStalled = errors.New("weir: bench stalled")

// Bench targets, as the project states them.
const (
	targetThroughputRatio = 1.5
	targetP99             = 5 * time.Millisecond
	benchStallTimeout     = 30 * time.Second
)

// benchSpec is what one bench run measures.
type benchSpec struct {
	records    int64
	recordSize int
	partitions int
	duration   time.Duration // latency phase
	linger     time.Duration // producer linger in the latency phase
}

// benchResult is what one target measured.
type benchResult struct {
	name                string
	produce, consume    time.Duration // time to produce / consume spec.records
	latencyRate         float64       // records/s asked for in the latency phase
	latencyAcked        int64
	latencyElapsed      time.Duration
	p50, p99, p999, max time.Duration
	brokerCPU           time.Duration // CPU time of the broker process over all phases; 0 if not measured
	// CPU time of the bench process (the clients) and of the broker
	// process in the produce and consume phases; cpuKnown is false when
	// the broker shares the bench's process, or the OS does not tell.
	produceCPU, consumeCPU cpuTimes
	cpuKnown               bool
}

// cpuTimes is CPU time (user + system) used by the clients and the broker.
type cpuTimes struct{ client, broker time.Duration }

// cpuClock reads the CPU time used so far; ok is false if it is unknown.
type cpuClock func() (t cpuTimes, ok bool)

// childClock reads this process's and the child process pid's CPU time.
func childClock(pid int) cpuClock {
	return func() (cpuTimes, bool) {
		c, cerr := selfCPU()
		b, berr := processCPU(pid)
		return cpuTimes{c, b}, cerr == nil && berr == nil
	}
}

// measureCPU runs phase and returns the CPU time used meanwhile.
func measureCPU(clock cpuClock, phase func() error) (used cpuTimes, ok bool, err error) {
	if clock == nil {
		return cpuTimes{}, false, phase()
	}
	before, ok1 := clock()
	err = phase()
	after, ok2 := clock()
	return cpuTimes{after.client - before.client, after.broker - before.broker}, ok1 && ok2, err
}

func (r *benchResult) produceRate(s benchSpec) float64 {
	return float64(s.records) / r.produce.Seconds()
}
func (r *benchResult) consumeRate(s benchSpec) float64 {
	return float64(s.records) / r.consume.Seconds()
}

// runBench measures weir (embedded, or --brokers) and an in-memory kfake
// cluster with the same client workload, and prints both with their ratios.
func runBench(ctx context.Context, e *env, args []string) error {
	const cmd = "bench"
	fs := e.newFlagSet(cmd, `bench [flags]

Starts weir (weir serve in a child process: temp data dir, 127.0.0.1, random
port) and, as the reference, an in-memory kfake cluster (also in a child
process), one after the other. For each: creates a topic, produces
--records records of --record-size bytes (franz-go defaults: 10ms linger,
snappy; acks=all) and measures throughput; consumes them all from the start;
then produces at half the measured max rate for --duration and reports
per-record produce latency (ack time minus send time). Prints a table and the
weir/kfake ratios, and each broker process's CPU time. --in-process runs both
brokers inside the bench process instead (one Go runtime shared with the
clients). --brokers (or --connection-string) measures an external broker
instead of weir serve, with the login flags below if it needs them (a
uniquely named topic is created there and deleted after).`)
	cf := e.addClientFlags(fs)
	var spec benchSpec
	fs.Int64Var(&spec.records, "records", 1_000_000, "`number` of records in the throughput phases")
	fs.IntVar(&spec.recordSize, "record-size", 100, "record value size in `bytes`")
	fs.IntVar(&spec.partitions, "partitions", 8, "`partitions` of the bench topic")
	fs.DurationVar(&spec.duration, "duration", 5*time.Second, "length of the latency phase")
	fs.DurationVar(&spec.linger, "latency-linger", 0, "producer linger in the latency phase (franz-go's default 10ms would hide the broker's latency)")
	dataDir := fs.String("data-dir", "", "parent `directory` of weir's temp data dir (default: the system temp dir)")
	fsync := fs.String("fsync", "always", "fsync policy of the weir it starts: always, interval, never")
	skipKfake := fs.Bool("skip-kfake", false, "do not measure the kfake reference")
	inProcess := fs.Bool("in-process", false, "run weir and kfake inside the bench process, beside the clients")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the bench process during the weir phases to `file`")
	kfakeServer := fs.Bool("serve-kfake", false, "internal: run the kfake reference broker until stdin closes (what the bench starts as its child)")
	pos, err := e.parseFlags(fs, cmd, args)
	if err != nil {
		return err
	}
	if *kfakeServer {
		if err := noArgs(cmd, pos); err != nil {
			return err
		}
		return serveKfake(ctx, e)
	}
	switch {
	case len(pos) > 0:
		return usagef(cmd, "unexpected argument %q", pos[0])
	case spec.records < 1:
		return usagef(cmd, "--records must be at least 1")
	case spec.recordSize < 1 || spec.recordSize > 512<<10:
		return usagef(cmd, "--record-size must be between 1 and %d", 512<<10)
	case spec.partitions < 1 || spec.partitions > 10000:
		return usagef(cmd, "--partitions must be between 1 and 10000")
	case spec.duration <= 0:
		return usagef(cmd, "--duration must be positive")
	case spec.linger < 0 || spec.linger > time.Minute:
		return usagef(cmd, "--latency-linger must be between 0 and 1m")
	}
	policy, err := parseSyncPolicy(*fsync)
	if err != nil {
		return usagef(cmd, "%v", err)
	}

	fmt.Fprintf(e.stdout, "weir bench: %d records x %d B, %d partitions, acks=all, latency phase %s at half the max produce rate (linger %s)\n",
		spec.records, spec.recordSize, spec.partitions, spec.duration, spec.linger)

	var results []benchResult
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("weir: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("weir: %w", err)
		}
	}
	var external *clientFlags // nil: the bench starts weir itself
	if cf.brokersSet() || cf.connString != "" {
		external = cf
	}
	weir, err := benchWeir(ctx, e, spec, external, *dataDir, policy, *fsync, *inProcess)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	results = append(results, weir)
	if !*skipKfake {
		res, err := benchKfake(ctx, e, spec, *inProcess)
		if err != nil {
			return err
		}
		results = append(results, res)
	}
	printBench(e.stdout, spec, results)
	return nil
}

// benchKfake measures kfake, in a child process or in this one.
func benchKfake(ctx context.Context, e *env, spec benchSpec, inProcess bool) (benchResult, error) {
	if inProcess {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return benchResult{}, fmt.Errorf("weir: start kfake: %w", err)
		}
		defer c.Close()
		fmt.Fprintf(e.stderr, "kfake: in-memory cluster in this process at %s\n", c.ListenAddrs()[0])
		return benchTarget(ctx, e.stderr, "kfake", []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, "bench", spec, nil)
	}
	p, err := startKfakeProcess(ctx, e.stderr)
	if err != nil {
		return benchResult{}, err
	}
	fmt.Fprintf(e.stderr, "kfake: in-memory cluster in process %d at %s\n", p.cmd.Process.Pid, p.addr)
	return benchChild(ctx, e, p, "kfake", spec)
}

// benchChild measures the broker process p, then stops it and adds its CPU
// time to the result.
func benchChild(ctx context.Context, e *env, p *benchProcess, name string, spec benchSpec) (benchResult, error) {
	res, err := benchTarget(ctx, e.stderr, name, []kgo.Opt{kgo.SeedBrokers(p.addr)}, "bench", spec, childClock(p.cmd.Process.Pid))
	cpu, serr := p.stop()
	if err != nil {
		return res, err
	}
	if serr != nil {
		return res, fmt.Errorf("weir: bench: %s process: %w", name, serr)
	}
	res.brokerCPU = cpu
	return res, nil
}

// benchWeir measures weir serve in a child process, the embedded broker
// (inProcess), or the external broker of cf.
func benchWeir(ctx context.Context, e *env, spec benchSpec, cf *clientFlags, parentDir string, policy storage.SyncPolicy, fsync string, inProcess bool) (benchResult, error) {
	if cf != nil {
		conn, err := cf.kgoOpts()
		if err != nil {
			return benchResult{}, err
		}
		topic := fmt.Sprintf("weir-bench-%d", time.Now().UnixNano())
		where := cf.brokers
		if !cf.brokersSet() {
			where = "the connection string's endpoint"
		}
		fmt.Fprintf(e.stderr, "weir: external broker at %s, topic %s\n", where, topic)
		res, err := benchTarget(ctx, e.stderr, "weir", conn, topic, spec, nil)
		if adm, aerr := newAdmin(cf); aerr == nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminTimeout)
			adm.DeleteTopic(dctx, topic) // best effort: the figures are already taken
			cancel()
			adm.Close()
		}
		return res, err
	}
	dir, err := os.MkdirTemp(parentDir, "weir-bench-*")
	if err != nil {
		return benchResult{}, fmt.Errorf("weir: bench data dir: %w", err)
	}
	defer os.RemoveAll(dir)
	if !inProcess {
		p, err := startWeirProcess(ctx, e.stderr, dir, fsync)
		if err != nil {
			return benchResult{}, err
		}
		fmt.Fprintf(e.stderr, "weir: weir serve in process %d at %s, data in %s, fsync %s\n", p.cmd.Process.Pid, p.addr, dir, fsync)
		return benchChild(ctx, e, p, "weir", spec)
	}
	b, err := broker.Start(broker.Config{
		Addr:    "127.0.0.1:0",
		DataDir: dir,
		Sync:    policy,
		Logger:  slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return benchResult{}, fmt.Errorf("weir: start embedded broker: %w", err)
	}
	fmt.Fprintf(e.stderr, "weir: embedded broker in this process at %s, data in %s, fsync %s\n", b.Addr(), dir, fsync)
	res, err := benchTarget(ctx, e.stderr, "weir", []kgo.Opt{kgo.SeedBrokers(b.Addr())}, "bench", spec, nil)
	if cerr := b.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("weir: close embedded broker: %w", cerr)
	}
	return res, err
}

// benchTarget runs the three phases against one cluster. clock, if not nil,
// tells the CPU time of the clients and the broker.
//
// conn are the client options that reach the cluster: its seed brokers,
// and TLS and a SASL login if it needs them.
func benchTarget(ctx context.Context, log io.Writer, name string, conn []kgo.Opt, topic string, spec benchSpec, clock cpuClock) (benchResult, error) {
	res := benchResult{name: name}
	if err := benchCreateTopic(ctx, conn, topic, spec.partitions); err != nil {
		return res, err
	}
	value := make([]byte, spec.recordSize)
	for i := range value {
		value[i] = byte('a' + rand.IntN(26)) // letters: compressible like text, not trivially
	}

	var err error
	if res.produce, err = benchProduce(ctx, conn, topic, spec.records, value, clock, &res); err != nil {
		return res, fmt.Errorf("weir: bench %s produce: %w", name, err)
	}
	fmt.Fprintf(log, "%s: produced %d records in %s (%.0f records/s)\n", name, spec.records, res.produce.Round(time.Millisecond), res.produceRate(spec))
	// +1: the warm-up record of the produce phase.
	if res.consume, err = benchConsume(ctx, conn, topic, spec.records+1, clock, &res); err != nil {
		return res, fmt.Errorf("weir: bench %s consume: %w", name, err)
	}
	fmt.Fprintf(log, "%s: consumed %d records in %s (%.0f records/s)\n", name, spec.records, res.consume.Round(time.Millisecond), res.consumeRate(spec))
	res.latencyRate = res.produceRate(spec) / 2
	if err := benchLatency(ctx, conn, topic, spec, value, &res); err != nil {
		return res, fmt.Errorf("weir: bench %s latency: %w", name, err)
	}
	fmt.Fprintf(log, "%s: latency at %.0f records/s: p50 %s p99 %s p999 %s\n", name, res.latencyRate, res.p50, res.p99, res.p999)
	return res, nil
}

func benchCreateTopic(ctx context.Context, conn []kgo.Opt, topic string, partitions int) error {
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return fmt.Errorf("weir: kafka client: %w", err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, int32(partitions), 1, nil, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return &BrokerError{Op: "create topic", Name: topic, Err: err, Message: resp.ErrMessage}
	}
	return nil
}

// benchProduce produces n records with franz-go's default batching and
// compression, acks=all, and returns the time until all are acknowledged.
func benchProduce(ctx context.Context, conn []kgo.Opt, topic string, n int64, value []byte, clock cpuClock, res *benchResult) (time.Duration, error) {
	cl, err := kgo.NewClient(withOpts(conn, kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(benchStallTimeout))...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, &err)
		}
	}
	if err := benchWarmUp(ctx, cl); err != nil {
		return 0, err
	}
	start := time.Now()
	var elapsed time.Duration
	var ok bool
	res.produceCPU, ok, err = measureCPU(clock, func() error {
		for i := int64(0); i < n && ctx.Err() == nil; i++ {
			cl.Produce(ctx, &kgo.Record{Value: value}, promise)
		}
		err := cl.Flush(ctx)
		elapsed = time.Since(start)
		return err
	})
	res.cpuKnown = ok
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("%w: %d of %d records failed; first error: %w", ErrRecordsFailed, f, n, *firstErr.Load())
	}
	return elapsed, nil
}

// withOpts is conn followed by more, in a slice of its own.
func withOpts(conn []kgo.Opt, more ...kgo.Opt) []kgo.Opt {
	return append(slices.Clip(conn), more...)
}

// benchWarmUp produces one record and waits for it, so that connecting,
// metadata and the producer ID are not part of the measurement.
func benchWarmUp(ctx context.Context, cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(ctx, benchStallTimeout)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Value: []byte("warm-up")}).FirstErr()
}

// benchConsume reads n records from the start of topic and returns the time
// it took.
func benchConsume(ctx context.Context, conn []kgo.Opt, topic string, n int64, clock cpuClock, res *benchResult) (time.Duration, error) {
	cl, err := kgo.NewClient(withOpts(conn, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	start := time.Now()
	var elapsed time.Duration
	var ok bool
	res.consumeCPU, ok, err = measureCPU(clock, func() error {
		var got int64
		for got < n {
			pctx, cancel := context.WithTimeout(ctx, benchStallTimeout)
			fetches := cl.PollFetches(pctx)
			cancel()
			if err := ctx.Err(); err != nil {
				return err
			}
			before := got
			fetches.EachRecord(func(*kgo.Record) { got++ })
			for _, fe := range fetches.Errors() {
				if errors.Is(fe.Err, context.DeadlineExceeded) {
					if got == before {
						return fmt.Errorf("%w: no records for %s after %d of %d", ErrBenchStalled, benchStallTimeout, got, n)
					}
					continue
				}
				return &BrokerError{Op: fmt.Sprintf("fetch partition %d of", fe.Partition), Name: fe.Topic, Err: fe.Err}
			}
		}
		elapsed = time.Since(start)
		return nil
	})
	res.cpuKnown = res.cpuKnown && ok
	if err != nil {
		return 0, err
	}
	return elapsed, nil
}

// benchLatency produces at res.latencyRate records/s for spec.duration,
// paced every millisecond, and records each record's ack latency.
func benchLatency(ctx context.Context, conn []kgo.Opt, topic string, spec benchSpec, value []byte, res *benchResult) error {
	cl, err := kgo.NewClient(withOpts(conn, kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(spec.linger), kgo.RecordDeliveryTimeout(benchStallTimeout))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var mu struct {
		sync.Mutex
		lat      []time.Duration
		failed   int64
		firstErr error
	}
	if err := benchWarmUp(ctx, cl); err != nil {
		return err
	}
	mu.lat = make([]time.Duration, 0, int(min(res.latencyRate*spec.duration.Seconds()*1.1+1024, 1<<26)))
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var sent int64
	for ctx.Err() == nil {
		elapsed := time.Since(start)
		if elapsed >= spec.duration {
			break
		}
		due := int64(res.latencyRate*elapsed.Seconds()) - sent
		for ; due > 0; due-- {
			t0 := time.Now()
			cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
				d := time.Since(t0)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					mu.failed++
					if mu.firstErr == nil {
						mu.firstErr = err
					}
					return
				}
				mu.lat = append(mu.lat, d)
			})
			sent++
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	res.latencyElapsed = time.Since(start)
	if err := ctx.Err(); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if mu.failed > 0 {
		return fmt.Errorf("%w: %d of %d records failed; first error: %w", ErrRecordsFailed, mu.failed, sent, mu.firstErr)
	}
	if len(mu.lat) == 0 {
		return fmt.Errorf("%w: no record was sent in %s", ErrBenchStalled, spec.duration)
	}
	slices.Sort(mu.lat)
	res.latencyAcked = int64(len(mu.lat))
	res.p50, res.p99, res.p999 = quantile(mu.lat, 0.50), quantile(mu.lat, 0.99), quantile(mu.lat, 0.999)
	res.max = mu.lat[len(mu.lat)-1]
	return nil
}

// quantile of sorted, by the nearest-rank method.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func printBench(w io.Writer, spec benchSpec, results []benchResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	mb := func(rate float64) float64 { return rate * float64(spec.recordSize) / 1e6 }
	header := "\t"
	for _, r := range results {
		header += r.name + "\t"
	}
	if len(results) == 2 {
		header += results[0].name + "/" + results[1].name + "\t"
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, header)
	row := func(label string, f func(r *benchResult) float64, format string) {
		line := fmt.Sprintf("%-24s\t", label) // padded: AlignRight would right-align the labels
		for i := range results {
			line += fmt.Sprintf(format, f(&results[i])) + "\t"
		}
		if len(results) == 2 {
			ratio := "-" // nothing to compare with, e.g. 0.00 s of CPU on both
			if a, b := f(&results[0]), f(&results[1]); b != 0 {
				ratio = fmt.Sprintf("%.2fx", a/b)
			}
			line += ratio + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	row("produce records/s", func(r *benchResult) float64 { return r.produceRate(spec) }, "%.0f")
	row("produce MB/s", func(r *benchResult) float64 { return mb(r.produceRate(spec)) }, "%.1f")
	row("consume records/s", func(r *benchResult) float64 { return r.consumeRate(spec) }, "%.0f")
	row("consume MB/s", func(r *benchResult) float64 { return mb(r.consumeRate(spec)) }, "%.1f")
	row("latency rate records/s", func(r *benchResult) float64 { return r.latencyRate }, "%.0f")
	row("latency acked records", func(r *benchResult) float64 { return float64(r.latencyAcked) }, "%.0f")
	row("latency p50 ms", func(r *benchResult) float64 { return ms(r.p50) }, "%.2f")
	row("latency p99 ms", func(r *benchResult) float64 { return ms(r.p99) }, "%.2f")
	row("latency p999 ms", func(r *benchResult) float64 { return ms(r.p999) }, "%.2f")
	row("latency max ms", func(r *benchResult) float64 { return ms(r.max) }, "%.2f")
	if !slices.ContainsFunc(results, func(r benchResult) bool { return !r.cpuKnown }) {
		row("produce CPU s clients", func(r *benchResult) float64 { return r.produceCPU.client.Seconds() }, "%.2f")
		row("produce CPU s broker", func(r *benchResult) float64 { return r.produceCPU.broker.Seconds() }, "%.2f")
		row("consume CPU s clients", func(r *benchResult) float64 { return r.consumeCPU.client.Seconds() }, "%.2f")
		row("consume CPU s broker", func(r *benchResult) float64 { return r.consumeCPU.broker.Seconds() }, "%.2f")
	}
	if !slices.ContainsFunc(results, func(r benchResult) bool { return r.brokerCPU == 0 }) {
		row("broker CPU s (all phases)", func(r *benchResult) float64 { return r.brokerCPU.Seconds() }, "%.2f")
	}
	tw.Flush()

	fmt.Fprintln(w, "\ntargets:")
	weir := &results[0]
	if len(results) == 2 {
		kf := &results[1]
		pr := weir.produceRate(spec) / kf.produceRate(spec)
		cr := weir.consumeRate(spec) / kf.consumeRate(spec)
		fmt.Fprintf(w, "  produce throughput >= %.1fx kfake: %.2fx  %s\n", targetThroughputRatio, pr, metText(pr >= targetThroughputRatio))
		fmt.Fprintf(w, "  consume throughput >= %.1fx kfake: %.2fx  %s\n", targetThroughputRatio, cr, metText(cr >= targetThroughputRatio))
	}
	fmt.Fprintf(w, "  p99 produce latency < %s at half max rate: %s  %s\n", targetP99, weir.p99.Round(10*time.Microsecond), metText(weir.p99 < targetP99))
}

func metText(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}
