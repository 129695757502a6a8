package tests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// segmentName matches a segment file: its base offset, zero-padded.
var segmentName = regexp.MustCompile(`^[0-9]{20}\.log$`)

// activeSegments returns, per directory under dataDir, the segment file
// with the highest base offset: the one being appended to.
func activeSegments(t *testing.T, dataDir string) []string {
	t.Helper()
	last := map[string]string{}
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !segmentName.MatchString(d.Name()) {
			return err
		}
		dir := filepath.Dir(path)
		if path > last[dir] {
			last[dir] = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range last {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// TestTornTailAfterKill9 SIGKILLs `weir serve`, then appends what a torn
// write leaves behind to every active segment: a batch header whose length
// runs past the end of the file, or a whole batch with a broken CRC. After a
// restart every acknowledged record is still there, nothing else is served,
// and new records follow the acknowledged ones at the next offsets.
func TestTornTailAfterKill9(t *testing.T) {
	srv := startServer(t, "--fsync", "always")
	const topic, partitions = "torn", 2
	ctx := testContext(t, 60*time.Second)

	var acked []record
	produce := func(from, n int) {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(srv.addr), kgo.DefaultProduceTopic(topic),
			kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for i := from; i < from+n; i++ {
			kr := &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "value %d \x00\xff", i)}
			if err := cl.ProduceSync(ctx, kr).FirstErr(); err != nil {
				t.Fatalf("produce %d: %v", i, err)
			}
			acked = append(acked, record{Key: kr.Key, Value: kr.Value, Partition: kr.Partition, Offset: kr.Offset})
		}
	}
	createTopic(t, srv.addr, topic, partitions)
	produce(0, 100)
	srv.kill()

	segs := activeSegments(t, srv.dataDir)
	if len(segs) < partitions {
		t.Fatalf("found %d active segments (files named like 00000000000000000000.log) under %s, want %d", len(segs), srv.dataDir, partitions)
	}
	for i, seg := range segs {
		whole, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		var tail []byte
		if i%2 == 0 {
			// A batch header that promises 4000 bytes, of which 20 arrived.
			tail = binary.BigEndian.AppendUint64(nil, 1<<40)
			tail = binary.BigEndian.AppendUint32(tail, 4000)
			tail = append(tail, bytes.Repeat([]byte{0xab}, 20)...)
		} else if len(whole) >= 61 {
			// A copy of the first batch with one flipped byte after the CRC.
			length := int(binary.BigEndian.Uint32(whole[8:12]))
			if length+12 > len(whole) {
				t.Fatalf("%s: first batch length %d runs past the file (%d bytes)", seg, length, len(whole))
			}
			tail = bytes.Clone(whole[:12+length])
			tail[len(tail)-1] ^= 0xff
		}
		f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(tail); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}

	srv.start()
	produce(100, 20)
	got := readAll(t, srv.addr, topic)
	var consumed []record
	for _, rs := range got {
		for _, r := range rs {
			consumed = append(consumed, fromKgo(r))
		}
	}
	checkRecords(t, acked, consumed, false)
}
