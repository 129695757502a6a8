package tests

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/quota"
	"github.com/weirhq/weir/storage"
	"github.com/weirhq/weir/weirtest"
)

// The throughput-unit tests measure rates over a few seconds. They assert
// the shape (held near the limit, within a generous band) rather than a
// figure; BenchmarkThrottledProduce reports the figure.
const (
	measureFor = 3 * time.Second
	bandLow    = 0.5
	bandHigh   = 1.6
)

// oneTU starts a broker with 1 TU broker-wide. fsync is off: the tests
// measure throttling, not the disk.
func oneTU(t testing.TB, more ...func(*broker.Config)) *broker.Broker {
	return weirtest.Start(t, append([]func(*broker.Config){func(c *broker.Config) {
		c.Quota.ThroughputUnits = 1
		c.Sync = storage.SyncNever
	}}, more...)...)
}

// throttleHook counts the throttles franz-go sees in responses.
type throttleHook struct{ n, ms atomic.Int64 }

func (h *throttleHook) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	h.n.Add(1)
	h.ms.Add(d.Milliseconds())
}

// fullSpeed produces records of size bytes as fast as the broker accepts
// them for d, then flushes. It returns the acknowledged values, and the
// steady rate: the bytes acknowledged after the first second (the bucket's
// burst allowance) until the flush ends, over that time.
func fullSpeed(t *testing.T, cl *kgo.Client, size int, d time.Duration) (acked map[string]bool, steady float64) {
	t.Helper()
	var (
		mu     sync.Mutex
		ackedB int64
		errs   []error
	)
	acked = map[string]bool{}
	pad := strings.Repeat("p", size)
	ctx := testContext(t, d+60*time.Second)
	start := time.Now()
	var mark int64
	var markAt time.Time
	for i := 0; time.Since(start) < d; i++ {
		if markAt.IsZero() && time.Since(start) >= d-measureFor {
			mu.Lock()
			mark, markAt = ackedB, time.Now()
			mu.Unlock()
		}
		v := strconv.Itoa(i) + ":" + pad[len(strconv.Itoa(i))+1:]
		cl.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			acked[string(r.Value)] = true
			ackedB += int64(len(r.Value))
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	steady = float64(ackedB-mark) / time.Since(markAt).Seconds()
	if len(errs) > 0 {
		t.Fatalf("%d records failed (nothing may be dropped or rejected for quota), first: %v", len(errs), errs[0])
	}
	return acked, steady
}

// consumeExactly reads topic back and checks it holds exactly the acked
// values, each once.
func consumeExactly(t *testing.T, b *broker.Broker, topic string, acked map[string]bool) {
	t.Helper()
	got := consumeKgo(t, b.Addr(), topic, len(acked))
	seen := map[string]bool{}
	for _, r := range got {
		v := string(r.Value)
		if !acked[v] {
			t.Fatalf("consumed a record that was not acknowledged: %.20q", v)
		}
		if seen[v] {
			t.Fatalf("consumed a record twice: %.20q", v)
		}
		seen[v] = true
	}
	tp, _ := b.Log().Topic(topic)
	var hw int64
	for i := range tp.NumPartitions() {
		p, _ := tp.Partition(i)
		hw += p.HighWatermark()
	}
	if hw != int64(len(acked)) {
		t.Fatalf("log holds %d records, %d were acknowledged", hw, len(acked))
	}
}

func inBand(t *testing.T, what string, got, limit float64) {
	t.Helper()
	t.Logf("%s: %.0f/s, limit %.0f/s (%.2fx)", what, got, limit, got/limit)
	if got < bandLow*limit || got > bandHigh*limit {
		t.Errorf("%s: %.0f/s is outside %.1fx-%.1fx of the %.0f/s limit", what, got, bandLow, bandHigh, limit)
	}
}

// TestFranzGoHeldToOneTU produces at full speed with franz-go against 1 TU:
// bytes are held to about 1 MiB/s with big records, events to about 1000/s
// with small ones; franz-go sees throttle_time_ms; every record is
// acknowledged and read back exactly once. The metrics endpoint shows it.
func TestFranzGoHeldToOneTU(t *testing.T) {
	b := oneTU(t)
	for _, tc := range []struct {
		name  string
		size  int
		limit float64 // per second, in the unit that binds
		bytes bool
	}{
		{"bytes", 8 << 10, quota.IngressBytesPerUnit, true},
		{"events", 100, quota.IngressEventsPerUnit, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "tu-franz-" + tc.name
			createTopic(t, b.Addr(), topic, 1)
			before := weirtest.Metrics(t, b)
			hook := &throttleHook{}
			cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic(topic),
				kgo.WithHooks(hook), kgo.ProducerBatchCompression(kgo.NoCompression()),
				// A small buffer keeps requests small, so that one request's
				// throttle is a small part of the measurement.
				kgo.MaxBufferedRecords(min(64, 256<<10/tc.size)), kgo.RecordRetries(100))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			acked, steady := fullSpeed(t, cl, tc.size, measureFor+time.Second)
			if !tc.bytes {
				steady /= float64(tc.size)
			}
			inBand(t, "franz-go "+tc.name, steady, tc.limit)
			if hook.n.Load() == 0 {
				t.Error("franz-go saw no throttle_time_ms")
			}
			t.Logf("franz-go saw %d throttles, %d ms in all", hook.n.Load(), hook.ms.Load())
			consumeExactly(t, b, topic, acked)

			after := weirtest.Metrics(t, b)
			in := `weir_topic_incoming_messages_total{topic="` + topic + `"}`
			if got := after[in] - before[in]; got != float64(len(acked)) {
				t.Errorf("%s moved by %v, %d records acknowledged", in, got, len(acked))
			}
			th := `weir_throttled_requests_total{direction="ingress"}`
			if after[th] <= before[th] {
				t.Errorf("%s did not move (%v)", th, after[th])
			}
		})
	}
}

