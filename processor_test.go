package weir_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir"
)

func TestMain(m *testing.M) {
	if runChildInstance() {
		return
	}
	m.Run()
}

// recordingHandler records opens and closes with their reasons.
type recordingHandler struct {
	weir.HandlerFunc
	mu          sync.Mutex
	opens       map[int32]int
	closes      map[weir.CloseReason]int
	closedParts map[int32]int
}

// settled reports whether the handler's opens and closes match the
// partitions the instance owns (opening runs just after assignment).
func (h *recordingHandler) settled(owned []int32) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	live := map[int32]bool{}
	for p, n := range h.opens {
		if n-h.closedParts[p] == 1 {
			live[p] = true
		}
	}
	if len(live) != len(owned) {
		return false
	}
	for _, p := range owned {
		if !live[p] {
			return false
		}
	}
	return true
}

func (h *recordingHandler) OpenPartition(_ context.Context, tp weir.TopicPartition) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.opens == nil {
		h.opens = map[int32]int{}
	}
	h.opens[tp.Partition]++
	return nil
}

func (h *recordingHandler) ClosePartition(_ context.Context, tp weir.TopicPartition, r weir.CloseReason) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closes == nil {
		h.closes, h.closedParts = map[weir.CloseReason]int{}, map[int32]int{}
	}
	h.closes[r]++
	h.closedParts[tp.Partition]++
}

func TestProcessorProcessesEveryEventOnceAndResumesFromCheckpoint(t *testing.T) {
	forEachBackend(t, testProcessesEveryEventOnceAndResumesFromCheckpoint)
}

func testProcessesEveryEventOnceAndResumesFromCheckpoint(t *testing.T, b backend) {
	seeds := b.start(t, 8, "orders")
	l := newLedger()
	produceN(t, seeds, "orders", l, 4000, func(i int) string { return string(rune('a' + i%26)) })

	opts := []weir.ProcessorOpt{weir.Brokers(seeds...), weir.Topic("orders"), weir.Group("billing"),
		weir.Logger(quietLogger()), fastGroup(), weir.CheckpointEvery(100, time.Second)}
	h := &recordingHandler{HandlerFunc: l.handler("a")}
	in := startInstance(t, "a", h, opts...)
	select {
	case <-in.p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("not ready after 10s")
	}
	l.waitAllProcessed(t, 30*time.Second)
	if st := in.p.Stats(); st.Processed != 4000 {
		t.Fatalf("stats: %d processed; want 4000", st.Processed)
	}
	for _, ps := range ownedStats(t, in.p, 8) {
		if ps.Lag != 0 {
			t.Errorf("partition %d: lag %d after processing everything", ps.Partition, ps.Lag)
		}
	}
	if err := in.p.Checkpoint(context.Background()); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	checkMetrics(t, in.p, 4000, 8)
	in.stop(t)
	if h.closes[weir.Shutdown] != 8 || len(h.opens) != 8 {
		t.Fatalf("opens %v, closes %v; want 8 partitions opened and closed with Shutdown", h.opens, h.closes)
	}
	if err := in.p.Checkpoint(context.Background()); !errors.Is(err, weir.ErrClosed) {
		t.Fatalf("Checkpoint after Run: %v, want ErrClosed", err)
	}

	// A new instance of the group resumes from the checkpoint: the next
	// events are processed once, nothing before them again.
	produceN(t, seeds, "orders", l, 800, func(i int) string { return string(rune('a' + i%26)) })
	in2 := startInstance(t, "b", l.handler("b"), opts...)
	l.waitAllProcessed(t, 30*time.Second)
	in2.stop(t)
	lost, twice, _ := l.result()
	if lost != 0 || twice != 0 {
		t.Fatalf("lost %d, processed twice %d; want 0, 0", lost, twice)
	}
}

func TestProcessorRunTwiceIsClosed(t *testing.T) {
	seeds := testBroker(t, 1, "t")
	p, err := weir.NewProcessor(weir.Brokers(seeds...), weir.Topic("t"), weir.Group("g"), weir.Logger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx, weir.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })); err != nil {
		t.Fatalf("Run with an ended context: %v", err)
	}
	if err := p.Run(context.Background(), weir.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })); !errors.Is(err, weir.ErrClosed) {
		t.Fatalf("second Run: %v, want ErrClosed", err)
	}
}

