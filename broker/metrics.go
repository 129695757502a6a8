package broker

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/weirhq/weir/quota"
)

// metrics are the broker's Prometheus metrics, registered on a registry
// the broker owns (or Config.Metrics). docs/METRICS.md documents each one.
// Start registers them last, once everything they read exists, and Close
// (or a failed Start) unregisters them, so a registry outlives brokers:
// Start, Close, Start again on one registry works.
//
// The produce and fetch paths only touch counters resolved once per topic
// (topicMetrics, cached in topics): no label lookup or allocation per
// request. Log offsets and sizes are read from storage at scrape time by
// brokerCollector.
type metrics struct {
	reg        *prometheus.Registry
	collectors []prometheus.Collector // what register puts on reg

	inMessages, inBytes   *prometheus.CounterVec // topic
	outMessages, outBytes *prometheus.CounterVec // topic
	topicThrottled        *prometheus.CounterVec // topic, direction

	throttled       [2]prometheus.Counter // per quota.Direction
	throttleSeconds [2]prometheus.Counter
	unitChanges     *prometheus.CounterVec // reason

	produceLatency, fetchLatency prometheus.Histogram

	authFailures prometheus.Counter // refused SASL logins

	topics sync.Map // topic name -> *topicMetrics

	// groups feeds the consumer group lag metric; nil until a group
	// coordinator exists. Set in Start, before register: a scrape can
	// read it from then on.
	groups committedOffsets
}

// committedOffsets is what the consumer group lag metric needs from the
// group coordinator (*group.Coordinator, set in Start): every group's
// committed offsets, read at scrape time.
type committedOffsets interface {
	// EachCommitted calls fn once per committed offset of every group.
	EachCommitted(fn func(group, topic string, partition int32, offset int64))
}

// topicMetrics are one topic's pre-resolved counters.
type topicMetrics struct {
	inMessages, inBytes   prometheus.Counter
	outMessages, outBytes prometheus.Counter
	throttled             [2]prometheus.Counter
}

// latencyBuckets span 100µs to ~26s, doubling.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 19)

// newMetrics makes the broker's metrics for reg. It registers nothing:
// register does, once the broker is ready to be scraped.
func newMetrics(b *Broker, reg *prometheus.Registry) *metrics {
	m := &metrics{reg: reg}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.collectors = append(m.collectors, c)
		return c
	}
	m.inMessages = counterVec("weir_topic_incoming_messages_total", "Records appended by produce requests.", "topic")
	m.inBytes = counterVec("weir_topic_incoming_bytes_total", "Record batch bytes appended by produce requests.", "topic")
	m.outMessages = counterVec("weir_topic_outgoing_messages_total", "Records returned by fetch requests.", "topic")
	m.outBytes = counterVec("weir_topic_outgoing_bytes_total", "Record batch bytes returned by fetch requests.", "topic")
	m.topicThrottled = counterVec("weir_topic_throttled_requests_total",
		"Produce (ingress) or fetch (egress) requests touching the topic that were answered with a throttle.", "topic", "direction")
	throttled := counterVec("weir_throttled_requests_total",
		"Requests answered with a throttle (throttle_time_ms > 0) because a throughput-unit limit was exceeded.", "direction")
	throttleSeconds := counterVec("weir_throttle_seconds_total",
		"Sum of the throttle times given to clients; their connections' reads were held back this long.", "direction")
	for _, d := range []quota.Direction{quota.Ingress, quota.Egress} {
		m.throttled[d] = throttled.WithLabelValues(d.String())
		m.throttleSeconds[d] = throttleSeconds.WithLabelValues(d.String())
	}
	m.unitChanges = counterVec("weir_throughput_unit_changes_total",
		"Changes of the broker-wide throughput-unit count, by reason: auto-inflate, scale-down, set.", "reason")
	for _, r := range []string{"auto-inflate", "scale-down", "set"} {
		m.unitChanges.WithLabelValues(r) // export zeros
	}
	m.produceLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "weir_produce_latency_seconds",
		Help:    "Time from reading a produce request to its response being ready (acks=-1 includes the fsync wait).",
		Buckets: latencyBuckets,
	})
	m.fetchLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "weir_fetch_latency_seconds",
		Help:    "Time from reading a fetch request to its response being ready (includes the long-poll wait).",
		Buckets: latencyBuckets,
	})
	m.authFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "weir_sasl_authentication_failures_total",
		Help: "SASL logins refused: wrong or malformed credentials, or an unsupported mechanism.",
	})
	m.collectors = append(m.collectors, m.produceLatency, m.fetchLatency, m.authFailures, &brokerCollector{b: b})
	return m
}

// register puts every metric on the registry, or none: it fails if the
// registry already has them (one registry shared by two running brokers).
func (m *metrics) register() error {
	for i, c := range m.collectors {
		if err := m.reg.Register(c); err != nil {
			for _, r := range m.collectors[:i] {
				m.reg.Unregister(r)
			}
			return &ConfigError{"Metrics", "registering the broker's metrics: " + err.Error()}
		}
	}
	return nil
}

// unregister takes every metric off the registry.
func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

