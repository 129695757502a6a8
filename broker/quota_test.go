package broker

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/quota"
	"github.com/weirhq/weir/storage"
)

func TestCountRecords(t *testing.T) {
	a, b := recordBatch("a", "b", "c"), recordBatch("d", "e")
	set := append(append([]byte{}, a...), b...)
	for _, tc := range []struct {
		name    string
		records []byte
		want    int64
	}{
		{"empty", nil, 0},
		{"one batch", a, 3},
		{"two batches", set, 5},
		{"short header", set[:30], 0},
		{"second batch cut", set[:len(a)+40], 3},
		{"not magic 2", append(append([]byte{}, a[:16]...), make([]byte, 60)...), 0},
	} {
		if got := countRecords(tc.records); got != tc.want {
			t.Errorf("%s: countRecords = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestThrottleHoldsBackReads sends produce requests over 1 TU on a raw
// connection that ignores throttle_time_ms, as librdkafka does: the
// response carries the throttle, and the broker does not read the next
// request before it is over. Nothing is rejected.
func TestThrottleHoldsBackReads(t *testing.T) {
	b := startBroker(t, func(c *Config) {
		c.Sync = storage.SyncNever
		c.Quota.ThroughputUnits = 1
	})
	r := dialRaw(t, b)
	value := strings.Repeat("x", 600<<10)
	var throttles []time.Duration
	for i := range 4 {
		start := time.Now()
		resp := r.roundTrip(produceReq("held", 0, recordBatch(value))).(*kmsg.ProduceResponse)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("produce %d over quota: error %v; want it served", i, kerr.ErrorForCode(code))
		}
		if i > 0 {
			// This request was read only after the previous throttle.
			if el, prev := time.Since(start), throttles[i-1]; el < prev-20*time.Millisecond {
				t.Errorf("produce %d answered %v after sending; the previous throttle was %v", i, el, prev)
			}
		}
		throttles = append(throttles, time.Duration(resp.ThrottleMillis)*time.Millisecond)
	}
	if throttles[0] != 0 {
		t.Errorf("first 600 KiB fits the 1 MiB bucket, but was throttled %v", throttles[0])
	}
	for i, th := range throttles[1:] {
		if th < 50*time.Millisecond || th > 2*time.Second {
			t.Errorf("produce %d throttled %v, want a fraction of a second", i+1, th)
		}
	}
	if hw := mustPartition(t, b, "held", 0).HighWatermark(); hw != 4 {
		t.Errorf("high watermark %d, want all 4 records stored", hw)
	}
}

// TestUnlimitedByDefault checks that a broker without TUs never throttles.
func TestUnlimitedByDefault(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.Sync = storage.SyncNever })
	r := dialRaw(t, b)
	value := strings.Repeat("x", 900<<10)
	for i := range 5 {
		resp := r.roundTrip(produceReq("free", 0, recordBatch(value))).(*kmsg.ProduceResponse)
		if resp.ThrottleMillis != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("produce %d without TUs: throttle %dms, error %d", i, resp.ThrottleMillis, resp.Topics[0].Partitions[0].ErrorCode)
		}
	}
}

func brokerConfigs(t *testing.T, adm *kadm.Client) map[string]kadm.Config {
	t.Helper()
	rcs, err := adm.DescribeBrokerConfigs(testCtx(t), 0)
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("DescribeBrokerConfigs: %v %+v", err, rcs)
	}
	out := map[string]kadm.Config{}
	for _, c := range rcs[0].Configs {
		out[c.Key] = c
	}
	return out
}

func configValue(t *testing.T, cs map[string]kadm.Config, key string) string {
	t.Helper()
	c, ok := cs[key]
	if !ok || c.Value == nil {
		t.Fatalf("broker config %s not described", key)
	}
	return *c.Value
}

