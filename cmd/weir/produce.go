package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Tuning of produce and consume.
const (
	maxLineBytes     = 16 << 20         // longest stdin line produce accepts
	progressInterval = 5 * time.Second  // how often long runs print progress
	flushTimeout     = 60 * time.Second // how long produce waits for acks after EOF or a signal
	pingTimeout      = 10 * time.Second // how long produce waits for a first broker connection
)

// runProduce writes each stdin line as one record. With --key-separator S, a
// line "k S v" becomes key k and value v (split at the first S); a line
// without S is a value with no key. Empty --key-separator (the default)
// makes the whole line the value.
func runProduce(ctx context.Context, e *env, args []string) error {
	const cmd = "produce"
	fs := e.newFlagSet(cmd, `produce TOPIC [flags] < lines

Each line of stdin becomes one record. By default the whole line is the value.
With --key-separator '=', "k=v" becomes key "k" and value "v" (split at the
first separator); a line without the separator has no key. At EOF, or on
SIGINT/SIGTERM, every buffered record is flushed; failures are reported and
make the exit code 1.`)
	cf := e.addClientFlags(fs)
	partition := fs.Int("partition", -1, "write every record to this `partition` (default: hash of the key, or round robin)")
	keySep := fs.String("key-separator", "", "split each line into key and value at the first `separator` (default: no key)")
	acks := fs.String("acks", "all", "required `acks`: all, 1 or 0")
	topic, err := e.parseName(fs, cmd, "topic", args)
	if err != nil {
		return err
	}
	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.RecordDeliveryTimeout(flushTimeout)}
	switch *acks {
	case "all", "-1":
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "1":
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	case "0":
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	default:
		return usagef(cmd, "--acks must be all, 1 or 0, not %q", *acks)
	}
	if *partition < -1 || *partition > 1<<20 {
		return usagef(cmd, "--partition must be a partition number")
	}
	if *partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	cl, err := cf.newClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	// Fail fast when no broker answers, rather than at the flush timeout.
	pingCtx, cancelPing := context.WithTimeout(ctx, pingTimeout)
	err = cl.Ping(pingCtx)
	cancelPing()
	if err != nil {
		return fmt.Errorf("weir: cannot reach brokers %s: %w", cf.brokers, err)
	}

	p := &producer{cl: cl, stderr: e.stderr, start: time.Now()}
	readErr := p.produceLines(ctx, e.stdin, *keySep, int32(*partition))

	// Flush even when ctx is done (a signal): no buffered record is dropped.
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	flushErr := cl.Flush(flushCtx)
	if flushErr != nil {
		// Records still buffered are failed through their promises.
		cl.PurgeTopicsFromProducing(topic)
	}
	s := p.summary()
	// Records whose promise has not run (flush timed out) count as failed.
	if unacked := s.sent - s.ok - s.failed; unacked > 0 {
		s.failed += unacked
		if s.firstErr == nil {
			s.firstErr = flushErr
		}
	}
	fmt.Fprintf(e.stderr, "produced %d records (%s) in %s, %s; %d failed\n",
		s.ok, formatBytes(s.bytes), s.elapsed.Round(time.Millisecond), rateText(s.ok, s.bytes, s.elapsed), s.failed)
	switch {
	case readErr != nil:
		return fmt.Errorf("weir: read stdin: %w", readErr)
	case s.failed > 0:
		return fmt.Errorf("%w: %d of %d records were not produced; first error: %w",
			ErrRecordsFailed, s.failed, s.failed+s.ok, s.firstErr)
	case flushErr != nil:
		return fmt.Errorf("weir: flush: %w", flushErr)
	}
	return nil
}

// producer counts the outcome of every record it sends.
type producer struct {
	cl     *kgo.Client
	stderr io.Writer
	start  time.Time

	mu struct {
		sync.Mutex
		sent       int64
		ok, failed int64
		bytes      int64
		firstErr   error
	}
}

type produceSummary struct {
	sent, ok, failed, bytes int64
	firstErr                error
	elapsed                 time.Duration
}

func (p *producer) summary() produceSummary {
	p.mu.Lock()
	defer p.mu.Unlock()
	return produceSummary{sent: p.mu.sent, ok: p.mu.ok, failed: p.mu.failed, bytes: p.mu.bytes, firstErr: p.mu.firstErr, elapsed: time.Since(p.start)}
}

func (p *producer) promise(r *kgo.Record, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.mu.failed++
		if p.mu.firstErr == nil {
			p.mu.firstErr = err
		}
		return
	}
	p.mu.ok++
	p.mu.bytes += int64(len(r.Key) + len(r.Value))
}

// produceLines sends one record per line of r until EOF or ctx is done. It
// returns a read error, not produce errors (those are counted by promise).
func (p *producer) produceLines(ctx context.Context, r io.Reader, keySep string, partition int32) error {
	lines := make(chan []byte, 256)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	// The reader goroutine lets a signal interrupt a blocked stdin read; it
	// ends at EOF, on a read error, or when stop is closed.
	go func() {
		defer wg.Done()
		defer close(lines)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), maxLineBytes)
		for sc.Scan() {
			line := append([]byte(nil), sc.Bytes()...)
			select {
			case lines <- line:
			case <-stop:
				return
			}
		}
		readErr <- sc.Err()
	}()
	defer func() {
		close(stop)
		// A reader blocked in Read on a terminal cannot be interrupted; the
		// process exits after the flush, so do not wait for it then.
		if ctx.Err() == nil {
			wg.Wait()
		}
	}()

	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(p.stderr, "weir: interrupted, flushing buffered records")
			// Lines already read from stdin are produced too.
			for {
				select {
				case line, ok := <-lines:
					if !ok {
						return nil
					}
					p.send(ctx, line, keySep, partition)
				default:
					return nil
				}
			}
		case <-tick.C:
			s := p.summary()
			fmt.Fprintf(p.stderr, "progress: %d records acknowledged, %d failed, %s\n",
				s.ok, s.failed, rateText(s.ok, s.bytes, s.elapsed))
		case line, ok := <-lines:
			if !ok {
				return <-readErr
			}
			p.send(ctx, line, keySep, partition)
		}
	}
}

func (p *producer) send(ctx context.Context, line []byte, keySep string, partition int32) {
	rec := &kgo.Record{Value: line, Partition: partition}
	if keySep != "" {
		if k, v, found := strings.Cut(string(line), keySep); found {
			rec.Key, rec.Value = []byte(k), []byte(v)
		}
	}
	p.mu.Lock()
	p.mu.sent++
	p.mu.Unlock()
	// Not ctx: a record buffered when a signal arrives must still be sent,
	// not failed with context.Canceled.
	p.cl.Produce(context.WithoutCancel(ctx), rec, p.promise)
}

func rateText(records, bytes int64, d time.Duration) string {
	sec := d.Seconds()
	if sec <= 0 {
		return "- records/s"
	}
	return fmt.Sprintf("%.0f records/s, %.2f MB/s", float64(records)/sec, float64(bytes)/sec/1e6)
}

func formatBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.2f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
