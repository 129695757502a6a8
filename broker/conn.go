package broker

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxInFlight bounds the requests of one connection that have been read but
// not yet answered. The reader blocks when this many are queued.
const maxInFlight = 32

// conn is one client connection. It has exactly two goroutines: readLoop
// reads frames, parses them and runs the immediate part of each handler;
// writeLoop runs the deferred parts and writes responses in request order.
type conn struct {
	b      *Broker
	nc     net.Conn
	remote string
	logger *slog.Logger

	ctx    context.Context // cancelled when either goroutine stops or the broker closes
	cancel context.CancelFunc

	queue      chan pending  // reader -> writer, closed by the reader when it stops
	writerDone chan struct{} // closed when writeLoop returns

	// holdUntil (unix nanoseconds) is when the reader may read the next
	// request: throughput-unit throttling (KIP-219). Set by either goroutine.
	holdUntil atomic.Int64

	// login is the SASL login state (sasl.go), nil on a broker without
	// SASL. Only the reader goroutine touches it.
	login *login
}

// pending is a parsed request waiting for its response to be written.
type pending struct {
	corr  int32
	key   int16     // API key, for latency metrics
	start time.Time // when the request was read
	reply reply
	// frame is the request's pooled frame buffer, returned to the pool
	// once the request is answered; nil if the request may still alias
	// it afterwards (see framePoolable).
	frame []byte
}

// release runs the reply's done hook, once its response is encoded.
func (p *pending) release() {
	if p.reply.done != nil {
		p.reply.done()
	}
}

// framePoolable reports whether a request of this API key holds on to
// nothing in its frame once it is answered. kmsg decodes byte fields (a
// produce's records, a join's protocol metadata) as slices of the frame;
// produce and fetch, the hot path, keep none of them: storage copies the
// records into the segment file, and strings are copied when decoded.
func framePoolable(key int16) bool { return key == 0 || key == 1 }

// reply is what a handler returns: a response ready now, a deferred step
// that the writer runs in request order (waits belong there), or nothing at
// all (acks=0 produce).
type reply struct {
	resp  kmsg.Response
	later func(ctx context.Context) kmsg.Response
	none  bool
	// hangUp closes the connection once earlier responses are written
	// (how Kafka tells an acks=0 producer that a produce failed).
	hangUp bool
	// throttle holds back the connection's next reads (throughput units).
	// A deferred step may instead put it in its response's throttle_time_ms.
	throttle time.Duration
	// done, if set, runs once the response has been encoded (or dropped):
	// the handler's pooled buffers that the response pointed into go back.
	done func()
	// rawToken answers a SASL v0 raw token with an empty token instead of
	// a response (sasl.go).
	rawToken bool
}

func now(resp kmsg.Response) reply { return reply{resp: resp} }

func deferred(f func(ctx context.Context) kmsg.Response) reply { return reply{later: f} }

func newConn(b *Broker, nc net.Conn) *conn {
	c := &conn{
		b:          b,
		nc:         nc,
		remote:     nc.RemoteAddr().String(),
		queue:      make(chan pending, maxInFlight),
		writerDone: make(chan struct{}),
	}
	c.logger = b.logger.With("remote", c.remote)
	if b.cfg.SASL.enabled() {
		c.login = &login{}
	}
	c.ctx, c.cancel = context.WithCancel(context.WithValue(b.ctx, remoteKey{}, c.remote))
	return c
}

// errCloseConn is wrapped by every request error that closes the connection.
var errCloseConn = errors.New("weir: closing connection")

// frameError says why a connection is being closed.
type frameError struct {
	Reason string
	Key    int16
	Ver    int16
	Err    error
}

func (e *frameError) Error() string {
	s := fmt.Sprintf("weir: closing connection: %s (api key %d, version %d)", e.Reason, e.Key, e.Ver)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *frameError) Unwrap() []error { return []error{errCloseConn, e.Err} }

