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
	stopWatch       context.CancelFunc
	watchDone       chan struct{}

	mu struct {
		sync.Mutex
		closed bool
	}
	// pending counts events accepted but whose result has not yet been
	// handed to the caller. Add is only called under mu while !closed, so
	// Close's Wait never races an Add.
	pending sync.WaitGroup
	closeMu sync.Mutex // serialises Close calls

	// Lock order: closeMu, then mu. login.mu is a leaf: nothing is called
	// with it held.
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
	p := &Producer{cfg: cfg, topic: cfg.client.topic, logger: cfg.client.logger, watchDone: make(chan struct{})}
	p.login.signal = make(chan struct{}, 1)
	p.maxMessageBytes.Store(DefaultMaxMessageBytes)
	kopts := append(cfg.kgoOpts(),
		kgo.WithHooks(&producerHooks{p: p}),
		kgo.WithLogger(kgoLogger{p.logger}),
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
	wctx, stop := context.WithCancel(context.Background())
	p.stopWatch = stop
	go p.watchLogins(wctx)
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
	var lastErr error
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
		lastErr = err
		t := time.NewTimer(next(try))
		select {
		case <-ctx.Done():
			t.Stop()
			if cause := context.Cause(ctx); errors.Is(cause, ErrAuthentication) {
				return cause
			}
			return fmt.Errorf("weir: topic %s: no usable answer from the brokers before the context ended: %w",
				p.topic, errors.Join(ctx.Err(), lastErr))
		case <-t.C:
		}
	}
}

