package weir

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// partitionRunner processes one owned partition. It is a goroutine started
// on assignment and stopped on revoke, loss or shutdown, with a fixed pool
// of Concurrency workers when that is above 1 (never a goroutine per
// event).
//
// Stopping is a handshake with the owner (the revoke or lost callback, or
// Run): requestStop; the runner stops taking events, waits for those in
// flight and closes drained; the owner commits the checkpoint and calls
// finish with the close reason; the runner calls ClosePartition and closes
// exited.
type partitionRunner struct {
	p       *Processor
	cl      *kgo.Client
	h       Handler
	tp      TopicPartition
	ctx     context.Context
	cancel  context.CancelFunc
	stopCh  chan struct{}
	stopped sync.Once
	drained chan struct{}
	release chan struct{}
	exited  chan struct{}
	reason  CloseReason // written before release is closed

	processed   atomic.Int64
	redelivered atomic.Int64
	hwm         atomic.Int64
	latency     latencyHist
	halted      atomic.Bool // StopPartition policy hit
	// next is the offset after the last event taken from the fetches, -1
	// before the first. Owned by the runner goroutine.
	next int64
	// seq counts events and fast says the last timed handler call was
	// quick, for latency sampling (see process). Owned by the runner
	// goroutine, serial path only.
	seq  uint64
	fast bool
	// done is the serial path's completed prefix not yet published to
	// mu.tracker: published once per batch and before stopping. Owned by
	// the runner goroutine.
	done struct {
		next  int64
		epoch int32
		count int
	}

	// queue holds fetched batches waiting for the runner. The poll loop
	// never blocks on it (a blocked poll loop would hold up rebalances);
	// instead the partition's fetching is paused while the queue is above
	// queueHigh records and resumed below queueLow.
	queue struct {
		sync.Mutex
		batches [][]*kgo.Record
		records int
		paused  bool
		closed  bool // stopping or halted: drop what comes
	}
	notify chan struct{} // a batch was queued (capacity 1)

	mu struct {
		sync.Mutex
		tracker     offsetTracker
		committed   int64 // last committed offset, -1 if none
		sinceCommit int
	}
}

func newPartitionRunner(p *Processor, cl *kgo.Client, h Handler, tp TopicPartition) *partitionRunner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &partitionRunner{
		p: p, cl: cl, h: h, tp: tp,
		notify:  make(chan struct{}, 1),
		ctx:     ctx,
		cancel:  cancel,
		stopCh:  make(chan struct{}),
		drained: make(chan struct{}),
		release: make(chan struct{}),
		exited:  make(chan struct{}),
	}
	r.hwm.Store(-1)
	r.next = -1
	r.mu.tracker = newOffsetTracker()
	r.mu.committed = -1
	return r
}

func (r *partitionRunner) requestStop() {
	r.stopped.Do(func() {
		r.closeQueue()
		close(r.stopCh)
	})
}

// Queue bounds, in records. The poll loop stops polling while all runners
// together hold more than pollHigh records (kgo keeps buffering, nothing is
// dropped), and a runner pauses its own partition above queueHigh: that
// only happens when one partition is much slower than the others.
const (
	pollHigh  = 8000
	queueHigh = 16384
	queueLow  = 4096
	// maxPoll bounds the records taken from kgo by one poll.
	maxPoll = 2000
	// maxInFlight bounds a partition's events handed to the per-key
	// scheduler (running or waiting for their key) with Concurrency > 1.
	maxInFlight = 1024
	// fetchErrorLog is how often a persisting fetch error is logged.
	fetchErrorLog = 5 * time.Second
)

// The processor's own backoffs, by backoff() (±20% jitter): between polls
// while fetches fail, and between tries of the topic check at start.
// Handler retries use HandlerRetries'; dead-letter produces are retried by
// kgo alone (see deadLetter).
const (
	pollBackoffFirst       = 50 * time.Millisecond
	pollBackoffMax         = time.Second
	topicCheckBackoffFirst = 50 * time.Millisecond
	topicCheckBackoffMax   = 2 * time.Second
)