// readLoop reads size-prefixed frames until the connection fails, a frame is
// bad, or the broker closes.
func (c *conn) readLoop() {
	defer c.b.wg.Done()
	defer close(c.queue)
	defer c.cancel() // a peer that stopped sending gets no more long polls
	defer c.recoverPanic("reader")

	if tc, ok := c.nc.(*tls.Conn); ok && !c.tlsHandshake(tc) {
		return
	}
	var size [4]byte
	max := c.b.cfg.MaxRequestBytes
	for {
		if !c.waitBeforeRead() {
			return
		}
		if _, err := io.ReadFull(c.nc, size[:]); err != nil {
			c.debugClose("read", err)
			return
		}
		n := int32(binary.BigEndian.Uint32(size[:]))
		if n < 0 || n > max {
			c.logger.Debug("weir: closing connection: bad frame size", "size", n, "max", max)
			c.nc.Close()
			return
		}
		frame, err := readFrame(c.nc, int(n))
		if err != nil {
			c.debugClose("read", err)
			return
		}
		// Again: a fetch's throttle is set by the writer, possibly while
		// this goroutine was already waiting for the next request.
		if !c.waitBeforeRead() {
			return
		}
		start := time.Now()
		var p pending
		closeAfter := false
		if c.login == nil {
			p, err = c.b.handleFrame(c.ctx, frame)
		} else {
			p, closeAfter, err = c.handleLoginFrame(frame)
		}
		if err != nil {
			c.logger.Debug("weir: bad request", "err", err)
			c.nc.Close()
			return
		}
		p.start = start
		if framePoolable(p.key) {
			p.frame = frame
		}
		c.holdReads(p.reply.throttle)
		select {
		case c.queue <- p:
		case <-c.writerDone:
			return
		}
		if closeAfter {
			return // the writer writes p, then closes the connection
		}
	}
}

// tlsHandshakeTimeout bounds a new connection's TLS handshake.
const tlsHandshakeTimeout = 10 * time.Second

// tlsHandshake runs the TLS handshake of a new connection, so that a failed
// one is logged as such. It closes only this connection.
func (c *conn) tlsHandshake(tc *tls.Conn) bool {
	ctx, cancel := context.WithTimeout(c.ctx, tlsHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		if c.ctx.Err() == nil {
			c.logger.Debug("weir: TLS handshake failed", "err", err)
		}
		c.nc.Close()
		return false
	}
	return true
}

// readFrame reads an n-byte frame into a pooled buffer. Large frames grow
// their buffer as bytes arrive, unless the pool has one free, so a size
// prefix alone cannot make the broker allocate MaxRequestBytes.
func readFrame(r io.Reader, n int) ([]byte, error) {
	const chunk = 1 << 20
	var frame []byte
	if n <= chunk {
		frame = getBuf(n)
	} else {
		frame = pooledBuf(n)
	}
	if frame != nil {
		_, err := io.ReadFull(r, frame)
		return frame, err
	}
	// Double the buffer as bytes arrive; every step is a pooled size, so
	// the final buffer goes back to the pool for the next large frame.
	frame = getBuf(chunk)
	have := 0
	for {
		m, err := io.ReadFull(r, frame[have:])
		have += m
		if err != nil {
			putBuf(frame)
			return nil, err
		}
		if have == n {
			return frame, nil
		}
		next := getBuf(min(2*len(frame), n))
		copy(next, frame[:have])
		putBuf(frame)
		frame = next
	}
}

// waitBeforeRead is the single place where reading a connection's next
// request can be delayed (throughput-unit throttling, KIP-219): it waits
// out the connection's hold, before reading a request and again before
// handling it. It returns false if the connection is closing.
func (c *conn) waitBeforeRead() bool {
	if d := time.Until(time.Unix(0, c.holdUntil.Load())); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
		}
	}
	return c.ctx.Err() == nil
}

// holdReads makes the reader wait d before reading the next request (or
// longer, if an earlier hold ends later).
func (c *conn) holdReads(d time.Duration) {
	if d <= 0 {
		return
	}
	until := time.Now().Add(d).UnixNano()
	for {
		old := c.holdUntil.Load()
		if old >= until || c.holdUntil.CompareAndSwap(old, until) {
			return
		}
	}
}

