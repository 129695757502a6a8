package broker

import (
	"bytes"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestBufPoolSizes(t *testing.T) {
	for _, n := range []int{1, 4095, 4096, 4097, 100_000, 1 << 20, 16 << 20, 16<<20 + 1} {
		b := getBuf(n)
		if len(b) != n {
			t.Fatalf("getBuf(%d): len %d", n, len(b))
		}
		putBuf(b)
		b = getBuf(n)
		if len(b) != n || cap(b) < n {
			t.Fatalf("getBuf(%d) after putBuf: len %d cap %d", n, len(b), cap(b))
		}
	}
	putBuf(nil)
}

// A connection reading frames of a steady size allocates nothing per frame
// once the pool is warm.
func TestReadFrameAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under -race and -cover")
	}
	for _, n := range []int{16 << 10, 2 << 20} {
		data := make([]byte, n)
		r := bytes.NewReader(data)
		allocs := testing.AllocsPerRun(100, func() {
			r.Reset(data)
			frame, err := readFrame(r, n)
			if err != nil {
				t.Fatal(err)
			}
			putBuf(frame)
		})
		if allocs > 0 {
			t.Errorf("readFrame of %d bytes: %v allocations per frame, want 0", n, allocs)
		}
	}
}

// Encoding a large fetch response reuses a pooled buffer: no allocation
// per response once the pool is warm.
func TestEncodeFetchResponseAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under -race and -cover")
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 12
	rt := kmsg.NewFetchResponseTopic()
	rt.Topic = "t"
	for i := range int32(4) {
		p := kmsg.NewFetchResponseTopicPartition()
		p.Partition = i
		p.RecordBatches = make([]byte, 512<<10)
		rt.Partitions = append(rt.Partitions, p)
	}
	resp.Topics = append(resp.Topics, rt)
	var buf []byte
	allocs := testing.AllocsPerRun(50, func() {
		buf = encodeResponse(buf, 1, resp)
		buf = keepResponseBuf(buf)
	})
	if allocs > 0 {
		t.Errorf("encoding a 2 MiB fetch response: %v allocations, want 0", allocs)
	}
}

// The per-request allocations of a produce (decoded request, response,
// bookkeeping) stay bounded; the frame and the records cost none.
func TestProduceFrameAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under -race and -cover")
	}
	f := newFrameProducer(t, "allocs", nil)
	allocs := testing.AllocsPerRun(100, func() { f.produce(t) })
	const want = 10 // 8 measured with kmsg v1.15.1 and SyncNever
	if allocs > want {
		t.Errorf("produce of one small batch: %v allocations, want at most %d", allocs, want)
	}
}