// TestKcatHeldToOneTU produces with kcat, whose librdkafka does not wait
// out throttle_time_ms: the broker holds back its reads, so it is held to
// the same limit, and nothing is lost.
func TestKcatHeldToOneTU(t *testing.T) {
	kcat := kcatPath(t)
	b := oneTU(t)
	const topic, lines, size = "tu-kcat", 1280, 4 << 10 // 5 MiB: 1 s of burst, then ~4 s at 1 MiB/s
	createTopic(t, b.Addr(), topic, 1)
	var in bytes.Buffer
	acked := map[string]bool{}
	for i := range lines {
		v := fmt.Sprintf("%06d:%s", i, strings.Repeat("k", size-8))
		in.WriteString(v + "\n")
		acked[v] = true
	}
	ctx := testContext(t, 60*time.Second)
	start := time.Now()
	cmd := exec.CommandContext(ctx, kcat, "-P", "-b", b.Addr(), "-t", topic, "-z", "none", "-X", "linger.ms=5")
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	el := time.Since(start)
	// The first second's worth passes on the bucket's burst.
	rate := float64(lines*size-quota.IngressBytesPerUnit) / (el.Seconds())
	inBand(t, "kcat bytes", rate, quota.IngressBytesPerUnit)
	consumeExactly(t, b, topic, acked)
}

// TestAutoInflateRaisesUnits overloads 1 TU with auto-inflate up to 3 and a
// 1 s window: the TU count rises (DescribeConfigs, as 'weir tu show'
// reads it), stops at the max, the rate follows, and nothing is lost.
func TestAutoInflateRaisesUnits(t *testing.T) {
	b := oneTU(t, func(c *broker.Config) {
		c.Quota.AutoInflate = true
		c.Quota.AutoInflateMaxUnits = 3
		c.Quota.Window = time.Second
	})
	const topic = "tu-inflate"
	createTopic(t, b.Addr(), topic, 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(32))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	acked, steady := fullSpeed(t, cl, 16<<10, 5*time.Second)
	units := currentUnits(t, b)
	if units != 3 {
		t.Errorf("TUs after 5 s of overload with 1 s windows: %d, want the max 3", units)
	}
	// The last seconds ran at 2 or 3 TUs: well over 1 TU's rate.
	t.Logf("rate over the last %v: %.2f MiB/s", measureFor, steady/(1<<20))
	if steady < 1.6*quota.IngressBytesPerUnit {
		t.Errorf("rate after inflating %.2f MiB/s, want it to follow the TUs up", steady/(1<<20))
	}
	m := weirtest.Metrics(t, b)
	if got := m[`weir_throughput_unit_changes_total{reason="auto-inflate"}`]; got != 2 {
		t.Errorf("weir_throughput_unit_changes_total{reason=\"auto-inflate\"} = %v, want 2 (1->2->3)", got)
	}
	if got := m["weir_throughput_units"]; got != 3 {
		t.Errorf("weir_throughput_units = %v, want 3", got)
	}
	consumeExactly(t, b, topic, acked)
}

func currentUnits(t *testing.T, b *broker.Broker) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rcs, err := kadm.NewClient(cl).DescribeBrokerConfigs(testContext(t, 20*time.Second))
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("describe broker configs: %v %v", err, rcs)
	}
	for _, c := range rcs[0].Configs {
		if c.Key == "weir.throughput.units.current" && c.Value != nil {
			n, err := strconv.Atoi(*c.Value)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("weir.throughput.units.current not described")
	return 0
}

// BenchmarkThrottledProduce reports the rate franz-go gets at full speed
// against 1 TU, as a multiple of the limit (x_limit, 1.0 is exact).
func BenchmarkThrottledProduce(b *testing.B) {
	br := weirtest.Start(b, func(c *broker.Config) {
		c.Quota.ThroughputUnits = 1
		c.Sync = storage.SyncNever
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()), kgo.DefaultProduceTopic("bench-tu"),
		kgo.AllowAutoTopicCreation(), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(32))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	value := bytes.Repeat([]byte("b"), 16<<10)
	// Use up the burst allowance first: measure the steady state.
	for range 80 {
		cl.Produce(ctx, &kgo.Record{Value: value}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	var failed atomic.Int64
	start := time.Now()
	for b.Loop() {
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if failed.Load() > 0 {
		b.Fatalf("%d records failed", failed.Load())
	}
	rate := float64(b.N*len(value)) / time.Since(start).Seconds()
	b.ReportMetric(rate/(1<<20), "MiB/s")
	b.ReportMetric(rate/quota.IngressBytesPerUnit, "x_limit")
}
