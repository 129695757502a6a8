// Package weirtest starts an embedded weir broker for tests.
//
// It is the way to run weir inside your own Go tests, the way franz-go's
// kfake is used: the broker runs in-process, listens on a random port of
// 127.0.0.1, keeps its log in a temporary directory, and is closed when the
// test ends. Any Kafka client can connect to Broker.Addr():
//
//	func TestOrders(t *testing.T) {
//		b := weirtest.Start(t)
//		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.AllowAutoTopicCreation())
//		if err != nil {
//			t.Fatal(err)
//		}
//		defer cl.Close()
//		// produce and consume as against any Kafka cluster
//	}
//
// Options adjust the broker.Config before the broker starts:
//
//	b := weirtest.Start(t, func(c *broker.Config) { c.DefaultPartitions = 4 })
//
// ReadAll reads back what a topic holds, and Metrics what the broker's
// metrics page shows. StartProxied puts the broker behind a proxy that can
// hold back, change or lose its responses, to test how a client copes.
package weirtest

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/weirhq/weir/broker"
)

// Start starts an embedded broker on 127.0.0.1:0 with its data in
// tb.TempDir(). The broker is closed by tb.Cleanup; an error while starting
// or closing fails the test. Options run in order on the config after the
// defaults are set, so they may override Addr and DataDir too.
//
// Logs are discarded unless an option sets Config.Logger.
func Start(tb testing.TB, opts ...func(*broker.Config)) *broker.Broker {
	tb.Helper()
	cfg := broker.Config{
		Addr:    "127.0.0.1:0",
		DataDir: tb.TempDir(),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	b, err := broker.Start(cfg)
	if err != nil {
		tb.Fatalf("weirtest: start broker: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("weirtest: close broker: %v", err)
		}
	})
	return b
}

// Logger returns an option that sends the broker's logs to tb.Log, which
// helps when a test fails. Records logged after the test ends are dropped.
func Logger(tb testing.TB, level slog.Level) func(*broker.Config) {
	return func(c *broker.Config) {
		c.Logger = slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: level}))
	}
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	defer func() { _ = recover() }() // tb.Log panics once the test has completed
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
