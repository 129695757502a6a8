package weir

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const testKey = "c2VjcmV0LWtleS1kby1ub3QtbGVhaw=="

func TestParseConnectionString(t *testing.T) {
	full := "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + testKey + ";EntityPath=orders"
	cases := []struct {
		name, in     string
		broker, path string
		missing      string // "" means valid unless reason is set
		reason       bool
	}{
		{name: "full", in: full, broker: "ns.servicebus.windows.net:9093", path: "orders"},
		{name: "no entity path", in: "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + testKey, broker: "ns.servicebus.windows.net:9093"},
		{name: "keys in any case, spaces, trailing ;", in: " endpoint=sb://ns.example.net:19093/ ; sharedaccesskeyname=send; SHAREDACCESSKEY=" + testKey + ";", broker: "ns.example.net:19093"},
		{name: "missing endpoint", in: "SharedAccessKeyName=send;SharedAccessKey=" + testKey, missing: "Endpoint"},
		{name: "missing key name", in: "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=" + testKey, missing: "SharedAccessKeyName"},
		{name: "missing key", in: "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send", missing: "SharedAccessKey"},
		{name: "empty key", in: "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=", missing: "SharedAccessKey"},
		{name: "empty", in: "  ", reason: true},
		{name: "part without =", in: "Endpoint=sb://ns/;" + strings.TrimRight(testKey, "="), reason: true},
		{name: "endpoint not a URL", in: "Endpoint=ns.servicebus.windows.net;SharedAccessKeyName=send;SharedAccessKey=" + testKey, reason: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConnectionString(tc.in)
			if tc.missing == "" && !tc.reason {
				if err != nil {
					t.Fatal(err)
				}
				if c.Broker != tc.broker || c.EntityPath != tc.path {
					t.Errorf("got broker %q path %q, want %q %q", c.Broker, c.EntityPath, tc.broker, tc.path)
				}
				return
			}
			var cse *ConnectionStringError
			if !errors.As(err, &cse) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err %v: want a *ConnectionStringError matching ErrInvalidConfig", err)
			}
			if cse.Missing != tc.missing {
				t.Errorf("Missing = %q, want %q", cse.Missing, tc.missing)
			}
			if tc.missing != "" && !strings.Contains(err.Error(), tc.missing) {
				t.Errorf("error %q does not name %s", err, tc.missing)
			}
			if strings.Contains(err.Error(), testKey[:13]) {
				t.Errorf("error %q echoes the key", err)
			}
		})
	}
}

func TestProducerOptionsValidate(t *testing.T) {
	base := []ProducerOpt{Brokers("127.0.0.1:9092"), Topic("t")}
	cases := []struct {
		name   string
		opts   []ProducerOpt
		option string // "" means valid
	}{
		{"defaults", nil, ""},
		{"everything set", []ProducerOpt{MaxRetries(5), RetryBackoff(time.Millisecond, time.Second), TryTimeout(time.Second),
			DeliveryTimeout(time.Minute), MaxBuffered(10, 2<<20), Linger(0), NonBlocking(), DisableIdempotence(), AllowAutoTopicCreation()}, ""},
		{"negative retries", []ProducerOpt{MaxRetries(-1)}, "MaxRetries"},
		{"backoff first > max", []ProducerOpt{RetryBackoff(time.Second, time.Millisecond)}, "RetryBackoff"},
		{"zero backoff", []ProducerOpt{RetryBackoff(0, time.Second)}, "RetryBackoff"},
		{"tiny try timeout", []ProducerOpt{TryTimeout(time.Millisecond)}, "TryTimeout"},
		{"delivery < try", []ProducerOpt{TryTimeout(time.Minute), DeliveryTimeout(time.Second)}, "DeliveryTimeout"},
		{"smallest timeouts", []ProducerOpt{TryTimeout(200 * time.Millisecond), DeliveryTimeout(time.Second)}, ""},
		{"try timeout below franz-go's minimum", []ProducerOpt{TryTimeout(150 * time.Millisecond)}, "TryTimeout"},
		{"try timeout over franz-go's maximum", []ProducerOpt{TryTimeout(31 * time.Minute), DeliveryTimeout(time.Hour)}, "TryTimeout"},
		{"delivery under a second", []ProducerOpt{TryTimeout(200 * time.Millisecond), DeliveryTimeout(500 * time.Millisecond)}, "DeliveryTimeout"},
		{"no buffer", []ProducerOpt{MaxBuffered(0, 64<<20)}, "MaxBuffered"},
		{"buffer below an event", []ProducerOpt{MaxBuffered(10, 1000)}, "MaxBuffered"},
		{"negative linger", []ProducerOpt{Linger(-1)}, "Linger"},
		{"no topic", []ProducerOpt{Topic("")}, "Topic"},
		{"bad broker", []ProducerOpt{Brokers("localhost")}, "Brokers"},
		{"both brokers and connection string", []ProducerOpt{ConnectionString("Endpoint=sb://ns/;SharedAccessKeyName=a;SharedAccessKey=b")}, "Brokers"},
		{"half SASL", []ProducerOpt{SASLPlain("user", "")}, "SASLPlain"},
		{"nil logger", []ProducerOpt{Logger(nil)}, "Logger"},
		{"zero dial timeout", []ProducerOpt{DialTimeout(0)}, "DialTimeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultProducerConfig()
			for _, o := range append(append([]ProducerOpt(nil), base...), tc.opts...) {
				o.applyProducer(&cfg)
			}
			err := cfg.validate()
			if tc.option == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := kgo.NewClient(cfg.kgoOpts()...); err != nil {
					t.Fatalf("kgo rejects the mapped options: %v", err)
				}
				return
			}
			var ce *configError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidConfig) || ce.option != tc.option {
				t.Fatalf("err %v, want a config error for %s", err, tc.option)
			}
		})
	}
}

