package broker

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// rawConn is a bare client connection for sending hand-made frames.
type rawConn struct {
	t    *testing.T
	c    net.Conn
	corr int32
}

func dialRaw(t *testing.T, b *Broker) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, c: c}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// frame returns req as a size-prefixed request frame.
func frameOf(req kmsg.Request, corr int32) []byte {
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw")).AppendRequest(nil, req, corr)
}

// roundTrip sends req and decodes the response into its response type.
func (r *rawConn) roundTrip(req kmsg.Request) kmsg.Response {
	r.t.Helper()
	r.corr++
	r.write(frameOf(req, r.corr))
	resp := req.ResponseKind()
	body := r.readFrame()
	rd := kbin.Reader{Src: body}
	if corr := rd.Int32(); corr != r.corr {
		r.t.Fatalf("correlation id %d, want %d", corr, r.corr)
	}
	if resp.IsFlexible() && resp.Key() != apiKeyApiVersions {
		kmsg.SkipTags(&rd)
	}
	if err := resp.ReadFrom(rd.Src); err != nil {
		r.t.Fatalf("decode response (key %d v%d): %v", req.Key(), req.GetVersion(), err)
	}
	return resp
}

func (r *rawConn) readFrame() []byte {
	r.t.Helper()
	var size [4]byte
	if _, err := io.ReadFull(r.c, size[:]); err != nil {
		r.t.Fatalf("read response size: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(r.c, body); err != nil {
		r.t.Fatalf("read response: %v", err)
	}
	return body
}

// expectClosed asserts that the broker closes the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for {
		_, err := r.c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.t.Fatalf("connection still open")
		}
		return
	}
}

// recordBatch builds a valid uncompressed RecordBatch v2 with the values.
func recordBatch(values ...string) []byte {
	var recs []byte
	for i, v := range values {
		var body []byte
		body = append(body, 0)                     // attributes
		body = binary.AppendVarint(body, 0)        // timestamp delta
		body = binary.AppendVarint(body, int64(i)) // offset delta
		body = binary.AppendVarint(body, -1)       // null key
		body = binary.AppendVarint(body, int64(len(v)))
		body = append(body, v...)
		body = binary.AppendVarint(body, 0) // no headers
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	now := time.Now().UnixMilli()
	b := make([]byte, 0, 61+len(recs))
	b = binary.BigEndian.AppendUint64(b, 0)                     // base offset
	b = binary.BigEndian.AppendUint32(b, 0)                     // batch length, below
	b = binary.BigEndian.AppendUint32(b, 0xffffffff)            // partition leader epoch
	b = append(b, 2)                                            // magic
	b = binary.BigEndian.AppendUint32(b, 0)                     // crc, below
	b = binary.BigEndian.AppendUint16(b, 0)                     // attributes
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)-1)) // last offset delta
	b = binary.BigEndian.AppendUint64(b, uint64(now))
	b = binary.BigEndian.AppendUint64(b, uint64(now))
	b = binary.BigEndian.AppendUint64(b, ^uint64(0)) // producer id -1
	b = binary.BigEndian.AppendUint16(b, 0xffff)     // producer epoch -1
	b = binary.BigEndian.AppendUint32(b, 0xffffffff) // base sequence -1
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)))
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func produceReq(topic string, partition int32, records []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = 7
	req.Acks = -1
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = records
	rt.Partitions = []kmsg.ProduceRequestTopicPartition{rp}
	req.Topics = []kmsg.ProduceRequestTopic{rt}
	return req
}

// produceEach is a produce request of one batch of value to each of
// partitions 0 to n-1 of topic.
func produceEach(topic string, n int32, value string) *kmsg.ProduceRequest {
	req := produceReq(topic, 0, recordBatch(value))
	for i := int32(1); i < n; i++ {
		rp := req.Topics[0].Partitions[0]
		rp.Partition, rp.Records = i, recordBatch(value)
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
	}
	return req
}

