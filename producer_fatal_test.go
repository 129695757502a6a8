package weir_test

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// fatalBound is the requirement: misconfiguration is reported
// within 5 s, not after a retry storm. It is a generous bound, not a speed
// measurement.
const fatalBound = 5 * time.Second

func TestProducerFatalMisconfigurationIsFast(t *testing.T) {
	leakCheck(t)
	noAuto := weirtest.Start(t, func(c *broker.Config) { c.DisableAutoCreateTopics = true })
	sasl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "admin", "secret"), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sasl.Close)

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
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "admin", "secret"), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
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
