package storage_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	. "github.com/weirhq/weir/storage"
)

// RecordBatch v2 header facts the tests check against.
const (
	batchHeaderSize   = 61
	offAttributes     = 21
	offCRC            = 17
	offNumRecords     = 57
	attrLogAppendTime = 0x08
	cleanMarker       = ".clean-shutdown"
	kafkaRetentionMs  = 7 * 24 * 60 * 60 * 1000
)

type header struct {
	baseOffset      int64
	size            int64
	lastOffsetDelta int32
	maxTimestamp    int64
}

func (h header) lastOffset() int64 { return h.baseOffset + int64(h.lastOffsetDelta) }
func (h header) nextOffset() int64 { return h.lastOffset() + 1 }

func parseHeader(b []byte) header {
	return header{
		baseOffset:      int64(binary.BigEndian.Uint64(b)),
		size:            int64(int32(binary.BigEndian.Uint32(b[8:]))) + 12,
		lastOffsetDelta: int32(binary.BigEndian.Uint32(b[23:])),
		maxTimestamp:    int64(binary.BigEndian.Uint64(b[35:])),
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// makeBatch builds a real RecordBatch v2 with one record per value, all with
// timestamp ts.
func makeBatch(ts int64, values ...[]byte) []byte {
	var recs []byte
	for i, v := range values {
		r := kmsg.Record{OffsetDelta: int32(i), Value: v, Key: []byte(fmt.Sprintf("k%d", i))}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	b := kmsg.RecordBatch{
		Magic: 2, LastOffsetDelta: int32(len(values) - 1), FirstTimestamp: ts, MaxTimestamp: ts,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(values)), Records: recs,
	}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out
}

// valueOf returns n bytes of recognizable content.
func valueOf(i, n int) []byte {
	return bytes.Repeat([]byte{byte('a' + i%26)}, n)
}

// clock is an adjustable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 1}))
}

func openLog(t testing.TB, opts Options) *Log {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	l, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func mustPartition(t testing.TB, l *Log, topic string, i int32) *Partition {
	t.Helper()
	tp, ok := l.Topic(topic)
	if !ok {
		t.Fatalf("topic %s missing", topic)
	}
	p, ok := tp.Partition(i)
	if !ok {
		t.Fatalf("partition %d missing", i)
	}
	return p
}

// readAll reads the whole partition from its log start with the given fetch
// size, checking that every response holds only valid batches.
func readAll(t testing.TB, p *Partition, maxBytes int32) []byte {
	t.Helper()
	var all []byte
	off := p.LogStartOffset()
	for {
		b, err := p.Read(off, maxBytes)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if b == nil {
			return all
		}
		if _, err := ValidateBatches(b, 0); err != nil {
			t.Fatalf("Read(%d) returned invalid bytes: %v", off, err)
		}
		for pos := 0; pos < len(b); {
			h := parseHeader(b[pos:])
			off = h.nextOffset()
			pos += int(h.size)
		}
		all = append(all, b...)
	}
}

// batchOffsets lists the base offsets of the batches in b.
func batchOffsets(b []byte) []int64 {
	var out []int64
	for pos := 0; pos+batchHeaderSize <= len(b); {
		h := parseHeader(b[pos:])
		out = append(out, h.baseOffset)
		pos += int(h.size)
	}
	return out
}

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func asWriteError(t testing.TB, err error) *WriteError {
	t.Helper()
	var we *WriteError
	if !errors.As(err, &we) {
		t.Fatalf("want *WriteError, got %v", err)
	}
	return we
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }
