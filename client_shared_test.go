package weir_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// TestProcessorHandlerRetriesBackOff checks the waits between a failing
// event's handler calls: HandlerRetries' minimum, doubling up to its
// maximum, each at least 80% of that (±20% jitter). Only lower bounds are
// asserted: a busy machine makes waits longer, never shorter.
func TestProcessorHandlerRetriesBackOff(t *testing.T) {
	seeds := kfakeBroker(t, 1, "retries")
	produceTo(t, seeds, "retries", 0, nil, "poison")

	var (
		mu    sync.Mutex
		calls []time.Time
	)
	h := weir.HandlerFunc(func(context.Context, *kgo.Record) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, time.Now())
		return errPoison
	})
	in := startInstance(t, "a", h, weir.Brokers(seeds...), weir.Topic("retries"), weir.Group("g"),
		weir.Logger(quietLogger()), fastGroup(),
		weir.HandlerRetries(4, 100*time.Millisecond, 200*time.Millisecond))
	defer in.stop(t)
	waitFor(t, 30*time.Second, "the partition stopped after 4 attempts", func() bool {
		for _, ps := range in.p.Stats().Partitions {
			if ps.Stopped {
				return true
			}
		}
		return false
	})
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 4 {
		t.Fatalf("%d handler calls, want 4", len(calls))
	}
	for i, nominal := range []time.Duration{100, 200, 200} {
		nominal *= time.Millisecond
		if gap := calls[i+1].Sub(calls[i]); gap < nominal-nominal/5 {
			t.Errorf("wait before attempt %d: %v, want at least %v (%v -20%%)", i+2, gap, nominal-nominal/5, nominal)
		}
	}
}

// capture is a slog handler that keeps every record it is given.
type capture struct {
	mu    sync.Mutex
	recs  []slog.Record
	attrs []slog.Attr
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r = r.Clone()
	r.AddAttrs(c.attrs...)
	c.recs = append(c.recs, r)
	return nil
}
func (c *capture) WithAttrs(as []slog.Attr) slog.Handler {
	return &captureWith{c, as}
}
func (c *capture) WithGroup(string) slog.Handler { return c }

type captureWith struct {
	*capture
	with []slog.Attr
}

func (c *captureWith) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(c.with...)
	return c.capture.Handle(ctx, r)
}
func (c *captureWith) WithAttrs(as []slog.Attr) slog.Handler {
	return &captureWith{c.capture, append(append([]slog.Attr(nil), c.with...), as...)}
}

// kgoRecords returns the captured records that came from kgo, with their
// group attribute.
func (c *capture) kgoRecords() (msgs []string, groups []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.recs {
		if !strings.HasPrefix(r.Message, "kgo: ") {
			continue
		}
		msgs = append(msgs, r.Message)
		group := ""
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "group" {
				group = a.Value.String()
			}
			return true
		})
		groups = append(groups, group)
	}
	return msgs, groups
}

// TestProcessorLogsKgoThroughItsLogger checks that kgo's messages reach the
// processor's slog logger (as the producer's do), with the processor's
// attributes, and at debug level for kgo's info.
func TestProcessorLogsKgoThroughItsLogger(t *testing.T) {
	seeds := kfakeBroker(t, 1, "logged")
	c := &capture{}
	in := startInstance(t, "a", weir.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }),
		weir.Brokers(seeds...), weir.Topic("logged"), weir.Group("g"), weir.Logger(slog.New(c)), fastGroup())
	defer in.stop(t)
	select {
	case <-in.p.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("not ready after 30s")
	}
	msgs, groups := c.kgoRecords()
	if len(msgs) == 0 {
		t.Fatal("no kgo log record reached the processor's logger")
	}
	for i, g := range groups {
		if g != "g" {
			t.Fatalf("kgo record %q has group %q, want the processor's attributes (group g)", msgs[i], g)
		}
	}
}