// topicWithBatches creates topic with the given number of partitions and
// appends n batches of values to its partition 0.
func topicWithBatches(tb testing.TB, b *Broker, topic string, partitions int32, n int, values ...string) {
	tb.Helper()
	if _, err := b.Log().CreateTopic(topic, partitions, nil); err != nil {
		tb.Fatal(err)
	}
	p, err := b.partition(topic, 0)
	if err != nil {
		tb.Fatal(err)
	}
	for range n {
		if _, err := p.Append(recordBatch(values...)); err != nil {
			tb.Fatal(err)
		}
	}
}

func produceCode(t *testing.T, r *rawConn, req *kmsg.ProduceRequest) int16 {
	t.Helper()
	resp := r.roundTrip(req).(*kmsg.ProduceResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce response shape: %+v", resp)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

// TestBadInput sends malformed and hostile requests, and checks after each
// that the broker still serves a normal client and earlier data is intact.
func TestBadInput(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.MaxRequestBytes = 1 << 20; c.DisableAutoCreateTopics = true })
	adm := newAdmin(t, b)
	createTopic(t, adm, "safe", 2, nil)
	cl := newClient(t, b, kgo.DefaultProduceTopic("safe"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl.ProduceSync(testCtx(t), kgo.StringRecord("before")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	stillServing := func(t *testing.T) {
		t.Helper()
		got := consume(t, b, "safe", 1)
		if string(got[0].Value) != "before" || got[0].Offset != 0 {
			t.Fatalf("earlier data changed: %q at %d", got[0].Value, got[0].Offset)
		}
		end, err := adm.ListEndOffsets(testCtx(t), "safe")
		if o, _ := end.Lookup("safe", 0); err != nil || o.Offset != 1 {
			t.Fatalf("end offset %d (%v), want 1", o.Offset, err)
		}
	}
	be32 := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

	closes := []struct {
		name  string
		bytes []byte
	}{
		{"truncated frame", append(be32(100), 0, 18, 0)},
		{"short header", append(be32(3), 0, 18, 0)},
		{"garbage", append(be32(16), 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)},
		{"negative size", be32(0xfffffff0)},
		{"over MaxRequestBytes", be32(2 << 20)},
		{"unknown api key", append(be32(10), 0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0)},
		{"unsupported produce version", append(be32(10), 0, 0, 0, 99, 0, 0, 0, 1, 0xff, 0xff)},
		{"bad produce body", append(be32(12), 0, 0, 0, 7, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0x7f)},
		// A tag section that declares 2^32-1 tags and then ends. Decoders
		// that loop over the declared count (kmsg before v1.15.1) kept the
		// reader busy for tens of seconds on these few bytes.
		{"huge tag count in the header", append(be32(15), 0, 12, 0, 4, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f)},
		{"huge tag count in a body", append(be32(25), 0, 12, 0, 4, 0, 0, 0, 1, 0xff, 0xff, 0,
			2, 'g', 0, 0, 0, 1, 2, 'm', 0, 0xff, 0xff, 0xff, 0xff, 0x0f)},
	}
	for _, tc := range closes {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, b)
			r.write(tc.bytes)
			if tc.name == "truncated frame" {
				r.c.(*net.TCPConn).CloseWrite()
			}
			r.expectClosed()
			stillServing(t)
		})
	}

	t.Run("ApiVersions v999", func(t *testing.T) {
		r := dialRaw(t, b)
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 999
		// Header v2 for a flexible version: key, version, corr, client id, tags.
		var f []byte
		f = binary.BigEndian.AppendUint16(f, 18)
		f = binary.BigEndian.AppendUint16(f, 999)
		f = binary.BigEndian.AppendUint32(f, 7)
		f = append(f, 0xff, 0xff, 0) // null client id, no tags
		f = append(f, 1, 1, 0)       // empty compact strings and tags
		r.write(append(be32(uint32(len(f))), f...))
		body := r.readFrame()
		rd := kbin.Reader{Src: body}
		if corr := rd.Int32(); corr != 7 {
			t.Fatalf("corr %d", corr)
		}
		resp := kmsg.NewPtrApiVersionsResponse() // version 0 body
		if err := resp.ReadFrom(rd.Src); err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode != kerr.UnsupportedVersion.Code {
			t.Fatalf("error code %d, want UNSUPPORTED_VERSION", resp.ErrorCode)
		}
		found := false
		for _, k := range resp.ApiKeys {
			if k.ApiKey == 0 && k.MinVersion == 3 && k.MaxVersion >= 7 {
				found = true
			}
		}
		if !found {
			t.Fatalf("produce not listed in %+v", resp.ApiKeys)
		}
		// The connection stays usable.
		v := kmsg.NewPtrApiVersionsRequest()
		v.Version = 3
		if got := r.roundTrip(v).(*kmsg.ApiVersionsResponse); got.ErrorCode != 0 || len(got.ApiKeys) == 0 {
			t.Fatalf("ApiVersions v3 after v999: %+v", got)
		}
	})

	t.Run("bad batches", func(t *testing.T) {
		r := dialRaw(t, b)
		good := recordBatch("a", "b")
		badCRC := recordBatch("a", "b")
		badCRC[len(badCRC)-1] ^= 0xff
		badMagic := recordBatch("a")
		badMagic[16] = 1
		lying := recordBatch("a", "b")
		binary.BigEndian.PutUint32(lying[8:], uint32(len(lying)+100))
		for _, tc := range []struct {
			name    string
			records []byte
			want    *kerr.Error
		}{
			{"wrong crc", badCRC, kerr.CorruptMessage},
			{"wrong magic", badMagic, kerr.UnsupportedForMessageFormat},
			{"lying length", lying, kerr.CorruptMessage},
		} {
			if code := produceCode(t, r, produceReq("safe", 0, tc.records)); code != tc.want.Code {
				t.Errorf("%s: code %v, want %v", tc.name, kerr.ErrorForCode(code), tc.want)
			}
		}
		if code := produceCode(t, r, produceReq("nope", 0, good)); code != kerr.UnknownTopicOrPartition.Code {
			t.Errorf("unknown topic: %v", kerr.ErrorForCode(code))
		}
		if code := produceCode(t, r, produceReq("safe", 7, good)); code != kerr.UnknownTopicOrPartition.Code {
			t.Errorf("partition out of range: %v", kerr.ErrorForCode(code))
		}
		bad := produceReq("safe", 1, good)
		bad.Acks = 2
		if code := produceCode(t, r, bad); code != kerr.InvalidRequiredAcks.Code {
			t.Errorf("acks=2: %v", kerr.ErrorForCode(code))
		}
		tx := produceReq("safe", 1, good)
		tx.TransactionID = ptrTo("tx")
		if code := produceCode(t, r, tx); code != errTransactionsUnsupported {
			t.Errorf("transactional produce: %v", kerr.ErrorForCode(code))
		}
		ip := kmsg.NewPtrInitProducerIDRequest()
		ip.Version = 4
		ip.TransactionalID = ptrTo("tx")
		if got := r.roundTrip(ip).(*kmsg.InitProducerIDResponse); got.ErrorCode != errTransactionsUnsupported {
			t.Errorf("transactional InitProducerID: %v", kerr.ErrorForCode(got.ErrorCode))
		}
		// A good batch on the same connection still lands, in partition 1.
		if code := produceCode(t, r, produceReq("safe", 1, good)); code != 0 {
			t.Fatalf("good batch: %v", kerr.ErrorForCode(code))
		}
		stillServing(t)
	})
}

