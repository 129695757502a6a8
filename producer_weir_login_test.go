package weir_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/internal/testcert"
	"github.com/weirhq/weir/weirtest"
)

// An app configured for Event Hubs works against weir by changing only the
// endpoint: weir.ConnectionString logs in as "$ConnectionString" over TLS
// (here trusting the test CA), sends, and the events are stored; a wrong
// key is ErrAuthentication, fast.
func TestProducerConnectionStringAgainstWeir(t *testing.T) {
	leakCheck(t)
	certs := testcert.New(t)
	const keyName, key = "RootManageSharedAccessKey", "bXktbmFtZXNwYWNlLWtleQ=="
	b := weirtest.Start(t, func(c *broker.Config) {
		c.TLS = certs.Server
		c.SASL.SASKeys = map[string]string{keyName: key}
	})
	connString := func(key string) string {
		return fmt.Sprintf("Endpoint=sb://%s/;SharedAccessKeyName=%s;SharedAccessKey=%s;EntityPath=orders", b.Addr(), keyName, key)
	}
	ctx := testCtx(t, time.Minute)

	p := newProducer(t, ctx, weir.ConnectionString(connString(key)), weir.TLS(certs.Client), weir.AllowAutoTopicCreation())
	for i := range 5 {
		if _, err := p.Send(ctx, weir.Event{Value: []byte(fmt.Sprint("order-", i))}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	recs := weirtest.ReadAll(ctx, t, b.Addr(), "orders", kgo.DialTLSConfig(certs.Client.Clone()),
		kgo.SASL(plain.Auth{User: "$ConnectionString", Pass: connString(key)}.AsMechanism()))
	var got []string
	for _, r := range recs[0] {
		got = append(got, string(r.Value))
	}
	if want := "order-0 order-1 order-2 order-3 order-4"; strings.Join(got, " ") != want {
		t.Fatalf("stored %q, want %q", got, want)
	}

	start := time.Now()
	bad, err := weir.NewProducer(ctx, weir.ConnectionString(connString("d3Jvbmcga2V5")), weir.TLS(certs.Client))
	if err == nil {
		bad.Close(context.Background())
		t.Fatal("NewProducer with a wrong key succeeded")
	}
	if !errors.Is(err, weir.ErrAuthentication) {
		t.Fatalf("wrong key: %v, want ErrAuthentication", err)
	}
	if strings.Contains(err.Error(), "d3Jvbmcga2V5") {
		t.Errorf("error echoes the key: %v", err)
	}
	if took := time.Since(start); took > fatalBound {
		t.Errorf("wrong key took %v, want under %v", took, fatalBound)
	}
}

// The processor logs in the same way: it reads what was sent with a
// connection string, in a group, and a wrong key fails Run fast with
// ErrAuthentication, without leaking over repeated tries.
func TestProcessorConnectionStringAgainstWeir(t *testing.T) {
	certs := testcert.New(t)
	const keyName, key = "Listen", "cHJvY2Vzc29yLWtleQ=="
	b := weirtest.Start(t, func(c *broker.Config) {
		c.TLS = certs.Server
		c.SASL.SASKeys = map[string]string{keyName: key}
		c.GroupInitialRebalanceDelay = -1
	})
	connString := func(key string) string {
		return fmt.Sprintf("Endpoint=sb://%s/;SharedAccessKeyName=%s;SharedAccessKey=%s;EntityPath=payments", b.Addr(), keyName, key)
	}
	ctx := testCtx(t, time.Minute)
	p := newProducer(t, ctx, weir.ConnectionString(connString(key)), weir.TLS(certs.Client), weir.AllowAutoTopicCreation())
	for i := range 3 {
		if _, err := p.Send(ctx, weir.Event{Value: []byte(fmt.Sprint("pay-", i))}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}

	got := make(chan string, 3)
	in := startInstance(t, "a", weir.HandlerFunc(func(_ context.Context, e *kgo.Record) error {
		got <- string(e.Value)
		return nil
	}), weir.ConnectionString(connString(key)), weir.TLS(certs.Client), weir.Group("billing"),
		weir.Logger(quietLogger()), fastGroup())
	for i := range 3 {
		select {
		case v := <-got:
			if want := fmt.Sprint("pay-", i); v != want {
				t.Fatalf("processed %q, want %q", v, want)
			}
		case <-ctx.Done():
			t.Fatalf("processed %d of 3 events", i)
		}
	}
	in.stop(t)

	checkFailsFastWithoutLeaks(t, []weir.ProcessorOpt{weir.ConnectionString(connString("d3Jvbmc=")), weir.TLS(certs.Client),
		weir.Group("billing"), weir.Logger(quietLogger()), fastGroup()}, weir.ErrAuthentication, 50)
}
