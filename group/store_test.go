package group

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
	"github.com/weirhq/weir/storage/faultfs"
)

func sampleRecords() []Record {
	return []Record{
		{Kind: RecordGroup, Group: "g", Generation: 3, ProtocolType: "consumer", Created: true, EmptySince: 1700000000000},
		{Kind: RecordOffset, Group: "g", Topic: "t", Partition: 1, Offset: 42, LeaderEpoch: 2, Metadata: "m", CommitTime: 1700000000000},
		{Kind: RecordOffset, Group: "g", Topic: "t", Partition: 2, Offset: 7, LeaderEpoch: -1, CommitTime: 1700000000001},
		{Kind: RecordOffsetDeleted, Group: "g", Topic: "t", Partition: 2},
		{Kind: RecordOffset, Group: "h", Topic: "u", Partition: 0, Offset: 1, CommitTime: 1},
		{Kind: RecordGroupDeleted, Group: "h"},
		{Kind: RecordGroupMetadata, Group: "e", Generation: 4, ProtocolType: "consumer"},
		{Kind: RecordGroupMetadata, Group: "g", Generation: 3, ProtocolType: "consumer", Protocol: "cooperative-sticky", Leader: "a-1",
			Members: []MemberRecord{
				{ID: "a-1", ClientID: "a", ClientHost: "/10.0.0.1", SessionTimeout: 45000, RebalanceTimeout: 60000,
					Protocols:  []MemberProtocol{{Name: "cooperative-sticky", Metadata: []byte{0, 1, 2}}, {Name: "range", Metadata: []byte{}}},
					Assignment: []byte{9, 9}},
				{ID: "b-2", InstanceID: strPtr("b"), ClientID: "b", ClientHost: "/10.0.0.2", SessionTimeout: 10000, RebalanceTimeout: 10000,
					Protocols: []MemberProtocol{{Name: "cooperative-sticky", Metadata: []byte{3}}}, Assignment: []byte{}},
			}},
	}
}

// metadataFrame frames a RecordGroupMetadata payload for group "g" whose
// member count is n and that ends after it: the decoder must refuse the
// count before it allocates.
func metadataFrame(n int32) []byte {
	p := []byte{recordVersion, byte(RecordGroupMetadata)}
	p = kbin.AppendString(p, "g")
	p = kbin.AppendInt32(p, 1)
	p = kbin.AppendString(p, "consumer")
	p = kbin.AppendString(p, "range")
	p = kbin.AppendString(p, "")
	p = kbin.AppendInt32(p, n)
	b := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(p, crcTable))
	return append(b, p...)
}