// TestAcksZeroFailureClosesConnection: an acks=0 produce that fails gets no
// response, but the connection is closed so the producer notices.
func TestAcksZeroFailureClosesConnection(t *testing.T) {
	b := startBroker(t, func(c *Config) {
		c.DisableAutoCreateTopics = true
		c.Sync = storage.SyncNever // visible at once: no wait for the flusher
	})
	createTopic(t, newAdmin(t, b), "z", 1, nil)
	r := dialRaw(t, b)
	ok := produceReq("z", 0, recordBatch("fine"))
	ok.Acks = 0
	r.write(frameOf(ok, 1))
	v := kmsg.NewPtrApiVersionsRequest()
	r.roundTrip(v) // the connection is still up after a good acks=0 produce
	bad := produceReq("z", 0, []byte("not a batch"))
	bad.Acks = 0
	r.write(frameOf(bad, 9))
	r.expectClosed()
	if hw := mustPartition(t, b, "z", 0).HighWatermark(); hw != 1 {
		t.Fatalf("high watermark %d, want 1", hw)
	}
}

// TestPipelining sends many requests before reading any response: answers
// come back in order, and acks=0 produces get none.
func TestPipelining(t *testing.T) {
	b := startBroker(t, nil)
	createTopic(t, newAdmin(t, b), "pipe", 1, nil)
	r := dialRaw(t, b)
	const n = 100
	var out []byte
	for i := range n {
		req := produceReq("pipe", 0, recordBatch("x"))
		if i%10 == 5 {
			req.Acks = 0
		}
		out = append(out, frameOf(req, int32(i))...)
	}
	go r.c.Write(out) // the broker reads while we read, so no deadlock on full buffers
	var offsets []int64
	for i := range n {
		if i%10 == 5 {
			continue
		}
		body := r.readFrame()
		rd := kbin.Reader{Src: body}
		if corr := rd.Int32(); corr != int32(i) {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
		resp := kmsg.NewPtrProduceResponse()
		resp.Version = 7
		if err := resp.ReadFrom(rd.Src); err != nil {
			t.Fatal(err)
		}
		offsets = append(offsets, resp.Topics[0].Partitions[0].BaseOffset)
	}
	for i := 1; i < len(offsets); i++ {
		if offsets[i] <= offsets[i-1] {
			t.Fatalf("base offsets out of request order: %v", offsets)
		}
	}
	if hw := mustPartition(t, b, "pipe", 0).HighWatermark(); hw != n {
		t.Fatalf("high watermark %d, want %d", hw, n)
	}
}

// TestFetchLongPoll: a fetch waiting for MinBytes returns when data arrives.
func TestFetchLongPoll(t *testing.T) {
	b := startBroker(t, nil)
	createTopic(t, newAdmin(t, b), "poll", 1, nil)
	r := dialRaw(t, b)
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.MaxWaitMillis = 15000
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.SessionEpoch = -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "poll"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = []kmsg.FetchRequestTopicPartition{fp}
	req.Topics = []kmsg.FetchRequestTopic{ft}
	done := make(chan *kmsg.FetchResponse, 1)
	go func() { done <- r.roundTrip(req).(*kmsg.FetchResponse) }()
	time.Sleep(100 * time.Millisecond) // let the fetch start waiting
	cl := newClient(t, b, kgo.DefaultProduceTopic("poll"))
	if err := cl.ProduceSync(testCtx(t), kgo.StringRecord("wake")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-done:
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || len(p.RecordBatches) == 0 || p.HighWatermark != 1 {
			t.Fatalf("fetch: code %d, %d bytes, hw %d", p.ErrorCode, len(p.RecordBatches), p.HighWatermark)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("long poll not woken by a produce")
	}

	// Out of range offset.
	req.Topics[0].Partitions[0].FetchOffset = 50
	resp := r.roundTrip(req).(*kmsg.FetchResponse)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.OffsetOutOfRange.Code {
		t.Fatalf("fetch at 50: %v, want OFFSET_OUT_OF_RANGE", kerr.ErrorForCode(code))
	}

	// At the high watermark, with no wait: empty records, never null
	// (librdkafka rejects a null record set).
	req.Topics[0].Partitions[0].FetchOffset = 1
	req.MaxWaitMillis = 0
	resp = r.roundTrip(req).(*kmsg.FetchResponse)
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.RecordBatches == nil || len(p.RecordBatches) != 0 {
		t.Fatalf("fetch at the high watermark: code %d, records %v (nil: %v)", p.ErrorCode, p.RecordBatches, p.RecordBatches == nil)
	}
}

func mustPartition(t *testing.T, b *Broker, topic string, p int32) interface{ HighWatermark() int64 } {
	t.Helper()
	part, err := b.partition(topic, p)
	if err != nil {
		t.Fatal(err)
	}
	return part
}
