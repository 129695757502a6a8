package group

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

func sampleRecords() []Record {
	return []Record{
		{Kind: RecordGroup, Group: "g", Generation: 3, ProtocolType: "consumer", Created: true, EmptySince: 1700000000000},
		{Kind: RecordOffset, Group: "g", Topic: "t", Partition: 1, Offset: 42, LeaderEpoch: 2, Metadata: "m", CommitTime: 1700000000000},
		{Kind: RecordOffset, Group: "g", Topic: "t", Partition: 2, Offset: 7, LeaderEpoch: -1, CommitTime: 1700000000001},
		{Kind: RecordOffsetDeleted, Group: "g", Topic: "t", Partition: 2},
		{Kind: RecordOffset, Group: "h", Topic: "u", Partition: 0, Offset: 1, CommitTime: 1},
		{Kind: RecordGroupDeleted, Group: "h"},
	}
}

func TestStoreReopen(t *testing.T) {
	dir := t.TempDir()
	s, recs, err := OpenStore(nil, dir)
	if err != nil || len(recs) != 0 {
		t.Fatalf("open empty: %v, %d records", err, len(recs))
	}
	want := sampleRecords()
	if err := s.Append(want[:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(want[2:]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, got, err := OpenStore(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(got) != len(want) {
		t.Fatalf("reopened %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	c, _ := NewRawCoordinator(Config{})
	c.Restore(time.Now(), got)
	if g := c.groups["g"]; g == nil || g.generation != 3 || !g.created || len(g.offsets) != 1 || g.offsets[topicPartition{"t", 1}].Offset != 42 {
		t.Fatalf("restored group %+v", c.groups["g"])
	}
	if c.groups["h"] != nil {
		t.Fatal("deleted group came back")
	}
}

// TestStoreTornTail cuts the file at every byte of its last record, and
// flips a byte inside it: recovery keeps every whole record before it,
// truncates the rest, and later appends are read back.
func TestStoreTornTail(t *testing.T) {
	recs := sampleRecords()
	var full []byte
	var lastStart int
	for i, r := range recs {
		if i == len(recs)-1 {
			lastStart = len(full)
		}
		full = AppendRecord(full, r)
	}
	for cut := lastStart; cut < len(full); cut++ {
		for _, flip := range []bool{false, true} {
			dir := t.TempDir()
			data := append([]byte(nil), full[:cut]...)
			if flip {
				data = append([]byte(nil), full...)
				data[cut] ^= 0x5a
			}
			if err := os.MkdirAll(filepath.Join(dir, storeDirName), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, storeDirName, storeFileName), data, 0o644); err != nil {
				t.Fatal(err)
			}
			s, got, err := OpenStore(nil, dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(recs)-1 || s.Size() != int64(lastStart) {
				t.Fatalf("cut %d flip %v: %d records, size %d; want %d, %d", cut, flip, len(got), s.Size(), len(recs)-1, lastStart)
			}
			extra := Record{Kind: RecordOffset, Group: "z", Topic: "t", Partition: 0, Offset: 9}
			if err := s.Append([]Record{extra}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s, got, err = OpenStore(nil, dir)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			if len(got) != len(recs) || got[len(got)-1] != extra {
				t.Fatalf("cut %d flip %v: append after recovery not read back (%d records)", cut, flip, len(got))
			}
		}
	}
}

func TestStoreRewrite(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStore(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := s.Append([]Record{{Kind: RecordOffset, Group: "g", Topic: "t", Offset: int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	before := s.Size()
	live := []Record{{Kind: RecordOffset, Group: "g", Topic: "t", Offset: 99}}
	if err := s.Rewrite(live); err != nil {
		t.Fatal(err)
	}
	if s.Size() >= before {
		t.Fatalf("rewrite did not shrink the file: %d -> %d", before, s.Size())
	}
	if err := s.Append([]Record{{Kind: RecordOffset, Group: "g", Topic: "t", Offset: 100}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, got, err := OpenStore(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Offset != 99 || got[1].Offset != 100 {
		t.Fatalf("after rewrite: %+v", got)
	}
}

// failingFS fails every Sync, to check that the write error is sticky and
// that commits are not acknowledged.
type failingFS struct{ storage.OSFS }

type failingFile struct{ storage.File }

var errInjected = errors.New("injected fsync failure")

func (f failingFile) Sync() error { return errInjected }

func (fs failingFS) OpenFile(name string, flag int, perm os.FileMode) (storage.File, error) {
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return failingFile{f}, nil
}

func TestCoordinatorStoreFailureRefusesCommits(t *testing.T) {
	c, err := Open(Config{}, failingFS{}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 2 {
		resp := (<-c.Submit(Client{}, commitReq("g", "", -1, "t", 0, 1))).(*kmsg.OffsetCommitResponse)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code == 0 {
			t.Fatal("a commit that could not be fsynced was acknowledged")
		}
	}
}

func TestCoordinatorPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Config{}, nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp := (<-c.Submit(Client{}, commitReq("g", "", -1, "t", 3, 77))).(*kmsg.OffsetCommitResponse)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("commit: %d", code)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c, err = Open(Config{}, nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := kmsg.NewPtrOffsetFetchRequest()
	r.Version = 5
	r.Group = "g"
	r.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{3}}}
	fr := (<-c.Submit(Client{}, r)).(*kmsg.OffsetFetchResponse)
	if got := fr.Topics[0].Partitions[0].Offset; got != 77 {
		t.Fatalf("offset after reopen %d, want 77", got)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(AppendRecord(nil, r))
	}
	f.Add([]byte{0, 0, 0, 2, 0, 0, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := DecodeRecord(b)
		if err != nil {
			if n != 0 || !(errors.Is(err, ErrCorruptRecord) || errors.Is(err, io.ErrUnexpectedEOF)) {
				t.Fatalf("error %v with n=%d", err, n)
			}
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("decoded length %d of %d bytes", n, len(b))
		}
		// A decoded record survives a round trip, and restoring it is
		// harmless.
		r2, _, err := DecodeRecord(AppendRecord(nil, r))
		if err != nil || r2 != r {
			t.Fatalf("round trip: %+v -> %+v, %v", r, r2, err)
		}
		c, _ := NewRawCoordinator(Config{})
		c.Restore(time.Unix(0, 0), []Record{r})
		_ = c.Snapshot()
	})
}

// TestOpenCompactsDeadRecords commits the same offsets over and over until
// the file is well past the compaction threshold: the coordinator rewrites
// it while running, and the state survives a reopen.
func TestOpenCompactsDeadRecords(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStore(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]Record, 0, 10_000)
	var i int64
	for s.Size() <= compactMinBytes {
		batch = batch[:0]
		for range cap(batch) {
			i++
			batch = append(batch, Record{Kind: RecordOffset, Group: "g", Topic: "t", Partition: int32(i % 4), Offset: i, CommitTime: i})
		}
		if err := s.Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	big := s.Size()
	s.Close()

	c, err := Open(Config{}, nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	st, err := os.Stat(filepath.Join(dir, storeDirName, storeFileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() >= big/100 {
		t.Fatalf("open did not compact: %d bytes before, %d after", big, st.Size())
	}
	_, recs, err := OpenStore(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := NewRawCoordinator(Config{})
	raw.Restore(time.Now(), recs)
	g := raw.groups["g"]
	for p := range int32(4) {
		want := i - (i-int64(p))%4 // the last offset committed for p
		if got := g.offsets[topicPartition{"t", p}].Offset; got != want {
			t.Errorf("partition %d: offset %d after compaction, want %d", p, got, want)
		}
	}
}
