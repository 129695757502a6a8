package weir_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// throttleProxy sits in front of a weir broker (which advertises the
// proxy's address, so every client connection goes through it) and plays
// an overloaded hub on the produce responses passing back: every
// throttleEvery-th gets a KIP-219 throttle_time_ms, every delayEvery-th is
// held back, and every dropEvery-th is never delivered: the connection is
// cut after the broker stored the batch.
type throttleProxy struct {
	ln                                   net.Listener
	target                               string
	throttleEvery, delayEvery, dropEvery int64
	throttle                             time.Duration

	produces, throttled, delayed, dropped atomic.Int64

	wg sync.WaitGroup
	mu struct {
		sync.Mutex
		conns []net.Conn
	}
}

func newThrottleProxy(t *testing.T) *throttleProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &throttleProxy{ln: ln}
	t.Cleanup(p.close)
	return p
}

func (p *throttleProxy) addr() string { return p.ln.Addr().String() }

type reqKey struct{ key, version int16 }

func (p *throttleProxy) serve(target string) {
	p.target = target
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.mu.conns = append(p.mu.conns, c, s)
			p.mu.Unlock()
			var reqs sync.Map // correlation id -> reqKey
			p.wg.Add(2)
			go func() { // client -> broker: remember what each request is
				defer p.wg.Done()
				defer s.Close()
				proxyFrames(c, s, func(frame []byte) ([]byte, bool) {
					if len(frame) >= 8 {
						reqs.Store(int32(binary.BigEndian.Uint32(frame[4:])), reqKey{
							int16(binary.BigEndian.Uint16(frame)), int16(binary.BigEndian.Uint16(frame[2:]))})
					}
					return frame, true
				})
			}()
			go func() { // broker -> client: mistreat produce responses
				defer p.wg.Done()
				defer c.Close()
				proxyFrames(s, c, func(frame []byte) ([]byte, bool) {
					if len(frame) < 4 {
						return frame, true
					}
					v, ok := reqs.LoadAndDelete(int32(binary.BigEndian.Uint32(frame)))
					if !ok || v.(reqKey).key != int16(kmsg.Produce) {
						return frame, true
					}
					n := p.produces.Add(1)
					switch {
					case n%p.dropEvery == 0:
						p.dropped.Add(1)
						return nil, false
					case n%p.delayEvery == 0:
						p.delayed.Add(1)
						time.Sleep(time.Duration(10+n%40) * time.Millisecond)
					case n%p.throttleEvery == 0:
						if out, ok := withThrottle(frame, v.(reqKey).version, p.throttle); ok {
							p.throttled.Add(1)
							return out, true
						}
					}
					return frame, true
				})
			}()
		}
	}()
}

// withThrottle re-encodes a produce response frame (correlation id, header
// tags if flexible, body) with throttle_time_ms set.
func withThrottle(frame []byte, version int16, d time.Duration) ([]byte, bool) {
	resp := kmsg.NewPtrProduceResponse()
	resp.SetVersion(version)
	hdr := 4
	if resp.IsFlexible() {
		if len(frame) < 5 || frame[4] != 0 { // tagged fields we would have to keep
			return nil, false
		}
		hdr = 5
	}
	if err := resp.ReadFrom(frame[hdr:]); err != nil {
		return nil, false
	}
	resp.ThrottleMillis = int32(d / time.Millisecond)
	return resp.AppendTo(append([]byte(nil), frame[:hdr]...)), true
}

// proxyFrames copies size-prefixed frames from src to dst, each passed
// through edit; it returns when either side fails or edit says stop.
func proxyFrames(src io.Reader, dst io.Writer, edit func(frame []byte) ([]byte, bool)) {
	var size [4]byte
	for {
		if _, err := io.ReadFull(src, size[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(size[:])
		if n > 64<<20 {
			return
		}
		frame := make([]byte, n)
		if _, err := io.ReadFull(src, frame); err != nil {
			return
		}
		out, ok := edit(frame)
		if !ok {
			return
		}
		binary.BigEndian.PutUint32(size[:], uint32(len(out)))
		if _, err := dst.Write(append(size[:], out...)); err != nil {
			return
		}
	}
}

func (p *throttleProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.mu.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestProducerBurstIntoThrottlingWeir is the burst test against weir
// itself: 200k events through a proxy that throttles (KIP-219), delays and
// loses produce responses. Lost responses are of batches weir stored: the
// idempotent retries must not store them twice.
func TestProducerBurstIntoThrottlingWeir(t *testing.T) {
	if testing.Short() {
		t.Skip("200k events; skipped with -short")
	}
	leakCheck(t)
	const topic, events = "burst", 200_000
	px := newThrottleProxy(t)
	px.throttleEvery, px.delayEvery, px.dropEvery, px.throttle = 3, 7, 29, 30*time.Millisecond
	b := weirtest.Start(t, func(c *broker.Config) { c.AdvertisedAddr = px.addr(); c.DefaultPartitions = 6 })
	px.serve(b.Addr())

	ctx := testCtx(t, 3*time.Minute)
	p, err := weir.NewProducer(ctx, weir.Brokers(px.addr()), weir.Topic(topic), weir.AllowAutoTopicCreation(),
		weir.RetryBackoff(10*time.Millisecond, 200*time.Millisecond), weir.MaxBuffered(5_000, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	o := newOutcomes()
	start := time.Now()
	for i := range events {
		v := fmt.Sprintf("burst-%07d", i)
		p.SendAsync(ctx, weir.Event{Value: []byte(v)}, o.callback(v))
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	elapsed := time.Since(start)
	ok, failed, multiple := o.counts()
	s := p.Stats()
	t.Logf("%d events in %v: %d acknowledged, %d returned; proxy: %d produce responses, %d throttled, %d delayed, %d lost; producer: %d throttled (%v), %d requests retried",
		events, elapsed.Round(time.Millisecond), ok, failed, px.produces.Load(), px.throttled.Load(), px.delayed.Load(),
		px.dropped.Load(), s.Throttled, s.ThrottleTime, s.Retried)
	if ok+failed != events || multiple != 0 {
		t.Fatalf("%d acknowledged + %d returned != %d sent, or %d events had two outcomes", ok, failed, events, multiple)
	}
	if px.throttled.Load() == 0 || px.dropped.Load() == 0 || s.Throttled == 0 {
		t.Errorf("not throttled enough to test anything: proxy %d throttled %d lost, producer saw %d throttles",
			px.throttled.Load(), px.dropped.Load(), s.Throttled)
	}
	for v, err := range o.failed {
		t.Errorf("%s returned: %v", v, err)
		break
	}
	stored := readBack(t, ctx, b.Addr(), topic)
	var missing, extra, dups int
	for v, r := range o.ok {
		if at, found := stored[v]; !found || at.Partition != r.Partition || at.Offset != r.Offset {
			missing++
		}
	}
	for v, at := range stored {
		if _, acked := o.ok[v]; !acked {
			extra++
		}
		dups += at.Count - 1
	}
	if missing+extra+dups > 0 {
		t.Errorf("read back %d events: %d acknowledged ones missing or misplaced, %d not acknowledged, %d duplicates", len(stored), missing, extra, dups)
	}
}
