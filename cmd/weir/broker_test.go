package main

import (
	"log/slog"
	"testing"

	"github.com/weirhq/weir/broker"
)

// startBroker starts an embedded weir broker on a random port with a temp
// data dir and returns its address; it is closed when the test ends.
func startBroker(t *testing.T) string {
	t.Helper()
	return startBrokerWith(t, nil)
}

// startBrokerWith is startBroker with mod applied to the config.
func startBrokerWith(t *testing.T, mod func(*broker.Config)) string {
	t.Helper()
	cfg := broker.Config{
		Addr:    "127.0.0.1:0",
		DataDir: t.TempDir(),
		Logger:  slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := broker.Start(cfg)
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return b.Addr()
}
