package storage_test

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	. "github.com/weirhq/weir/storage"
	"github.com/weirhq/weir/storage/faultfs"
)

// idemBatch is a batch of n records from producer pid at epoch, first
// sequence seq.
func idemBatch(pid int64, epoch int16, seq int32, n int) []byte {
	vals := make([][]byte, n)
	for i := range vals {
		vals[i] = valueOf(int(seq)+i, 20)
	}
	b := makeBatch(1000, vals...)
	binary.BigEndian.PutUint64(b[43:], uint64(pid))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	binary.BigEndian.PutUint32(b[offCRC:], crc32c(b[offAttributes:]))
	return b
}

func mustAppend(t *testing.T, p *Partition, b []byte) AppendResult {
	t.Helper()
	res, err := p.Append(append([]byte(nil), b...))
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return res
}

func wantSequenceError(t *testing.T, err, kind error) *SequenceError {
	t.Helper()
	var se *SequenceError
	if !errors.Is(err, kind) || !errors.As(err, &se) {
		t.Fatalf("want *SequenceError wrapping %v, got %v", kind, err)
	}
	return se
}

func newIdemLog(t *testing.T, dir string, opts Options) (*Log, *Partition) {
	t.Helper()
	opts.Dir = dir
	l := openLog(t, opts)
	if _, ok := l.Topic("t"); !ok {
		if _, err := l.CreateTopic("t", 1, map[string]string{"segment.bytes": "4096"}); err != nil {
			t.Fatal(err)
		}
	}
	return l, mustPartition(t, l, "t", 0)
}

func TestIdempotentDuplicatesAnswerOriginalOffsets(t *testing.T) {
	l, p := newIdemLog(t, t.TempDir(), Options{Sync: SyncNever})
	defer l.Close()
	mustAppend(t, p, makeBatch(1, valueOf(0, 5))) // a plain batch first, offset 0
	var batches [][]byte
	var results []AppendResult
	for i := range 6 {
		b := idemBatch(7, 0, int32(3*i), 3)
		batches = append(batches, b)
		results = append(results, mustAppend(t, p, b))
	}
	hw := p.HighWatermark()
	if hw != 1+18 {
		t.Fatalf("high watermark %d, want 19", hw)
	}
	// The last five batches are remembered: a retry answers their offsets.
	for i := 1; i < 6; i++ {
		res := mustAppend(t, p, batches[i])
		if !res.Duplicate || res.BaseOffset != results[i].BaseOffset || res.LastOffset != results[i].LastOffset {
			t.Fatalf("retry of batch %d: %+v, want duplicate of %+v", i, res, results[i])
		}
	}
	if p.HighWatermark() != hw {
		t.Fatalf("duplicates were stored: high watermark %d -> %d", hw, p.HighWatermark())
	}
	// The sixth-latest is forgotten; its retry is out of order, as in Kafka.
	_, err := p.Append(batches[0])
	wantSequenceError(t, err, ErrOutOfOrderSequence)
	// Non-idempotent batches are never checked.
	mustAppend(t, p, makeBatch(1, valueOf(0, 5)))
	mustAppend(t, p, makeBatch(1, valueOf(0, 5)))
	if got := p.HighWatermark(); got != hw+2 {
		t.Fatalf("high watermark %d, want %d", got, hw+2)
	}
}

