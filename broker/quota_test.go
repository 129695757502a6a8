package broker

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
		if got := storage.CountRecords(tc.records); got != tc.want {
			t.Errorf("%s: CountRecords = %d, want %d", tc.name, got, tc.want)
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
	var prevSent time.Time
	for i := range 4 {
		sent := time.Now()
		resp := r.roundTrip(produceReq("held", 0, recordBatch(value))).(*kmsg.ProduceResponse)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("produce %d over quota: error %v; want it served", i, kerr.ErrorForCode(code))
		}
		if i > 0 {
			// This request was read only after the previous throttle, which
			// began after the previous request was sent. No slack is needed
			// however slow the machine: a delay only adds to the wait.
			if el, prev := time.Since(prevSent), throttles[i-1]; el < prev-time.Millisecond {
				t.Errorf("produce %d answered %v after produce %d was sent, which was throttled %v", i, el, i-1, prev)
			}
		}
		prevSent = sent
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

// TestThrottleCoversWholeDebt: a produce of 15 x 900 KiB at once on 1 TU
// is ~12 s over the bucket. The response carries all of it, and so does the
// hold: a throttle cut short would let the client take more than its limit
// and leave the rest of the debt to other connections.
func TestThrottleCoversWholeDebt(t *testing.T) {
	b := startBroker(t, func(c *Config) {
		c.Sync = storage.SyncNever
		c.Quota.ThroughputUnits = 1
	})
	if _, err := b.Log().CreateTopic("huge", 15, nil); err != nil {
		t.Fatal(err)
	}
	req := produceEach("huge", 15, strings.Repeat("h", 900<<10))
	r := dialRaw(t, b)
	resp := r.roundTrip(req).(*kmsg.ProduceResponse)
	// 15 x 900 KiB - 1 MiB of bucket = 12.18 MiB, at 1 MiB/s.
	if got, want := time.Duration(resp.ThrottleMillis)*time.Millisecond, 12180*time.Millisecond; got < want-50*time.Millisecond || got > want+50*time.Millisecond {
		t.Errorf("13.2 MiB at once on 1 TU throttled %v, want the whole debt, ~%v", got, want)
	}
	// The connection is held for the same time.
	var holdUntil int64
	b.mu.Lock()
	for c := range b.mu.conns {
		holdUntil = max(holdUntil, c.holdUntil.Load())
	}
	b.mu.Unlock()
	if hold := time.Until(time.Unix(0, holdUntil)); hold < 11*time.Second {
		t.Errorf("the connection is held back %v more, want the whole ~12 s throttle", hold)
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

	// Legacy AlterConfigs replaces every dynamic config.
	rs, err = adm.AlterBrokerConfigsState(testCtx(t), []kadm.AlterConfig{{Name: "weir.throughput.units", Value: ptrTo("5")}}, 0)
	if err != nil || rs[0].Err != nil {
		t.Fatalf("AlterConfigs on the broker: %v %v", err, rs)
	}
	cs = brokerConfigs(t, adm)
	if v := configValue(t, cs, "weir.throughput.units"); v != "5" {
		t.Errorf("after AlterConfigs weir.throughput.units = %s, want 5", v)
	}
	if _, ok := cs["weir.topic.throughput.units.orders"]; ok {
		t.Error("AlterConfigs kept the orders cap it did not name")
	}
	rs, err = adm.AlterBrokerConfigsState(testCtx(t), []kadm.AlterConfig{{Name: "weir.throughput.units", Value: ptrTo("-5")}}, 0)
	if err != nil || !errors.Is(rs[0].Err, kerr.InvalidConfig) {
		t.Errorf("AlterConfigs with -5 TUs: %v %v, want INVALID_CONFIG", err, rs)
	}
}

// quotaFileFS fails writes of quota.json while failing is set.
type quotaFileFS struct {
	storage.OSFS
	failing atomic.Bool
}

var errDiskFull = errors.New("test: disk full")

func (f *quotaFileFS) OpenFile(name string, flag int, perm os.FileMode) (storage.File, error) {
	if f.failing.Load() && strings.HasSuffix(name, "quota.json.tmp") {
		return nil, errDiskFull
	}
	return f.OSFS.OpenFile(name, flag, perm)
}

// TestAlterPersistsFirst: a TU change that cannot be written to quota.json
// is answered with an error and changes nothing, in force or on disk.
func TestAlterPersistsFirst(t *testing.T) {
	fs := &quotaFileFS{}
	dir := t.TempDir()
	b := startBroker(t, func(c *Config) { c.DataDir, c.FS, c.Sync = dir, fs, storage.SyncNever })
	adm := newAdmin(t, b)
	if err := alterBroker(t, adm, "weir.throughput.units", "2"); err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile(filepath.Join(dir, "quota.json"))
	if err != nil {
		t.Fatal(err)
	}
	fs.failing.Store(true)
	err = alterBroker(t, adm, "weir.throughput.units", "7", "weir.topic.throughput.units.orders", "1")
	if !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatalf("a change that cannot be persisted: %v, want KAFKA_STORAGE_ERROR", err)
	}
	cs := brokerConfigs(t, adm)
	if v := configValue(t, cs, "weir.throughput.units.current"); v != "2" {
		t.Errorf("after a failed persist %s TUs are in force, want the previous 2", v)
	}
	if _, ok := cs["weir.topic.throughput.units.orders"]; ok {
		t.Error("after a failed persist the orders cap is in force")
	}
	if now, err := os.ReadFile(filepath.Join(dir, "quota.json")); err != nil || !bytes.Equal(now, saved) {
		t.Errorf("after a failed persist quota.json is %q (%v), want it unchanged", now, err)
	}
}

// TestTopicCapsBounded: at most quota.MaxTopicCaps topics can be capped,
// and only valid topic names: beyond is INVALID_CONFIG, and nothing changes.
func TestTopicCapsBounded(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.Sync = storage.SyncNever })
	adm := newAdmin(t, b)
	kv := func(from, n int) []string {
		var out []string
		for i := from; i < from+n; i++ {
			out = append(out, "weir.topic.throughput.units.t"+strconv.Itoa(i), "1")
		}
		return out
	}
	if err := alterBroker(t, adm, kv(0, quota.MaxTopicCaps-1)...); err != nil {
		t.Fatalf("capping %d topics: %v", quota.MaxTopicCaps-1, err)
	}
	if err := alterBroker(t, adm, kv(quota.MaxTopicCaps-1, 2)...); !errors.Is(err, kerr.InvalidConfig) {
		t.Errorf("capping topic %d: %v, want INVALID_CONFIG", quota.MaxTopicCaps+1, err)
	}
	for _, bad := range []string{"weir.topic.throughput.units.", "weir.topic.throughput.units.no/slash", "weir.topic.throughput.units.."} {
		if err := alterBroker(t, adm, bad, "1"); !errors.Is(err, kerr.InvalidConfig) {
			t.Errorf("set %s: %v, want INVALID_CONFIG", bad, err)
		}
	}
	cs := brokerConfigs(t, adm)
	n := 0
	for k := range cs {
		if strings.HasPrefix(k, "weir.topic.throughput.units.") {
			n++
		}
	}
	if n != quota.MaxTopicCaps-1 {
		t.Errorf("%d topic caps in force after the rejected changes, want %d", n, quota.MaxTopicCaps-1)
	}
	if err := alterBroker(t, adm, "weir.topic.throughput.units.last", "1"); err != nil {
		t.Errorf("capping topic %d: %v", quota.MaxTopicCaps, err)
	}
}