// topic returns the topic's counters, resolving them on first use.
func (m *metrics) topic(name string) *topicMetrics {
	if tm, ok := m.topics.Load(name); ok {
		return tm.(*topicMetrics)
	}
	tm := &topicMetrics{
		inMessages:  m.inMessages.WithLabelValues(name),
		inBytes:     m.inBytes.WithLabelValues(name),
		outMessages: m.outMessages.WithLabelValues(name),
		outBytes:    m.outBytes.WithLabelValues(name),
	}
	for _, d := range []quota.Direction{quota.Ingress, quota.Egress} {
		tm.throttled[d] = m.topicThrottled.WithLabelValues(name, d.String())
	}
	actual, _ := m.topics.LoadOrStore(name, tm)
	return actual.(*topicMetrics)
}

// forgetTopic drops a deleted topic's series.
func (m *metrics) forgetTopic(name string) {
	m.topics.Delete(name)
	for _, v := range []*prometheus.CounterVec{m.inMessages, m.inBytes, m.outMessages, m.outBytes} {
		v.DeleteLabelValues(name)
	}
	m.topicThrottled.DeletePartialMatch(prometheus.Labels{"topic": name})
}

func (m *metrics) observeLatency(key int16, d time.Duration) {
	switch key {
	case 0:
		m.produceLatency.Observe(d.Seconds())
	case 1:
		m.fetchLatency.Observe(d.Seconds())
	}
}

// MetricsHandler serves the broker's metrics in the Prometheus text format,
// for an HTTP server the caller owns (weir serve --metrics-addr).
func (b *Broker) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(b.metrics.reg, promhttp.HandlerOpts{Registry: b.metrics.reg})
}

// Metrics returns the registry the broker's metrics are registered on.
func (b *Broker) Metrics() *prometheus.Registry { return b.metrics.reg }

// brokerCollector reads state at scrape time: connections, throughput
// units, and every partition's log offsets and size. Nothing is counted on
// the hot path for these.
type brokerCollector struct{ b *Broker }

var (
	descConnections = prometheus.NewDesc("weir_connections",
		"Open client connections.", nil, nil)
	descUnits = prometheus.NewDesc("weir_throughput_units",
		"Broker-wide throughput units in force (0 = unlimited).", nil, nil)
	descUnitsMax = prometheus.NewDesc("weir_throughput_units_max",
		"Auto-inflate's maximum throughput units (0 = auto-inflate off).", nil, nil)
	descTopicUnits = prometheus.NewDesc("weir_topic_throughput_units",
		"Throughput-unit cap of a topic (only topics with a cap).", []string{"topic"}, nil)
	descLogEnd = prometheus.NewDesc("weir_partition_log_end_offset",
		"High watermark of a partition: the offset the next record will get, once durable.", []string{"topic", "partition"}, nil)
	descLogStart = prometheus.NewDesc("weir_partition_log_start_offset",
		"First offset still stored in a partition.", []string{"topic", "partition"}, nil)
	descLogSize = prometheus.NewDesc("weir_partition_size_bytes",
		"Bytes of segment files of a partition.", []string{"topic", "partition"}, nil)
	descGroupLag = prometheus.NewDesc("weir_consumer_group_lag",
		"Records a consumer group has yet to commit on a partition: log end offset minus committed offset.",
		[]string{"group", "topic", "partition"}, nil)
)

func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descUnits, descUnitsMax, descTopicUnits, descLogEnd, descLogStart, descLogSize, descGroupLag} {
		ch <- d
	}
}

func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	b.mu.Lock()
	conns := len(b.mu.conns)
	b.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(conns))

	units, cfg := b.quota.current()
	ch <- prometheus.MustNewConstMetric(descUnits, prometheus.GaugeValue, float64(units))
	maxUnits := 0
	if cfg.AutoInflate {
		maxUnits = cfg.AutoInflateMaxUnits
	}
	ch <- prometheus.MustNewConstMetric(descUnitsMax, prometheus.GaugeValue, float64(maxUnits))
	for topic, u := range cfg.TopicUnits {
		if u > 0 {
			ch <- prometheus.MustNewConstMetric(descTopicUnits, prometheus.GaugeValue, float64(u), topic)
		}
	}

	for _, t := range b.log.Topics() {
		for i := range t.NumPartitions() {
			p, ok := t.Partition(i)
			if !ok {
				continue
			}
			part := strconv.Itoa(int(i))
			ch <- prometheus.MustNewConstMetric(descLogEnd, prometheus.GaugeValue, float64(p.HighWatermark()), t.Name(), part)
			ch <- prometheus.MustNewConstMetric(descLogStart, prometheus.GaugeValue, float64(p.LogStartOffset()), t.Name(), part)
			ch <- prometheus.MustNewConstMetric(descLogSize, prometheus.GaugeValue, float64(p.Size()), t.Name(), part)
		}
	}

	if b.metrics.groups == nil {
		return
	}
	b.metrics.groups.EachCommitted(func(group, topic string, partition int32, offset int64) {
		p, err := b.partition(topic, partition)
		if err != nil {
			return // deleted since the commit
		}
		lag := max(p.HighWatermark()-offset, 0)
		ch <- prometheus.MustNewConstMetric(descGroupLag, prometheus.GaugeValue, float64(lag),
			group, topic, strconv.Itoa(int(partition)))
	})
}
