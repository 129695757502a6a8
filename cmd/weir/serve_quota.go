package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/quota"
)

// quotaFlags are serve's throughput-unit flags.
type quotaFlags struct {
	units       *int
	maxUnits    *int
	window      *time.Duration
	scaleDown   *bool
	quietPeriod *time.Duration
	topics      topicUnitsFlag
}

func addQuotaFlags(fs *flag.FlagSet) *quotaFlags {
	q := &quotaFlags{topics: topicUnitsFlag{}}
	q.units = fs.Int("throughput-units", 0, "broker-wide throughput `units` (1 TU = 1 MiB/s or 1000 events/s in, 2 MiB/s or 4096 events/s out); 0 = unlimited")
	q.maxUnits = fs.Int("auto-inflate-max-units", 0, "turn auto-inflate on: raise TUs while throttling persists, up to this many `units` (0 = off)")
	q.window = fs.Duration("auto-inflate-window", quota.DefaultWindow, "how long throttling must persist before auto-inflate adds a TU")
	q.scaleDown = fs.Bool("auto-inflate-scale-down", false, "let auto-inflate lower TUs again after a quiet period (never below --throughput-units)")
	q.quietPeriod = fs.Duration("auto-inflate-quiet-period", quota.DefaultQuietPeriod, "quiet period before auto-inflate scales down one TU")
	fs.Var(q.topics, "topic-throughput-units", "cap one topic: `topic=units` (repeatable)")
	return q
}

// config returns the quota config of the flags. Settings changed at runtime
// with 'weir tu set' are kept in the data dir and override these.
func (q *quotaFlags) config() (quota.Config, error) {
	c := quota.Config{
		ThroughputUnits:     *q.units,
		AutoInflate:         *q.maxUnits > 0,
		AutoInflateMaxUnits: *q.maxUnits,
		Window:              *q.window,
		ScaleDown:           *q.scaleDown,
		QuietPeriod:         *q.quietPeriod,
		TopicUnits:          map[string]int(q.topics),
	}
	if *q.window <= 0 || *q.quietPeriod <= 0 {
		return c, errors.New("--auto-inflate-window and --auto-inflate-quiet-period must be positive")
	}
	// Defaults stay zero, so 'weir tu show' reports them as defaults.
	if c.Window == quota.DefaultWindow {
		c.Window = 0
	}
	if c.QuietPeriod == quota.DefaultQuietPeriod {
		c.QuietPeriod = 0
	}
	if c.AutoInflate && c.ThroughputUnits == 0 {
		return c, errors.New("--auto-inflate-max-units needs --throughput-units > 0 to start from")
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// topicUnitsFlag collects repeated --topic-throughput-units topic=N flags.
type topicUnitsFlag map[string]int

func (f topicUnitsFlag) String() string {
	var parts []string
	for t, u := range f {
		parts = append(parts, t+"="+strconv.Itoa(u))
	}
	return strings.Join(parts, ",")
}

func (f topicUnitsFlag) Set(s string) error {
	t, v, ok := strings.Cut(s, "=")
	u, err := strconv.Atoi(v)
	if !ok || t == "" || err != nil || u < 0 {
		return fmt.Errorf("want topic=units with units >= 0, got %q", s)
	}
	f[t] = u
	return nil
}

// newMetricsRegistry returns the registry serve gives the broker, with the
// Go runtime and process metrics added.
func newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// serveMetrics serves b's metrics on http://addr/metrics until the returned
// stop is called.
func serveMetrics(addr string, b *broker.Broker, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("weir: metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", b.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("weir: metrics server failed", "err", err)
		}
	}()
	logger.Info("weir metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-done
	}, nil
}
