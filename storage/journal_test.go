package storage_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/weirhq/weir/storage"
	"github.com/weirhq/weir/storage/faultfs"
)

// appendDurable appends b to p and waits until it is durable.
func appendDurable(t testing.TB, p *Partition, b []byte) {
	t.Helper()
	res, err := p.Append(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
		t.Fatal(err)
	}
}

func journalFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "journal", "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// crash loses every byte of ffs not yet synced and closes l, which must
// then report the failure.
func crash(t testing.TB, ffs *faultfs.FS, l *Log) {
	t.Helper()
	if err := ffs.Crash(nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err == nil {
		t.Fatal("Close after crash reported success")
	}
}

// crashAndReopen crashes l (crash) and opens the log in dir again on the
// real file system.
func crashAndReopen(t testing.TB, ffs *faultfs.FS, l *Log, dir string) *Log {
	t.Helper()
	crash(t, ffs, l)
	return openLog(t, Options{Dir: dir})
}

// closedTopic creates topic "t" (one partition) in a log in dir, closes
// the log cleanly and returns the topic's id, for journal files written
// by hand.
func closedTopic(t *testing.T, dir string) [16]byte {
	t.Helper()
	l := openLog(t, Options{Dir: dir})
	tp, err := l.CreateTopic("t", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return tp.ID()
}

// journalEntry encodes one journal entry as the log writes it.
func journalEntry(gen uint64, topicID [16]byte, partition int32, records []byte) []byte {
	e := make([]byte, JournalEntryHeader, JournalEntryHeader+len(records))
	binary.BigEndian.PutUint32(e[0:], uint32(JournalEntryHeader-8+len(records)))
	binary.BigEndian.PutUint64(e[8:], gen)
	copy(e[16:32], topicID[:])
	binary.BigEndian.PutUint32(e[32:], uint32(partition))
	e = append(e, records...)
	binary.BigEndian.PutUint32(e[4:], crc32c(e[8:]))
	return e
}

// TestJournalCheckpoint makes the journal switch files often: each
// checkpoint must fsync the segments before its file is written over, and
// replay must take only the entries of a file's latest use, so a crash that
// loses every unsynced byte still keeps every acknowledged batch and
// nothing else.
func TestJournalCheckpoint(t *testing.T) {
	dir := t.TempDir()
	ffs := faultfs.New(OSFS{})
	l := openLog(t, WithJournalMaxBytes(Options{Dir: dir, FS: ffs}, 4096))
	if _, err := l.CreateTopic("t", 3, nil); err != nil {
		t.Fatal(err)
	}
	want := make([][]byte, 3)
	for i := range 90 {
		b := makeBatch(int64(i), valueOf(i, 100+i))
		appendDurable(t, mustPartition(t, l, "t", int32(i%3)), b)
		want[i%3] = append(want[i%3], b...)
	}
	// Two files, written over in turn.
	if files := journalFiles(t, dir); len(files) != 2 {
		t.Fatalf("journal files after ~%d KiB with 4 KiB files: %v; want two", 90*170/1024, files)
	}
	l = crashAndReopen(t, ffs, l, dir)
	defer l.Close()
	for i := range int32(3) {
		if got := readAll(t, mustPartition(t, l, "t", i), 1<<20); !bytes.Equal(got, want[i]) {
			t.Fatalf("partition %d: %d bytes after the crash, want %d", i, len(got), len(want[i]))
		}
	}
}

// TestJournalNotReplayedIntoRecreatedTopic: entries of a deleted topic must
// not land in a new topic of the same name after a crash.
func TestJournalNotReplayedIntoRecreatedTopic(t *testing.T) {
	dir := t.TempDir()
	ffs := faultfs.New(OSFS{})
	l := openLog(t, Options{Dir: dir, FS: ffs})
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		appendDurable(t, mustPartition(t, l, "t", 0), makeBatch(1, valueOf(i, 50)))
	}
	if err := l.DeleteTopic("t"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i := range 2 {
		b := makeBatch(2, valueOf(i, 70))
		appendDurable(t, mustPartition(t, l, "t", 0), b)
		want = append(want, b...)
	}
	l = crashAndReopen(t, ffs, l, dir)
	defer l.Close()
	if got := readAll(t, mustPartition(t, l, "t", 0), 1<<20); !bytes.Equal(got, want) {
		t.Fatalf("recreated topic holds %d bytes after the crash, want its own %d", len(got), len(want))
	}
}

// TestJournalFailureFailsEveryPartition: the journal is shared, so once it
// cannot be written no partition accepts writes (as Kafka takes a failed
// log directory's partitions offline); what was acknowledged survives.
func TestJournalFailureFailsEveryPartition(t *testing.T) {
	dir := t.TempDir()
	ffs := faultfs.New(OSFS{})
	l := openLog(t, Options{Dir: dir, FS: ffs})
	if _, err := l.CreateTopic("t", 2, nil); err != nil {
		t.Fatal(err)
	}
	p0, p1 := mustPartition(t, l, "t", 0), mustPartition(t, l, "t", 1)
	first := makeBatch(1, []byte("acknowledged"))
	appendDurable(t, p0, first)
	appendDurable(t, p1, first)
	ffs.FailIf(func(op faultfs.Op, name string) bool { return op == faultfs.OpSync && filepath.Ext(name) == ".wal" }, nil)
	res, err := p0.Append(makeBatch(2, []byte("lost")))
	if err != nil {
		t.Fatal(err)
	}
	if err := p0.WaitDurable(context.Background(), res.LastOffset); !errors.Is(err, faultfs.ErrInjected) {
		t.Fatalf("WaitDurable with a failing journal: %v", err)
	}
	ffs.ClearFaults()
	res, err = p1.Append(makeBatch(3, []byte("refused")))
	if err == nil {
		err = p1.WaitDurable(context.Background(), res.LastOffset)
	}
	if asWriteError(t, err); !errors.Is(err, faultfs.ErrInjected) {
		t.Fatalf("other partition after the journal failed: %v", err)
	}
	if err := l.Close(); err == nil {
		t.Fatal("Close hid the journal failure")
	}
	l = openLog(t, Options{Dir: dir})
	defer l.Close()
	for _, i := range []int32{0, 1} {
		if got := readAll(t, mustPartition(t, l, "t", i), 1<<20); !bytes.HasPrefix(got, first) {
			t.Fatalf("partition %d lost its acknowledged batch", i)
		}
	}
}

// TestJournalGoneAfterCleanClose: a clean Close fsyncs the segments and
// deletes the journal; the next Open starts a new one.
func TestJournalGoneAfterCleanClose(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Options{Dir: dir})
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	b := makeBatch(1, []byte("v"))
	appendDurable(t, mustPartition(t, l, "t", 0), b)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if files := journalFiles(t, dir); len(files) != 0 {
		t.Fatalf("journal files after a clean close: %v", files)
	}
	l = openLog(t, Options{Dir: dir})
	defer l.Close()
	if files := journalFiles(t, dir); len(files) != 1 {
		t.Fatalf("journal files after open: %v", files)
	}
	if got := readAll(t, mustPartition(t, l, "t", 0), 1<<20); !bytes.Equal(got, b) {
		t.Fatal("data lost over a clean restart")
	}
}

// FuzzJournalRecovery ends the journal that a crash left with arbitrary
// bytes: opening must not panic, must replay every acknowledged batch the
// segment lost, and may add only batches the tail really holds.
func FuzzJournalRecovery(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 40))
	f.Add(journalEntry(1, [16]byte{}, 0, makeBatch(1, []byte("unknown topic"))))
	f.Add(journalEntry(0, [16]byte{}, 0, makeBatch(1, []byte("an earlier use"))))
	f.Add(journalEntry(1, [16]byte{}, 0, makeBatch(1, []byte("x")))[:30])
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		ffs := faultfs.New(OSFS{})
		l := openLog(t, Options{Dir: dir, FS: ffs})
		if _, err := l.CreateTopic("t", 1, nil); err != nil {
			t.Fatal(err)
		}
		p := mustPartition(t, l, "t", 0)
		var want []byte
		for i := range 3 {
			b := makeBatch(int64(i), valueOf(i, 20))
			appendDurable(t, p, b)
			want = append(want, b...)
		}
		crash(t, ffs, l)
		files := journalFiles(t, dir)
		if len(files) != 1 {
			t.Fatalf("journal files: %v", files)
		}
		fh, err := os.OpenFile(files[0], os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.Write(tail); err != nil {
			t.Fatal(err)
		}
		fh.Close()

		l = openLog(t, Options{Dir: dir})
		defer l.Close()
		got := readAll(t, mustPartition(t, l, "t", 0), 1<<20) // validates every response
		if !bytes.HasPrefix(got, want) {
			t.Fatalf("replay lost acknowledged batches: %d bytes, want %d first", len(got), len(want))
		}
		if extra := got[len(want):]; len(extra) > 0 && !bytes.Contains(tail, extra) {
			t.Fatal("replay served bytes that were never written")
		}
	})
}

