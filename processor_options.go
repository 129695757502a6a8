package weir

import (
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// processorConfig is a Processor's configuration: the shared client settings
// plus the processor's own.
type processorConfig struct {
	client clientConfig

	group        string
	start        StartPosition
	startOffsets map[int32]int64
	instanceID   string
	instanceEnv  string // InstanceIDFromEnv's variable, checked by validate
	checkpointN  int
	checkpointT  time.Duration
	drainTimeout time.Duration
	concurrency  int
	maxAttempts  int
	backoffMin   time.Duration
	backoffMax   time.Duration
	onFailure    FailurePolicy
	deadLetter   string
}

func defaultProcessorConfig() processorConfig {
	return processorConfig{
		client:       defaultClientConfig(),
		start:        StartEarliest(),
		checkpointN:  1000,
		checkpointT:  5 * time.Second,
		drainTimeout: 30 * time.Second,
		concurrency:  1,
		maxAttempts:  5,
		backoffMin:   100 * time.Millisecond,
		backoffMax:   10 * time.Second,
		onFailure:    StopPartition,
	}
}

type processorOpt func(*processorConfig)

func (o processorOpt) applyProcessor(c *processorConfig) { o(c) }

// StartPosition says where a partition with no checkpoint starts.
type StartPosition struct {
	offset kgo.Offset
	what   string // "earliest", "latest" or "time"
	millis int64  // for "time"
}

// StartEarliest starts at the oldest retained event. It is the default.
func StartEarliest() StartPosition {
	return StartPosition{offset: kgo.NewOffset().AtStart(), what: "earliest"}
}

// StartLatest starts after the newest event: only events produced from now
// on are processed.
func StartLatest() StartPosition {
	return StartPosition{offset: kgo.NewOffset().AtEnd(), what: "latest"}
}

// StartAtTime starts at the first event whose timestamp is at or after t.
func StartAtTime(t time.Time) StartPosition {
	return StartPosition{kgo.NewOffset().AfterMilli(t.UnixMilli()), "time", t.UnixMilli()}
}

// Group sets the consumer group. Instances with the same group share the
// topic's partitions. Required.
func Group(name string) ProcessorOpt {
	return processorOpt(func(c *processorConfig) { c.group = name })
}

// StartFrom sets where partitions with no checkpoint start. Default
// StartEarliest().
func StartFrom(p StartPosition) ProcessorOpt {
	return processorOpt(func(c *processorConfig) { c.start = p })
}

// StartOffsets starts the listed partitions, when they have no checkpoint,
// at explicit offsets. Other partitions without a checkpoint use StartFrom.
func StartOffsets(offsets map[int32]int64) ProcessorOpt {
	return processorOpt(func(c *processorConfig) {
		c.startOffsets = make(map[int32]int64, len(offsets))
		for p, o := range offsets {
			c.startOffsets[p] = o
		}
	})
}

// InstanceID turns on static membership (KIP-345) with a stable id per
// instance, such as a pod name. A restarted instance that comes back within
// the session timeout gets its partitions back without a rebalance of the
// fleet. Ids must be unique within the group.
func InstanceID(id string) ProcessorOpt {
	return processorOpt(func(c *processorConfig) { c.instanceID, c.instanceEnv = id, "" })
}

// InstanceIDFromEnv is InstanceID with the id read from an environment
// variable when the processor is created, e.g. InstanceIDFromEnv("POD_NAME").
// An unset or empty variable is a configuration error.
func InstanceIDFromEnv(name string) ProcessorOpt {
	return processorOpt(func(c *processorConfig) { c.instanceEnv, c.instanceID = name, os.Getenv(name) })
}

// CheckpointEvery checkpoints each partition after every n completed events
// and at least every d, whichever comes first. Default 1000 events, 5s. A
// crash reprocesses at most about that much per partition.
func CheckpointEvery(n int, d time.Duration) ProcessorOpt {
	return processorOpt(func(c *processorConfig) { c.checkpointN, c.checkpointT = n, d })
}

// DrainTimeout bounds how long a revoked partition waits for its in-flight
// events before it checkpoints and lets the rebalance finish. Events still
// running then have their context canceled and are processed again by the
// next owner. Default 30s; keep it below the group's rebalance timeout.
func DrainTimeout(d time.Duration) ProcessorOpt {
	return processorOpt(func(c *processorConfig) { c.drainTimeout = d })
}

// Concurrency processes up to n events of a partition at once: events with
// the same key stay in order, events with different keys run in parallel.
// Events with no key are not ordered among themselves. Default 1 (strict
// partition order).
func Concurrency(n int) ProcessorOpt {
	return processorOpt(func(c *processorConfig) { c.concurrency = n })
}

// HandlerRetries sets how a failing event is retried: at most maxAttempts
// calls in all, waiting from minBackoff doubling up to maxBackoff between
// them, each wait with ±20% jitter (so that a fleet does not retry in
// step). Default 5 attempts, 100ms to 10s.
func HandlerRetries(maxAttempts int, minBackoff, maxBackoff time.Duration) ProcessorOpt {
	return processorOpt(func(c *processorConfig) {
		c.maxAttempts, c.backoffMin, c.backoffMax = maxAttempts, minBackoff, maxBackoff
	})
}

// FailurePolicy says what happens to an event whose retries are exhausted.
// No policy skips it silently.
type FailurePolicy int

const (
	// StopPartition stops processing the partition at the failed event,
	// which is never checkpointed past; the other partitions go on. It is
	// the default. Restart the instance (or let the partition move) to
	// try again.
	StopPartition FailurePolicy = iota
	// DeadLetter produces the event to the dead-letter topic, then counts it
	// as completed. Set by DeadLetterTopic.
	DeadLetter
)

// DeadLetterTopic sends events whose retries are exhausted to topic, with
// their key, value and headers and these headers added: weir-original-topic,
// weir-original-partition, weir-original-offset, weir-error,
// weir-attempts. The produce is synchronous: the event counts as completed
// only once the dead-letter topic has it.
func DeadLetterTopic(topic string) ProcessorOpt {
	return processorOpt(func(c *processorConfig) { c.deadLetter, c.onFailure = topic, DeadLetter })
}

// OnFailure sets the failure policy explicitly.
func OnFailure(p FailurePolicy) ProcessorOpt {
	return processorOpt(func(c *processorConfig) { c.onFailure = p })
}

func (c *processorConfig) validate() error {
	if err := c.client.validate(); err != nil {
		return err
	}
	switch {
	case c.group == "":
		return &configError{"Group", "no consumer group"}
	case c.instanceEnv != "" && c.instanceID == "":
		return &configError{"InstanceIDFromEnv", "environment variable " + c.instanceEnv + " is empty or unset"}
	case c.checkpointN < 1:
		return &configError{"CheckpointEvery", "n must be >= 1"}
	case c.checkpointT <= 0:
		return &configError{"CheckpointEvery", "interval must be > 0"}
	case c.drainTimeout <= 0:
		return &configError{"DrainTimeout", "must be > 0"}
	case c.concurrency < 1 || c.concurrency > 1024:
		return &configError{"Concurrency", "must be between 1 and 1024"}
	case c.maxAttempts < 1:
		return &configError{"HandlerRetries", "maxAttempts must be >= 1"}
	case c.backoffMin <= 0 || c.backoffMax < c.backoffMin:
		return &configError{"HandlerRetries", "need 0 < minBackoff <= maxBackoff"}
	case c.onFailure == DeadLetter && c.deadLetter == "":
		return &configError{"OnFailure", "DeadLetter needs DeadLetterTopic"}
	case c.onFailure != DeadLetter && c.onFailure != StopPartition:
		return &configError{"OnFailure", "unknown policy"}
	case c.deadLetter != "" && c.deadLetter == c.client.topic:
		return &configError{"DeadLetterTopic", "must differ from the processed topic"}
	}
	for p, o := range c.startOffsets {
		if p < 0 || o < 0 {
			return &configError{"StartOffsets", "partitions and offsets must be >= 0"}
		}
	}
	return nil
}
