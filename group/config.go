// Package group is weir's group coordinator: consumer group membership
// (Kafka's classic JoinGroup/SyncGroup protocol) and committed offsets.
//
// The core, RawCoordinator, is a deterministic state machine in the style of
// etcd raft's RawNode: it has no goroutines, locks or clock. Every call takes
// the current time, Tick fires the timers that are due, and the replies and
// the records to persist come out through Ready. Tests step it without
// sleeping. Coordinator is the thin driver the broker owns: one goroutine
// that feeds requests and time into a RawCoordinator, writes its records to
// the Store (fsynced before any reply of the same step is sent), and then
// delivers the replies.
package group

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Errors of the group package.
var (
	// ErrInvalidConfig is wrapped by every *ConfigError.
	ErrInvalidConfig = errors.New("weir: group: invalid config")
	// ErrClosed is returned by a closed Coordinator or Store.
	ErrClosed = errors.New("weir: group: coordinator closed")
	// ErrUnstorableRecord is returned by AppendRecord (and so by Store.Append
	// and Store.Rewrite, which then write nothing) for a record whose frame
	// could not be decoded again.
	ErrUnstorableRecord = errors.New("weir: group: record cannot be stored")
	// ErrCorruptRecord is returned by DecodeRecord for bytes that are not a
	// record.
	ErrCorruptRecord = errors.New("weir: group: corrupt record")
)

// ConfigError reports one bad Config field.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return "weir: group: invalid config: " + e.Field + ": " + e.Reason
}
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// Defaults of Config.
const (
	// DefaultInitialRebalanceDelay is how long the first rebalance of an
	// empty group waits for more members, extended by the same amount each
	// time another member joins meanwhile (up to the rebalance timeout), as
	// Kafka's group.initial.rebalance.delay.ms does. Kafka's 3 s makes every
	// single consumer wait 3 s on start. 300 ms is long enough for a fleet
	// started together (a deploy, a test) to arrive within the extensions and
	// rebalance once, and short enough that a lone instance starts at once
	// for a human.
	DefaultInitialRebalanceDelay = 300 * time.Millisecond
	// DefaultOffsetsRetention is Kafka's offsets.retention.minutes: offsets
	// of a group that has been empty this long are deleted.
	DefaultOffsetsRetention = 7 * 24 * time.Hour
	// DefaultRetentionCheckInterval is Kafka's
	// offsets.retention.check.interval.ms.
	DefaultRetentionCheckInterval = 10 * time.Minute
	// DefaultMinSessionTimeout and DefaultMaxSessionTimeout are Kafka's
	// group.min/max.session.timeout.ms.
	DefaultMinSessionTimeout = 6 * time.Second
	DefaultMaxSessionTimeout = 30 * time.Minute
	// DefaultNewMemberJoinTimeout is how long a new member may wait in a
	// JoinGroup that does not complete (Kafka's hard-coded 5 minutes).
	DefaultNewMemberJoinTimeout = 5 * time.Minute
	// DefaultMaxGroupSize bounds the members of one group (Kafka's
	// group.max.size; Kafka's default is unbounded).
	DefaultMaxGroupSize = 1000
	// DefaultMaxGroups bounds the groups the coordinator keeps. Empty
	// groups without offsets are dropped first when it is reached.
	DefaultMaxGroups = 100_000
	// DefaultMaxMetadataBytes bounds one member's protocol metadata (all
	// its protocols together) and one member's assignment. Cooperative-
	// sticky metadata lists owned partitions, so thousands of partitions
	// fit easily.
	DefaultMaxMetadataBytes = 1 << 20
	// DefaultMaxOffsetMetadataBytes is Kafka's offset.metadata.max.bytes.
	DefaultMaxOffsetMetadataBytes = 4096
)

// Bounds on the names the coordinator stores. Kafka has no explicit limit
// on a group id (only the int16 length of its own offsets topic key); weir
// needs one, because every stored record names its group and topic. A
// group id over MaxGroupIDBytes gets INVALID_GROUP_ID from every group
// API, as an empty one does.
const (
	// MaxGroupIDBytes bounds a group id.
	MaxGroupIDBytes = 255
	// MaxTopicNameBytes is Kafka's bound on a topic name: a commit for a
	// longer one gets UNKNOWN_TOPIC_OR_PARTITION.
	MaxTopicNameBytes = 249
	// MaxProtocolTypeBytes bounds a JoinGroup's protocol type ("consumer",
	// "connect"): a longer one gets INVALID_REQUEST.
	MaxProtocolTypeBytes = 255
	// MaxOffsetMetadataLimit is the largest MaxOffsetMetadataBytes may be:
	// the longest string a stored record can hold.
	MaxOffsetMetadataLimit = maxStringBytes
)