// TestJournalReplaysInGenerationOrder writes journal files by hand: file
// numbers do not follow generations once files are written over, and what
// follows an entry of the file's current use is left from an earlier one.
func TestJournalReplaysInGenerationOrder(t *testing.T) {
	dir := t.TempDir()
	id := closedTopic(t, dir)
	at := func(base int64, v string) []byte {
		b := makeBatch(1, []byte(v), []byte(v))
		binary.BigEndian.PutUint64(b, uint64(base))
		return b
	}
	b0, b2, stale := at(0, "first"), at(2, "second"), at(4, "earlier use")
	files := map[string][]byte{
		"00000000000000000001.wal": append(journalEntry(8, id, 0, b2), journalEntry(6, id, 0, stale)...),
		"00000000000000000002.wal": journalEntry(7, id, 0, b0),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, "journal", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l := openLog(t, Options{Dir: dir})
	defer l.Close()
	if got, want := readAll(t, mustPartition(t, l, "t", 0), 1<<20), append(b0, b2...); !bytes.Equal(got, want) {
		t.Fatalf("replayed %v, want batches at offsets [0 2]", batchOffsets(got))
	}
	if files := journalFiles(t, dir); len(files) != 1 {
		t.Fatalf("journal files after open: %v; want only the new one", files)
	}
}

// TestJournalGapKeepsFiles: a journal that does not continue a partition's
// log is not replayed past the gap, and its files are kept aside for an
// operator instead of deleted.
func TestJournalGapKeepsFiles(t *testing.T) {
	dir := t.TempDir()
	id := closedTopic(t, dir)
	b := makeBatch(1, []byte("after a gap"))
	binary.BigEndian.PutUint64(b, 5) // the log ends at 0
	if err := os.WriteFile(filepath.Join(dir, "journal", "00000000000000000001.wal"), journalEntry(1, id, 0, b), 0o644); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, Options{Dir: dir})
	defer l.Close()
	if got := readAll(t, mustPartition(t, l, "t", 0), 1<<20); len(got) != 0 {
		t.Fatalf("replayed across a gap: offsets %v", batchOffsets(got))
	}
	kept, err := filepath.Glob(filepath.Join(dir, "journal", "00000000000000000001.wal.kept-*"))
	if err != nil || len(kept) != 1 {
		t.Fatalf("kept journal files: %v %v", kept, err)
	}
}