// enqueue hands a fetched batch to the runner without blocking, pausing the
// partition's fetching if the runner is behind.
func (r *partitionRunner) enqueue(batch []*kgo.Record) {
	q := &r.queue
	q.Lock()
	if q.closed {
		q.Unlock()
		return
	}
	q.batches = append(q.batches, batch)
	q.records += len(batch)
	r.p.queued.Add(int64(len(batch)))
	if q.records >= queueHigh && !q.paused {
		q.paused = true
		r.cl.PauseFetchPartitions(map[string][]int32{r.tp.Topic: {r.tp.Partition}})
	}
	q.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// take returns the next queued batch, resuming fetching once the queue is
// low again.
func (r *partitionRunner) take() ([]*kgo.Record, bool) {
	q := &r.queue
	q.Lock()
	defer q.Unlock()
	if len(q.batches) == 0 {
		return nil, false
	}
	b := q.batches[0]
	q.batches[0] = nil
	q.batches = q.batches[1:]
	q.records -= len(b)
	r.p.dequeued(len(b))
	if q.paused && q.records <= queueLow && !q.closed {
		q.paused = false
		r.cl.ResumeFetchPartitions(map[string][]int32{r.tp.Topic: {r.tp.Partition}})
	}
	return b, true
}

// closeQueue drops what is queued and what comes later. The records are
// not processed and not checkpointed: the next owner (or this one, after a
// new assignment) fetches them again.
func (r *partitionRunner) closeQueue() {
	q := &r.queue
	q.Lock()
	r.p.dequeued(q.records)
	q.closed, q.batches, q.records = true, nil, 0
	q.Unlock()
}

func (r *partitionRunner) stopping() bool {
	select {
	case <-r.stopCh:
		return true
	default:
		return false
	}
}

// finish lets a drained runner close the partition with reason and exit.
func (r *partitionRunner) finish(reason CloseReason) {
	r.reason = reason
	close(r.release)
}

func (r *partitionRunner) setHighWatermark(hwm int64) { r.hwm.Store(hwm) }

func (r *partitionRunner) run() {
	defer r.p.wg.Done()
	defer close(r.exited)
	defer r.cancel()
	defer func() {
		r.p.counters.redelivered.Add(r.redelivered.Load())
		r.p.counters.processed.Add(r.processed.Load())
		r.latency.addTo(&r.p.counters.latency)
	}()
	opened := false
	if err := r.h.OpenPartition(r.ctx, r.tp); err != nil {
		if r.ctx.Err() == nil {
			r.p.setFatal(&PartitionError{TopicPartition: r.tp, Op: "open", Err: err})
		}
		r.discard()
	} else {
		opened = true
		if r.p.cfg.concurrency == 1 {
			r.runSerial()
		} else {
			r.runConcurrent(r.p.cfg.concurrency)
		}
	}
	close(r.drained)
	<-r.release
	if !opened {
		return
	}
	r.h.ClosePartition(context.Background(), r.tp, r.reason)
	if r.reason == OwnershipLost {
		r.p.log.Info("partition closed: ownership lost", "partition", r.tp.Partition)
	} else {
		r.p.log.Debug("partition closed", "partition", r.tp.Partition, "reason", r.reason.String())
	}
}

// discard waits for the stop request of a partition that does not process
// (failed open, or stopped by the StopPartition policy).
func (r *partitionRunner) discard() {
	r.closeQueue()
	<-r.stopCh
}

// runSerial processes events one at a time in offset order. The completed
// prefix is simply the last completed event, published to the tracker once
// per batch and before returning, so that the hot path takes no lock.
func (r *partitionRunner) runSerial() {
	defer r.publish()
	for {
		if r.stopping() {
			return
		}
		batch, ok := r.take()
		if !ok {
			select {
			case <-r.stopCh:
				return
			case <-r.notify:
			}
			continue
		}
		batch = r.skipSeen(batch)
		for _, rec := range batch {
			if r.stopping() {
				return // the rest stays unprocessed and uncommitted
			}
			r.seq++
			timed, weight := true, uint64(1)
			if r.fast {
				timed, weight = r.seq%sampleEvery == 0, sampleEvery
			}
			out, took := r.process(rec, timed, weight)
			if timed {
				r.fast = took < fastHandler
			}
			switch out {
			case outcomeCompleted:
				r.done.next, r.done.epoch = rec.Offset+1, rec.LeaderEpoch
				r.done.count++
			case outcomeHalted:
				r.publish()
				r.discard()
				return
			case outcomeCanceled:
				return
			}
		}
		r.publish()
	}
}

// publish moves the serial path's completed prefix into the tracker.
func (r *partitionRunner) publish() {
	if r.done.count == 0 {
		return
	}
	r.mu.Lock()
	r.mu.tracker.completedThrough(r.done.next, r.done.epoch)
	r.mu.sinceCommit += r.done.count
	due := r.mu.sinceCommit >= r.p.cfg.checkpointN
	r.mu.Unlock()
	r.done.count = 0
	if due {
		r.p.requestCommit()
	}
}

// skipSeen drops records at offsets this runner already took. Offsets in a
// partition only grow, but a client can fetch a range twice (seen with
// kgo against kfake while leaders move); processing it again would be a
// duplicate within one ownership. Dropped records are counted as
// redelivered.
func (r *partitionRunner) skipSeen(batch []*kgo.Record) []*kgo.Record {
	out := batch[:0]
	for _, rec := range batch {
		if rec.Offset < r.next {
			r.redelivered.Add(1)
			continue
		}
		r.next = rec.Offset + 1
		out = append(out, rec)
	}
	return out
}

type outcome int

const (
	outcomeCompleted outcome = iota
	outcomeCanceled          // ctx canceled: not completed, the next owner redoes it
	outcomeHalted            // StopPartition policy: the partition stops here
)

type workResult struct {
	rec *kgo.Record
	out outcome
}

func (r *partitionRunner) runConcurrent(n int) {
	work := make(chan *kgo.Record)
	results := make(chan workResult, n)
	var workers sync.WaitGroup
	workers.Add(n)
	for range n {
		go func() {
			defer workers.Done()
			for rec := range work {
				out, _ := r.process(rec, true, 1)
				results <- workResult{rec, out}
			}
		}()
	}
	defer func() {
		close(work)
		workers.Wait()
	}()

	sched := newKeyScheduler()
	inflight := 0
	stopping, halted := false, false
	stopCh := r.stopCh
	for {
		if (stopping || halted) && inflight == 0 {
			if halted && !stopping {
				r.discard()
			}
			return
		}
		var notify <-chan struct{}
		if !stopping && !halted {
			for sched.len() < maxInFlight {
				batch, ok := r.take()
				if !ok {
					break
				}
				r.schedule(&sched, batch)
			}
			if sched.len() < maxInFlight {
				notify = r.notify
			}
		}
		var workCh chan<- *kgo.Record
		next, ok := sched.peek()
		if ok && !stopping && !halted && inflight < n {
			workCh = work
		}
		select {
		case <-stopCh:
			stopping, stopCh = true, nil
		case <-notify:
		case workCh <- next:
			sched.next()
			inflight++
		case res := <-results:
			inflight--
			sched.done(res.rec)
			switch res.out {
			case outcomeCompleted:
				r.complete(res.rec)
			case outcomeHalted:
				halted = true
			}
		}
	}
}

// schedule adds a fetched batch to the tracker and the key scheduler.
func (r *partitionRunner) schedule(sched *keyScheduler, batch []*kgo.Record) {
	batch = r.skipSeen(batch)
	r.mu.Lock()
	for _, rec := range batch {
		r.mu.tracker.dispatched(rec.Offset, rec.LeaderEpoch)
	}
	r.mu.Unlock()
	for _, rec := range batch {
		sched.add(rec)
	}
}

// process runs the handler for one event with retries, then applies the
// failure policy. It never skips an event silently.
//
// Handler latency: a timed call reads the clock twice and counts weight
// calls in the histogram. The serial path times every call while the
// handler is slower than fastHandler, and one call in sampleEvery (with
// that weight) while it is faster, so that a no-op handler does not pay
// for the clock; the estimate of count and sum stays unbiased. process
// returns the last measured duration (0 if untimed).
func (r *partitionRunner) process(rec *kgo.Record, timed bool, weight uint64) (outcome, time.Duration) {
	p := r.p
	c := &p.cfg
	wait := backoff(c.backoffMin, c.backoffMax)
	var (
		err   error
		took  time.Duration
		start time.Time
	)
	attempt := 0
	for {
		attempt++
		if timed {
			start = time.Now()
		}
		err = r.h.ProcessEvent(r.ctx, rec)
		if timed {
			took = time.Since(start)
			r.latency.observe(took, weight)
		}
		if err == nil {
			r.processed.Add(1)
			return outcomeCompleted, took
		}
		if r.ctx.Err() != nil {
			return outcomeCanceled, took
		}
		p.counters.failed.Add(1)
		if attempt >= c.maxAttempts {
			break
		}
		if !sleepCtx(r.ctx, wait(attempt)) {
			return outcomeCanceled, took
		}
		timed, weight = true, 1 // a retrying handler is slow anyway
	}
	if c.onFailure == DeadLetter {
		return r.deadLetter(rec, err, attempt), took
	}
	return r.halt(rec, err, attempt), took
}

// Handler latency sampling on the serial path: see process.
const (
	fastHandler = 20 * time.Microsecond
	sampleEvery = 16
)

// halt stops the partition at rec (StopPartition policy): rec is never
// checkpointed past, and fetching the partition pauses until it is assigned
// again.
func (r *partitionRunner) halt(rec *kgo.Record, err error, attempts int) outcome {
	r.halted.Store(true)
	r.closeQueue()
	r.cl.PauseFetchPartitions(map[string][]int32{r.tp.Topic: {r.tp.Partition}})
	r.p.log.Error("handler failed; partition stopped (StopPartition policy)",
		"partition", r.tp.Partition, "offset", rec.Offset, "attempts", attempts, "err", err)
	return outcomeHalted
}

// Dead-letter headers.
const (
	HeaderOriginalTopic     = "weir-original-topic"
	HeaderOriginalPartition = "weir-original-partition"
	HeaderOriginalOffset    = "weir-original-offset"
	HeaderError             = "weir-error"
	HeaderAttempts          = "weir-attempts"
)

// deadLetter produces rec to the dead-letter topic and waits for the
// answer. weir does not retry on top of kgo: kgo retries the produce
// itself (idempotently, with its own backoff, and with no count or time
// limit unless KgoOpts sets RecordRetries or RecordDeliveryTimeout). So
// the wait ends in one of three ways:
//   - the dead-letter topic has the event: it is completed;
//   - kgo gives up (a fatal error such as an unknown or denied dead-letter
//     topic, an error code kgo does not retry, or a KgoOpts limit): the
//     partition halts at the event, as with StopPartition;
//   - the partition's context ends (DrainTimeout after a revoke or at
//     shutdown, at once on loss): the event is not completed and its next
//     owner processes it again. kgo may still store this dead-letter
//     record, so the dead-letter topic can get the event twice.
func (r *partitionRunner) deadLetter(rec *kgo.Record, herr error, attempts int) outcome {
	p := r.p
	dl := &kgo.Record{
		Topic: p.cfg.deadLetter,
		Key:   rec.Key,
		Value: rec.Value,
		Headers: append(append([]kgo.RecordHeader(nil), rec.Headers...),
			kgo.RecordHeader{Key: HeaderOriginalTopic, Value: []byte(rec.Topic)},
			kgo.RecordHeader{Key: HeaderOriginalPartition, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
			kgo.RecordHeader{Key: HeaderOriginalOffset, Value: strconv.AppendInt(nil, rec.Offset, 10)},
			kgo.RecordHeader{Key: HeaderError, Value: []byte(herr.Error())},
			kgo.RecordHeader{Key: HeaderAttempts, Value: strconv.AppendInt(nil, int64(attempts), 10)},
		),
	}
	answer := make(chan error, 1) // kgo's promise never blocks, even after we stop waiting
	r.cl.Produce(r.ctx, dl, func(_ *kgo.Record, err error) { answer <- err })
	var err error
	select {
	case err = <-answer:
	case <-r.ctx.Done():
		return outcomeCanceled
	}
	switch {
	case err == nil:
		p.counters.deadLettered.Add(1)
		p.log.Warn("event dead-lettered", "partition", rec.Partition, "offset", rec.Offset,
			"attempts", attempts, "err", herr, "dead_letter_topic", p.cfg.deadLetter)
		return outcomeCompleted
	case r.ctx.Err() != nil, errors.Is(err, kgo.ErrClientClosed):
		return outcomeCanceled
	}
	f := fatal(err, p.cfg.deadLetter)
	if f == nil {
		f = fmt.Errorf("weir: dead-letter produce to %s: %w", p.cfg.deadLetter, err)
	}
	return r.halt(rec, errors.Join(herr, f), attempts)
}

// complete records a finished event and asks for a checkpoint every n.
func (r *partitionRunner) complete(rec *kgo.Record) {
	r.mu.Lock()
	r.mu.tracker.completed(rec.Offset)
	r.mu.sinceCommit++
	due := r.mu.sinceCommit >= r.p.cfg.checkpointN
	r.mu.Unlock()
	if due {
		r.p.requestCommit()
	}
}

// uncommitted returns the checkpoint if it moved since the last commit.
func (r *partitionRunner) uncommitted() (kgo.EpochOffset, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	off, epoch, ok := r.mu.tracker.checkpoint()
	if !ok || off == r.mu.committed {
		return kgo.EpochOffset{}, false
	}
	return kgo.EpochOffset{Epoch: epoch, Offset: off}, true
}

func (r *partitionRunner) committed(off int64) {
	r.mu.Lock()
	if off > r.mu.committed {
		r.mu.committed = off
		r.mu.sinceCommit = 0
	}
	r.mu.Unlock()
}

// PartitionError is a Handler error that stops Run (an OpenPartition error).
type PartitionError struct {
	TopicPartition
	Op  string
	Err error
}

func (e *PartitionError) Error() string {
	return "weir: partition " + strconv.Itoa(int(e.Partition)) + " of " + e.Topic + ": " + e.Op + ": " + e.Err.Error()
}

func (e *PartitionError) Unwrap() error { return e.Err }