// writeLoop writes responses in request order, running deferred steps first.
func (c *conn) writeLoop() {
	defer c.b.wg.Done()
	defer c.b.forget(c)
	defer close(c.writerDone)
	defer c.nc.Close()
	defer c.cancel()
	defer c.recoverPanic("writer")

	w := bufio.NewWriterSize(c.nc, 64<<10)
	var buf []byte
	for p := range c.queue {
		if p.reply.hangUp {
			if err := w.Flush(); err != nil {
				c.debugClose("write", err)
			}
			c.logger.Debug("weir: closing connection after a failed acks=0 produce")
			return
		}
		if p.reply.none {
			putBuf(p.frame)
			continue
		}
		if p.reply.rawToken {
			if _, err := w.Write(emptyToken); err != nil {
				c.debugClose("write", err)
				return
			}
			if err := w.Flush(); err != nil { // the client waits for it
				c.debugClose("write", err)
				return
			}
			continue
		}
		resp := p.reply.resp
		if p.reply.later != nil {
			resp = p.reply.later(c.ctx)
			if tr, ok := resp.(kmsg.ThrottleResponse); ok && p.reply.throttle == 0 {
				ms, _ := tr.Throttle() // a fetch over its throughput units
				c.holdReads(time.Duration(ms) * time.Millisecond)
			}
		}
		putBuf(p.frame) // the request is done with; resp aliases none of it
		if resp == nil {
			p.release()
			continue
		}
		c.b.metrics.observeLatency(p.key, time.Since(p.start))
		buf = encodeResponse(buf, p.corr, resp)
		p.release()
		if _, err := w.Write(buf); err != nil {
			c.debugClose("write", err)
			return
		}
		buf = keepResponseBuf(buf)
		if len(c.queue) == 0 {
			if err := w.Flush(); err != nil {
				c.debugClose("write", err)
				return
			}
		}
	}
	if err := w.Flush(); err != nil {
		c.debugClose("write", err)
	}
}

// encodeResponse encodes the size-prefixed frame of resp into buf, or
// into a pooled buffer big enough for it if buf is not.
func encodeResponse(buf []byte, corr int32, resp kmsg.Response) []byte {
	if hint := responseSizeHint(resp); hint > cap(buf) {
		putBuf(buf)
		buf = getBuf(hint)
	}
	return appendResponse(buf[:0], corr, resp)
}

// keepResponseBuf returns the buffer a connection keeps for its next
// response once buf is written: buf itself, unless it is large, which goes
// back to the pool rather than stay pinned to this connection.
func keepResponseBuf(buf []byte) []byte {
	if cap(buf) > 1<<20 {
		putBuf(buf)
		return nil
	}
	return buf
}

// responseSizeHint is about the encoded size of resp when it carries
// record bytes (a fetch), so that the response is encoded into one pooled
// buffer instead of growing through appends; 0 for other responses.
func responseSizeHint(resp kmsg.Response) int {
	fr, ok := resp.(*kmsg.FetchResponse)
	if !ok {
		return 0
	}
	n := 64
	for i := range fr.Topics {
		t := &fr.Topics[i]
		n += 64 + len(t.Topic)
		for j := range t.Partitions {
			n += 128 + len(t.Partitions[j].RecordBatches)
		}
	}
	return n
}

// appendResponse appends the size-prefixed frame of resp to dst.
func appendResponse(dst []byte, corr int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(corr))
	// Response header v1 (flexible) has a tag section, except for
	// ApiVersions whose response header is always v0 (KIP-511).
	if resp.IsFlexible() && resp.Key() != apiKeyApiVersions {
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

func (c *conn) debugClose(op string, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || c.ctx.Err() != nil {
		return
	}
	c.logger.Debug("weir: connection "+op+" failed", "err", err)
}

// recoverPanic is the last resort: a bug in a handler closes this
// connection only.
func (c *conn) recoverPanic(who string) {
	if r := recover(); r != nil {
		c.logger.Error("weir: panic serving connection; closing it", "goroutine", who,
			"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		c.nc.Close()
	}
}