// TestConflictingOverridesDoNotBlockStart: settings saved by 'weir tu set'
// that conflict with new command-line flags (an auto-inflate max of 3
// below a new --throughput-units 5) are ignored with a warning, and the
// flags win; a valid topic cap saved with them is kept.
func TestConflictingOverridesDoNotBlockStart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger(), Sync: storage.SyncNever,
		Quota: quota.Config{ThroughputUnits: 2}}
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := alterBroker(t, newAdmin(t, b), "weir.auto.inflate.enabled", "true", "weir.auto.inflate.max.units", "3",
		"weir.topic.throughput.units.orders", "1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Quota.ThroughputUnits = 5
	b, err = Start(cfg)
	if err != nil {
		t.Fatalf("restart with --throughput-units 5 over a saved auto-inflate max of 3: %v", err)
	}
	defer b.Close()
	cs := brokerConfigs(t, newAdmin(t, b))
	for k, want := range map[string]string{
		"weir.throughput.units.current": "5", "weir.auto.inflate.enabled": "false", "weir.topic.throughput.units.orders": "1",
	} {
		if got := configValue(t, cs, k); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
}

// TestMetrics produces and consumes with franz-go and scrapes the broker's
// metrics handler: the counters show what happened.
func TestMetrics(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.Sync = storage.SyncNever; c.Quota.ThroughputUnits = 1 })
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

	m := scrapeHandler(t, b)
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