// ValidGroupID reports whether id is a group id the coordinator accepts:
// not empty, and at most MaxGroupIDBytes.
func ValidGroupID(id string) bool { return id != "" && len(id) <= MaxGroupIDBytes }

// groupIDError is the error code of every group API for a bad group id.
func groupIDError(id string) int16 {
	if ValidGroupID(id) {
		return 0
	}
	return kerr.InvalidGroupID.Code
}

// Config configures a RawCoordinator. The zero value of every field means
// its default.
type Config struct {
	InitialRebalanceDelay  time.Duration // default DefaultInitialRebalanceDelay; negative means none
	OffsetsRetention       time.Duration // default DefaultOffsetsRetention
	RetentionCheckInterval time.Duration // default DefaultRetentionCheckInterval
	MinSessionTimeout      time.Duration // default DefaultMinSessionTimeout
	MaxSessionTimeout      time.Duration // default DefaultMaxSessionTimeout
	NewMemberJoinTimeout   time.Duration // default DefaultNewMemberJoinTimeout
	MaxGroupSize           int           // default DefaultMaxGroupSize
	MaxGroups              int           // default DefaultMaxGroups
	MaxMetadataBytes       int           // default DefaultMaxMetadataBytes
	MaxOffsetMetadataBytes int           // default DefaultMaxOffsetMetadataBytes

	// RequireCreate refuses JoinGroup, SyncGroup and OffsetCommit for a
	// group that was never created with CreateGroup, with
	// GROUP_AUTHORIZATION_FAILED.
	RequireCreate bool

	// PartitionExists reports whether topic/partition exists; commits to
	// others get UNKNOWN_TOPIC_OR_PARTITION. Nil means every partition
	// exists.
	PartitionExists func(topic string, partition int32) bool

	// Logger, if set, gets the few events worth an operator's attention
	// (a refused uncreated group). The coordinator logs nothing per request.
	Logger *slog.Logger

	// MemberIDPrefix is put between the client id and a counter in new
	// member ids. Default: random, chosen once per RawCoordinator, so ids
	// do not repeat across restarts.
	MemberIDPrefix string
}

// Validate reports the first bad field of c.
func (c *Config) Validate() error {
	switch {
	case c.OffsetsRetention < 0:
		return &ConfigError{"OffsetsRetention", "must be >= 0"}
	case c.RetentionCheckInterval < 0:
		return &ConfigError{"RetentionCheckInterval", "must be >= 0"}
	case c.MinSessionTimeout < 0:
		return &ConfigError{"MinSessionTimeout", "must be >= 0"}
	case c.MaxSessionTimeout < 0:
		return &ConfigError{"MaxSessionTimeout", "must be >= 0"}
	case c.MaxSessionTimeout != 0 && c.MinSessionTimeout > c.MaxSessionTimeout:
		return &ConfigError{"MinSessionTimeout", "must not exceed MaxSessionTimeout"}
	case c.NewMemberJoinTimeout < 0:
		return &ConfigError{"NewMemberJoinTimeout", "must be >= 0"}
	case c.MaxGroupSize < 0:
		return &ConfigError{"MaxGroupSize", "must be >= 0"}
	case c.MaxGroups < 0:
		return &ConfigError{"MaxGroups", "must be >= 0"}
	case c.MaxMetadataBytes < 0:
		return &ConfigError{"MaxMetadataBytes", "must be >= 0"}
	case c.MaxOffsetMetadataBytes < 0:
		return &ConfigError{"MaxOffsetMetadataBytes", "must be >= 0"}
	case c.MaxOffsetMetadataBytes > MaxOffsetMetadataLimit:
		return &ConfigError{"MaxOffsetMetadataBytes", fmt.Sprintf("must be at most %d", MaxOffsetMetadataLimit)}
	}
	return nil
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.InitialRebalanceDelay, DefaultInitialRebalanceDelay)
	if c.InitialRebalanceDelay < 0 {
		c.InitialRebalanceDelay = 0
	}
	def(&c.OffsetsRetention, DefaultOffsetsRetention)
	def(&c.RetentionCheckInterval, DefaultRetentionCheckInterval)
	def(&c.MinSessionTimeout, DefaultMinSessionTimeout)
	def(&c.MaxSessionTimeout, DefaultMaxSessionTimeout)
	def(&c.NewMemberJoinTimeout, DefaultNewMemberJoinTimeout)
	defInt(&c.MaxGroupSize, DefaultMaxGroupSize)
	defInt(&c.MaxGroups, DefaultMaxGroups)
	defInt(&c.MaxMetadataBytes, DefaultMaxMetadataBytes)
	defInt(&c.MaxOffsetMetadataBytes, DefaultMaxOffsetMetadataBytes)
	return c
}
