// Package broker is weir's Kafka-protocol front end: the listener, the
// per-connection loop, request dispatch, and one file per Kafka API.
package broker

// THIS FILE IS THE CONTRACT between broker/ and its users (cmd/weir, tests,
// weirtest). broker/ may move these declarations to other files of the
// package, but keeps the names and shapes.

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weirhq/weir/quota"
	"github.com/weirhq/weir/storage"
)

// Config is the broker's configuration. The zero value of every field means
// "use the default" (see the comment on each field); Validate reports bad
// values.
type Config struct {
	// Addr is the listen address. Default "127.0.0.1:9092". Use
	// "127.0.0.1:0" for a random port (see Broker.Addr).
	Addr string
	// AdvertisedAddr is the host:port put in Metadata. Default: the actual
	// listen address.
	AdvertisedAddr string
	// DataDir is where the log lives. Required.
	DataDir string
	// NodeID is this broker's id in Metadata. Default 0.
	NodeID int32
	// ClusterID is reported in Metadata. Default: generated once and
	// persisted in DataDir.
	ClusterID string

	// AutoCreateTopics creates unknown topics on Metadata/Produce requests
	// that ask for it. Default true; set DisableAutoCreateTopics to turn off.
	DisableAutoCreateTopics bool
	// DefaultPartitions for auto-created topics and CreateTopics with -1. Default 1.
	DefaultPartitions int32
	// StrictReplicationFactor rejects CreateTopics with replication factor > 1
	// (INVALID_REPLICATION_FACTOR). By default such requests are accepted as
	// factor 1 with one warning log per topic.
	StrictReplicationFactor bool

	// Consumer groups (group/). Zero values take the defaults of
	// group.Config.
	//
	// GroupInitialRebalanceDelay is how long the first rebalance of an
	// empty group waits for more members, extended by as much again for
	// each member that joins meanwhile (Kafka's
	// group.initial.rebalance.delay.ms). Default 300 ms (Kafka: 3 s): a
	// fleet started together still rebalances once, and a lone consumer
	// is not kept waiting. Negative means no delay.
	GroupInitialRebalanceDelay time.Duration
	// OffsetsRetention is how long the committed offsets of a group that
	// has no members are kept (Kafka's offsets.retention.minutes).
	// Default 7 days.
	OffsetsRetention time.Duration
	// RequireGroupCreate refuses JoinGroup, SyncGroup and OffsetCommit for
	// groups not created beforehand (`weir group create`, or an
	// IncrementalAlterConfigs on a GROUP resource) with
	// GROUP_AUTHORIZATION_FAILED, so a typo in a group name fails fast
	// instead of silently starting from scratch. Default false.
	RequireGroupCreate bool
	// GroupMaxSize bounds the members of one group
	// (GROUP_MAX_SIZE_REACHED beyond). Default 1000.
	GroupMaxSize int
	// MaxGroups bounds the groups kept; empty groups without offsets are
	// dropped first. Default 100,000.
	MaxGroups int
	// GroupMinSessionTimeout and GroupMaxSessionTimeout bound the session
	// timeout members ask for (Kafka's group.min/max.session.timeout.ms).
	// Defaults 6 s and 30 min.
	GroupMinSessionTimeout time.Duration
	GroupMaxSessionTimeout time.Duration

	// TLS, if set, makes the listener serve TLS with it: each connection
	// starts with a TLS handshake (Certificates or GetCertificate must be
	// set). A failed handshake closes that connection only. Default nil:
	// plain TCP. weir serve --tls-cert/--tls-key build it from PEM files.
	TLS *tls.Config

	// SASL sets the SASL PLAIN logins the broker accepts. With any login
	// configured, every connection must log in before any request other
	// than ApiVersions, as on a Kafka SASL listener. Default: no SASL.
	SASL SASLConfig

	// MaxRequestBytes is the largest request frame accepted; a larger one
	// closes the connection. Default 100 MiB.
	MaxRequestBytes int32

	// Storage settings.
	Sync         storage.SyncPolicy  // default SyncAlways
	SyncInterval time.Duration       // default 1s (SyncInterval policy)
	Defaults     storage.TopicConfig // topic defaults; zero fields take Kafka's
	FS           storage.FS          // default storage.OSFS (tests inject faults)

	// Quota sets throughput units: broker-wide TUs (0, the default, is
	// unlimited), per-topic caps and auto-inflate; see package quota and
	// docs/QUOTAS.md. Settings changed at runtime (weir tu set, or
	// IncrementalAlterConfigs on the broker) are kept in DataDir and
	// override these, as Kafka's dynamic broker configs do.
	Quota quota.Config

	// Metrics is the Prometheus registry the broker registers its metrics
	// on (docs/METRICS.md). Default: a new registry of the broker's own.
	// Broker.MetricsHandler serves it. Start registers the metrics, Close
	// or a failed Start unregisters them: a registry can be reused by the
	// next broker, not shared by two running ones.
	Metrics *prometheus.Registry

	Logger *slog.Logger // default slog.Default()
}

// SASLConfig sets the SASL PLAIN logins a broker accepts. SASL is on when
// PlainUsers or SASKeys has an entry; then ApiVersions lists SaslHandshake
// and SaslAuthenticate, and a connection that sends any other request
// before it has logged in is closed, as Kafka does. Use it with TLS: PLAIN
// sends passwords as they are.
type SASLConfig struct {
	// PlainUsers maps user names to passwords.
	PlainUsers map[string]string
	// SASKeys maps shared access key names to keys, for Event Hubs-style
	// logins: the user "$ConnectionString" with the password
	// "Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=NAME;SharedAccessKey=KEY"
	// is accepted when NAME is here with KEY. The endpoint and any
	// EntityPath are not checked: like Event Hubs' namespace-level keys, a
	// key opens every topic.
	SASKeys map[string]string
}

// enabled reports whether any login is configured.
func (s *SASLConfig) enabled() bool { return len(s.PlainUsers) > 0 || len(s.SASKeys) > 0 }

// Broker API:
//
//   func Start(cfg Config) (*Broker, error)  // opens the log, listens, serves in background goroutines
//   func (b *Broker) Addr() string           // actual "host:port" (useful with port 0)
//   func (b *Broker) Log() *storage.Log
//   func (b *Broker) MetricsHandler() http.Handler // Prometheus text format of the broker's metrics
//   func (b *Broker) Close() error           // stops accepting, closes connections, waits for every
//                                            // goroutine, flushes and closes the log. Idempotent.