// scrape fetches a Prometheus text page as series -> value. It is
// weirtest.Metrics, which this package's tests cannot import.
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

// BenchmarkProduceFrameLimited is BenchmarkProduceFrame with throughput
// units on (set high enough never to throttle): the cost of the quota and
// metrics on the produce path. Compare with BenchmarkProduceFrame.
func BenchmarkProduceFrameLimited(b *testing.B) {
	benchProduceFrame(b, func(c *Config) {
		c.Quota = quota.Config{ThroughputUnits: quota.MaxUnits, TopicUnits: map[string]int{"bench": quota.MaxUnits}}
	})
}

// TestQuotaAddsNoAllocs checks that throughput units and metrics cost the
// produce path no allocation: a produce with TUs on allocates no more than
// one with the default (unlimited) config. Like the other allocation
// guards it runs without -race (scripts/test.sh runs -run Allocs so).
func TestQuotaAddsNoAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under -race and -cover")
	}
	allocs := func(q quota.Config) float64 {
		f := newFrameProducer(t, "allocs", func(c *Config) { c.Quota = q })
		f.produce(t) // resolve the topic's metrics
		return testing.AllocsPerRun(200, func() { f.produce(t) })
	}
	base := allocs(quota.Config{})
	limited := allocs(quota.Config{ThroughputUnits: quota.MaxUnits, TopicUnits: map[string]int{"allocs": quota.MaxUnits}})
	if limited > base {
		t.Errorf("produce allocates %v times with TUs on, %v without", limited, base)
	}
}

// TestFetchThrottled reads 900 KiB batches on 1 TU (2 MiB/s out): once the
// bucket is used up, fetch responses carry a throttle and the broker holds
// back the connection's next read for it.
func TestFetchThrottled(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.Sync = storage.SyncNever; c.Quota.ThroughputUnits = 1 })
	const n = 5
	topicWithBatches(t, b, "out", 1, n, strings.Repeat("y", 900<<10))
	r := dialRaw(t, b)
	var prev time.Duration
	var prevSent time.Time
	throttled := 0
	for off := range int64(n) {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 12
		req.SessionEpoch = -1
		req.MaxBytes = 1 << 20
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.PartitionMaxBytes = off, 1<<20
		req.Topics = []kmsg.FetchRequestTopic{{Topic: "out", Partitions: []kmsg.FetchRequestTopicPartition{rp}}}
		sent := time.Now()
		resp := r.roundTrip(req).(*kmsg.FetchResponse)
		// Read only after the previous fetch's throttle, which began after
		// that fetch was sent: no slack is needed on a slow machine.
		if el := time.Since(prevSent); off > 0 && el < prev {
			t.Errorf("fetch %d answered %v after fetch %d was sent, which was throttled %v", off, el, off-1, prev)
		}
		prevSent = sent
		if got := storage.CountRecords(resp.Topics[0].Partitions[0].RecordBatches); got != 1 {
			t.Fatalf("fetch %d returned %d records, want 1 (served despite the quota)", off, got)
		}
		prev = time.Duration(resp.ThrottleMillis) * time.Millisecond
		if prev > 0 {
			throttled++
		}
	}
	if throttled == 0 {
		t.Errorf("%d x 900 KiB fetched at once on 2 MiB/s egress, none throttled", n)
	}
	m := scrapeHandler(t, b)
	if m[`weir_throttled_requests_total{direction="egress"}`] != float64(throttled) {
		t.Errorf("weir_throttled_requests_total{direction=\"egress\"} = %v, %d fetches throttled",
			m[`weir_throttled_requests_total{direction="egress"}`], throttled)
	}
}

