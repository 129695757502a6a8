package tests

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// header is one record header.
type header struct {
	Key   string
	Value []byte
}

// record is a client-neutral record: what a test produced or consumed.
// Partition and Offset are -1 when the client did not report them.
type record struct {
	Key       []byte
	Value     []byte
	Headers   []header
	Partition int32
	Offset    int64
}

func (r record) String() string {
	return fmt.Sprintf("p%d@%d key=%q value=%d bytes headers=%d", r.Partition, r.Offset, r.Key, len(r.Value), len(r.Headers))
}

// makeRecords returns n records with distinct keys and values. Values mix
// compressible text with every byte value (0x00..0xff), and sizes vary from
// 0 to several KiB, so codecs and varint lengths get exercised.
func makeRecords(seed uint64, n int, withHeaders bool) []record {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]record, n)
	for i := range out {
		key := []byte(fmt.Sprintf("key-%d-", i))
		key = append(key, 0x00, 0xff, byte(i))
		var v []byte
		if i%17 != 5 { // a few empty values
			v = fmt.Appendf(nil, "value %d: ", i)
			for range rng.IntN(40) {
				v = append(v, "the quick brown fox jumps over the lazy dog "...)
			}
			bin := make([]byte, rng.IntN(600))
			for j := range bin {
				bin[j] = byte(rng.UintN(256))
			}
			v = append(v, bin...)
			v = append(v, 0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff)
		}
		r := record{Key: key, Value: v, Partition: -1, Offset: -1}
		if withHeaders {
			r.Headers = []header{
				{Key: "trace-id", Value: fmt.Appendf(nil, "t-%d", i)},
				{Key: "bin", Value: []byte{0x00, 0xff, byte(i >> 8), byte(i)}},
			}
			if i%3 == 0 {
				r.Headers = append(r.Headers, header{Key: "empty", Value: []byte{}})
			}
		}
		out[i] = r
	}
	return out
}

func sameHeaders(a, b []header) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// checkRecords asserts that consumed holds exactly the produced records,
// byte-identical, partition by partition, in the order they were produced
// (by acknowledged offset when the client reported one), at contiguous
// offsets starting at 0 (each test uses a fresh topic). Every produced
// record must carry its Partition. Headers are compared when checkHeaders.
func checkRecords(t *testing.T, produced, consumed []record, checkHeaders bool) {
	t.Helper()
	want := map[int32][]record{}
	for _, r := range produced {
		if r.Partition < 0 {
			t.Fatalf("produced record without a partition: %v", r)
		}
		want[r.Partition] = append(want[r.Partition], r)
	}
	got := map[int32][]record{}
	for _, r := range consumed {
		got[r.Partition] = append(got[r.Partition], r)
	}
	if len(consumed) != len(produced) {
		t.Errorf("consumed %d records, produced %d", len(consumed), len(produced))
	}
	parts := map[int32]bool{}
	for p := range want {
		parts[p] = true
	}
	for p := range got {
		parts[p] = true
	}
	for p := range parts {
		w, g := want[p], got[p]
		if len(w) > 0 && w[0].Offset >= 0 {
			sort.SliceStable(w, func(i, j int) bool { return w[i].Offset < w[j].Offset })
		}
		if len(w) != len(g) {
			t.Errorf("partition %d: consumed %d records, produced %d", p, len(g), len(w))
		}
		bad := 0
		for i := range min(len(w), len(g)) {
			ok := bytes.Equal(w[i].Key, g[i].Key) && bytes.Equal(w[i].Value, g[i].Value) &&
				(!checkHeaders || sameHeaders(w[i].Headers, g[i].Headers)) &&
				g[i].Offset == int64(i) && (w[i].Offset < 0 || w[i].Offset == g[i].Offset)
			if !ok {
				bad++
				if bad <= 5 {
					t.Errorf("partition %d, record %d:\n produced %v\n consumed %v", p, i, w[i], g[i])
					if checkHeaders && !sameHeaders(w[i].Headers, g[i].Headers) {
						t.Errorf("  headers produced %q, consumed %q", w[i].Headers, g[i].Headers)
					}
				}
			}
		}
		if bad > 5 {
			t.Errorf("partition %d: %d records differ in all", p, bad)
		}
	}
}

// testContext returns a context that ends with the test or after d.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// createTopic creates topic on the broker at addr with franz-go's admin
// client and fails the test on error.
func createTopic(t testing.TB, addr, topic string, partitions int32) {
	t.Helper()
	createTopicWith(t, addr, topic, partitions, nil)
}

// createTopicWith is createTopic with topic configs.
func createTopicWith(t testing.TB, addr, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %q: %v", topic, err)
	}
}

// consumeKgo reads n records of topic from the start of every partition
// with franz-go (no group) and returns them in the order received.
func consumeKgo(t *testing.T, addr, topic string, n int) []record {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testContext(t, 30*time.Second)
	var out []record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before timeout", len(out), n)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Errorf("fetch %s/%d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) { out = append(out, fromKgo(r)) })
	}
	return out
}

func fromKgo(r *kgo.Record) record {
	out := record{Key: r.Key, Value: r.Value, Partition: r.Partition, Offset: r.Offset}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, header{Key: h.Key, Value: h.Value})
	}
	return out
}
