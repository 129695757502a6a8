package storage_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	. "github.com/weirhq/weir/storage"
)

func TestAppendReadRoundTripAcrossSegmentsAndRestart(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Options{Dir: dir, Sync: SyncNever})
	if _, err := l.CreateTopic("orders", 2, map[string]string{"segment.bytes": "1024"}); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "orders", 1)
	var want []byte
	next := int64(0)
	for i := range 60 {
		n := 1 + i%3
		vals := make([][]byte, n)
		for j := range vals {
			vals[j] = valueOf(i, 50)
		}
		b := makeBatch(1000+int64(i), vals...)
		res, err := p.Append(b)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if res.BaseOffset != next || res.LastOffset != next+int64(n)-1 || res.LogAppendTime != -1 {
			t.Fatalf("append %d: got %+v, want base %d", i, res, next)
		}
		next += int64(n)
		want = append(want, b...) // b now carries its assigned offset
	}
	if hw := p.HighWatermark(); hw != next {
		t.Fatalf("high watermark %d, want %d", hw, next)
	}
	pdir := filepath.Join(dir, "topics", "orders", "1")
	if n := len(segmentFiles(t, pdir)); n < 5 {
		t.Fatalf("want several segments with segment.bytes=1024, got %d", n)
	}
	for _, maxBytes := range []int32{1, 700, 5000, 1 << 20} {
		if got := readAll(t, p, maxBytes); !bytes.Equal(got, want) {
			t.Fatalf("maxBytes %d: read %d bytes, want %d identical", maxBytes, len(got), len(want))
		}
	}
	// Every offset, not just batch starts, finds the batch that holds it.
	for off := int64(0); off < next; off++ {
		b, err := p.Read(off, 1)
		if err != nil {
			t.Fatal(err)
		}
		h := parseHeader(b)
		if h.baseOffset > off || h.lastOffset() < off || int(h.size) != len(b) {
			t.Fatalf("Read(%d) gave batch %d..%d (%d bytes of %d)", off, h.baseOffset, h.lastOffset(), h.size, len(b))
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	for _, sync := range []SyncPolicy{SyncAlways, SyncNever} {
		l = openLog(t, Options{Dir: dir, Sync: sync})
		p = mustPartition(t, l, "orders", 1)
		if hw := p.HighWatermark(); hw != next {
			t.Fatalf("after restart: high watermark %d, want %d", hw, next)
		}
		if got := readAll(t, p, 3000); !bytes.Equal(got, want) {
			t.Fatal("after restart: data differs")
		}
		res, err := p.Append(makeBatch(5000, []byte("x")))
		if err != nil || res.BaseOffset != next {
			t.Fatalf("append after restart: %+v %v", res, err)
		}
		if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
			t.Fatal(err)
		}
		next++
		want = append(want, mustRead(t, p, res.BaseOffset)...)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func mustRead(t *testing.T, p *Partition, off int64) []byte {
	t.Helper()
	b, err := p.Read(off, 1)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadMaxBytesAndRange(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir(), Sync: SyncNever})
	defer l.Close()
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	if b, err := p.Read(0, 100); b != nil || err != nil {
		t.Fatalf("empty partition: got %d bytes, %v", len(b), err)
	}
	var sizes []int
	for i := range 5 {
		b := makeBatch(int64(i), valueOf(i, 100))
		sizes = append(sizes, len(b))
		if _, err := p.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := p.Read(0, 1)
	if len(b) != sizes[0] {
		t.Fatalf("maxBytes 1 must still give the first whole batch, got %d bytes", len(b))
	}
	b, _ = p.Read(0, int32(sizes[0]+sizes[1]+sizes[2]/2))
	if got := batchOffsets(b); len(got) != 2 || len(b) != sizes[0]+sizes[1] {
		t.Fatalf("2.5 batches of room: got batches %v (%d bytes)", got, len(b))
	}
	b, _ = p.Read(3, 1<<20)
	if got := batchOffsets(b); len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Fatalf("Read(3): batches %v", got)
	}
	if b, err := p.Read(5, 100); b != nil || err != nil {
		t.Fatalf("at high watermark: %d bytes, %v", len(b), err)
	}
	for _, off := range []int64{-1, 6, 1 << 40} {
		if _, err := p.Read(off, 100); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("Read(%d): %v, want ErrOffsetOutOfRange", off, err)
		}
	}
}