func scrapeHandler(t *testing.T, b *Broker) map[string]float64 {
	srv := httptest.NewServer(b.MetricsHandler())
	defer srv.Close()
	return scrape(t, srv.URL)
}

// TestSharedMetricsRegistry: a second broker on the same registry is a
// config error, not a panic.
func TestSharedMetricsRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	startBroker(t, func(c *Config) { c.Metrics = reg })
	_, err := Start(Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quietLogger(), Metrics: reg})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("second broker on one registry: %v, want ErrInvalidConfig", err)
	}
}

// TestMetricsRegistryOutlivesBroker: an embedder keeps one registry
// across broker restarts. Close takes the broker's metrics off it, and a
// new broker registers its own.
func TestMetricsRegistryOutlivesBroker(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	for i := range 3 {
		b, err := Start(Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger(), Sync: storage.SyncNever, Metrics: reg})
		if err != nil {
			t.Fatalf("start %d on the same registry: %v", i, err)
		}
		m := scrapeHandler(t, b)
		if _, ok := m["weir_connections"]; !ok {
			t.Fatalf("start %d: weir_connections is not served", i)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if mfs := gatherWeir(t, reg); len(mfs) > 0 {
			t.Fatalf("after Close %d the registry still has %v", i, mfs)
		}
	}
}

// TestFailedStartRegistersNothing: a Start that fails (here: a bad
// address) leaves nothing on the registry, so a scrape does not reach a
// half-built broker and the registry can be used by the next Start.
func TestFailedStartRegistersNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := Start(Config{Addr: "256.0.0.1:99999", DataDir: t.TempDir(), Logger: quietLogger(), Metrics: reg}); err == nil {
		t.Fatal("Start on 256.0.0.1:99999 succeeded")
	}
	b, err := Start(Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quietLogger(), Sync: storage.SyncNever, Metrics: reg})
	if err != nil {
		t.Fatalf("Start after a failed Start on the same registry: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(Config{Addr: "256.0.0.1:99999", DataDir: t.TempDir(), Logger: quietLogger(), Metrics: reg}); err == nil {
		t.Fatal("Start on 256.0.0.1:99999 succeeded")
	}
	if mfs := gatherWeir(t, reg); len(mfs) > 0 {
		t.Fatalf("after a failed Start the registry has %v", mfs)
	}
}

// gatherWeir scrapes reg and returns the names of the weir_ metrics on it.
func gatherWeir(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var names []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "weir_") {
			names = append(names, mf.GetName())
		}
	}
	return names
}

// TestInflatedUnitsSurviveRestart: TUs raised by auto-inflate are the TU
// count, kept across a restart (as in Event Hubs); 'weir tu set' of the
// count puts it back.
func TestInflatedUnitsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger(), Sync: storage.SyncNever,
		Quota: quota.Config{ThroughputUnits: 1, AutoInflate: true, AutoInflateMaxUnits: 3, Window: 200 * time.Millisecond}}
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, b)
	value := strings.Repeat("z", 900<<10)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		r.roundTrip(produceReq("hot", 0, recordBatch(value)))
		if units, _ := b.quota.current(); units == 3 {
			break
		}
	}
	units, _ := b.quota.current()
	r.c.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if units != 3 {
		t.Fatalf("auto-inflate reached %d TUs under overload, want the max 3", units)
	}
	b, err = Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	adm := newAdmin(t, b)
	if v := configValue(t, brokerConfigs(t, adm), "weir.throughput.units.current"); v != "3" {
		t.Fatalf("after restart weir.throughput.units.current = %s, want the inflated 3", v)
	}
	if err := alterBroker(t, adm, "weir.throughput.units", "1"); err != nil {
		t.Fatal(err)
	}
	if v := configValue(t, brokerConfigs(t, adm), "weir.throughput.units.current"); v != "1" {
		t.Fatalf("after setting 1 TU weir.throughput.units.current = %s, want 1", v)
	}
}

