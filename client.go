package weir

import (
	"context"
	"crypto/tls"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// clientConfig is what a Producer and a Processor share: where the brokers
// are, how to authenticate, and which topic.
type clientConfig struct {
	brokers     []string
	conn        *EventHubsConnection
	connErr     error // from ConnectionString, reported by validate
	topic       string
	clientID    string
	logger      *slog.Logger
	tls         *tls.Config
	saslUser    string
	saslPass    string
	dialTimeout time.Duration
	kgoOpts     []kgo.Opt
}

const defaultDialTimeout = 10 * time.Second

func defaultClientConfig() clientConfig {
	return clientConfig{
		clientID:    "weir",
		logger:      slog.Default(),
		dialTimeout: defaultDialTimeout,
	}
}

// ProducerOpt configures a Producer.
type ProducerOpt interface{ applyProducer(*producerConfig) }

// ProcessorOpt configures a Processor.
type ProcessorOpt interface{ applyProcessor(*processorConfig) }

// ClientOpt is an option that a Producer and a Processor both take.
type ClientOpt interface {
	ProducerOpt
	ProcessorOpt
}

type clientOpt func(*clientConfig)

func (o clientOpt) applyProducer(c *producerConfig)   { o(&c.client) }
func (o clientOpt) applyProcessor(c *processorConfig) { o(&c.client) }

// Brokers sets the bootstrap brokers, "host:port" each.
func Brokers(addrs ...string) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.brokers = append([]string(nil), addrs...) })
}

// ConnectionString points the client at an Azure Event Hubs namespace:
// SASL PLAIN over TLS on port 9093, with the user "$ConnectionString" and the
// whole string as the password. The string's EntityPath, if any, is the
// default topic. A bad string is reported by NewProducer / NewProcessor as a
// *ConnectionStringError.
func ConnectionString(s string) ClientOpt {
	return clientOpt(func(c *clientConfig) {
		ehc, err := ParseConnectionString(s)
		if err != nil {
			c.conn, c.connErr = nil, err
			return
		}
		c.conn, c.connErr = &ehc, nil
	})
}

// Topic sets the topic (event hub). It overrides a connection string's
// EntityPath.
func Topic(name string) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.topic = name })
}

// ClientID sets the Kafka client id the brokers see. Default "weir".
func ClientID(id string) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.clientID = id })
}

// Logger sets the slog logger. Default slog.Default().
func Logger(l *slog.Logger) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.logger = l })
}

// TLS dials the brokers over TLS with cfg.
func TLS(cfg *tls.Config) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.tls = cfg })
}

// SASLPlain authenticates with SASL PLAIN. Use it with TLS: PLAIN sends the
// password as it is.
func SASLPlain(user, pass string) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.saslUser, c.saslPass = user, pass })
}

// DialTimeout bounds each connection attempt. Default 10s.
func DialTimeout(d time.Duration) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.dialTimeout = d })
}

// KgoOpts passes options straight to the underlying franz-go client, for
// what weir has no option of its own. weir's options are applied after
// these, so they win on conflict.
func KgoOpts(opts ...kgo.Opt) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.kgoOpts = append(c.kgoOpts, opts...) })
}

// configError reports one bad option.
type configError struct {
	option string
	reason string
}

func (e *configError) Error() string {
	return "weir: invalid config: " + e.option + ": " + e.reason
}

func (e *configError) Unwrap() error { return ErrInvalidConfig }

// validate checks the shared options and fills in what a connection string
// implies.
func (c *clientConfig) validate() error {
	if c.connErr != nil {
		return c.connErr
	}
	if c.conn != nil {
		if len(c.brokers) > 0 {
			return &configError{"Brokers", "set both Brokers and ConnectionString; choose one"}
		}
		if c.topic == "" {
			c.topic = c.conn.EntityPath
		}
	} else if len(c.brokers) == 0 {
		return &configError{"Brokers", "no brokers: set Brokers or ConnectionString"}
	}
	for _, b := range c.brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return &configError{"Brokers", err.Error()}
		}
	}
	if c.topic == "" {
		return &configError{"Topic", "no topic: set Topic, or EntityPath in the connection string"}
	}
	if c.logger == nil {
		return &configError{"Logger", "nil logger"}
	}
	if c.dialTimeout <= 0 {
		return &configError{"DialTimeout", "must be > 0"}
	}
	if (c.saslUser == "") != (c.saslPass == "") {
		return &configError{"SASLPlain", "user and password must both be set"}
	}
	return nil
}

// usesSASL reports whether the client logs in with SASL. Call it after
// validate.
func (c *clientConfig) usesSASL() bool { return c.conn != nil || c.saslUser != "" }