func TestStoreReopen(t *testing.T) {
	dir := t.TempDir()
	s, recs, err := OpenStore(nil, dir, nil)
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
	s, got, err := OpenStore(nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(got) != len(want) {
		t.Fatalf("reopened %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
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
		full = appendRecord(t, full, r)
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
			s, got, err := OpenStore(nil, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(recs)-1 || s.Size() != int64(lastStart) {
				t.Fatalf("cut %d flip %v: %d records, size %d; want %d, %d", cut, flip, len(got), s.Size(), len(recs)-1, lastStart)
			}
			if rec := s.Recovery(); rec.TailBytes != int64(len(data)-lastStart) || len(rec.Skipped) != 0 {
				t.Fatalf("cut %d flip %v: recovery %+v, want a %d-byte tail", cut, flip, rec, len(data)-lastStart)
			}
			extra := Record{Kind: RecordOffset, Group: "z", Topic: "t", Partition: 0, Offset: 9}
			if err := s.Append([]Record{extra}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s, got, err = OpenStore(nil, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			if len(got) != len(recs) || !reflect.DeepEqual(got[len(got)-1], extra) {
				t.Fatalf("cut %d flip %v: append after recovery not read back (%d records)", cut, flip, len(got))
			}
		}
	}
}

func TestStoreRewrite(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStore(nil, dir, nil)
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
	_, got, err := OpenStore(nil, dir, nil)
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
		resp := (<-c.Submit(context.Background(), Client{}, commitReq("g", "", -1, "t", 0, 1))).(*kmsg.OffsetCommitResponse)
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
	resp := (<-c.Submit(context.Background(), Client{}, commitReq("g", "", -1, "t", 3, 77))).(*kmsg.OffsetCommitResponse)
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
	fr := (<-c.Submit(context.Background(), Client{}, r)).(*kmsg.OffsetFetchResponse)
	if got := fr.Topics[0].Partitions[0].Offset; got != 77 {
		t.Fatalf("offset after reopen %d, want 77", got)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		b, err := AppendRecord(nil, r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 2, 0, 0, 0, 0, 0, 9})
	f.Add(metadataFrame(math.MaxInt32))
	f.Add(metadataFrame(-1))
	f.Add(metadataFrame(1))
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
		b2, err := AppendRecord(nil, r)
		if err != nil {
			t.Fatalf("a decoded record cannot be encoded again: %v", err)
		}
		r2, _, err := DecodeRecord(b2)
		if err != nil || !reflect.DeepEqual(r2, r) {
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
	s, _, err := OpenStore(nil, dir, nil)
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
	_, recs, err := OpenStore(nil, dir, nil)
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

func appendRecord(t testing.TB, dst []byte, r Record) []byte {
	t.Helper()
	dst, err := AppendRecord(dst, r)
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestAppendRecordRefusesUnstorableRecords: a string longer than its int16
// length can say, or a payload over the frame limit, is refused and
// nothing is written; the refusal is not sticky, and the file holds only
// records that decode.
func TestAppendRecordRefusesUnstorableRecords(t *testing.T) {
	long := strings.Repeat("x", maxStringBytes+1)
	bad := []Record{
		{Kind: RecordOffset, Group: long, Topic: "t"},
		{Kind: RecordGroup, Group: "g", ProtocolType: long},
		{Kind: RecordOffset, Group: "g", Topic: long},
		{Kind: RecordOffsetDeleted, Group: "g", Topic: long},
		{Kind: RecordOffset, Group: "g", Topic: "t", Metadata: long},
		{Kind: RecordOffset, Group: strings.Repeat("g", maxStringBytes), Topic: strings.Repeat("t", maxStringBytes),
			Metadata: strings.Repeat("m", maxStringBytes)},
	}
	for i, r := range bad[:5] {
		prefix := []byte("keep")
		out, err := AppendRecord(prefix, r)
		if !errors.Is(err, ErrUnstorableRecord) || string(out) != "keep" {
			t.Errorf("record %d: err %v, %d bytes appended; want ErrUnstorableRecord and nothing", i, err, len(out)-len(prefix))
		}
	}
	// Strings at the limit are stored and read back.
	b := appendRecord(t, nil, bad[5])
	if r, _, err := DecodeRecord(b); err != nil || !reflect.DeepEqual(r, bad[5]) {
		t.Fatalf("record with strings at the limit: %v", err)
	}

	dir := t.TempDir()
	s, _, err := OpenStore(nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := Record{Kind: RecordOffset, Group: "g", Topic: "t", Offset: 1}
	if err := s.Append([]Record{good, bad[0]}); !errors.Is(err, ErrUnstorableRecord) {
		t.Fatalf("append with an unstorable record: %v", err)
	}
	if s.Size() != 0 {
		t.Fatalf("a refused batch wrote %d bytes", s.Size())
	}
	later := Record{Kind: RecordOffset, Group: "g", Topic: "t", Offset: 2}
	if err := s.Append([]Record{later}); err != nil {
		t.Fatalf("append after a refused batch: %v", err)
	}
	if err := s.Rewrite([]Record{later, bad[0]}); !errors.Is(err, ErrUnstorableRecord) {
		t.Fatalf("rewrite with an unstorable record: %v", err)
	}
	s.Close()
	s, got, err := OpenStore(nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if len(got) != 1 || !reflect.DeepEqual(got[0], later) {
		t.Fatalf("records after reopen: %+v, want only %+v", got, later)
	}
}

// oldLongGroupFrame is the frame the encoder wrote before it checked
// lengths, for a commit by a group with a 40,000-byte id: its CRC is
// right, but the group id's int16 length wrapped, so it does not decode.
func oldLongGroupFrame() []byte {
	group := strings.Repeat("x", 40_000)
	payload := []byte{recordVersion, byte(RecordOffset)}
	payload = kbin.AppendInt16(payload, int16(uint16(len(group))))
	payload = append(payload, group...)
	payload = kbin.AppendString(payload, "t")
	payload = kbin.AppendInt32(payload, 0)
	payload = kbin.AppendInt64(payload, 2)
	payload = kbin.AppendInt32(payload, -1)
	payload = kbin.AppendString(payload, "")
	payload = kbin.AppendInt64(payload, 1)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	frame = binary.BigEndian.AppendUint32(frame, crc32.Checksum(payload, crcTable))
	return append(frame, payload...)
}

// TestOpenStoreKeepsRecordsAfterACorruptOne: a bad frame with good frames
// after it is corruption, not a torn tail. The records after it come back,
// the file as found is kept, an error is logged, and the file is
// rewritten so that the next open finds nothing wrong.
func TestOpenStoreKeepsRecordsAfterACorruptOne(t *testing.T) {
	before := Record{Kind: RecordOffset, Group: "before", Topic: "t", Offset: 1, CommitTime: 1}
	after := Record{Kind: RecordOffset, Group: "after", Topic: "t", Offset: 3, CommitTime: 3}
	last := Record{Kind: RecordGroup, Group: "after", Generation: 2, ProtocolType: "consumer"}
	flipped := appendRecord(t, nil, Record{Kind: RecordOffset, Group: "flipped", Topic: "t", Offset: 9})
	flipped[len(flipped)-3] ^= 0xff // a bad checksum; the header is intact
	torn := appendRecord(t, nil, Record{Kind: RecordOffset, Group: "torn", Topic: "t", Offset: 4})
	torn = torn[:len(torn)-5]
	for _, tc := range []struct {
		name      string
		bad       []byte
		skipped   int64
		afterBad  []Record
		wantTotal int
	}{
		{"old long group id frame", oldLongGroupFrame(), int64(len(oldLongGroupFrame())), []Record{after, last}, 3},
		{"bad checksum", flipped, int64(len(flipped)), []Record{after, last}, 3},
		{"garbage", []byte("this is not a frame at all"), 26, []Record{after}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := appendRecord(t, nil, before)
			data = append(data, tc.bad...)
			for _, r := range tc.afterBad {
				data = appendRecord(t, data, r)
			}
			data = append(data, torn...)
			name := filepath.Join(dir, storeDirName, storeFileName)
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, data, 0o644); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))
			s, got, err := OpenStore(nil, dir, logger)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]Record{before}, tc.afterBad...)
			if len(got) != len(want) {
				t.Fatalf("%d records back, want %d: %+v", len(got), len(want), got)
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("record %d: %+v, want %+v", i, got[i], want[i])
				}
			}
			rec := s.Recovery()
			if len(rec.Skipped) != 1 || rec.Skipped[0].Bytes != tc.skipped || rec.TailBytes != int64(len(torn)) {
				t.Fatalf("recovery %+v, want one %d-byte region and a %d-byte tail", rec, tc.skipped, len(torn))
			}
			if copied, err := os.ReadFile(rec.Preserved); err != nil || !bytes.Equal(copied, data) {
				t.Fatalf("the file as found was not kept (%v)", err)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "skipped_bytes=") {
				t.Fatalf("no error logged: %q", logs.String())
			}
			if err := s.Append([]Record{{Kind: RecordOffset, Group: "new", Topic: "t", Offset: 5}}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s, got, err = OpenStore(nil, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			if rec := s.Recovery(); len(got) != len(want)+1 || rec.TailBytes != 0 || len(rec.Skipped) != 0 {
				t.Fatalf("second open: %d records, recovery %+v; want %d records and a clean file", len(got), rec, len(want)+1)
			}
		})
	}
}

// TestOpenStoreLogsDroppedTail: a torn tail is cut off, and how many bytes
// went is logged as an error.
func TestOpenStoreLogsDroppedTail(t *testing.T) {
	dir := t.TempDir()
	data := appendRecord(t, nil, Record{Kind: RecordOffset, Group: "g", Topic: "t", Offset: 1})
	tail := appendRecord(t, nil, Record{Kind: RecordOffset, Group: "g", Topic: "t", Offset: 2})
	data = append(data, tail[:len(tail)-1]...)
	name := filepath.Join(dir, storeDirName, storeFileName)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, got, err := OpenStore(nil, dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	want := "dropped_bytes=" + strconv.Itoa(len(tail)-1)
	if len(got) != 1 || !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), want) {
		t.Fatalf("%d records; log %q, want an error with %s", len(got), logs.String(), want)
	}
}

// TestCoordinatorLongGroupIDKeepsLaterCommits is the reviewer's failure:
// a tool commits for a group whose id is 40,000 bytes (flexible
// OffsetCommit versions allow it). That commit is refused with
// INVALID_GROUP_ID, nothing is written for it, and the commits
// acknowledged after it survive a restart.
func TestCoordinatorLongGroupIDKeepsLaterCommits(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Config{}, nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	commit := func(group string, offset int64) int16 {
		resp := (<-c.Submit(context.Background(), Client{}, commitReq(group, "", -1, "t", 0, offset))).(*kmsg.OffsetCommitResponse)
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if code := commit("before", 1); code != 0 {
		t.Fatalf("commit before: %v", kerr.ErrorForCode(code))
	}
	if code := commit(strings.Repeat("x", 40_000), 2); code != kerr.InvalidGroupID.Code {
		t.Fatalf("commit by a 40,000-byte group id: %v, want INVALID_GROUP_ID", kerr.ErrorForCode(code))
	}
	if code := commit("after", 3); code != 0 {
		t.Fatalf("commit after: %v", kerr.ErrorForCode(code))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c, err = Open(Config{}, nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for group, want := range map[string]int64{"before": 1, "after": 3} {
		r := kmsg.NewPtrOffsetFetchRequest()
		r.Version = 5
		r.Group = group
		r.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0}}}
		fr := (<-c.Submit(context.Background(), Client{}, r)).(*kmsg.OffsetFetchResponse)
		if got := fr.Topics[0].Partitions[0].Offset; got != want {
			t.Errorf("group %s after restart: offset %d, want %d", group, got, want)
		}
	}
}

// TestDeleteTopicsDeletesOffsets: deleting a topic deletes every group's
// committed offsets of it, durably, and no others.
func TestDeleteTopicsDeletesOffsets(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Config{}, nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	commits := []struct {
		group, topic string
		partition    int32
	}{{"billing", "orders", 0}, {"billing", "orders", 1}, {"billing", "users", 0}, {"audit", "orders", 0}}
	for i, cm := range commits {
		resp := (<-c.Submit(context.Background(), Client{}, commitReq(cm.group, "", -1, cm.topic, cm.partition, int64(100+i)))).(*kmsg.OffsetCommitResponse)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("commit %+v: %v", cm, kerr.ErrorForCode(code))
		}
	}
	if err := <-c.SubmitDeleteTopics(context.Background(), []string{"orders"}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for i, cm := range commits {
			r := kmsg.NewPtrOffsetFetchRequest()
			r.Version = 5
			r.Group = cm.group
			r.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: cm.topic, Partitions: []int32{cm.partition}}}
			fr := (<-c.Submit(context.Background(), Client{}, r)).(*kmsg.OffsetFetchResponse)
			want := int64(-1)
			if cm.topic != "orders" {
				want = int64(100 + i)
			}
			if got := fr.Topics[0].Partitions[0].Offset; got != want {
				t.Errorf("%s: %s %s/%d at %d, want %d", when, cm.group, cm.topic, cm.partition, got, want)
			}
		}
	}
	check("after the deletion")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err = Open(Config{}, nil, dir, nil); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check("after a restart")
}

