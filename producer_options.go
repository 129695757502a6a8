package weir

import (
	"math"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Producer defaults. They follow the Kafka Java producer where it has an
// opinion: retries are bounded by time (DeliveryTimeout), not by a count,
// because how many tries a leader election or a throttled burst takes is
// not knowable in advance.
const (
	// DefaultDeliveryTimeout bounds how long an event may wait for its
	// acknowledgement, across every try (Kafka's delivery.timeout.ms).
	DefaultDeliveryTimeout = 2 * time.Minute
	// DefaultTryTimeout bounds one produce request: the broker is given
	// half of it to answer (the request's timeout), the network the rest.
	DefaultTryTimeout = 10 * time.Second
	// DefaultRetryBackoffFirst and DefaultRetryBackoffMax bound the
	// exponential backoff between tries; each delay gets ±20% jitter.
	DefaultRetryBackoffFirst = 100 * time.Millisecond
	DefaultRetryBackoffMax   = 5 * time.Second
	// DefaultMaxBufferedEvents and DefaultMaxBufferedBytes bound the events
	// buffered and in flight. A send beyond either waits (or, with
	// NonBlocking, fails with ErrBufferFull).
	DefaultMaxBufferedEvents = 50_000
	DefaultMaxBufferedBytes  = 64 << 20
	// DefaultLinger is how long a partition's batch waits for more events
	// before it is sent. Send and SendBatch do not wait for it.
	DefaultLinger = 5 * time.Millisecond
	// DefaultMaxMessageBytes is the event size limit assumed when the
	// topic's max.message.bytes cannot be read (DescribeConfigs refused or
	// unsupported, as on some hosted services).
	DefaultMaxMessageBytes = 1 << 20

	// metadataMinAge is the least time between two metadata refreshes.
	metadataMinAge = 250 * time.Millisecond
)

// producerConfig is a Producer's configuration: the shared client settings
// plus the producer's own.
type producerConfig struct {
	client clientConfig

	maxRetries        int // 0: no limit but DeliveryTimeout
	backoffFirst      time.Duration
	backoffMax        time.Duration
	tryTimeout        time.Duration
	deliveryTimeout   time.Duration
	maxBufferedEvents int
	maxBufferedBytes  int
	linger            time.Duration
	nonBlocking       bool
	noIdempotence     bool
	autoCreate        bool
}

func defaultProducerConfig() producerConfig {
	return producerConfig{
		client:            defaultClientConfig(),
		backoffFirst:      DefaultRetryBackoffFirst,
		backoffMax:        DefaultRetryBackoffMax,
		tryTimeout:        DefaultTryTimeout,
		deliveryTimeout:   DefaultDeliveryTimeout,
		maxBufferedEvents: DefaultMaxBufferedEvents,
		maxBufferedBytes:  DefaultMaxBufferedBytes,
		linger:            DefaultLinger,
	}
}

type producerOpt func(*producerConfig)

func (o producerOpt) applyProducer(c *producerConfig) { o(c) }

// MaxRetries limits how many times one event is retried. Default 0: no
// count limit, only DeliveryTimeout. With idempotence on, the limit is
// enforced only when it is safe: an event whose last try got no answer is
// retried until it gets one, so that it is never reported failed and then
// stored anyway.
func MaxRetries(n int) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.maxRetries = n })
}

// RetryBackoff sets the exponential backoff between tries: first, doubling
// up to max, each with ±20% jitter. Default 100ms to 5s. Throttling by the
// broker (KIP-219 throttle_time_ms) is honoured on top of this.
func RetryBackoff(first, max time.Duration) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.backoffFirst, c.backoffMax = first, max })
}

// TryTimeout bounds one produce request, from write to answer. A try that
// takes longer is abandoned (its connection is closed) and retried. Default
// 10s; from 200ms to 30m.
func TryTimeout(d time.Duration) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.tryTimeout = d })
}

// DeliveryTimeout bounds how long an event may wait to be acknowledged,
// across all its tries. When it passes, the event is returned with
// ErrDeliveryTimeout, even if its last try got no answer: then it may have
// been stored. Default 2 minutes; at least 1s and at least TryTimeout.
func DeliveryTimeout(d time.Duration) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.deliveryTimeout = d })
}

// MaxBuffered bounds the events (and their bytes: keys, values and
// headers) held by the producer until their results are known. Defaults
// 50,000 events and 64 MiB. A send beyond either waits for room while its
// context lasts (or, with NonBlocking, fails with ErrBufferFull); an event
// larger than the byte bound fails with ErrEventTooLarge. The byte bound
// must be at least 1 MiB.
func MaxBuffered(events, bytes int) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.maxBufferedEvents, c.maxBufferedBytes = events, bytes })
}

// Linger sets how long a partition's batch waits for more events before it
// is sent. Default 5ms; 0 sends at once. Send and SendBatch do not wait.
func Linger(d time.Duration) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.linger = d })
}

// NonBlocking makes sends fail at once with ErrBufferFull when the buffer
// is full, instead of waiting for room while their context lasts (the
// default).
func NonBlocking() ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.nonBlocking = true })
}

// DisableIdempotence turns off the idempotent producer. Then a retry of a
// batch whose answer was lost may store the batch twice. Use it only for a
// broker that does not support idempotence.
func DisableIdempotence() ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.noIdempotence = true })
}

// AllowAutoTopicCreation asks the broker to create the topic if it does not
// exist (if the broker allows that). By default an unknown topic is an
// error: ErrUnknownTopic.
func AllowAutoTopicCreation() ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.autoCreate = true })
}