func TestAppendRejectsBadBatchesAndStoresNothing(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir(), Sync: SyncNever})
	defer l.Close()
	if _, err := l.CreateTopic("t", 1, map[string]string{"max.message.bytes": "500"}); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	good := makeBatch(1, []byte("ok"))
	mutate := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	cases := []struct {
		name    string
		records []byte
		want    error
	}{
		{"empty", nil, ErrInvalidBatch},
		{"short", good[:30], ErrCorruptBatch},
		{"magic 1", mutate(func(b []byte) []byte { b[16] = 1; return b }), ErrUnsupportedMagic},
		{"bad crc", mutate(func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }), ErrCorruptBatch},
		{"length beyond buffer", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 1<<30); return b }), ErrCorruptBatch},
		{"negative length", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 0xffffffff); return b }), ErrCorruptBatch},
		{"count mismatch", makeBatchCount(good, 3), ErrInvalidBatch},
		{"too large", makeBatch(1, make([]byte, 600)), ErrMessageTooLarge},
		{"good then bad", append(append([]byte(nil), good...), good[:40]...), ErrCorruptBatch},
	}
	for _, c := range cases {
		if _, err := p.Append(c.records); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if hw := p.HighWatermark(); hw != 0 || p.Size() != 0 {
		t.Fatalf("rejected appends stored data: hw %d size %d", hw, p.Size())
	}
	if n, err := ValidateBatches(append(append([]byte(nil), good...), good...), 0); n != 2 || err != nil {
		t.Fatalf("ValidateBatches of two good batches: %d, %v", n, err)
	}
}

// makeBatchCount rewrites numRecords (and the CRC, so only the count is wrong).
func makeBatchCount(b []byte, n int32) []byte {
	b = append([]byte(nil), b...)
	binary.BigEndian.PutUint32(b[offNumRecords:], uint32(n))
	binary.BigEndian.PutUint32(b[offCRC:], crc32c(b[offAttributes:]))
	return b
}

func TestLogAppendTime(t *testing.T) {
	clk := &clock{t: time.UnixMilli(1_700_000_000_000)}
	l := openLog(t, Options{Dir: t.TempDir(), Sync: SyncNever, Now: clk.Now})
	defer l.Close()
	if _, err := l.CreateTopic("t", 1, map[string]string{"message.timestamp.type": "LogAppendTime"}); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	res, err := p.Append(makeBatch(5, []byte("a"), []byte("b")))
	if err != nil {
		t.Fatal(err)
	}
	if res.LogAppendTime != clk.Now().UnixMilli() {
		t.Fatalf("LogAppendTime %d", res.LogAppendTime)
	}
	b := mustRead(t, p, 0)
	if _, err := ValidateBatches(b, 0); err != nil {
		t.Fatalf("stamped batch no longer valid: %v", err)
	}
	if ts := parseHeader(b).maxTimestamp; ts != res.LogAppendTime {
		t.Fatalf("maxTimestamp %d, want %d", ts, res.LogAppendTime)
	}
	if b[offAttributes+1]&attrLogAppendTime == 0 {
		t.Fatal("timestamp-type attribute bit not set")
	}
}

func TestOffsetForTimestampAndMaxTimestamp(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Options{Dir: dir, Sync: SyncNever})
	if _, err := l.CreateTopic("t", 1, map[string]string{"segment.bytes": "2048"}); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	if _, _, ok := p.OffsetForTimestamp(0); ok {
		t.Fatal("empty partition found a timestamp")
	}
	// Timestamps 100, 110, 120, ... with one batch out of order.
	for i := range 100 {
		ts := int64(100 + 10*i)
		if i == 50 {
			ts = 5
		}
		if _, err := p.Append(makeBatch(ts, valueOf(i, 150))); err != nil {
			t.Fatal(err)
		}
	}
	check := func() {
		t.Helper()
		for _, c := range []struct{ ts, off, gotTs int64 }{{0, 0, 100}, {100, 0, 100}, {101, 1, 110}, {595, 51, 610}, {1090, 99, 1090}} {
			off, ts, ok := p.OffsetForTimestamp(c.ts)
			if !ok || off != c.off || ts != c.gotTs {
				t.Fatalf("OffsetForTimestamp(%d) = %d, %d, %v; want %d, %d", c.ts, off, ts, ok, c.off, c.gotTs)
			}
		}
		if _, _, ok := p.OffsetForTimestamp(1091); ok {
			t.Fatal("found an offset past the largest timestamp")
		}
		if off, ts := p.MaxTimestamp(); off != 99 || ts != 1090 {
			t.Fatalf("MaxTimestamp = %d, %d", off, ts)
		}
	}
	check()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, Options{Dir: dir, Sync: SyncNever})
	defer l.Close()
	p = mustPartition(t, l, "t", 0)
	check()
}