// TestTopicCap caps one topic at 1 TU on an otherwise unlimited broker:
// only that topic is throttled.
func TestTopicCap(t *testing.T) {
	b := startBroker(t, func(c *Config) {
		c.Sync = storage.SyncNever
		c.Quota.TopicUnits = map[string]int{"capped": 1}
	})
	r := dialRaw(t, b)
	value := strings.Repeat("c", 900<<10)
	throttled := map[string]int{}
	for range 3 {
		for _, topic := range []string{"capped", "free"} {
			resp := r.roundTrip(produceReq(topic, 0, recordBatch(value))).(*kmsg.ProduceResponse)
			if resp.ThrottleMillis > 0 {
				throttled[topic]++
			}
		}
	}
	if throttled["capped"] == 0 || throttled["free"] != 0 {
		t.Fatalf("throttled responses per topic %v: want some for capped, none for free", throttled)
	}
	m := scrapeHandler(t, b)
	if m[`weir_topic_throttled_requests_total{direction="ingress",topic="capped"}`] != float64(throttled["capped"]) {
		t.Errorf("weir_topic_throttled_requests_total for capped = %v, want %d",
			m[`weir_topic_throttled_requests_total{direction="ingress",topic="capped"}`], throttled["capped"])
	}
	if m[`weir_topic_throughput_units{topic="capped"}`] != 1 {
		t.Errorf("weir_topic_throughput_units{topic=\"capped\"} = %v, want 1", m[`weir_topic_throughput_units{topic="capped"}`])
	}
}

// FuzzCountRecords: any bytes as a produce's record set count without a
// panic, and never more records than whole headers could claim.
func FuzzCountRecords(f *testing.F) {
	f.Add(recordBatch("a", "b"))
	f.Add(append(recordBatch("x"), recordBatch("y", "z")...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, records []byte) {
		if n := storage.CountRecords(records); n < 0 || (len(records) < 61 && n != 0) {
			t.Fatalf("CountRecords of %d bytes = %d", len(records), n)
		}
	})
}

// TestCloseDuringThrottle: a connection held back for seconds does not
// delay Close. The hold is ~12 s; Close waiting for it would take all of
// that, so Close within 5 s (generous for a busy machine) shows it did not.
func TestCloseDuringThrottle(t *testing.T) {
	b, err := Start(Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quietLogger(), Sync: storage.SyncNever,
		Quota: quota.Config{ThroughputUnits: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Log().CreateTopic("big", 15, nil); err != nil {
		t.Fatal(err)
	}
	// One request of 15 x 900 KiB: ~12 s over the bucket.
	req := produceEach("big", 15, strings.Repeat("b", 900<<10))
	r := dialRaw(t, b)
	resp := r.roundTrip(req).(*kmsg.ProduceResponse)
	heldUntil := time.Now().Add(time.Duration(resp.ThrottleMillis) * time.Millisecond)
	if resp.ThrottleMillis < 10000 {
		t.Fatalf("13 MiB at once on 1 TU throttled %d ms, want ~12 s", resp.ThrottleMillis)
	}
	r.write(frameOf(kmsg.NewPtrMetadataRequest(), 99)) // held back
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if el, held := time.Since(start), time.Until(heldUntil); el > 5*time.Second {
		t.Fatalf("Close took %v with a connection held back %v more", el, held+el)
	}
}

// groupOffsets is a fixed set of committed offsets: a committedOffsets
// that stands in for the group coordinator, so the lag metric can be
// checked without groups committing.
type groupOffsets map[string]int64 // "group/topic/partition" -> offset

func (g groupOffsets) EachCommitted(fn func(group, topic string, partition int32, offset int64)) {
	for k, off := range g {
		parts := strings.Split(k, "/")
		p, _ := strconv.Atoi(parts[2])
		fn(parts[0], parts[1], int32(p), off)
	}
}

// TestGroupLagMetric checks the lag metric's hook: log end minus committed.
func TestGroupLagMetric(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.Sync = storage.SyncNever })
	topicWithBatches(t, b, "lagged", 2, 5, "r")
	b.metrics.groups = groupOffsets{"readers/lagged/0": 2, "readers/lagged/1": 0, "gone/deleted/0": 1}
	m := scrapeHandler(t, b)
	for series, want := range map[string]float64{
		`weir_consumer_group_lag{group="readers",partition="0",topic="lagged"}`: 3,
		`weir_consumer_group_lag{group="readers",partition="1",topic="lagged"}`: 0,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if _, ok := m[`weir_consumer_group_lag{group="gone",partition="0",topic="deleted"}`]; ok {
		t.Error("lag reported for a topic that does not exist")
	}
}