func TestConnectionStringImpliesTopicAndLogin(t *testing.T) {
	cfg := defaultProducerConfig()
	ConnectionString("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b;EntityPath=hub").applyProducer(&cfg)
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.client.topic != "hub" || !cfg.client.usesSASL() {
		t.Errorf("topic %q, SASL %v: want the EntityPath and a SASL login", cfg.client.topic, cfg.client.usesSASL())
	}
}

func TestClassification(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	cases := []struct {
		name      string
		err       error
		kind      error // fatal sentinel, or nil
		retryable bool
	}{
		{"leader moved", kerr.NotLeaderForPartition, nil, true},
		{"not enough replicas", kerr.NotEnoughReplicas, nil, true},
		{"coordinator moved", kerr.NotCoordinator, nil, true},
		{"busy", kerr.ThrottlingQuotaExceeded, nil, true},
		{"timed out", kerr.RequestTimedOut, nil, true},
		{"connection reset", io.EOF, nil, true},
		{"connection refused", refused, nil, true},
		{"unknown topic", fmt.Errorf("produce: %w", kerr.UnknownTopicOrPartition), ErrUnknownTopic, false},
		{"bad login", kerr.SaslAuthenticationFailed, ErrAuthentication, false},
		{"bad certificate", x509.UnknownAuthorityError{}, ErrAuthentication, false},
		{"topic denied", kerr.TopicAuthorizationFailed, ErrAuthorization, false},
		{"too large", fmt.Errorf("%w (uncompressed_bytes=9)", kerr.MessageTooLarge), ErrEventTooLarge, false},
		{"bad config", &configError{"Topic", "x"}, ErrInvalidConfig, false},
		{"caller's context", context.Canceled, nil, false},
		{"closed", ErrClosed, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := fatalKind(tc.err); got != tc.kind {
				t.Errorf("fatalKind = %v, want %v", got, tc.kind)
			}
			if got := retryable(tc.err); got != tc.retryable {
				t.Errorf("retryable = %v, want %v", got, tc.retryable)
			}
			f := fatal(tc.err, "t")
			if (f != nil) != (tc.kind != nil) {
				t.Fatalf("fatal = %v", f)
			}
			if f != nil && (!errors.Is(f, tc.kind) || !errors.Is(f, tc.err)) {
				t.Errorf("fatal(%v) = %v: want it to match both %v and the cause", tc.err, f, tc.kind)
			}
		})
	}
}

func TestSendErrorMapping(t *testing.T) {
	p := &Producer{topic: "t"}
	cases := []struct {
		err  error
		want error
	}{
		{kgo.ErrMaxBuffered, ErrBufferFull},
		{fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, kerr.NotLeaderForPartition), ErrDeliveryTimeout},
		{kgo.ErrRecordRetries, ErrDeliveryTimeout},
		{kgo.ErrClientClosed, ErrClosed},
		{kerr.TopicAuthorizationFailed, ErrAuthorization},
		{context.DeadlineExceeded, context.DeadlineExceeded},
	}
	for _, tc := range cases {
		got := p.sendError(tc.err)
		if !errors.Is(got, tc.want) || !errors.Is(got, tc.err) {
			t.Errorf("sendError(%v) = %v: want it to match %v and the cause", tc.err, got, tc.want)
		}
	}
}

func TestBackoffIsExponentialWithJitter(t *testing.T) {
	first, max := 100*time.Millisecond, time.Second
	b := backoff(first, max)
	for tries, base := range map[int]time.Duration{1: first, 2: 2 * first, 3: 4 * first, 4: 8 * first, 5: max, 50: max} {
		lo, hi := base-base/5, base+base/5
		seen := map[time.Duration]bool{}
		for range 200 {
			d := b(tries)
			if d < lo || d > hi {
				t.Fatalf("try %d: %v outside [%v, %v]", tries, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("try %d: only %d distinct delays in 200: no jitter", tries, len(seen))
		}
	}
}
