package weir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Header is one of an event's properties: a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Event is one event to send.
type Event struct {
	// Key chooses the partition: events with equal keys go to the same
	// partition (murmur2 hash, as the Kafka Java client). Leave it nil to
	// let the producer spread events, or to set Partition.
	Key []byte
	// Value is the event's body.
	Value []byte
	// Headers are the event's properties.
	Headers []Header
	// Partition, if not nil, is the partition to write to. Setting both
	// Key and Partition is an error (ErrInvalidEvent). See AtPartition.
	Partition *int32
	// Timestamp is the event's time; zero means now. Brokers with
	// LogAppendTime topics replace it.
	Timestamp time.Time
}

// AtPartition returns a pointer to n, for Event.Partition.
func AtPartition(n int32) *int32 { return &n }

// Result is what became of one event.
type Result struct {
	// Partition and Offset are where the event was stored; Offset is -1
	// if it was not.
	Partition int32
	Offset    int64
	// Timestamp is the event's timestamp as stored.
	Timestamp time.Time
	// Err is nil when the broker acknowledged the event, else why the event
	// was returned. Errors match the package's sentinels with errors.Is.
	Err error
}

// Producer sends events to one topic. Every event it accepts ends in
// exactly one of two ways: the broker acknowledged it (Result.Err nil), or
// it is returned to the caller with an error. Nothing is dropped silently.
//
// A Producer is safe for concurrent use. Close it to deliver or return
// what is still buffered.
type Producer struct {
	cfg    producerConfig
	topic  string
	logger *slog.Logger
	cl     *kgo.Client
	stats  producerCounters

	maxMessageBytes atomic.Int32 // topic's max.message.bytes, learned at start
	partitions      atomic.Int32 // topic's partition count, learned at start
	login           loginWatch
	watchDone       chan struct{}

	// life is the context of every record handed to kgo, and of the login
	// watch. It ends only when Close ends it, after Close's flush: a
	// caller's context never reaches kgo, where it would cancel other
	// callers' events batched with its own (kgo fails a partition's
	// buffered events when the first one's context ends).
	life    context.Context
	endLife context.CancelFunc
	room    *bufferRoom

	mu struct {
		sync.Mutex
		closed bool
	}
	// pending counts events admitted but whose result has not yet been
	// handed to the caller (nor their callback returned). Add(1) is only
	// called under mu while !closed, so Close's Wait never races an Add.
	pending sync.WaitGroup
	closeMu sync.Mutex // serialises Close calls

	// Lock order: closeMu, then mu. login.mu, room.mu and a batchWait's mu
	// are leaves: nothing is called with them held.
}