func TestProcessorOptionsValidate(t *testing.T) {
	base := []weir.ProcessorOpt{weir.Brokers("127.0.0.1:9092"), weir.Topic("t"), weir.Group("g")}
	for name, opt := range map[string]weir.ProcessorOpt{
		"no group":          weir.Group(""),
		"checkpoint n":      weir.CheckpointEvery(0, time.Second),
		"drain":             weir.DrainTimeout(0),
		"concurrency":       weir.Concurrency(0),
		"retries":           weir.HandlerRetries(0, time.Millisecond, time.Second),
		"dead letter topic": weir.OnFailure(weir.DeadLetter),
		"dead letter self":  weir.DeadLetterTopic("t"),
		"instance env":      weir.InstanceIDFromEnv("WEIR_TEST_SURELY_UNSET_VARIABLE"),
		"start offsets":     weir.StartOffsets(map[int32]int64{0: -5}),
	} {
		if _, err := weir.NewProcessor(append(base, opt)...); !errors.Is(err, weir.ErrInvalidConfig) {
			t.Errorf("%s: NewProcessor = %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := weir.NewProcessor(base...); err != nil {
		t.Fatalf("valid options: %v", err)
	}
}

// checkMetrics scrapes the processor's Prometheus collector as a registry
// would and checks what it reports.
func checkMetrics(t *testing.T, p *weir.Processor, processed, partitions int) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(p.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf
	}
	value := func(name string) float64 {
		mf := got[name]
		if mf == nil || len(mf.Metric) == 0 {
			t.Fatalf("metric %s missing", name)
		}
		m := mf.Metric[0]
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
		return 0
	}
	if v := value("weir_processor_events_processed_total"); v != float64(processed) {
		t.Errorf("processed_total = %v, want %d", v, processed)
	}
	if v := value("weir_processor_owned_partitions"); v != float64(partitions) {
		t.Errorf("owned_partitions = %v, want %d", v, partitions)
	}
	if v := value("weir_processor_handler_seconds"); v <= 0 {
		t.Errorf("handler_seconds count = %v, want > 0", v)
	}
	if n := len(got["weir_processor_partition_lag"].GetMetric()); n != partitions {
		t.Errorf("partition_lag has %d series, want %d", n, partitions)
	}
	value("weir_processor_rebalances_total")
	value("weir_processor_handler_failures_total")
	value("weir_processor_events_dead_lettered_total")
}

// TestProcessorStartPositions checks where partitions without a checkpoint
// start: explicit offsets, latest, and by timestamp.
func TestProcessorStartPositions(t *testing.T) {
	seeds := testBroker(t, 2, "start")
	produceTo(t, seeds, "start", 0, nil, values("old", 10)...)
	produceTo(t, seeds, "start", 1, nil, values("old", 10)...)
	time.Sleep(20 * time.Millisecond)
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)
	produceTo(t, seeds, "start", 0, nil, values("new", 5)...)
	produceTo(t, seeds, "start", 1, nil, values("new", 5)...)

	first := func(name string, opts ...weir.ProcessorOpt) map[int32]int64 {
		t.Helper()
		var mu sync.Mutex
		got := map[int32]int64{}
		h := weir.HandlerFunc(func(_ context.Context, e *kgo.Record) error {
			mu.Lock()
			defer mu.Unlock()
			if _, ok := got[e.Partition]; !ok {
				got[e.Partition] = e.Offset
			}
			return nil
		})
		in := startInstance(t, name, h, append([]weir.ProcessorOpt{weir.Brokers(seeds...), weir.Topic("start"),
			weir.Group(name), weir.Logger(quietLogger()), fastGroup()}, opts...)...)
		<-in.p.Ready()
		// Keep producing: a "latest" start is resolved just after
		// assignment, possibly after an event produced now.
		waitFor(t, 10*time.Second, name+" processed both partitions", func() bool {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n < 2 {
				produceTo(t, seeds, "start", 0, nil, "after")
				produceTo(t, seeds, "start", 1, nil, "after")
			}
			return n == 2
		})
		in.stop(t)
		mu.Lock()
		defer mu.Unlock()
		return got
	}
	check := func(name string, got map[int32]int64, want0, want1 int64) {
		t.Helper()
		if got[0] != want0 || got[1] != want1 {
			t.Errorf("%s: first offsets %v, want partition 0 at %d, 1 at %d", name, got, want0, want1)
		}
	}
	got := first("explicit", weir.StartOffsets(map[int32]int64{0: 7}), weir.StartFrom(weir.StartLatest()))
	if got[0] != 7 || got[1] < 15 {
		t.Errorf("explicit offsets: first offsets %v, want partition 0 at 7 (explicit), 1 at >= 15 (latest)", got)
	}
	check("time", first("time", weir.StartFrom(weir.StartAtTime(mid))), 10, 10)
	check("explicit over time", first("explicit-time", weir.StartOffsets(map[int32]int64{1: 3}), weir.StartFrom(weir.StartAtTime(mid))), 10, 3)
	check("earliest", first("earliest"), 0, 0)
}
