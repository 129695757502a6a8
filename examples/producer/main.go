// Command producer is an example service that turns HTTP requests into
// events with the weir SDK producer, and loses none of them on shutdown.
//
//	WEIR_BROKERS=127.0.0.1:9092 WEIR_TOPIC=orders go run ./examples/producer
//	EVENTHUB_CONNECTION_STRING='Endpoint=sb://...;EntityPath=orders' go run ./examples/producer
//
//	curl -d '{"order":1}' -H 'Key: customer-42' localhost:8080/events
//	curl localhost:8080/metrics
//
// POST /events sends the body as one event (the Key header, if any, is its
// key) and answers 202 once it is buffered; the event's fate is logged if
// it fails, and counted in /metrics. On SIGTERM or SIGINT the service stops
// taking requests, then closes the producer: every buffered event is
// delivered, or logged as returned, before the process exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weirhq/weir"
)

// shutdownTimeout bounds the flush on SIGTERM; Kubernetes' default grace
// period is 30s.
const shutdownTimeout = 25 * time.Second

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		logger.Error("listen", "err", err)
		os.Exit(1)
	}
	if err := run(ctx, ln, os.Getenv, logger); err != nil {
		logger.Error("producer service", "err", err)
		os.Exit(1)
	}
}

// run serves on ln until ctx ends, then shuts down gracefully.
func run(ctx context.Context, ln net.Listener, getenv func(string) string, logger *slog.Logger) error {
	opts := []weir.ProducerOpt{weir.Logger(logger)}
	if cs := getenv("EVENTHUB_CONNECTION_STRING"); cs != "" {
		opts = append(opts, weir.ConnectionString(cs))
	} else {
		opts = append(opts, weir.Brokers(getenv("WEIR_BROKERS")))
	}
	if t := getenv("WEIR_TOPIC"); t != "" {
		opts = append(opts, weir.Topic(t))
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	p, err := weir.NewProducer(startCtx, opts...)
	cancel()
	if err != nil {
		return fmt.Errorf("start producer: %w", err) // typed: errors.Is(err, weir.ErrUnknownTopic), ...
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(p.Collector())
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /events", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		ev := weir.Event{Value: body}
		if k := r.Header.Get("Key"); k != "" {
			ev.Key = []byte(k)
		}
		// r.Context() bounds only the wait for buffer room: a client that
		// goes away while the buffer is full stops waiting, and its event
		// is not sent. Once buffered, the event no longer depends on it;
		// Close flushes it at shutdown.
		p.SendAsync(r.Context(), ev, func(res weir.Result) {
			if res.Err != nil {
				logger.Warn("event returned", "err", res.Err)
			}
		})
		w.WriteHeader(http.StatusAccepted)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("serving", "addr", ln.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-served:
		p.Close(context.Background())
		return err
	}
	logger.Info("shutting down: no new requests, flushing buffered events")
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		logger.Warn("http shutdown", "err", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("http serve", "err", err)
	}
	err = p.Close(shutCtx)
	s := p.Stats()
	logger.Info("producer closed", "sent", s.Sent, "acknowledged", s.Acknowledged, "returned", s.Failed)
	return err
}