func (p *Producer) loadPartitions(ctx context.Context) error {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(p.topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = p.cfg.autoCreate
	resp, err := req.RequestWith(ctx, p.cl)
	if err != nil {
		return err
	}
	if len(resp.Topics) != 1 {
		return fmt.Errorf("weir: metadata for %s has %d topics", p.topic, len(resp.Topics))
	}
	t := resp.Topics[0]
	if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
		return err
	}
	if len(t.Partitions) == 0 {
		return kerr.LeaderNotAvailable // just created; partitions not there yet
	}
	p.partitions.Store(int32(len(t.Partitions)))
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
// If ctx ends first, the event is returned with ctx's error. If it had
// been sent and not yet answered, it may have been stored anyway: that is
// the one case in which an error does not mean "not stored" (the same
// holds for ErrDeliveryTimeout and for Close with an expired context).
func (p *Producer) Send(ctx context.Context, ev Event) (Result, error) {
	rs, _ := p.SendBatch(ctx, []Event{ev})
	return rs[0], rs[0].Err
}

// SendBatch sends events and waits for every one's result. Results are in
// the order of events. The error is nil if every event was acknowledged,
// else the errors of the events that were not, joined.
//
// Events to the same partition are stored in the order given. See Send for
// how ctx works.
func (p *Producer) SendBatch(ctx context.Context, events []Event) ([]Result, error) {
	results := make([]Result, len(events))
	if p.cfg.nonBlocking {
		var wg sync.WaitGroup
		for i := range events {
			wg.Add(1)
			p.sendAsync(ctx, events[i], func(r Result) { results[i] = r; wg.Done() })
		}
		wg.Wait()
		return results, joinResultErrs(results)
	}
	recs := make([]*kgo.Record, 0, len(events))
	for i := range events {
		rec, err := p.accept(ctx, events[i])
		if err != nil {
			results[i] = Result{Partition: -1, Offset: -1, Err: err}
			continue
		}
		recs = append(recs, rec)
		results[i].Offset = -2 // filled below
	}
	if len(recs) > 0 {
		// ProduceSync does not linger: it drains the partitions it wrote to.
		done := p.cl.ProduceSync(ctx, recs...)
		byRec := make(map[*kgo.Record]Result, len(done))
		for _, pr := range done {
			byRec[pr.Record] = p.finish(pr.Record, pr.Err)
		}
		j := 0
		for i := range results {
			if results[i].Offset == -2 {
				results[i] = byRec[recs[j]]
				j++
			}
		}
	}
	return results, joinResultErrs(results)
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
// rejected before it is buffered (invalid, too large, after Close, or ctx
// already done) gets its callback before SendAsync returns, on the
// caller's goroutine.
//
// ctx bounds the wait for buffer room, and returns the event with ctx's
// error if it ends before the event is acknowledged (see Send): pass a
// context that lives as long as the event should, not one that ends when
// a request handler returns (context.WithoutCancel helps there).
func (p *Producer) SendAsync(ctx context.Context, ev Event, done func(Result)) {
	if done == nil {
		done = func(Result) {}
	}
	p.sendAsync(ctx, ev, done)
}

func (p *Producer) sendAsync(ctx context.Context, ev Event, done func(Result)) {
	rec, err := p.accept(ctx, ev)
	if err != nil {
		done(Result{Partition: -1, Offset: -1, Err: err})
		return
	}
	promise := func(r *kgo.Record, err error) {
		defer p.pending.Done()
		done(p.result(r, err))
	}
	if p.cfg.nonBlocking {
		p.cl.TryProduce(ctx, rec, promise)
	} else {
		p.cl.Produce(ctx, rec, promise)
	}
}

// accept checks an event, counts it sent, and turns it into a record. An
// event it returns an error for is counted failed; for any other, the
// caller must hand the record to kgo, whose promise calls finish.
func (p *Producer) accept(ctx context.Context, ev Event) (*kgo.Record, error) {
	p.stats.sent.Add(1)
	rec, err := p.record(ev)
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		p.mu.Lock()
		if p.mu.closed {
			err = ErrClosed
		} else {
			p.pending.Add(1)
		}
		p.mu.Unlock()
	}
	if err != nil {
		p.stats.failed.Add(1)
		return nil, err
	}
	return rec, nil
}

// Records are at most this much larger than their key, value and headers
// (Kafka's v2 record batch header, plus the largest varints of one record).
const recordOverhead = 61 + 5 + 1 + 10 + 5 + 5 + 5 + 5

func (p *Producer) record(ev Event) (*kgo.Record, error) {
	rec := &kgo.Record{Key: ev.Key, Value: ev.Value, Timestamp: ev.Timestamp, Partition: explicitPartitionNone}
	if ev.Partition != nil {
		n := *ev.Partition
		switch {
		case ev.Key != nil:
			return nil, fmt.Errorf("%w: both Key and Partition set; choose one", ErrInvalidEvent)
		case n < 0 || n >= p.partitions.Load():
			return nil, fmt.Errorf("%w: partition %d: topic %s has partitions 0 to %d",
				ErrInvalidEvent, n, p.topic, p.partitions.Load()-1)
		}
		rec.Partition = n
	}
	size := recordOverhead + len(ev.Key) + len(ev.Value)
	if len(ev.Headers) > 0 {
		rec.Headers = make([]kgo.RecordHeader, len(ev.Headers))
		for i, h := range ev.Headers {
			rec.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
			size += 10 + len(h.Key) + len(h.Value)
		}
	}
	if limit := int(p.maxMessageBytes.Load()); size > limit {
		return nil, &Error{Kind: ErrEventTooLarge, Topic: p.topic,
			Err: fmt.Errorf("event of about %d bytes; the topic's max.message.bytes is %d", size, limit)}
	}
	return rec, nil
}

// finish counts a record's outcome and returns its result. It is called
// once for every record accept returned.
func (p *Producer) finish(r *kgo.Record, err error) Result {
	defer p.pending.Done()
	return p.result(r, err)
}

func (p *Producer) result(r *kgo.Record, err error) Result {
	if err != nil {
		p.stats.failed.Add(1)
		return Result{Partition: r.Partition, Offset: -1, Timestamp: r.Timestamp, Err: p.sendError(err)}
	}
	p.stats.acked.Add(1)
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
	case errors.Is(err, kgo.ErrClientClosed):
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
	p.stopWatch()
	<-p.watchDone
	// Closing the client fails whatever is still buffered or in flight
	// with ErrClientClosed; kgo calls every promise.
	p.cl.Close()
	p.pending.Wait()
	if flushErr != nil {
		return fmt.Errorf("weir: close: %d events were returned unacknowledged: %w", left, flushErr)
	}
	return nil
}
