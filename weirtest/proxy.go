package weirtest

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/broker"
)

// Proxy is a TCP proxy in front of a broker, for tests of what a client
// does when responses are late, altered or lost. It passes whole Kafka
// frames and hands each response to an edit function on its way back to
// the client. Start one with StartProxied.
type Proxy struct {
	ln   net.Listener
	edit func(Response) ([]byte, bool)

	wg sync.WaitGroup
	mu struct {
		sync.Mutex
		conns []net.Conn
	}
}

// Response is a broker's response passing through a Proxy.
type Response struct {
	Key     kmsg.Key // the API of the request it answers
	Version int16    // the version of that request
	// Frame is the response without its size prefix: correlation ID,
	// header tags if the version is flexible, then the body.
	Frame []byte
}

// StartProxied starts a broker as Start does, behind a Proxy on another
// port of 127.0.0.1. The broker advertises the proxy's address (set after
// opts run), so every client connection, not only the first, goes through
// it: clients connect to Proxy.Addr(), while Broker.Addr() still reaches the
// broker directly. Both are closed by tb.Cleanup.
//
// edit sees every response and returns the frame to pass on, changed or
// not; returning false cuts the connection instead, after the broker acted
// on the request. It may sleep to hold a response back. It is called from
// one goroutine per connection, so it must be safe for concurrent use. A
// nil edit passes every response on unchanged. The proxy speaks plaintext
// Kafka frames only (no TLS).
func StartProxied(tb testing.TB, edit func(Response) ([]byte, bool), opts ...func(*broker.Config)) (*broker.Broker, *Proxy) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("weirtest: proxy listen: %v", err)
	}
	p := &Proxy{ln: ln, edit: edit}
	tb.Cleanup(p.close) // registered first, so it runs after the broker's
	b := Start(tb, append(opts, func(c *broker.Config) { c.AdvertisedAddr = p.Addr() })...)
	p.wg.Add(1)
	go p.serve(b.Addr())
	return b, p
}

// Addr is the proxy's address, for clients.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve(target string) {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.mu.conns = append(p.mu.conns, c, s)
		p.mu.Unlock()
		type request struct {
			key     kmsg.Key
			version int16
		}
		var reqs sync.Map // correlation ID -> request
		p.wg.Add(2)
		go func() { // client -> broker: remember what each request is
			defer p.wg.Done()
			defer s.Close()
			copyFrames(c, s, func(frame []byte) ([]byte, bool) {
				if len(frame) >= 8 {
					reqs.Store(int32(binary.BigEndian.Uint32(frame[4:])), request{
						kmsg.Key(binary.BigEndian.Uint16(frame)), int16(binary.BigEndian.Uint16(frame[2:]))})
				}
				return frame, true
			})
		}()
		go func() { // broker -> client: through edit
			defer p.wg.Done()
			defer c.Close()
			copyFrames(s, c, func(frame []byte) ([]byte, bool) {
				if len(frame) < 4 {
					return frame, true
				}
				v, ok := reqs.LoadAndDelete(int32(binary.BigEndian.Uint32(frame)))
				if !ok {
					return frame, true
				}
				r := v.(request)
				if p.edit == nil {
					return frame, true
				}
				return p.edit(Response{Key: r.key, Version: r.version, Frame: frame})
			})
		}()
	}
}

// copyFrames copies size-prefixed frames from src to dst, each passed
// through edit; it returns when either side fails or edit says stop.
func copyFrames(src io.Reader, dst io.Writer, edit func(frame []byte) ([]byte, bool)) {
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

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.mu.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