// TestJournalKeptForPartitionWithFailedSync: a checkpoint's segment fsync
// fails for one partition (faultfs, as Linux, then drops the unsynced
// bytes for good). Every journal file holding that partition's batches,
// also the next one, must stay, so a crash loses none of them.
func TestJournalKeptForPartitionWithFailedSync(t *testing.T) {
	dir := t.TempDir()
	ffs := faultfs.New(OSFS{})
	l := openLog(t, WithJournalMaxBytes(Options{Dir: dir, FS: ffs}, 4096))
	if _, err := l.CreateTopic("t", 2, nil); err != nil {
		t.Fatal(err)
	}
	p0, p1 := mustPartition(t, l, "t", 0), mustPartition(t, l, "t", 1)
	seg0 := func(op faultfs.Op, name string) bool {
		return op == faultfs.OpSync && filepath.Dir(name) == filepath.Join(dir, "topics", "t", "0") && filepath.Ext(name) == ".log"
	}
	stall := ffs.StallIf(seg0)
	ffs.FailIf(seg0, nil)
	var want []byte
	i := 0
	for stalled := false; !stalled; i++ {
		b := makeBatch(int64(i), valueOf(i, 200))
		appendDurable(t, p0, b)
		want = append(want, b...)
		select {
		case <-stall.Stalled(): // a checkpoint is syncing p0's segment
			stalled = true
		default:
		}
	}
	for range 5 { // into the next journal file, and p0's page cache
		b := makeBatch(int64(i), valueOf(i, 200))
		appendDurable(t, p0, b)
		want = append(want, b...)
		i++
	}
	stall.Release() // the sync fails
	for p0.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	ffs.ClearFaults()
	for k := range 200 { // more checkpoints, which must not free what covers p0
		appendDurable(t, p1, makeBatch(int64(k), valueOf(k, 200)))
	}
	l = crashAndReopen(t, ffs, l, dir)
	defer l.Close()
	if got := readAll(t, mustPartition(t, l, "t", 0), 1<<20); !bytes.Equal(got, want) {
		t.Fatalf("partition 0 after the crash: offsets %v, want %d batches", batchOffsets(got), len(batchOffsets(want)))
	}
}
