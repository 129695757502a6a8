package tests

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// responseDropper is a TCP proxy in front of a broker that reads the Kafka
// frames in both directions and, for every dropEvery-th Produce response,
// closes both connections instead of forwarding it: the broker has written
// the batch, the client never hears so. The broker advertises the proxy's
// address, so every client connection goes through it.
type responseDropper struct {
	ln        net.Listener
	target    string
	dropEvery int64

	produces atomic.Int64 // produce responses seen
	dropped  atomic.Int64

	wg sync.WaitGroup
	mu struct {
		sync.Mutex
		conns []net.Conn
	}
}

func newResponseDropper(t *testing.T, dropEvery int64) *responseDropper {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &responseDropper{ln: ln, dropEvery: dropEvery}
	t.Cleanup(d.close)
	return d
}

func (d *responseDropper) serve(target string) {
	d.target = target
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := d.ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", d.target)
			if err != nil {
				c.Close()
				continue
			}
			d.mu.Lock()
			d.mu.conns = append(d.mu.conns, c, s)
			d.mu.Unlock()
			var keys sync.Map // correlation id -> api key
			d.wg.Add(2)
			go func() { // client -> broker
				defer d.wg.Done()
				defer s.Close()
				forwardFrames(c, s, func(frame []byte) bool {
					if len(frame) >= 8 {
						keys.Store(int32(binary.BigEndian.Uint32(frame[4:])), int16(binary.BigEndian.Uint16(frame)))
					}
					return true
				})
			}()
			go func() { // broker -> client
				defer d.wg.Done()
				defer c.Close()
				forwardFrames(s, c, func(frame []byte) bool {
					if len(frame) < 4 {
						return true
					}
					key, ok := keys.LoadAndDelete(int32(binary.BigEndian.Uint32(frame)))
					if !ok || key.(int16) != 0 {
						return true
					}
					if d.produces.Add(1)%d.dropEvery == 0 {
						d.dropped.Add(1)
						return false
					}
					return true
				})
			}()
		}
	}()
}

// forwardFrames copies size-prefixed frames from src to dst while pass
// says so; it returns when either side fails or pass returns false.
func forwardFrames(src io.Reader, dst io.Writer, pass func(frame []byte) bool) {
	var size [4]byte
	for {
		if _, err := io.ReadFull(src, size[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(size[:])
		if n > 64<<20 {
			return
		}
		frame := make([]byte, 4+n)
		copy(frame, size[:])
		if _, err := io.ReadFull(src, frame[4:]); err != nil {
			return
		}
		if !pass(frame[4:]) {
			return
		}
		if _, err := dst.Write(frame); err != nil {
			return
		}
	}
}

func (d *responseDropper) close() {
	d.ln.Close()
	d.mu.Lock()
	for _, c := range d.mu.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// TestIdempotentProducerLostResponses: the broker writes a batch but its
// answer is lost (the connection drops). franz-go's idempotent producer
// retries the batch with the same sequence numbers; weir answers with the
// original offsets and does not store it again. Every record ends up
// stored exactly once, at the offset its acknowledgement reported.
func TestIdempotentProducerLostResponses(t *testing.T) {
	proxy := newResponseDropper(t, 4)
	b := weirtest.Start(t, func(c *broker.Config) { c.AdvertisedAddr = proxy.ln.Addr().String() })
	proxy.serve(b.Addr())
	const topic, partitions, n = "idem", 3, 3000
	createTopic(t, b, topic, partitions)

	ctx := testContext(t, 60*time.Second)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(proxy.ln.Addr().String()),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	type ack struct {
		partition int32
		offset    int64
	}
	var mu sync.Mutex
	acked := map[string]ack{}
	var errs []error
	for i := range n {
		r := &kgo.Record{Value: fmt.Appendf(nil, "v-%06d", i)}
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			acked[string(r.Value)] = ack{r.Partition, r.Offset}
		})
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // several produce requests, not one
		}
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(errs) > 0 {
		t.Fatalf("%d records failed, first: %v", len(errs), errs[0])
	}
	if proxy.dropped.Load() == 0 {
		t.Fatalf("no produce response was dropped (%d seen): the test exercised nothing", proxy.produces.Load())
	}

	stored := readAll(t, b.Addr(), topic)
	total := 0
	seen := map[string]int{}
	for _, rs := range stored {
		for _, r := range rs {
			seen[string(r.Value)]++
			total++
		}
	}
	for v, c := range seen {
		if c > 1 {
			t.Errorf("record %s stored %d times", v, c)
		}
	}
	for v, a := range acked {
		rs := stored[a.partition]
		if a.offset < 0 || a.offset >= int64(len(rs)) || string(rs[a.offset].Value) != v {
			t.Errorf("acknowledged record %s is not at %d/%d", v, a.partition, a.offset)
		}
	}
	if len(acked) != n || total != n {
		t.Errorf("%d records produced, %d acknowledged, %d stored", n, len(acked), total)
	}
	t.Logf("%d produce responses, %d dropped after the broker wrote the batch", proxy.produces.Load(), proxy.dropped.Load())
}
