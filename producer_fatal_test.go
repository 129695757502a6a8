package weir_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// fatalBound is the requirement: misconfiguration is reported
// within 5 s, not after a retry storm. It is a generous bound, not a speed
// measurement.
const fatalBound = 5 * time.Second

// saslCluster is a one-broker kfake cluster with topic "t" that requires a
// SASL PLAIN login; the superuser is admin, password secret.
func saslCluster(t *testing.T, more ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	return kfakeCluster(t, append([]kfake.Opt{kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "admin", "secret"), kfake.SeedTopics(1, "t")}, more...)...)
}

func TestProducerFatalMisconfigurationIsFast(t *testing.T) {
	leakCheck(t)
	noAuto := weirtest.Start(t, func(c *broker.Config) { c.DisableAutoCreateTopics = true })
	sasl := saslCluster(t)

	cases := []struct {
		name string
		opts []weir.ProducerOpt
		want error
	}{
		{"unknown topic, auto-create off", []weir.ProducerOpt{weir.Brokers(noAuto.Addr()), weir.Topic("nope")}, weir.ErrUnknownTopic},
		{"unknown topic, asked to create but broker will not", []weir.ProducerOpt{weir.Brokers(noAuto.Addr()), weir.Topic("nope"), weir.AllowAutoTopicCreation()}, weir.ErrUnknownTopic},
		{"bad password", []weir.ProducerOpt{weir.Brokers(sasl.ListenAddrs()...), weir.Topic("t"), weir.SASLPlain("admin", "wrong")}, weir.ErrAuthentication},
		{"bad connection string", []weir.ProducerOpt{weir.ConnectionString("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=k")}, weir.ErrInvalidConfig},
		{"no brokers", []weir.ProducerOpt{weir.Topic("t")}, weir.ErrInvalidConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The context is far longer than the bound: the error must come
			// from classification, not from the context ending.
			ctx := testCtx(t, time.Minute)
			start := time.Now()
			p, err := weir.NewProducer(ctx, tc.opts...)
			took := time.Since(start)
			if err == nil {
				p.Close(ctx)
				t.Fatal("NewProducer succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want errors.Is %v", err, tc.want)
			}
			if took > fatalBound {
				t.Errorf("took %v, want under %v", took, fatalBound)
			}
			t.Logf("%v after %v", err, took.Round(time.Millisecond))
		})
	}
}