// kgoClientOpts returns the franz-go options for the shared settings. Call
// it after validate.
func (c *clientConfig) kgoClientOpts() []kgo.Opt {
	opts := append([]kgo.Opt(nil), c.kgoOpts...)
	opts = append(opts, kgo.ClientID(c.clientID), kgo.DialTimeout(c.dialTimeout))
	tlsCfg, user, pass := c.tls, c.saslUser, c.saslPass
	if c.conn != nil {
		opts = append(opts, kgo.SeedBrokers(c.conn.Broker))
		if tlsCfg == nil {
			host, _, _ := net.SplitHostPort(c.conn.Broker)
			tlsCfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		user, pass = "$ConnectionString", c.conn.raw
	} else {
		opts = append(opts, kgo.SeedBrokers(c.brokers...))
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg.Clone()))
	}
	if user != "" {
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	}
	return opts
}

// backoff is the SDK's one retry backoff: exponential from first, doubling
// up to max, each delay with ±20% jitter so that a fleet retrying the same
// fault does not retry in step. tries counts failures so far, from 1. Each
// caller keeps its own first and max.
func backoff(first, max time.Duration) func(tries int) time.Duration {
	return func(tries int) time.Duration {
		d := first
		for i := 1; i < tries && d < max; i++ {
			if d > max/2 {
				d = max
				break
			}
			d *= 2
		}
		d = min(d, max)
		jitter := time.Duration(rand.Int64N(int64(d)/5*2+1)) - d/5
		if jitter > 0 && d > math.MaxInt64-jitter {
			return d
		}
		return d + jitter
	}
}

// topicPartitions is the producer's and the processor's one "does the
// topic exist" check: one metadata request for topic (asking the brokers to
// create it if autoCreate, where they allow that), answered with its
// partition count. A topic the brokers do not know is
// kerr.UnknownTopicOrPartition, which fatal turns into an *Error of Kind
// ErrUnknownTopic; a topic with no partitions yet (created a moment ago) is
// kerr.LeaderNotAvailable, which is retryable; any other topic-level error
// is returned as it is. Each caller decides how often to ask.
func topicPartitions(ctx context.Context, cl *kgo.Client, topic string, autoCreate bool) (int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = autoCreate
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return 0, err
		}
		if len(t.Partitions) == 0 {
			return 0, kerr.LeaderNotAvailable
		}
		return int32(len(t.Partitions)), nil
	}
	return 0, kerr.UnknownTopicOrPartition // not in the answer
}

// statsCollector is the producer's and the processor's
// prometheus.Collector: metric descriptors sharing a name prefix and
// constant labels, and a function that emits one snapshot of them.
type statsCollector struct {
	prefix  string
	labels  prometheus.Labels
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

func newStatsCollector(prefix string, labels prometheus.Labels) *statsCollector {
	return &statsCollector{prefix: prefix, labels: labels}
}

// desc adds the descriptor of the metric prefix+name, with variable labels
// vars.
func (c *statsCollector) desc(name, help string, vars ...string) *prometheus.Desc {
	d := prometheus.NewDesc(c.prefix+name, help, vars, c.labels)
	c.descs = append(c.descs, d)
	return d
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labelValues ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labelValues...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labelValues ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labelValues...)
}

// kgoLogger sends franz-go's logs to slog, for the producer and the
// processor alike. franz-go's info level is chatty (metadata refreshes,
// connections), so it goes to slog's debug level, and franz-go's debug
// level below that. With calm (the processor), franz-go's errors and
// warnings go one level down too: a group session that ends on a broker
// restart, or a reconnect attempt, is an error or a warning to franz-go
// but, to a processor that waits and resumes, a normal event; the
// processor logs its own warnings for what lasts.
type kgoLogger struct {
	l    *slog.Logger
	calm bool
}

func (k kgoLogger) slogLevel(level kgo.LogLevel) slog.Level {
	switch {
	case level == kgo.LogLevelError && k.calm:
		return slog.LevelWarn
	case level == kgo.LogLevelError:
		return slog.LevelError
	case level == kgo.LogLevelWarn && k.calm:
		return slog.LevelInfo
	case level == kgo.LogLevelWarn:
		return slog.LevelWarn
	case level == kgo.LogLevelInfo:
		return slog.LevelDebug
	}
	return slog.LevelDebug - 4
}

func (k kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	for _, lv := range []kgo.LogLevel{kgo.LogLevelDebug, kgo.LogLevelInfo, kgo.LogLevelWarn, kgo.LogLevelError} {
		if k.l.Enabled(ctx, k.slogLevel(lv)) {
			return lv
		}
	}
	return kgo.LogLevelNone
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	k.l.Log(context.Background(), k.slogLevel(level), "kgo: "+msg, keyvals...)
}