// The range of TryTimeout that franz-go accepts once it is split into its
// produce timeout and request overhead (see kgoOpts).
const (
	minTryTimeout = 200 * time.Millisecond
	maxTryTimeout = 30 * time.Minute
)

func (c *producerConfig) validate() error {
	if err := c.client.validate(); err != nil {
		return err
	}
	switch {
	case c.maxRetries < 0:
		return &configError{"MaxRetries", "must be >= 0 (0 means no limit)"}
	case c.backoffFirst <= 0 || c.backoffMax < c.backoffFirst:
		return &configError{"RetryBackoff", "need 0 < first <= max"}
	case c.tryTimeout < minTryTimeout || c.tryTimeout > maxTryTimeout:
		// Half of it is franz-go's produce timeout and half its request
		// overhead, each at least 100ms; the overhead at most 15m.
		return &configError{"TryTimeout", "must be between " + minTryTimeout.String() + " and " + maxTryTimeout.String()}
	case c.deliveryTimeout < time.Second:
		return &configError{"DeliveryTimeout", "must be >= 1s"}
	case c.deliveryTimeout < c.tryTimeout:
		return &configError{"DeliveryTimeout", "must be >= TryTimeout (" + c.tryTimeout.String() + ")"}
	case c.maxBufferedEvents < 1:
		return &configError{"MaxBuffered", "events must be >= 1"}
	case c.maxBufferedBytes < DefaultMaxMessageBytes:
		return &configError{"MaxBuffered", "bytes must be >= " + strconv.Itoa(DefaultMaxMessageBytes)}
	case c.linger < 0:
		return &configError{"Linger", "must be >= 0"}
	}
	return nil
}

// kgoOpts maps the producer's options onto franz-go's, which does the
// batching, retrying and backoff: weir never retries on top of it.
func (c *producerConfig) kgoOpts() []kgo.Opt {
	opts := c.client.kgoClientOpts()
	opts = append(opts,
		kgo.DefaultProduceTopicAlways(),
		kgo.DefaultProduceTopic(c.client.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RetryBackoffFn(backoff(c.backoffFirst, c.backoffMax)),
		kgo.ProduceRequestTimeout(c.tryTimeout/2),
		kgo.RequestTimeoutOverhead(c.tryTimeout-c.tryTimeout/2),
		kgo.RecordDeliveryTimeout(c.deliveryTimeout),
		// The producer bounds what it buffers itself (bufferRoom), since
		// kgo's blocking Produce would tie the caller's context to the
		// event. kgo's bounds are a backstop above the producer's: kgo
		// counts a record a moment longer, until its promise returns.
		kgo.MaxBufferedRecords(backstop(c.maxBufferedEvents)),
		kgo.MaxBufferedBytes(backstop(c.maxBufferedBytes)),
		kgo.ProducerLinger(c.linger),
		kgo.RecordPartitioner(eventPartitioner{kgo.StickyKeyPartitioner(nil)}),
		// kgo holds a partition that got a retriable error (a busy
		// broker, a moved leader) until its next metadata refresh, and
		// refreshes at most every MetadataMinAge (kgo default 5s). A
		// busy broker would stall partitions for seconds; refresh sooner.
		kgo.MetadataMinAge(metadataMinAge),
	)
	if c.maxRetries > 0 {
		opts = append(opts, kgo.RecordRetries(c.maxRetries))
	}
	if c.noIdempotence {
		opts = append(opts, kgo.DisableIdempotentWrite())
	} else {
		// Without this, kgo never fails an event whose request may have
		// reached a broker until that broker answers: against a broker
		// gone for good, the event would never come back. weir's promise
		// is that every event comes back, so DeliveryTimeout returns it
		// as ErrDeliveryTimeout ("may have been stored"), and Close with
		// an expired context as ErrClosed. Callers' contexts never reach
		// kgo. kgo's own retries stay deduplicated.
		opts = append(opts, kgo.AllowIdempotentProduceCancellation())
	}
	if c.autoCreate {
		opts = append(opts, kgo.AllowAutoTopicCreation())
	} else {
		// The topic is checked when the producer starts; seeing it
		// unknown again means it was deleted: fail fast, not after
		// minutes of metadata refreshes.
		opts = append(opts, kgo.UnknownTopicRetries(2))
	}
	return opts
}

// backstop is twice n, for kgo's buffer bounds, without overflowing.
func backstop(n int) int {
	if n > math.MaxInt/2 {
		return math.MaxInt
	}
	return 2 * n
}

// eventPartitioner sends an event with an explicit partition there, and
// any other event by kgo's sticky key partitioner: by the murmur2 hash of
// its key (as the Java client does), or spread over partitions batch by
// batch when it has no key.
type eventPartitioner struct{ inner kgo.Partitioner }

func (p eventPartitioner) ForTopic(t string) kgo.TopicPartitioner {
	return &eventTopicPartitioner{p.inner.ForTopic(t)}
}

type eventTopicPartitioner struct{ inner kgo.TopicPartitioner }

// explicitPartitionNone is set in a record's Partition by Send for an event
// with no Partition; any other value is the caller's choice.
const explicitPartitionNone = -1

func (p *eventTopicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return r.Partition != explicitPartitionNone || p.inner.RequiresConsistency(r)
}

func (p *eventTopicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Partition != explicitPartitionNone {
		return int(r.Partition)
	}
	return p.inner.Partition(r, n)
}

func (p *eventTopicPartitioner) OnNewBatch() {
	if nb, ok := p.inner.(kgo.TopicPartitionerOnNewBatch); ok {
		nb.OnNewBatch()
	}
}
