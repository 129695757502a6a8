package broker

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// frameProducer hands a broker, in process and without sockets, an
// acks=1 produce request of one small batch to partition 0 of a topic.
type frameProducer struct {
	br         *Broker
	frame, buf []byte // the request frame without its size; buf to hand over
}

// newFrameProducer starts a broker that never fsyncs (to measure the broker,
// not the disk), with mod applied after that, and creates topic with one
// partition.
func newFrameProducer(tb testing.TB, topic string, mod func(*Config)) *frameProducer {
	tb.Helper()
	br := startBroker(tb, func(c *Config) {
		c.Sync = storage.SyncNever
		if mod != nil {
			mod(c)
		}
	})
	if _, err := br.Log().CreateTopic(topic, 1, nil); err != nil {
		tb.Fatal(err)
	}
	req := produceReq(topic, 0, recordBatch("0123456789", "abcdefghij"))
	req.Acks = 1
	frame := frameOf(req, 1)[4:]
	return &frameProducer{br: br, frame: frame, buf: make([]byte, len(frame))}
}

// produce hands the broker the request once, and fails unless the batch was
// stored.
func (f *frameProducer) produce(tb testing.TB) {
	copy(f.buf, f.frame) // Append rewrites the batch in place
	p, err := f.br.handleFrame(context.Background(), f.buf)
	if err != nil {
		tb.Fatalf("produce: %v", err)
	}
	if code := p.reply.resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; code != 0 {
		tb.Fatalf("produce: error code %d", code)
	}
}

// benchProduceFrame measures parsing and appending the produce request of
// a frameProducer.
func benchProduceFrame(b *testing.B, mod func(*Config)) {
	f := newFrameProducer(b, "bench", mod)
	b.ReportAllocs()
	b.SetBytes(int64(len(f.frame)))
	for b.Loop() {
		f.produce(b)
	}
}

// BenchmarkProduceFrame measures parsing and appending one produce request
// (acks=1, one small batch) in process, without sockets.
func BenchmarkProduceFrame(b *testing.B) { benchProduceFrame(b, nil) }

// BenchmarkFetchFrame measures a fetch of ~100 small batches, in process.
func BenchmarkFetchFrame(b *testing.B) {
	br := startBroker(b, func(c *Config) { c.Sync = storage.SyncNever })
	topicWithBatches(b, br, "bench", 1, 100, "0123456789", "abcdefghij")
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12
	req.MaxBytes = 1 << 20
	req.SessionEpoch = -1
	req.Topics = []kmsg.FetchRequestTopic{{Topic: "bench", Partitions: []kmsg.FetchRequestTopicPartition{{PartitionMaxBytes: 1 << 20}}}}
	frame := frameOf(req, 1)[4:]
	ctx := context.Background()
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		pd, err := br.handleFrame(ctx, frame)
		if err != nil {
			b.Fatal(err)
		}
		out = appendResponse(out[:0], 1, pd.reply.later(ctx))
		pd.release()
	}
	b.SetBytes(int64(len(out)))
}

// BenchmarkReadFrame measures reading one request frame from a connection
// and releasing it once answered, as readLoop and writeLoop do.
func BenchmarkReadFrame(b *testing.B) {
	for _, n := range []int{16 << 10, 256 << 10, 2 << 20} {
		b.Run(strconv.Itoa(n>>10)+"KiB", func(b *testing.B) {
			data := make([]byte, n)
			r := bytes.NewReader(data)
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				r.Reset(data)
				frame, err := readFrame(r, n)
				if err != nil {
					b.Fatal(err)
				}
				putBuf(frame)
			}
		})
	}
}

// BenchmarkEncodeFetchResponse measures encoding a large fetch response
// (8 partitions of 1 MiB) for the socket, as writeLoop does.
func BenchmarkEncodeFetchResponse(b *testing.B) {
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 12
	t := kmsg.NewFetchResponseTopic()
	t.Topic = "bench"
	records := make([]byte, 1<<20)
	for i := range int32(8) {
		p := kmsg.NewFetchResponseTopicPartition()
		p.Partition = i
		p.RecordBatches = records
		t.Partitions = append(t.Partitions, p)
	}
	resp.Topics = append(resp.Topics, t)
	var buf []byte
	b.ReportAllocs()
	b.SetBytes(8 << 20)
	for b.Loop() {
		buf = encodeResponse(buf, 1, resp)
		buf = keepResponseBuf(buf)
	}
}