func TestTopicAdmin(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Options{Dir: dir, Sync: SyncNever})
	for _, name := range []string{"", ".", "..", "a b", "ü", string(make([]byte, 250))} {
		if _, err := l.CreateTopic(name, 1, nil); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("CreateTopic(%q): %v", name, err)
		}
	}
	if _, err := l.CreateTopic("x", 0, nil); !errors.Is(err, ErrInvalidPartitions) {
		t.Errorf("0 partitions: %v", err)
	}
	_, err := l.CreateTopic("x", 1, map[string]string{"retention.ms": "soon"})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Key != "retention.ms" || !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad retention.ms: %v", err)
	}
	if err := l.ValidateConfig(map[string]string{"no.such.key": "1"}); !errors.As(err, &ce) || ce.Key != "no.such.key" {
		t.Errorf("unknown key: %v", err)
	}
	if err := l.ValidateConfig(map[string]string{"segment.bytes": "10"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("tiny segment.bytes: %v", err)
	}
	tp, err := l.CreateTopic("Hub_1.a-b", 2, map[string]string{"cleanup.policy": "compact,delete", "retention.ms": "1000"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic("Hub_1.a-b", 2, nil); !errors.Is(err, ErrTopicExists) {
		t.Errorf("duplicate: %v", err)
	}
	id := tp.ID()
	if err := l.AlterTopicConfig("Hub_1.a-b", map[string]string{"retention.bytes": "5000"}, []string{"retention.ms"}); err != nil {
		t.Fatal(err)
	}
	if err := l.AlterTopicConfig("Hub_1.a-b", map[string]string{"retention.bytes": "-5"}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad alter: %v", err)
	}
	if err := l.CreatePartitions("Hub_1.a-b", 2); !errors.Is(err, ErrInvalidPartitions) {
		t.Errorf("shrink: %v", err)
	}
	if err := l.CreatePartitions("Hub_1.a-b", 4); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic("gone", 1, nil); err != nil {
		t.Fatal(err)
	}
	gone := mustPartition(t, l, "gone", 0)
	if _, err := gone.Append(makeBatch(1, []byte("v"))); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteTopic("gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := gone.Read(0, 100); !errors.Is(err, ErrPartitionDeleted) {
		t.Errorf("read after delete: %v", err)
	}
	if _, err := gone.Append(makeBatch(1, []byte("v"))); !errors.Is(err, ErrPartitionDeleted) {
		t.Errorf("append after delete: %v", err)
	}
	if err := l.DeleteTopic("gone"); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("second delete: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, Options{Dir: dir, Sync: SyncNever})
	defer l.Close()
	if ts := l.Topics(); len(ts) != 1 || ts[0].Name() != "Hub_1.a-b" {
		t.Fatalf("topics after restart: %v", ts)
	}
	tp, _ = l.Topic("Hub_1.a-b")
	if tp.ID() != id || tp.NumPartitions() != 4 {
		t.Fatalf("id or partitions lost: %x %d", tp.ID(), tp.NumPartitions())
	}
	cfg := tp.Config()
	if cfg.RetentionBytes != 5000 || cfg.RetentionMs != kafkaRetentionMs || cfg.CleanupPolicy != "compact,delete" {
		t.Fatalf("config after restart: %+v", cfg)
	}
	entries := map[string]ConfigEntry{}
	for _, e := range tp.DescribeConfigs() {
		entries[e.Name] = e
	}
	if len(entries) != 7 || entries["retention.bytes"].IsDefault || entries["retention.bytes"].Value != "5000" ||
		!entries["retention.ms"].IsDefault || entries["segment.bytes"].Value != "1073741824" {
		t.Fatalf("DescribeConfigs: %+v", entries)
	}
}

func TestSubscribeSeesHighWatermark(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir()})
	defer l.Close()
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	ch := make(chan struct{}, 1)
	cancel := p.Subscribe(ch)
	defer cancel()
	if _, err := p.Append(makeBatch(1, []byte("v"))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification after append")
	}
	if p.HighWatermark() != 1 {
		t.Fatalf("notified but high watermark is %d", p.HighWatermark())
	}
}

func TestClosedLog(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir()})
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(makeBatch(1, []byte("v"))); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if _, err := l.CreateTopic("u", 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("create after close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}