func alterBroker(t *testing.T, adm *kadm.Client, kv ...string) error {
	t.Helper()
	var cs []kadm.AlterConfig
	for i := 0; i < len(kv); i += 2 {
		v := kv[i+1]
		cs = append(cs, kadm.AlterConfig{Op: kadm.SetConfig, Name: kv[i], Value: &v})
	}
	rs, err := adm.AlterBrokerConfigs(testCtx(t), cs, 0)
	if err != nil {
		t.Fatalf("AlterBrokerConfigs: %v", err)
	}
	if rs[0].Err != nil {
		return errors.Join(rs[0].Err, errors.New(rs[0].ErrMessage))
	}
	return nil
}

// TestThroughputUnitsAtRuntime sets TUs with IncrementalAlterConfigs (what
// `weir tu set` sends), checks they apply at once and survive a restart,
// and that bad values are INVALID_CONFIG and change nothing.
func TestThroughputUnitsAtRuntime(t *testing.T) {
	dir := t.TempDir()
	b, err := Start(Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger(), Sync: storage.SyncNever,
		Quota: quota.Config{TopicUnits: map[string]int{"static": 3}}})
	if err != nil {
		t.Fatal(err)
	}
	adm := newAdmin(t, b)
	cs := brokerConfigs(t, adm)
	if v := configValue(t, cs, "weir.throughput.units"); v != "0" {
		t.Fatalf("default weir.throughput.units = %s, want 0 (unlimited)", v)
	}
	if v := configValue(t, cs, "weir.topic.throughput.units.static"); v != "3" || cs["weir.topic.throughput.units.static"].Source != kmsg.ConfigSourceStaticBrokerConfig {
		t.Fatalf("static topic cap described as %s from %v", v, cs["weir.topic.throughput.units.static"].Source)
	}

	for _, bad := range [][]string{
		{"weir.throughput.units", "-1"},
		{"weir.throughput.units", "lots"},
		{"weir.throughput.units", "1.5"},
		{"weir.auto.inflate.enabled", "yes please"},
		{"weir.auto.inflate.enabled", "true"}, // with 0 units: nothing to inflate from
		{"weir.throughput.units", "4", "weir.auto.inflate.enabled", "true", "weir.auto.inflate.max.units", "2"},
		{"weir.auto.inflate.window.ms", "-5"},
		{"weir.topic.throughput.units.orders", "-2"},
		{"weir.no.such.key", "1"},
		{"broker.id", "7"},
		{"weir.throughput.units.current", "9"},
	} {
		err := alterBroker(t, adm, bad...)
		if !errors.Is(err, kerr.InvalidConfig) {
			t.Errorf("set %v: %v, want INVALID_CONFIG", bad, err)
		}
	}
	if v := configValue(t, brokerConfigs(t, adm), "weir.throughput.units"); v != "0" {
		t.Fatalf("rejected changes changed weir.throughput.units to %s", v)
	}

	if err := alterBroker(t, adm, "weir.throughput.units", "2", "weir.auto.inflate.enabled", "true",
		"weir.auto.inflate.max.units", "5", "weir.topic.throughput.units.orders", "1"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		cs := brokerConfigs(t, adm)
		for k, want := range map[string]string{
			"weir.throughput.units": "2", "weir.throughput.units.current": "2", "weir.auto.inflate.enabled": "true",
			"weir.auto.inflate.max.units": "5", "weir.topic.throughput.units.orders": "1", "weir.topic.throughput.units.static": "3",
		} {
			if got := configValue(t, cs, k); got != want {
				t.Errorf("%s: %s = %s, want %s", when, k, got, want)
			}
		}
		if src := cs["weir.throughput.units"].Source; src != kmsg.ConfigSourceDynamicBrokerConfig {
			t.Errorf("%s: weir.throughput.units source %v, want DYNAMIC_BROKER_CONFIG", when, src)
		}
	}
	check("after set")
	// Applied at once: 2 TU throttles 3 MiB at once.
	r := dialRaw(t, b)
	var throttled bool
	for range 4 {
		resp := r.roundTrip(produceReq("t", 0, recordBatch(strings.Repeat("x", 900<<10)))).(*kmsg.ProduceResponse)
		throttled = throttled || resp.ThrottleMillis > 0
	}
	if !throttled {
		t.Error("3.6 MiB at once on 2 TUs was not throttled")
	}
	r.c.Close()

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = Start(Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger(), Sync: storage.SyncNever,
		Quota: quota.Config{TopicUnits: map[string]int{"static": 3}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	adm = newAdmin(t, b)
	check("after restart")

	// DELETE goes back to the static value.
	rs, err := adm.AlterBrokerConfigs(testCtx(t), []kadm.AlterConfig{
		{Op: kadm.DeleteConfig, Name: "weir.auto.inflate.enabled"},
		{Op: kadm.DeleteConfig, Name: "weir.throughput.units"},
	}, 0)
	if err != nil || rs[0].Err != nil {
		t.Fatalf("delete overrides: %v %v", err, rs)
	}
	if v := configValue(t, brokerConfigs(t, adm), "weir.throughput.units"); v != "0" {
		t.Fatalf("after deleting the override weir.throughput.units = %s, want the static 0", v)
	}
}

// TestMetrics produces and consumes with franz-go and scrapes the broker's
// metrics handler: the counters show what happened.
func TestMetrics(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.Sync = storage.SyncNever; c.Quota.ThroughputUnits = 1 })
	srv := httptest.NewServer(b.MetricsHandler())
	defer srv.Close()
	const topic, n, size = "metered", 1500, 200
	cl := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	var rs []*kgo.Record
	for i := range n {
		rs = append(rs, &kgo.Record{Value: []byte(strconv.Itoa(i) + strings.Repeat("v", size))})
	}
	if err := cl.ProduceSync(testCtx(t), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consume(t, b, topic, n)

	m := scrape(t, srv.URL)
	want := func(name string, ok func(float64) bool, desc string) {
		t.Helper()
		v, found := m[name]
		if !found {
			t.Errorf("metric %s missing", name)
			return
		}
		if !ok(v) {
			t.Errorf("%s = %v, want %s", name, v, desc)
		}
	}
	eq := func(x float64) func(float64) bool { return func(v float64) bool { return v == x } }
	ge := func(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }
	want(`weir_topic_incoming_messages_total{topic="metered"}`, eq(n), strconv.Itoa(n))
	want(`weir_topic_incoming_bytes_total{topic="metered"}`, ge(n*size), ">= the values' bytes")
	want(`weir_topic_outgoing_messages_total{topic="metered"}`, ge(n), ">= "+strconv.Itoa(n))
	want(`weir_topic_outgoing_bytes_total{topic="metered"}`, ge(n*size), ">= the values' bytes")
	want(`weir_partition_log_end_offset{partition="0",topic="metered"}`, eq(n), strconv.Itoa(n))
	want(`weir_partition_log_start_offset{partition="0",topic="metered"}`, eq(0), "0")
	want(`weir_partition_size_bytes{partition="0",topic="metered"}`, ge(n*size), ">= the values' bytes")
	want(`weir_connections`, ge(1), ">= 1")
	want(`weir_throughput_units`, eq(1), "1")
	want(`weir_produce_latency_seconds_count`, ge(1), ">= 1")
	want(`weir_fetch_latency_seconds_count`, ge(1), ">= 1")
	// 1500 records at once on 1 TU (1000 events/s) are throttled.
	want(`weir_throttled_requests_total{direction="ingress"}`, ge(1), ">= 1")
	want(`weir_throttle_seconds_total{direction="ingress"}`, ge(0.001), "> 0")
	want(`weir_throughput_unit_changes_total{reason="auto-inflate"}`, eq(0), "0")
}

// scrape fetches a Prometheus text page as series -> value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return out
}
