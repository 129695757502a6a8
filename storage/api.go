// Package storage is weir's durable partitioned log.
//
// A Log holds topics; a topic holds partitions; a partition is a sequence of
// segments. Each segment keeps Kafka RecordBatch v2 bytes exactly as the
// producer sent them, except for baseOffset (rewritten on append, outside the
// CRC) and, for LogAppendTime topics, maxTimestamp and the timestamp-type
// attribute bit (which requires recomputing the CRC; the records are never
// re-encoded).
//
// All file access goes through FS so tests can inject crashes and errors.
package storage

// THIS FILE IS THE CONTRACT between storage/ and broker/. The signatures
// below are what the broker calls. Implementations may live in other files
// of this package; keep these names and shapes.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// Errors returned by the storage package. The broker maps them to Kafka
// error codes (see broker/errors.go).
var (
	ErrTopicExists       = errors.New("weir: topic already exists")           // TOPIC_ALREADY_EXISTS
	ErrUnknownTopic      = errors.New("weir: unknown topic")                  // UNKNOWN_TOPIC_OR_PARTITION
	ErrUnknownPartition  = errors.New("weir: unknown partition")              // UNKNOWN_TOPIC_OR_PARTITION
	ErrInvalidTopic      = errors.New("weir: invalid topic name")             // INVALID_TOPIC_EXCEPTION
	ErrInvalidPartitions = errors.New("weir: invalid partition count")        // INVALID_PARTITIONS
	ErrInvalidConfig     = errors.New("weir: invalid topic config")           // INVALID_CONFIG
	ErrOffsetOutOfRange  = errors.New("weir: offset out of range")            // OFFSET_OUT_OF_RANGE
	ErrCorruptBatch      = errors.New("weir: corrupt record batch")           // CORRUPT_MESSAGE (bad CRC, lying length)
	ErrInvalidBatch      = errors.New("weir: invalid record batch")           // INVALID_RECORD (bad counts, deltas, empty)
	ErrUnsupportedMagic  = errors.New("weir: unsupported record batch magic") // UNSUPPORTED_FOR_MESSAGE_FORMAT
	ErrMessageTooLarge   = errors.New("weir: record batch too large")         // MESSAGE_TOO_LARGE
	ErrClosed            = errors.New("weir: log closed")                     // KAFKA_STORAGE_ERROR / NOT_LEADER
	ErrPartitionDeleted  = errors.New("weir: partition deleted")              // UNKNOWN_TOPIC_OR_PARTITION

	// Idempotent producer checks (see producers.go). A batch that breaks
	// its producer's sequence arrives as a *SequenceError.
	ErrOutOfOrderSequence   = errors.New("weir: out of order sequence number") // OUT_OF_ORDER_SEQUENCE_NUMBER
	ErrInvalidProducerEpoch = errors.New("weir: stale producer epoch")         // INVALID_PRODUCER_EPOCH
)

// SequenceError says why an idempotent batch was refused: its producer's
// epoch is older than the partition's (Err is ErrInvalidProducerEpoch) or
// its first sequence does not follow the last one stored (Err is
// ErrOutOfOrderSequence). Nothing of the append was stored.
type SequenceError struct {
	ProducerID   int64
	Epoch        int16 // the batch's
	FirstSeq     int32 // the batch's
	CurrentEpoch int16 // the partition's for this producer
	LastSeq      int32 // the last sequence stored for this producer
	Err          error
}

func (e *SequenceError) Error() string {
	return fmt.Sprintf("%v: producer %d epoch %d sequence %d, partition has epoch %d last sequence %d",
		e.Err, e.ProducerID, e.Epoch, e.FirstSeq, e.CurrentEpoch, e.LastSeq)
}
func (e *SequenceError) Unwrap() error { return e.Err }

// WriteError wraps the first failed write or fsync of a partition. It is
// sticky: every later Append/WaitDurable on that partition returns the same
// *WriteError. The broker answers KAFKA_STORAGE_ERROR.
type WriteError struct {
	Topic     string
	Partition int32
	Op        string // "write", "sync", "truncate", ...
	Err       error
}

func (e *WriteError) Error() string {
	return "weir: storage " + e.Op + " failed for " + e.Topic + ": " + e.Err.Error()
}
func (e *WriteError) Unwrap() error { return e.Err }

// FS is the file system the log uses. OSFS is the real one; tests wrap it to
// inject errors and simulate crashes (lost unsynced writes).
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	RemoveAll(name string) error
	Rename(oldname, newname string) error
	MkdirAll(name string, perm os.FileMode) error
	ReadDir(name string) ([]os.DirEntry, error)
	Stat(name string) (os.FileInfo, error)
	// SyncDir fsyncs a directory so that creates/renames/removes in it are durable.
	SyncDir(name string) error
}

// File is an open file of an FS.
type File interface {
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
}

// SyncPolicy says when appended data is fsynced.
type SyncPolicy int

const (
	// SyncAlways (default): one flusher goroutine group-commits appends to
	// one write-ahead journal file (<Dir>/journal) with one fsync; data
	// becomes visible to consumers (high watermark) and acks=-1 produce
	// requests are answered only after that fsync. Segments are fsynced in
	// the background; after a crash Open replays the journal into them.
	SyncAlways SyncPolicy = iota
	// SyncInterval fsyncs every Options.SyncInterval. Data is visible at once.
	SyncInterval
	// SyncNever leaves flushing to the OS. Data is visible at once.
	SyncNever
)