// syncDirFS records the directories fsynced.
type syncDirFS struct {
	storage.OSFS
	synced []string
}

func (fs *syncDirFS) SyncDir(name string) error {
	fs.synced = append(fs.synced, filepath.Clean(name))
	return fs.OSFS.SyncDir(name)
}

// TestOpenStoreSyncsNewDirectoryEntries: creating groups/ and groups.log
// fsyncs the directories holding them before OpenStore returns, so that
// an acknowledged commit cannot be lost with a file name that a crash
// did not keep. Opening an existing store fsyncs nothing.
func TestOpenStoreSyncsNewDirectoryEntries(t *testing.T) {
	dataDir := t.TempDir()
	fsys := &syncDirFS{}
	s, _, err := OpenStore(fsys, dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	groupsDir := filepath.Join(dataDir, storeDirName)
	if !slices.Contains(fsys.synced, groupsDir) || !slices.Contains(fsys.synced, filepath.Clean(dataDir)) {
		t.Fatalf("directories fsynced on creation: %q, want %q and %q", fsys.synced, groupsDir, dataDir)
	}
	fsys.synced = nil
	s, _, err = OpenStore(fsys, dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if len(fsys.synced) != 0 {
		t.Fatalf("reopening fsynced %q", fsys.synced)
	}
}

// TestFailedRewriteIsNotRetriedAtOnce: a rewrite that fails (here, the
// temporary file cannot be created) is not attempted again after every
// batch, only once the file has grown by half again; appends go on
// meanwhile, and a later rewrite succeeds.
func TestFailedRewriteIsNotRetriedAtOnce(t *testing.T) {
	fsys := faultfs.New(storage.OSFS{})
	dir := t.TempDir()
	s, _, err := OpenStore(fsys, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var i int64
	batch := make([]Record, 0, 10_000)
	appendUntil := func(size int64) {
		t.Helper()
		for s.Size() < size {
			batch = batch[:0]
			for range cap(batch) {
				i++
				batch = append(batch, Record{Kind: RecordOffset, Group: "g", Topic: "t", Partition: int32(i % 4), Offset: i, CommitTime: i})
			}
			if err := s.Append(batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendUntil(compactMinBytes + 1)
	if !s.NeedsRewrite() {
		t.Fatalf("a %d-byte file of dead records does not need a rewrite", s.Size())
	}
	fsys.FailIf(func(op faultfs.Op, name string) bool { return op == faultfs.OpOpen && strings.HasSuffix(name, ".tmp") }, nil)
	live := []Record{{Kind: RecordOffset, Group: "g", Topic: "t", Offset: 1}}
	if err := s.Rewrite(live); err == nil {
		t.Fatal("rewrite succeeded with its temporary file refused")
	}
	failedAt := s.Size()
	if s.NeedsRewrite() {
		t.Fatal("a rewrite that just failed is wanted again at once")
	}
	appendUntil(failedAt + failedAt/4)
	if s.NeedsRewrite() {
		t.Fatalf("rewrite wanted again after the file grew from %d to %d bytes", failedAt, s.Size())
	}
	appendUntil(failedAt + failedAt/2)
	if !s.NeedsRewrite() {
		t.Fatalf("rewrite not wanted again after the file grew by half, to %d bytes", s.Size())
	}
	fsys.ClearFaults()
	if err := s.Rewrite(live); err != nil {
		t.Fatal(err)
	}
	if s.NeedsRewrite() || s.Size() >= failedAt {
		t.Fatalf("after a rewrite: %d bytes, needs rewrite %v", s.Size(), s.NeedsRewrite())
	}
}

// TestOpenDeletesOffsetsOfMissingPartitions: the broker stopped after a
// topic was deleted but before the deletion of its offsets was written.
// At the next start the offsets of partitions that do not exist are
// deleted, durably; every other offset is kept.
func TestOpenDeletesOffsetsOfMissingPartitions(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Config{}, nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	commits := []struct {
		group, topic string
		partition    int32
		kept         bool
	}{
		{"billing", "orders", 0, false}, {"billing", "orders", 1, false}, {"audit", "orders", 0, false},
		{"billing", "users", 0, true}, {"billing", "users", 1, false}, // users has no partition 1
	}
	for i, cm := range commits {
		if code := commitCode(c, cm.group, cm.topic, cm.partition, int64(100+i)); code != 0 {
			t.Fatalf("commit %+v: %v", cm, kerr.ErrorForCode(code))
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	exists := func(topic string, p int32) bool { return topic == "users" && p == 0 }
	var logs bytes.Buffer
	c, err = Open(Config{PartitionExists: exists}, nil, dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "offsets=4") || !strings.Contains(logs.String(), "topics=\"[orders users]\"") {
		t.Errorf("log does not say what was deleted:\n%s", logs.String())
	}
	check := func(c *Coordinator, when string) {
		t.Helper()
		for i, cm := range commits {
			want := int64(-1)
			if cm.kept {
				want = int64(100 + i)
			}
			if got := fetchOffset(t, c, cm.group, cm.topic, cm.partition); got != want {
				t.Errorf("%s: %s %s/%d at %d, want %d", when, cm.group, cm.topic, cm.partition, got, want)
			}
		}
	}
	check(c, "at the start")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Durable: opened again with every partition existing, they stay gone.
	if c, err = Open(Config{}, nil, dir, nil); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check(c, "after another restart")
}

// TestStoreFailedAppendIsCutOff: an Append whose fsync fails returns the
// error, and so does every later one (sticky); the failed batch's bytes
// are cut off the file, so its records do not come back at the next open.
func TestStoreFailedAppendIsCutOff(t *testing.T) {
	dir := t.TempDir()
	fsys := faultfs.New(storage.OSFS{})
	s, _, err := OpenStore(fsys, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := sampleRecords()
	if err := s.Append(recs[:2]); err != nil {
		t.Fatal(err)
	}
	fsys.FailAfter(faultfs.OpSync, 0, nil)
	err1 := s.Append(recs[2:4])
	if !errors.Is(err1, faultfs.ErrInjected) {
		t.Fatalf("append with a failing fsync: %v", err1)
	}
	fsys.ClearFaults()
	if err := s.Append(recs[4:]); err != err1 {
		t.Fatalf("append after a failed fsync: %v, want the same error %v", err, err1)
	}
	s.Close()
	_, got, err := OpenStore(nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !reflect.DeepEqual(got[0], recs[0]) || !reflect.DeepEqual(got[1], recs[1]) {
		t.Fatalf("records after reopen: %+v, want only the 2 written before the failure", got)
	}
}

// TestDecodeRecordRefusesBadMemberCounts: a metadata record's member count
// is checked against its bytes.
func TestDecodeRecordRefusesBadMemberCounts(t *testing.T) {
	for _, n := range []int32{math.MaxInt32, -1, 1, 1 << 20} {
		if _, _, err := DecodeRecord(metadataFrame(n)); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("%d members in an empty tail: %v, want ErrCorruptRecord", n, err)
		}
	}
	if r, _, err := DecodeRecord(metadataFrame(0)); err != nil || r.Kind != RecordGroupMetadata || len(r.Members) != 0 {
		t.Errorf("no members: %+v, %v", r, err)
	}
}