// A topic deleted while the producer runs fails its events with
// ErrUnknownTopic within the bound, not after DeliveryTimeout.
func TestProducerTopicDeletedWhileRunning(t *testing.T) {
	leakCheck(t)
	b := weirtest.Start(t, func(c *broker.Config) { c.DisableAutoCreateTopics = true })
	ctx := testCtx(t, time.Minute)
	if _, err := b.Log().CreateTopic("gone", 1, nil); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, ctx, weir.Brokers(b.Addr()), weir.Topic("gone"))
	if _, err := p.Send(ctx, weir.Event{Value: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Log().DeleteTopic("gone"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var err error
	for err == nil && time.Since(start) < time.Minute {
		_, err = p.Send(ctx, weir.Event{Value: []byte("after")})
	}
	if !errors.Is(err, weir.ErrUnknownTopic) {
		t.Fatalf("send after delete: %v, want ErrUnknownTopic", err)
	}
	if took := time.Since(start); took > fatalBound {
		t.Errorf("took %v, want under %v", took, fatalBound)
	}

}

// The same SASL broker with the right password works: the refusal above
// is about the credentials, not about SASL.
func TestProducerSASLPlainLogin(t *testing.T) {
	leakCheck(t)
	c := saslCluster(t)
	ctx := testCtx(t, 30*time.Second)
	p := newProducer(t, ctx, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"), weir.SASLPlain("admin", "secret"))
	r, err := p.Send(ctx, weir.Event{Value: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	if r.Offset != 0 {
		t.Errorf("first event at offset %d, want 0", r.Offset)
	}
}

// Credentials that are valid but not allowed to write: NewProducer fails
// when the user may not even see the topic, and Send fails at once when
// the user may see it but not write to it. Both are ErrAuthorization.
func TestProducerNotAuthorizedIsFast(t *testing.T) {
	leakCheck(t)
	describeOnly := kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "t", Pattern: kmsg.ACLResourcePatternTypeLiteral,
		Operation: kmsg.ACLOperationDescribe, Allow: true}
	c := saslCluster(t, kfake.EnableACLs(), kfake.User("PLAIN", "nobody", "pw"), kfake.User("PLAIN", "reader", "pw", describeOnly))
	ctx := testCtx(t, time.Minute)

	start := time.Now()
	_, err := weir.NewProducer(ctx, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"), weir.SASLPlain("nobody", "pw"))
	if !errors.Is(err, weir.ErrAuthorization) {
		t.Errorf("NewProducer as a user with no ACLs: %v, want ErrAuthorization", err)
	}
	if took := time.Since(start); took > fatalBound {
		t.Errorf("NewProducer took %v", took)
	}

	p := newProducer(t, ctx, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"), weir.SASLPlain("reader", "pw"))
	start = time.Now()
	_, err = p.Send(ctx, weir.Event{Value: []byte("denied")})
	if !errors.Is(err, weir.ErrAuthorization) {
		t.Errorf("Send as a user who may only describe: %v, want ErrAuthorization", err)
	}
	if took := time.Since(start); took > fatalBound {
		t.Errorf("Send took %v", took)
	}
	t.Logf("send: %v", err)
}

// revocableListener wraps a kfake listener: once revoked, every connection
// is cut, and new ones are closed when they start the SASL login, the way
// kfake answers a wrong password.
type revocableListener struct {
	net.Listener
	revoked *atomic.Bool
	mu      sync.Mutex
	conns   []net.Conn
}

func (l *revocableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns = append(l.conns, c)
	l.mu.Unlock()
	return &revocableConn{Conn: c, revoked: l.revoked}, nil
}

func (l *revocableListener) revoke() {
	l.revoked.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// revocableConn hands the broker whole request frames, and ends the
// connection at a SASL request while revoked.
type revocableConn struct {
	net.Conn
	revoked *atomic.Bool
	buf     []byte
}

func (c *revocableConn) Read(p []byte) (int, error) {
	if len(c.buf) == 0 {
		var size [4]byte
		if _, err := io.ReadFull(c.Conn, size[:]); err != nil {
			return 0, err
		}
		frame := make([]byte, 4+binary.BigEndian.Uint32(size[:]))
		copy(frame, size[:])
		if _, err := io.ReadFull(c.Conn, frame[4:]); err != nil {
			return 0, err
		}
		if len(frame) >= 6 && c.revoked.Load() {
			if key := kmsg.Key(binary.BigEndian.Uint16(frame[4:])); key == kmsg.SASLHandshake || key == kmsg.SASLAuthenticate {
				c.Conn.Close()
				return 0, io.EOF
			}
		}
		c.buf = frame
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// Credentials revoked while the producer runs: events come back with
// ErrAuthentication within the bound, not after the delivery timeout; when
// logins work again, so do sends.
func TestProducerLoginRefusedWhileRunning(t *testing.T) {
	leakCheck(t)
	var revoked atomic.Bool
	var ln *revocableListener
	c := saslCluster(t, kfake.ListenFn(func(network, addr string) (net.Listener, error) {
		l, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		ln = &revocableListener{Listener: l, revoked: &revoked}
		return ln, nil
	}))
	ctx := testCtx(t, time.Minute)
	p := newProducer(t, ctx, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"), weir.SASLPlain("admin", "secret"))
	if _, err := p.Send(ctx, weir.Event{Value: []byte("before")}); err != nil {
		t.Fatal(err)
	}

	ln.revoke()
	start := time.Now()
	_, err := p.Send(ctx, weir.Event{Value: []byte("while refused")})
	took := time.Since(start)
	if !errors.Is(err, weir.ErrAuthentication) {
		t.Fatalf("Send while logins are refused: %v, want ErrAuthentication", err)
	}
	if took > fatalBound {
		t.Errorf("took %v, want under %v", took, fatalBound)
	}
	t.Logf("%v after %v", err, took.Round(time.Millisecond))

	revoked.Store(false)
	var r weir.Result
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if r, err = p.Send(ctx, weir.Event{Value: []byte("after")}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("Send once logins work again: %v", err)
	}
	if r.Offset != 1 {
		t.Errorf("offset %d after recovery, want 1 (nothing refused was stored)", r.Offset)
	}
}
