package storage_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/weirhq/weir/storage"
	"github.com/weirhq/weir/storage/faultfs"
)

// writeBatches creates topic "t" and appends n batches; it returns the
// stored bytes of each batch.
func writeBatches(t testing.TB, l *Log, n int, segBytes string) [][]byte {
	t.Helper()
	if _, err := l.CreateTopic("t", 1, map[string]string{"segment.bytes": segBytes}); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	var out [][]byte
	for i := range n {
		b := makeBatch(int64(i), valueOf(i, 40+i%90), valueOf(i+1, 10))
		res, err := p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// checkPrefix asserts the partition holds exactly a prefix of want, of at
// least minKeep batches, and that every Read validates.
func checkPrefix(t *testing.T, p *Partition, want [][]byte, minKeep int) int {
	t.Helper()
	got := readAll(t, p, 1000)
	kept := 0
	var prefix []byte
	for _, b := range want {
		if len(prefix)+len(b) > len(got) {
			break
		}
		prefix = append(prefix, b...)
		kept++
	}
	if !bytes.Equal(got, prefix) {
		t.Fatalf("recovered %d bytes are not a whole-batch prefix of what was written", len(got))
	}
	if kept < minKeep {
		t.Fatalf("recovered %d batches, want at least %d", kept, minKeep)
	}
	if hw := p.HighWatermark(); hw != int64(2*kept) {
		t.Fatalf("high watermark %d after keeping %d batches", hw, kept)
	}
	// The log accepts writes again and they continue the offsets.
	res, err := p.Append(makeBatch(9, []byte("after")))
	if err != nil || res.BaseOffset != int64(2*kept) {
		t.Fatalf("append after recovery: %+v %v", res, err)
	}
	return kept
}

// TestRecoveryTruncatesDamage damages the active segment at random places
// (truncation or flipped bytes) after an unclean stop and checks that
// every batch before the damage survives and nothing after it is served.
func TestRecoveryTruncatesDamage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 40 {
		dir := t.TempDir()
		l := openLog(t, Options{Dir: dir, Sync: SyncNever})
		want := writeBatches(t, l, 30, "4096")
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, cleanMarker)); err != nil { // as if killed
			t.Fatal(err)
		}
		segs := segmentFiles(t, filepath.Join(dir, "topics", "t", "0"))
		active := segs[len(segs)-1]
		data, err := os.ReadFile(active)
		if err != nil {
			t.Fatal(err)
		}
		pos := rng.IntN(len(data))
		if iter%2 == 0 {
			data = data[:pos]
		} else {
			data[pos] ^= byte(1 + rng.IntN(255))
		}
		if err := os.WriteFile(active, data, 0o644); err != nil {
			t.Fatal(err)
		}
		// Batches wholly before the damaged byte must survive.
		var base int64
		for _, s := range segs[:len(segs)-1] {
			st, _ := os.Stat(s)
			base += st.Size()
		}
		minKeep, acc := 0, int64(0)
		for _, b := range want {
			if acc+int64(len(b)) > base+int64(pos) {
				break
			}
			acc += int64(len(b))
			minKeep++
		}
		l = openLog(t, Options{Dir: dir, Sync: SyncNever})
		kept := checkPrefix(t, mustPartition(t, l, "t", 0), want, minKeep)
		if iter%2 == 1 && kept > minKeep {
			t.Fatalf("iter %d: kept %d batches though batch %d was corrupt", iter, kept, minKeep)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCrashKeepsAcknowledged crashes the file system (losing unsynced
// writes, keeping a random torn tail) under SyncAlways: every append whose
// WaitDurable returned survives.
func TestCrashKeepsAcknowledged(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10 {
		dir := t.TempDir()
		ffs := faultfs.New(OSFS{})
		l := openLog(t, Options{Dir: dir, FS: ffs})
		want := writeBatches(t, l, 20, "2048") // all acknowledged
		p := mustPartition(t, l, "t", 0)
		for i := range 10 { // not waited for: may or may not survive
			b := makeBatch(int64(i), valueOf(i, 70), valueOf(i, 5))
			if _, err := p.Append(b); err != nil {
				t.Fatal(err)
			}
			want = append(want, b)
		}
		if err := ffs.Crash(rng); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err == nil {
			t.Fatal("Close after crash reported success")
		}
		l = openLog(t, Options{Dir: dir, FS: faultfs.New(OSFS{})})
		checkPrefix(t, mustPartition(t, l, "t", 0), want, 20)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWaitDurableMeansSynced: under SyncAlways an append is durable once
// the journal holding it is fsynced, and not visible before.
func TestWaitDurableMeansSynced(t *testing.T) {
	dir := t.TempDir()
	ffs := faultfs.New(OSFS{})
	entered, release := make(chan struct{}), make(chan struct{})
	hold := make(chan bool, 1)
	ffs.FailIf(func(op faultfs.Op, name string) bool {
		if op == faultfs.OpSync && filepath.Ext(name) == ".wal" {
			select {
			case <-hold:
				entered <- struct{}{}
				<-release
			default:
			}
		}
		return false
	}, nil)
	l := openLog(t, Options{Dir: dir, FS: ffs})
	defer l.Close()
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	journal := filepath.Join(dir, "journal", "00000000000000000001.wal")
	var journaled int64
	for i := range 5 {
		b := makeBatch(1, valueOf(i, 300))
		journaled += JournalEntryHeader + int64(len(b))
		res, err := p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
			t.Fatal(err)
		}
		if synced, _ := ffs.SyncedSize(journal); synced != journaled {
			t.Fatalf("WaitDurable returned with %d of %d journal bytes synced", synced, journaled)
		}
	}
	// Hold the next fsync: the appended batch must stay invisible.
	hold <- true
	res, err := p.Append(makeBatch(1, []byte("pending")))
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	if hw := p.HighWatermark(); hw != res.BaseOffset {
		t.Fatalf("high watermark %d includes unsynced offset %d", hw, res.BaseOffset)
	}
	if b, err := p.Read(res.BaseOffset, 1000); b != nil || err != nil {
		t.Fatalf("unsynced batch readable: %d bytes, %v", len(b), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if err := p.WaitDurable(ctx, res.LastOffset); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDurable during held fsync: %v", err)
	}
	cancel()
	close(release)
	if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
		t.Fatal(err)
	}
	if p.HighWatermark() != res.LastOffset+1 {
		t.Fatal("high watermark did not advance after fsync")
	}
}

// TestStickyWriteError fails a segment write, a journal write and a
// journal fsync: each fails the partition for good, and the data
// acknowledged before stays readable, also after a restart.
func TestStickyWriteError(t *testing.T) {
	for _, fault := range []struct {
		op  faultfs.Op
		ext string
	}{{faultfs.OpWrite, ".log"}, {faultfs.OpWrite, ".wal"}, {faultfs.OpSync, ".wal"}} {
		op := fault.op
		dir := t.TempDir()
		ffs := faultfs.New(OSFS{})
		l := openLog(t, Options{Dir: dir, FS: ffs})
		if _, err := l.CreateTopic("t", 1, nil); err != nil {
			t.Fatal(err)
		}
		p := mustPartition(t, l, "t", 0)
		first := makeBatch(1, []byte("stored"))
		res, err := p.Append(first)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
			t.Fatal(err)
		}
		ffs.FailIf(func(o faultfs.Op, name string) bool { return o == op && filepath.Ext(name) == fault.ext }, nil)
		res, err = p.Append(makeBatch(2, []byte("lost")))
		if err == nil {
			err = p.WaitDurable(context.Background(), res.LastOffset)
		}
		we := asWriteError(t, err)
		if !errors.Is(err, faultfs.ErrInjected) {
			t.Fatalf("write error does not wrap the cause: %v", err)
		}
		ffs.ClearFaults() // the disk recovers; the partition must stay failed
		if _, err := p.Append(makeBatch(3, []byte("x"))); asWriteError(t, err) != we {
			t.Fatalf("later append: %v", err)
		}
		if err := p.WaitDurable(context.Background(), 0); asWriteError(t, err) != we {
			t.Fatalf("WaitDurable: %v", err)
		}
		if asWriteError(t, p.Err()) != we {
			t.Fatal("Err() differs")
		}
		if b, err := p.Read(0, 1000); err != nil || !bytes.Equal(b, first) {
			t.Fatalf("stored batch not readable after failure: %v", err)
		}
		if err := l.Close(); err == nil {
			t.Fatal("Close hid the write error")
		}
		l = openLog(t, Options{Dir: dir})
		// A failed segment write stored nothing; after a failed journal write
		// or fsync the unacknowledged batch may have reached the disk anyway,
		// which is allowed.
		b := readAll(t, mustPartition(t, l, "t", 0), 1000)
		if !bytes.HasPrefix(b, first) || (fault.ext == ".log" && len(b) != len(first)) {
			t.Fatalf("after restart: %d bytes, want the first batch (%d bytes) first", len(b), len(first))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRetentionAndDeleteRecords(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.UnixMilli(1_000_000)}
	l := openLog(t, Options{Dir: dir, Sync: SyncNever, Now: clk.Now})
	if _, err := l.CreateTopic("t", 1, map[string]string{"segment.bytes": "1024", "retention.ms": "60000"}); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	for i := range 40 { // batch i has timestamp 1_000_000 + i*1000
		if _, err := p.Append(makeBatch(1_000_000+int64(i)*1000, valueOf(i, 150))); err != nil {
			t.Fatal(err)
		}
	}
	l.RunRetention()
	if p.LogStartOffset() != 0 {
		t.Fatal("retention deleted fresh data")
	}
	clk.Add(80 * time.Second) // now - retention = 1_020_000: batches 0..19 expired
	l.RunRetention()
	start := p.LogStartOffset()
	if start == 0 || start > 20 {
		t.Fatalf("log start %d after time retention; want in (0, 20]", start)
	}
	if _, err := p.Read(start-1, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below log start: %v", err)
	}
	if off, _, ok := p.OffsetForTimestamp(0); !ok || off != start {
		t.Fatalf("OffsetForTimestamp(0) = %d, %v; want log start %d", off, ok, start)
	}
	readAll(t, p, 500)

	if err := l.AlterTopicConfig("t", map[string]string{"retention.bytes": "2048"}, []string{"retention.ms"}); err != nil {
		t.Fatal(err)
	}
	l.RunRetention()
	if sz := p.Size(); sz > 2048+1024 || sz < 1024 {
		t.Fatalf("size %d after retention.bytes=2048", sz)
	}

	hw := p.HighWatermark()
	if _, err := p.DeleteRecords(hw + 1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("DeleteRecords beyond hw: %v", err)
	}
	low, err := p.DeleteRecords(hw - 2)
	if err != nil || low != hw-2 || p.LogStartOffset() != hw-2 {
		t.Fatalf("DeleteRecords: %d %v", low, err)
	}
	if b := readAll(t, p, 1<<20); len(batchOffsets(b)) > 2+1 {
		t.Fatalf("DeleteRecords left %d batches readable", len(batchOffsets(b)))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, Options{Dir: dir, Sync: SyncNever, Now: clk.Now})
	defer l.Close()
	p = mustPartition(t, l, "t", 0)
	if p.LogStartOffset() != hw-2 || p.HighWatermark() != hw {
		t.Fatalf("after restart: log start %d hw %d, want %d %d", p.LogStartOffset(), p.HighWatermark(), hw-2, hw)
	}
	if low, err := p.DeleteRecords(-1); err != nil || low != hw {
		t.Fatalf("DeleteRecords(-1): %d %v", low, err)
	}
	if b, err := p.Read(hw, 100); b != nil || err != nil {
		t.Fatalf("read at hw after deleting all: %v", err)
	}
}

func TestSegmentMsRolls(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.UnixMilli(1_000_000)}
	l := openLog(t, Options{Dir: dir, Sync: SyncNever, Now: clk.Now})
	defer l.Close()
	if _, err := l.CreateTopic("t", 1, map[string]string{"segment.ms": "1000"}); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	for range 3 {
		if _, err := p.Append(makeBatch(1, []byte("v"))); err != nil {
			t.Fatal(err)
		}
		clk.Add(2 * time.Second)
	}
	l.RunRetention()
	if n := len(segmentFiles(t, filepath.Join(dir, "topics", "t", "0"))); n != 4 {
		t.Fatalf("%d segments, want 4 (one per append plus the rolled active one)", n)
	}
}