// TopicConfig is a topic's effective configuration. -1 means unlimited where
// Kafka uses -1.
type TopicConfig struct {
	RetentionMs     int64  // retention.ms, default 7 days; -1 = forever
	RetentionBytes  int64  // retention.bytes per partition, default -1
	SegmentBytes    int64  // segment.bytes, default 1 GiB
	SegmentMs       int64  // segment.ms, default 7 days
	MaxMessageBytes int32  // max.message.bytes (largest batch), default 1048588
	CleanupPolicy   string // cleanup.policy: "delete" (default) or "compact" (accepted, stored; compaction not implemented)
	TimestampType   string // message.timestamp.type: "CreateTime" (default) or "LogAppendTime"
}

// Options configure Open.
type Options struct {
	Dir          string        // required: root data directory
	FS           FS            // default OSFS
	Sync         SyncPolicy    // default SyncAlways
	SyncInterval time.Duration // for SyncInterval, default 1s
	// RetentionCheckInterval is how often retention and segment.ms rolls run. Default 1 min.
	RetentionCheckInterval time.Duration
	Defaults               TopicConfig // zero fields take Kafka defaults
	// ProducerIDExpiration: an idempotent producer's state is forgotten
	// this long after its last append (producer.id.expiration.ms).
	// Default DefaultProducerIDExpiration (1 day).
	ProducerIDExpiration time.Duration
	// MaxProducersPerPartition bounds the idempotent producers one
	// partition tracks; beyond it the least recently active is evicted.
	// Default DefaultMaxProducersPerPartition.
	MaxProducersPerPartition int
	Logger                   *slog.Logger
	Now                      func() time.Time // default time.Now

	journalMaxBytes int64 // tests: checkpoint sooner (default journalMaxBytes)
}

// AppendResult describes a successful append.
type AppendResult struct {
	BaseOffset     int64 // offset assigned to the first record
	LastOffset     int64 // offset of the last record
	LogAppendTime  int64 // ms; -1 unless the topic uses LogAppendTime
	LogStartOffset int64
	// Duplicate is true when every batch repeated one of its idempotent
	// producer's last five batches: nothing was stored, and the offsets
	// are those of the original append.
	Duplicate bool
}

// Log is a set of topics on disk.
//
//   func Open(opts Options) (*Log, error)
//   func (l *Log) Close() error                                   // flushes, stops goroutines, writes clean-shutdown marker
//   func (l *Log) CreateTopic(name string, partitions int32, configs map[string]string) (*Topic, error)
//   func (l *Log) DeleteTopic(name string) error
//   func (l *Log) CreatePartitions(name string, total int32) error
//   func (l *Log) Topic(name string) (*Topic, bool)
//   func (l *Log) Topics() []*Topic                                // sorted by name
//   func (l *Log) AlterTopicConfig(name string, set map[string]string, del []string) error // validates all, then applies & persists atomically
//   func (l *Log) ValidateConfig(configs map[string]string) error  // for validate_only requests
//   func (l *Log) RunRetention()                                   // one retention pass now (also run periodically)
//
// Topic:
//   func (t *Topic) Name() string
//   func (t *Topic) ID() [16]byte                                  // random UUID, persisted
//   func (t *Topic) NumPartitions() int32
//   func (t *Topic) Partition(i int32) (*Partition, bool)
//   func (t *Topic) Config() TopicConfig
//   func (t *Topic) ConfigOverrides() map[string]string           // only explicitly set keys (DescribeConfigs source)
//
// Partition:
//   func (p *Partition) Append(records []byte) (AppendResult, error)
//       records: one or more concatenated RecordBatch v2 (as in a Produce request).
//       Validates every batch first (ValidateBatches), then appends all or none.
//       Rewrites baseOffset in place (records is owned by the caller and may be mutated).
//   func (p *Partition) WaitDurable(ctx context.Context, offset int64) error
//       Returns once every offset <= offset is durable under the sync policy
//       (immediately for SyncInterval/SyncNever), or the sticky *WriteError, or ctx.Err().
//   func (p *Partition) Read(offset int64, maxBytes int32) ([]byte, error)
//       Whole batches starting with the batch that contains offset, up to the
//       high watermark, at most maxBytes except that the first batch is always
//       returned whole (KIP-74). Returns nil, nil at the high watermark.
//       ErrOffsetOutOfRange if offset < LogStartOffset or > HighWatermark.
//   func (p *Partition) HighWatermark() int64
//   func (p *Partition) LogStartOffset() int64
//   func (p *Partition) OffsetForTimestamp(ts int64) (offset, timestamp int64, ok bool)
//       First offset whose batch maxTimestamp >= ts (Kafka ListOffsets semantics).
//   func (p *Partition) MaxTimestamp() (offset, timestamp int64) // for ListOffsets -3 (max timestamp)
//   func (p *Partition) DeleteRecords(before int64) (lowWatermark int64, err error)
//       before == -1 means high watermark. Raises LogStartOffset, deletes whole segments below it.
//   func (p *Partition) Size() int64
//   func (p *Partition) Subscribe(ch chan<- struct{}) (cancel func())
//       Non-blocking send on ch whenever the high watermark advances (for Fetch long-poll).
//   func (p *Partition) Err() error                               // sticky write error, or nil
//
// Batches:
//   func ValidateBatches(records []byte, maxMessageBytes int32) (n int, err error)
//       Checks each batch: length field vs buffer, magic == 2, CRC32C, record count
//       vs lastOffsetDelta, non-empty; returns the number of batches.

var _ = context.Background