// TestUnknownTopicSameErrorForProducerAndProcessor checks that the one
// topic check keeps each caller's error: NewProducer and Run both return an
// *Error of Kind ErrUnknownTopic naming the topic.
func TestUnknownTopicSameErrorForProducerAndProcessor(t *testing.T) {
	b := weirtest.Start(t, func(c *broker.Config) { c.DisableAutoCreateTopics = true })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	check := func(who string, err error) {
		t.Helper()
		var we *weir.Error
		if !errors.As(err, &we) || we.Kind != weir.ErrUnknownTopic || we.Topic != "nope" {
			t.Fatalf("%s: err = %v, want *weir.Error{Kind: ErrUnknownTopic, Topic: nope}", who, err)
		}
	}
	p, err := weir.NewProducer(ctx, weir.Brokers(b.Addr()), weir.Topic("nope"), weir.Logger(quietLogger()))
	if err == nil {
		p.Close(ctx)
	}
	check("NewProducer", err)
	err, _ = runOnce(t, []weir.ProcessorOpt{weir.Brokers(b.Addr()), weir.Topic("nope"), weir.Group("g"),
		weir.Logger(quietLogger())})
	check("Processor.Run", err)
}

// TestCollectorsDescribeWhatTheyCollect scrapes the producer's and the
// processor's collectors (one shared implementation) with a pedantic
// registry, which fails if a collected metric was not described, and checks
// every metric's name, labels and value.
func TestCollectorsDescribeWhatTheyCollect(t *testing.T) {
	b := weirtest.Start(t, func(c *broker.Config) { c.DefaultPartitions = 1; c.GroupInitialRebalanceDelay = -1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prod, err := weir.NewProducer(ctx, weir.Brokers(b.Addr()), weir.Topic("m"), weir.AllowAutoTopicCreation(),
		weir.ClientID("c1"), weir.Logger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(ctx)
	if _, err := prod.Send(ctx, weir.Event{Value: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	in := startInstance(t, "a", weir.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }),
		weir.Brokers(b.Addr()), weir.Topic("m"), weir.Group("g"), weir.Logger(quietLogger()), fastGroup())
	defer in.stop(t)
	waitFor(t, 30*time.Second, "the event processed", func() bool { return in.p.Stats().Processed == 1 })

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(prod.Collector(), in.p.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	type series struct {
		labels string
		value  float64
	}
	got := map[string]series{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+"="+lp.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			got[mf.GetName()] = series{strings.Join(ls, ","), v}
		}
	}
	const prodLabels, procLabels = "client_id=c1,topic=m", "group=g,topic=m"
	want := map[string]series{
		"weir_producer_events_sent_total":           {prodLabels, 1},
		"weir_producer_events_acknowledged_total":   {prodLabels, 1},
		"weir_producer_events_failed_total":         {prodLabels, 0},
		"weir_producer_events_buffered":             {prodLabels, 0},
		"weir_producer_requests_retried_total":      {prodLabels, 0},
		"weir_producer_throttled_total":             {prodLabels, 0},
		"weir_producer_throttle_seconds_total":      {prodLabels, 0},
		"weir_processor_owned_partitions":           {procLabels, 1},
		"weir_processor_events_processed_total":     {procLabels, 1},
		"weir_processor_handler_failures_total":     {procLabels, 0},
		"weir_processor_events_dead_lettered_total": {procLabels, 0},
		"weir_processor_rebalances_total":           {procLabels, got["weir_processor_rebalances_total"].value},
		"weir_processor_partition_lag":              {"group=g,partition=0,topic=m", 0},
		"weir_processor_handler_seconds":            {procLabels, 1},
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s = %+v (present %v), want %+v", name, g, ok, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d metrics, want %d: %v", len(got), len(want), got)
	}
	if got["weir_processor_rebalances_total"].value < 1 {
		t.Errorf("rebalances_total = %v, want >= 1", got["weir_processor_rebalances_total"].value)
	}
}