func TestIdempotentSequenceAndEpochRules(t *testing.T) {
	l, p := newIdemLog(t, t.TempDir(), Options{Sync: SyncNever})
	defer l.Close()
	mustAppend(t, p, idemBatch(1, 0, 0, 2)) // seq 0-1

	_, err := p.Append(idemBatch(1, 0, 5, 1)) // gap
	se := wantSequenceError(t, err, ErrOutOfOrderSequence)
	if se.ProducerID != 1 || se.FirstSeq != 5 || se.LastSeq != 1 {
		t.Fatalf("SequenceError fields: %+v", se)
	}
	_, err = p.Append(idemBatch(1, 1, 3, 1)) // new epoch must start at 0
	wantSequenceError(t, err, ErrOutOfOrderSequence)

	mustAppend(t, p, idemBatch(1, 0, 2, 1)) // in order
	mustAppend(t, p, idemBatch(1, 1, 0, 1)) // epoch bump from 0
	_, err = p.Append(idemBatch(1, 0, 3, 1))
	wantSequenceError(t, err, ErrInvalidProducerEpoch)

	// A producer the partition does not know may start anywhere (KIP-360).
	mustAppend(t, p, idemBatch(2, 4, 100, 1))

	// Several batches in one append are checked against each other.
	two := append(idemBatch(3, 0, 0, 2), idemBatch(3, 0, 2, 2)...)
	mustAppend(t, p, two)
	gap := append(idemBatch(3, 0, 4, 1), idemBatch(3, 0, 9, 1)...)
	hw := p.HighWatermark()
	_, err = p.Append(gap)
	wantSequenceError(t, err, ErrOutOfOrderSequence)
	if p.HighWatermark() != hw {
		t.Fatal("a refused append stored something")
	}
	// A whole repeated append is a duplicate; a mix of old and new is not.
	if res := mustAppend(t, p, two); !res.Duplicate {
		t.Fatalf("repeat of a two-batch append: %+v", res)
	}
	mixed := append(idemBatch(3, 0, 2, 2), idemBatch(3, 0, 4, 1)...)
	if _, err = p.Append(mixed); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("mix of repeated and new batches: %v", err)
	}

	// Invalid producer fields.
	_, err = p.Append(idemBatch(4, -1, 0, 1))
	if !errors.Is(err, ErrInvalidBatch) {
		t.Fatalf("negative epoch: %v", err)
	}
}

// TestIdempotentStateSurvivesRestart: the producer state is rebuilt on open,
// from snapshots written at rolls and clean closes plus a replay of the
// batches after them, so that a retry after a restart is still a duplicate.
func TestIdempotentStateSurvivesRestart(t *testing.T) {
	for _, clean := range []bool{true, false} {
		dir := t.TempDir()
		ffs := faultfs.New(OSFS{})
		l, p := newIdemLog(t, dir, Options{FS: ffs})
		var batches [][]byte
		var results []AppendResult
		for i := range 40 { // 4096-byte segments: several rolls
			b := idemBatch(9, 2, int32(2*i), 2)
			batches = append(batches, b)
			res := mustAppend(t, p, b)
			if err := p.WaitDurable(t.Context(), res.LastOffset); err != nil {
				t.Fatal(err)
			}
			results = append(results, res)
		}
		if clean {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := ffs.Crash(rand.New(rand.NewPCG(1, 2))); err != nil {
				t.Fatal(err)
			}
			_ = l.Close()
		}
		l, p = newIdemLog(t, dir, Options{FS: faultfs.New(OSFS{})})
		for i := 35; i < 40; i++ {
			res := mustAppend(t, p, batches[i])
			if !res.Duplicate || res.BaseOffset != results[i].BaseOffset {
				t.Fatalf("clean=%v: retry of batch %d after restart: %+v, want duplicate at %d",
					clean, i, res, results[i].BaseOffset)
			}
		}
		_, err := p.Append(idemBatch(9, 2, 0, 1))
		wantSequenceError(t, err, ErrOutOfOrderSequence)
		_, err = p.Append(idemBatch(9, 1, 80, 1))
		wantSequenceError(t, err, ErrInvalidProducerEpoch)
		mustAppend(t, p, idemBatch(9, 2, 80, 1))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIdempotentProducersBounded: idle producers expire, and a partition
// never tracks more than MaxProducersPerPartition.
func TestIdempotentProducersBounded(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	l, p := newIdemLog(t, t.TempDir(), Options{Sync: SyncNever, Now: clk.Now,
		MaxProducersPerPartition: 10, ProducerIDExpiration: time.Hour})
	defer l.Close()
	for pid := range int64(25) {
		mustAppend(t, p, idemBatch(pid, 0, 0, 1))
		clk.Add(time.Second)
	}
	// Producer 24 is tracked: its batch is a duplicate. Producer 0 was
	// evicted: the partition accepts it as new, at any sequence.
	if res := mustAppend(t, p, idemBatch(24, 0, 0, 1)); !res.Duplicate {
		t.Fatal("most recent producer forgotten")
	}
	if res := mustAppend(t, p, idemBatch(0, 0, 0, 1)); res.Duplicate {
		t.Fatal("evicted producer still tracked")
	}
	clk.Add(2 * time.Hour)
	l.RunRetention()
	if res := mustAppend(t, p, idemBatch(24, 0, 0, 1)); res.Duplicate {
		t.Fatal("expired producer still tracked")
	}
}