// NewProducer starts a producer for the topic set by Topic or by the
// connection string's EntityPath.
//
// It connects and checks the topic before it returns, so that
// misconfiguration is reported at once as a typed error: an unknown topic
// (ErrUnknownTopic), refused credentials (ErrAuthentication), a denied
// topic (ErrAuthorization), or a bad option (ErrInvalidConfig). Network
// errors are retried with backoff until ctx ends; give ctx a deadline.
// It also reads the topic's max.message.bytes (1 MiB if the brokers do not
// say) to reject oversized events before they are sent.
func NewProducer(ctx context.Context, opts ...ProducerOpt) (*Producer, error) {
	cfg := defaultProducerConfig()
	for _, o := range opts {
		o.applyProducer(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Producer{cfg: cfg, topic: cfg.client.topic, logger: cfg.client.logger, watchDone: make(chan struct{}),
		room: newBufferRoom(cfg.maxBufferedEvents, cfg.maxBufferedBytes)}
	p.login.signal = make(chan struct{}, 1)
	p.maxMessageBytes.Store(DefaultMaxMessageBytes)
	kopts := append(cfg.kgoOpts(),
		kgo.WithHooks(&producerHooks{p: p}),
		kgo.WithLogger(kgoLogger{l: p.logger}),
		kgo.ProducerBatchMaxBytesFn(func(string) int32 { return p.maxMessageBytes.Load() }),
	)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, &configError{"KgoOpts", err.Error()}
	}
	p.cl = cl
	if err := p.checkTopic(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	p.loadMaxMessageBytes(ctx)
	p.life, p.endLife = context.WithCancel(context.Background())
	go p.watchLogins(p.life)
	p.logger.Debug("weir: producer started", "topic", p.topic,
		"partitions", p.partitions.Load(), "max_message_bytes", p.maxMessageBytes.Load())
	return p, nil
}

// unknownTopicChecks is how many metadata answers in a row must call the
// topic unknown before NewProducer gives up. More than one, for a topic
// created a moment ago whose metadata has not reached every broker yet.
const unknownTopicChecks = 3

// checkTopic asks for the topic's metadata until it is known, a fatal
// error comes back, or ctx ends.
func (p *Producer) checkTopic(ctx context.Context) error {
	// A refused login can show up as a connection closed during SASL,
	// which kgo retries for its whole request timeout; the hooks see it
	// and cut the wait short.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p.login.setProbe(cancel)
	defer p.login.setProbe(nil)
	next := backoff(p.cfg.backoffFirst, p.cfg.backoffMax)
	unknown := 0
	for try := 1; ; try++ {
		err := p.loadPartitions(ctx)
		if err == nil {
			return nil
		}
		if f := fatal(err, p.topic); f != nil {
			if !errors.Is(f, ErrUnknownTopic) {
				return f
			}
			if unknown++; unknown >= unknownTopicChecks {
				return f
			}
		}
		if cause := context.Cause(ctx); errors.Is(cause, ErrAuthentication) {
			return cause
		}
		if !retryable(err) && !errors.Is(err, kerr.UnknownTopicOrPartition) && ctx.Err() == nil {
			return fmt.Errorf("weir: topic %s: %w", p.topic, err)
		}
		if !sleepCtx(ctx, next(try)) {
			if cause := context.Cause(ctx); errors.Is(cause, ErrAuthentication) {
				return cause
			}
			return fmt.Errorf("weir: topic %s: no usable answer from the brokers before the context ended: %w",
				p.topic, errors.Join(ctx.Err(), err))
		}
	}
}

func (p *Producer) loadPartitions(ctx context.Context) error {
	n, err := topicPartitions(ctx, p.cl, p.topic, p.cfg.autoCreate)
	if err != nil {
		return err
	}
	p.partitions.Store(n)
	return nil
}

// loadMaxMessageBytes reads the topic's max.message.bytes. Brokers that do
// not answer (Event Hubs, or a denied DescribeConfigs) leave the 1 MiB
// default.
func (p *Producer) loadMaxMessageBytes(ctx context.Context) {
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeTopic
	res.ResourceName = p.topic
	res.ConfigNames = []string{"max.message.bytes"}
	req.Resources = append(req.Resources, res)
	ctx, cancel := context.WithTimeout(ctx, p.cfg.tryTimeout)
	defer cancel()
	resp, err := req.RequestWith(ctx, p.cl)
	if err == nil && len(resp.Resources) == 1 {
		err = kerr.ErrorForCode(resp.Resources[0].ErrorCode)
	}
	if err != nil || len(resp.Resources) != 1 {
		p.logger.Debug("weir: cannot read max.message.bytes; assuming the default",
			"topic", p.topic, "default", DefaultMaxMessageBytes, "err", err)
		return
	}
	for _, c := range resp.Resources[0].Configs {
		if c.Name != "max.message.bytes" || c.Value == nil {
			continue
		}
		n, err := strconv.ParseInt(*c.Value, 10, 32)
		if err == nil && n >= 512 {
			p.maxMessageBytes.Store(int32(min(n, 1<<30)))
		}
	}
}

// Send sends one event and waits for its result: the broker's
// acknowledgement, or the error it is returned with.
//
// ctx bounds the wait, not the event. If ctx ends while Send waits for
// buffer room (see MaxBuffered), the event is not sent, and Send returns
// an error wrapping ctx's. If ctx ends after the event was buffered, Send
// stops waiting and returns an error wrapping ctx's too (errors.Is(err,
// context.Canceled) or context.DeadlineExceeded holds), but the event is
// not cancelled: it may still be stored, and Stats counts it once its
// result is known. Only DeliveryTimeout and Close end a buffered event, so
// a context that ends early (an HTTP request's, say) never fails other
// callers' events, nor its own once buffered.
//
// An error means "not stored" except in that case, for ErrDeliveryTimeout,
// and for Close with an expired context: then the event may have been
// stored.
func (p *Producer) Send(ctx context.Context, ev Event) (Result, error) {
	rs, _ := p.SendBatch(ctx, []Event{ev})
	return rs[0], rs[0].Err
}

// SendBatch sends events and waits for every one's result. Results are in
// the order of events. The error is nil if every event was acknowledged,
// else the errors of the events that were not, joined.
//
// Events to the same partition are stored in the order given. See Send for
// how ctx works: the events whose results have not come when it ends get
// its error, and may still be stored.
func (p *Producer) SendBatch(ctx context.Context, events []Event) ([]Result, error) {
	w := newBatchWait(len(events))
	var held []heldRecord // admitted, not yet handed to kgo
	// Before admit waits for buffer room, what this call holds must go to
	// kgo, else the room it waits for may be its own. Those records wait
	// for Linger; the rest go at once, below.
	// One event is never held when admit waits: no closure to build then.
	var handOver func()
	if len(events) > 1 {
		handOver = func() {
			for _, h := range held {
				p.cl.TryProduce(p.life, h.rec, p.batchPromise(w, h.i))
			}
			held = held[:0]
		}
	}
	for i := range events {
		rec, err := p.admit(ctx, events[i], handOver)
		if err != nil {
			w.set(i, Result{Partition: -1, Offset: -1, Err: err})
			continue
		}
		held = append(held, heldRecord{i, rec})
	}
	if len(held) > 0 {
		go p.produceSync(w, held)
	}
	results := w.wait(ctx, func() error { return p.stoppedWaiting(ctx) })
	return results, joinResultErrs(results)
}

// heldRecord is a record SendBatch has room for, and its event's index.
type heldRecord struct {
	i   int
	rec *kgo.Record
}

// produceSync hands records to kgo and sets their results. It runs on a
// goroutine of its own because ProduceSync, the one kgo call that sends a
// partition's batch without waiting for Linger, returns only with every
// result, and SendBatch's caller must be free to stop waiting. Close ends
// it (kgo returns every record by then) and waits for it (pending).
func (p *Producer) produceSync(w *batchWait, held []heldRecord) {
	recs := make([]*kgo.Record, len(held))
	at := make(map[*kgo.Record]int, len(held))
	for j, h := range held {
		recs[j] = h.rec
		at[h.rec] = h.i
	}
	for _, pr := range p.cl.ProduceSync(p.life, recs...) {
		w.set(at[pr.Record], p.result(pr.Record, pr.Err))
	}
	p.pending.Add(-len(held))
}

// batchPromise is the kgo promise of the record for event i of a batch.
func (p *Producer) batchPromise(w *batchWait, i int) func(*kgo.Record, error) {
	return func(r *kgo.Record, err error) {
		w.set(i, p.result(r, err))
		p.pending.Done()
	}
}

// batchWait collects the results of one SendBatch call. They are set by the
// caller (events rejected before they are buffered), by kgo's promise
// goroutine and by produceSync; the caller takes them all, or those in when
// its context ends.
type batchWait struct {
	done chan struct{} // closed when every result is in

	mu struct {
		sync.Mutex
		results []Result
		have    []bool
		left    int
	}
}

func newBatchWait(n int) *batchWait {
	w := &batchWait{done: make(chan struct{})}
	w.mu.results, w.mu.have, w.mu.left = make([]Result, n), make([]bool, n), n
	if n == 0 {
		close(w.done)
	}
	return w
}

func (w *batchWait) set(i int, r Result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.results[i], w.mu.have[i] = r, true
	if w.mu.left--; w.mu.left == 0 {
		close(w.done)
	}
}

// wait returns the results once all are in, or when ctx ends: then the
// events still out get stopped()'s error. Results that come later are
// counted in Stats but not returned.
func (w *batchWait) wait(ctx context.Context, stopped func() error) []Result {
	select {
	case <-w.done:
	case <-ctx.Done():
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Result, len(w.mu.results))
	var err error
	for i, r := range w.mu.results {
		if !w.mu.have[i] {
			if err == nil {
				err = stopped()
			}
			r = Result{Partition: -1, Offset: -1, Err: err}
		}
		out[i] = r
	}
	return out
}

func joinResultErrs(rs []Result) error {
	var errs []error
	for _, r := range rs {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}

// SendAsync buffers an event and returns; done is called once with its
// result. By default SendAsync waits while the buffer is full
// (backpressure); with NonBlocking the event is returned at once with
// ErrBufferFull instead.
//
// done runs on the producer's callback goroutine, one call at a time and
// in order per partition: it must be quick and must not block, nor call
// Send, Flush or Close (use a goroutine for that). It may be nil. An event
// rejected before it is buffered (invalid, too large, buffer full with
// NonBlocking, after Close, or ctx done before there was room) gets its
// callback before SendAsync returns, on the caller's goroutine.
//
// ctx bounds only the wait for buffer room. Once SendAsync has returned,
// the event no longer depends on it: it is delivered or returned as
// DeliveryTimeout and Close decide, so a request handler may pass its
// request's context.
func (p *Producer) SendAsync(ctx context.Context, ev Event, done func(Result)) {
	if done == nil {
		done = func(Result) {}
	}
	rec, err := p.admit(ctx, ev, nil)
	if err != nil {
		done(Result{Partition: -1, Offset: -1, Err: err})
		return
	}
	p.cl.TryProduce(p.life, rec, func(r *kgo.Record, err error) {
		defer p.pending.Done()
		done(p.result(r, err))
	})
}

// admit checks an event, counts it sent, takes buffer room for it, and
// turns it into a record. An event it returns an error for is counted
// failed. For any other, the caller must hand the record to kgo, under
// p.life, and call pending.Done once its result is handed over; the
// producer's hooks count the outcome and give the room back
// (OnProduceRecordUnbuffered). beforeWait, if not nil, is called before
// admit waits for room.
func (p *Producer) admit(ctx context.Context, ev Event, beforeWait func()) (*kgo.Record, error) {
	p.stats.sent.Add(1)
	rec, size, err := p.record(ev)
	if err == nil && ctx.Err() != nil {
		err = p.notSent(ctx)
	}
	if err == nil {
		p.mu.Lock()
		if p.mu.closed {
			err = ErrClosed
		} else {
			p.pending.Add(1)
		}
		p.mu.Unlock()
		if err == nil {
			if err = p.takeRoom(ctx, size, beforeWait); err != nil {
				p.pending.Done()
			}
		}
	}
	if err != nil {
		p.stats.failed.Add(1)
		return nil, err
	}
	return rec, nil
}

// takeRoom takes size bytes of buffer room (recordSize of the record): at
// once, or, unless NonBlocking, once there is room, if that is before ctx
// ends or the producer closes.
func (p *Producer) takeRoom(ctx context.Context, size int64, beforeWait func()) error {
	if p.room.tryTake(size) {
		return nil
	}
	if p.cfg.nonBlocking {
		return fmt.Errorf("%w (MaxBuffered: %d events, %d bytes)",
			ErrBufferFull, p.cfg.maxBufferedEvents, p.cfg.maxBufferedBytes)
	}
	if beforeWait != nil {
		beforeWait()
	}
	switch err := p.room.take(ctx, p.life.Done(), size); {
	case err == nil:
		return nil
	case errors.Is(err, ErrClosed):
		return fmt.Errorf("%w: the producer was closed while the event waited for buffer room", ErrClosed)
	default:
		return p.notSent(ctx)
	}
}

// notSent is the error of an event whose caller's context ended before the
// event was buffered.
func (p *Producer) notSent(ctx context.Context) error {
	return fmt.Errorf("weir: send to topic %s: the context ended before the event was buffered; it was not sent: %w",
		p.topic, ctx.Err())
}

// stoppedWaiting is the error Send and SendBatch return for an event whose
// caller's context ended after the event was buffered. The event goes on.
func (p *Producer) stoppedWaiting(ctx context.Context) error {
	return fmt.Errorf("weir: send to topic %s: the context ended before the result came; the event may still be stored: %w",
		p.topic, ctx.Err())
}

// Records are at most this much larger than their key, value and headers
// (Kafka's v2 record batch header, plus the largest varints of one record).
const recordOverhead = 61 + 5 + 1 + 10 + 5 + 5 + 5 + 5

// record turns ev into a record, checked against the topic's and the
// buffer's size limits, and returns it with its recordSize.
func (p *Producer) record(ev Event) (*kgo.Record, int64, error) {
	rec := &kgo.Record{Key: ev.Key, Value: ev.Value, Timestamp: ev.Timestamp, Partition: explicitPartitionNone}
	if ev.Partition != nil {
		n := *ev.Partition
		switch {
		case ev.Key != nil:
			return nil, 0, fmt.Errorf("%w: both Key and Partition set; choose one", ErrInvalidEvent)
		case n < 0 || n >= p.partitions.Load():
			return nil, 0, fmt.Errorf("%w: partition %d: topic %s has partitions 0 to %d",
				ErrInvalidEvent, n, p.topic, p.partitions.Load()-1)
		}
		rec.Partition = n
	}
	if len(ev.Headers) > 0 {
		rec.Headers = make([]kgo.RecordHeader, len(ev.Headers))
		for i, h := range ev.Headers {
			rec.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
	}
	n := recordSize(rec)
	// On the wire: the record's bytes, the batch and record overhead, and
	// up to 10 bytes of varints per header.
	if size, limit := recordOverhead+n+10*int64(len(ev.Headers)), int64(p.maxMessageBytes.Load()); size > limit {
		return nil, 0, &Error{Kind: ErrEventTooLarge, Topic: p.topic,
			Err: fmt.Errorf("event of about %d bytes; the topic's max.message.bytes is %d", size, limit)}
	}
	if limit := p.room.maxBytes; n > limit {
		return nil, 0, &Error{Kind: ErrEventTooLarge, Topic: p.topic,
			Err: fmt.Errorf("event of %d bytes; the producer buffers at most %d (MaxBuffered)", n, limit)}
	}
	return rec, n, nil
}

// result is a record's result, from kgo's promise.
func (p *Producer) result(r *kgo.Record, err error) Result {
	if err != nil {
		return Result{Partition: r.Partition, Offset: -1, Timestamp: r.Timestamp, Err: p.sendError(err)}
	}
	return Result{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}
}

// sendError turns a kgo error into one matching the package's sentinels.
func (p *Producer) sendError(err error) error {
	if f := fatal(err, p.topic); f != nil {
		return f
	}
	switch {
	case errors.Is(err, kgo.ErrMaxBuffered):
		return fmt.Errorf("%w: %w", ErrBufferFull, err)
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries):
		return fmt.Errorf("%w (topic %s): %w", ErrDeliveryTimeout, p.topic, err)
	case errors.Is(err, kgo.ErrAborting):
		// Only the login watch aborts.
		if refusal := p.login.lastRefusal(); refusal != nil {
			return refusal
		}
	case errors.Is(err, kgo.ErrClientClosed), errors.Is(err, context.Canceled):
		// kgo sees one context, the producer's own, which only Close
		// cancels.
		return fmt.Errorf("%w: the producer was closed before the event was acknowledged: %w", ErrClosed, err)
	}
	return fmt.Errorf("weir: send to topic %s: %w", p.topic, err)
}

// Flush waits until every event sent before the call has been acknowledged
// or returned. If ctx ends first, it returns ctx's error and the events stay
// buffered: they are still delivered, or returned by Close.
func (p *Producer) Flush(ctx context.Context) error {
	p.mu.Lock()
	closed := p.mu.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return p.cl.Flush(ctx)
}

// Close stops the producer. It first flushes: every buffered event is
// delivered, or, if ctx ends first, returned with an error (ErrClosed).
// Either way every event's result has been handed to the caller, and every
// SendAsync callback has returned, before Close returns.
//
// Close returns nil if everything buffered was acknowledged, else an
// error wrapping ctx's. Sends after Close, and a second Close, return
// ErrClosed.
func (p *Producer) Close(ctx context.Context) error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.mu.closed = true
	p.mu.Unlock()

	flushErr := p.cl.Flush(ctx)
	var left int64
	if flushErr != nil {
		left = p.cl.BufferedProduceRecords()
		p.logger.Warn("weir: producer closed before every event was acknowledged; returning them as errors",
			"topic", p.topic, "events", left, "err", flushErr)
	}
	// Ending the producer's context stops the login watch, and any send
	// still waiting for buffer room; closing the client fails whatever is
	// still buffered or in flight, and kgo calls every promise.
	p.endLife()
	<-p.watchDone
	p.cl.Close()
	p.pending.Wait()
	if flushErr != nil {
		return fmt.Errorf("weir: close: %d events were returned unacknowledged: %w", left, flushErr)
	}
	return nil
}
