// Command processor is a minimal weir processor: it spreads a topic's
// partitions over every running copy of itself (same group), prints each
// event, checkpoints progress, and serves Prometheus metrics and a readiness
// probe.
//
//	WEIR_BROKERS=localhost:9092 WEIR_TOPIC=orders WEIR_GROUP=billing POD_NAME=pod-0 go run ./examples/processor
//
// Start several copies with different POD_NAMEs: the partitions spread over
// them, and move without loss or duplicates when one stops (Ctrl-C) or
// joins. Events that fail five times go to orders.dlq.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir"
)

func main() {
	if err := run(); err != nil {
		slog.Error("processor", "err", err)
		os.Exit(1)
	}
}

func run() error {
	topic := env("WEIR_TOPIC", "orders")
	opts := []weir.ProcessorOpt{
		weir.Brokers(strings.Split(env("WEIR_BROKERS", "localhost:9092"), ",")...),
		weir.Topic(topic),
		weir.Group(env("WEIR_GROUP", "billing")),
		weir.CheckpointEvery(1000, 5*time.Second),
		weir.Concurrency(8), // same key in order, different keys in parallel
		weir.HandlerRetries(5, 100*time.Millisecond, 5*time.Second),
		weir.DeadLetterTopic(topic + ".dlq"),
	}
	if os.Getenv("POD_NAME") != "" {
		opts = append(opts, weir.InstanceIDFromEnv("POD_NAME")) // static membership: restarts do not rebalance
	}
	p, err := weir.NewProcessor(opts...)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(p.Collector())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-p.Ready():
			fmt.Fprintln(w, "ready")
		default:
			http.Error(w, "joining the group", http.StatusServiceUnavailable)
		}
	})
	srv := &http.Server{Addr: env("METRICS_ADDR", "localhost:9464"), Handler: mux}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics server", "err", err)
		}
	}()
	defer srv.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Run returns nil on Ctrl-C / SIGTERM, after draining and checkpointing,
	// and a *weir.Error on misconfiguration (unknown topic, bad credentials,
	// refused group).
	return p.Run(ctx, weir.HandlerFunc(func(ctx context.Context, e *kgo.Record) error {
		fmt.Printf("partition %d offset %d key %s: %s\n", e.Partition, e.Offset, e.Key, e.Value)
		return nil
	}))
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
