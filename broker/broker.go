package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weirhq/weir/group"
	"github.com/weirhq/weir/storage"
)

// Errors returned by Start and Validate.
var (
	// ErrInvalidConfig is wrapped by every *ConfigError.
	ErrInvalidConfig = errors.New("weir: invalid broker config")
	// ErrClosed is returned by operations on a closed broker.
	ErrClosed = errors.New("weir: broker closed")
)

// ConfigError reports one bad Config field.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return "weir: invalid broker config: " + e.Field + ": " + e.Reason
}

func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

const (
	defaultAddr            = "127.0.0.1:9092"
	defaultPartitions      = 1
	defaultMaxRequestBytes = 100 << 20
	defaultSyncInterval    = time.Second
	clusterIDFile          = "cluster.id"
)

// Validate reports the first bad field of c. Zero values are valid: they
// mean "use the default".
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return &ConfigError{"DataDir", "required"}
	}
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return &ConfigError{"Addr", err.Error()}
		}
	}
	if c.AdvertisedAddr != "" {
		if _, err := splitHostPort(c.AdvertisedAddr); err != nil {
			return &ConfigError{"AdvertisedAddr", err.Error()}
		}
	}
	if c.NodeID < 0 {
		return &ConfigError{"NodeID", "must be >= 0"}
	}
	if strings.ContainsAny(c.ClusterID, " \t\r\n") {
		return &ConfigError{"ClusterID", "must not contain white space"}
	}
	if c.DefaultPartitions < 0 {
		return &ConfigError{"DefaultPartitions", "must be >= 0"}
	}
	if c.MaxRequestBytes < 0 {
		return &ConfigError{"MaxRequestBytes", "must be >= 0"}
	}
	if c.Sync < storage.SyncAlways || c.Sync > storage.SyncNever {
		return &ConfigError{"Sync", "unknown sync policy " + strconv.Itoa(int(c.Sync))}
	}
	if c.SyncInterval < 0 {
		return &ConfigError{"SyncInterval", "must be >= 0"}
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
		return &ConfigError{"TLS", "no certificate: set Certificates or GetCertificate"}
	}
	if err := c.SASL.validate(); err != nil {
		return err
	}
	if err := c.Quota.Validate(); err != nil {
		return &ConfigError{"Quota", err.Error()}
	}
	gc := c.groupConfig()
	if err := gc.Validate(); err != nil {
		var ce *group.ConfigError
		if errors.As(err, &ce) {
			return &ConfigError{groupField(ce.Field), ce.Reason}
		}
		return &ConfigError{"Group", err.Error()}
	}
	return nil
}

// groupConfig is the group coordinator's share of c.
func (c *Config) groupConfig() group.Config {
	return group.Config{
		InitialRebalanceDelay: c.GroupInitialRebalanceDelay,
		OffsetsRetention:      c.OffsetsRetention,
		MinSessionTimeout:     c.GroupMinSessionTimeout,
		MaxSessionTimeout:     c.GroupMaxSessionTimeout,
		MaxGroupSize:          c.GroupMaxSize,
		MaxGroups:             c.MaxGroups,
		RequireCreate:         c.RequireGroupCreate,
	}
}

// groupField names the Config field behind a group.Config field.
func groupField(f string) string {
	switch f {
	case "InitialRebalanceDelay":
		return "GroupInitialRebalanceDelay"
	case "MinSessionTimeout":
		return "GroupMinSessionTimeout"
	case "MaxSessionTimeout":
		return "GroupMaxSessionTimeout"
	case "MaxGroupSize":
		return "GroupMaxSize"
	}
	return f
}

// withDefaults returns a copy of c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = defaultAddr
	}
	if c.DefaultPartitions == 0 {
		c.DefaultPartitions = defaultPartitions
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = defaultMaxRequestBytes
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = defaultSyncInterval
	}
	if c.FS == nil {
		c.FS = storage.OSFS{}
	}
	// The group fields keep their zero values: group.Config defaults them
	// (groupConfig passes them on as they are).
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	// The broker's own copies: a caller changing its config after Start
	// changes nothing (and races with nothing).
	c.SASL.PlainUsers = maps.Clone(c.SASL.PlainUsers)
	c.SASL.SASKeys = maps.Clone(c.SASL.SASKeys)
	if c.TLS != nil {
		c.TLS = c.TLS.Clone()
	}
	return c
}

// Broker is a running weir broker: a listener, its connections, and the log.
type Broker struct {
	cfg       Config
	logger    *slog.Logger
	log       *storage.Log
	ln        net.Listener
	clusterID string
	advHost   string
	advPort   int32
	producers *producerIDs
	quota     *throughput // throughput units
	metrics   *metrics
	groups    *group.Coordinator

	ctx    context.Context // cancelled by Close; parent of every connection's context
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loop and both goroutines of every connection

	mu struct {
		sync.Mutex
		closed bool
		conns  map[*conn]struct{}
	}
	closeOnce sync.Once
	closeErr  error
}

// Start opens the log in cfg.DataDir, listens on cfg.Addr and serves in
// background goroutines until Close.
func Start(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := cfg.FS.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("weir: create data dir: %w", err)
	}
	clusterID := cfg.ClusterID
	if clusterID == "" {
		id, err := loadClusterID(cfg.FS, cfg.DataDir)
		if err != nil {
			return nil, err
		}
		clusterID = id
	}
	producers, err := openProducerIDs(cfg.FS, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, logger: cfg.Logger, clusterID: clusterID, producers: producers}
	b.metrics = newMetrics(b, cfg.Metrics) // registered last, below
	if b.quota, err = openThroughput(cfg, cfg.Logger, b.metrics); err != nil {
		return nil, err
	}
	lg, err := storage.Open(storage.Options{
		Dir:          cfg.DataDir,
		FS:           cfg.FS,
		Sync:         cfg.Sync,
		SyncInterval: cfg.SyncInterval,
		Defaults:     cfg.Defaults,
		Logger:       cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	gcfg := cfg.groupConfig()
	gcfg.Logger = cfg.Logger
	gcfg.PartitionExists = func(topic string, partition int32) bool {
		t, ok := lg.Topic(topic)
		if !ok {
			return false
		}
		_, ok = t.Partition(partition)
		return ok
	}
	groups, err := group.Open(gcfg, cfg.FS, cfg.DataDir, cfg.Logger)
	if err != nil {
		lg.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		groups.Close()
		lg.Close()
		return nil, fmt.Errorf("weir: listen: %w", err)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	adv := cfg.AdvertisedAddr
	if adv == "" {
		adv = ln.Addr().String()
	}
	hp, err := splitHostPort(adv)
	if err != nil {
		ln.Close()
		groups.Close()
		lg.Close()
		return nil, &ConfigError{"AdvertisedAddr", err.Error()}
	}
	b.log, b.ln, b.advHost, b.advPort, b.groups = lg, ln, hp.host, hp.port, groups
	b.metrics.groups = groups // weir_consumer_group_lag
	b.mu.conns = make(map[*conn]struct{})
	// Last: a scrape reads the log, the quota and the groups. Close
	// unregisters.
	if err := b.metrics.register(); err != nil {
		ln.Close()
		groups.Close()
		lg.Close()
		return nil, err
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go b.acceptLoop()
	b.logger.Info("weir broker listening", "addr", ln.Addr().String(), "advertised", adv,
		"data_dir", cfg.DataDir, "cluster_id", clusterID, "node_id", cfg.NodeID,
		"tls", cfg.TLS != nil, "sasl", cfg.SASL.enabled())
	if cfg.SASL.enabled() && cfg.TLS == nil {
		b.logger.Warn("weir: SASL PLAIN without TLS: passwords cross the network in the clear")
	}
	return b, nil
}

// Addr returns the actual listen address as "host:port".
func (b *Broker) Addr() string { return b.ln.Addr().String() }

// Log returns the broker's log.
func (b *Broker) Log() *storage.Log { return b.log }

// ClusterID returns the cluster id reported in Metadata.
func (b *Broker) ClusterID() string { return b.clusterID }

// Close stops accepting, closes every connection, waits for every goroutine,
// then flushes and closes the log. It is idempotent.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.metrics.unregister() // before the log closes under a scrape
		b.cancel()
		err := b.ln.Close()
		b.mu.Lock()
		b.mu.closed = true
		for c := range b.mu.conns {
			c.nc.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
		if gerr := b.groups.Close(); gerr != nil {
			b.logger.Error("weir: close group coordinator", "err", gerr)
		}
		if lerr := b.log.Close(); lerr != nil {
			err = lerr
		} else if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		b.closeErr = err
	})
	return b.closeErr
}

func (b *Broker) acceptLoop() {
	defer b.wg.Done()
	var backoff time.Duration
	for {
		nc, err := b.ln.Accept()
		if err != nil {
			if b.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary errors (EMFILE, ...): back off, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			b.logger.Warn("weir: accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-b.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		c := newConn(b, nc)
		b.mu.Lock()
		if b.mu.closed {
			b.mu.Unlock()
			nc.Close()
			return
		}
		b.mu.conns[c] = struct{}{}
		b.wg.Add(2)
		b.mu.Unlock()
		go c.readLoop()
		go c.writeLoop()
	}
}

func (b *Broker) forget(c *conn) {
	b.mu.Lock()
	delete(b.mu.conns, c)
	b.mu.Unlock()
}

type hostPort struct {
	host string
	port int32
}

func splitHostPort(addr string) (hostPort, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return hostPort{}, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return hostPort{}, fmt.Errorf("bad port %q", p)
	}
	if h == "" || h == "::" || h == "0.0.0.0" {
		// An unspecified address cannot be dialed by clients everywhere;
		// advertise loopback rather than nothing.
		h = "127.0.0.1"
	}
	return hostPort{host: h, port: int32(port)}, nil
}

// loadClusterID reads DataDir/cluster.id, creating it with a new random id
// (Kafka style: 16 random bytes, base64 URL encoding without padding) the
// first time.
func loadClusterID(fs storage.FS, dir string) (string, error) {
	name := filepath.Join(dir, clusterIDFile)
	if data, err := readFile(fs, name); err == nil {
		id := strings.TrimSpace(string(data))
		if id != "" {
			return id, nil
		}
	} else if !isNotExist(err) {
		return "", fmt.Errorf("weir: read cluster id: %w", err)
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := base64.RawURLEncoding.EncodeToString(raw[:])
	if err := writeFileAtomic(fs, dir, clusterIDFile, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("weir: write cluster id: %w", err)
	}
	return id, nil
}

func readFile(fs storage.FS, name string) ([]byte, error) {
	f, err := fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > 1<<20 {
		return nil, fmt.Errorf("%s: unexpectedly large (%d bytes)", name, fi.Size())
	}
	buf := make([]byte, fi.Size())
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:n], nil
}

// writeFileAtomic writes dir/base through a temporary file, fsync and rename,
// then fsyncs dir.
func writeFileAtomic(fs storage.FS, dir, base string, data []byte) error {
	tmp := filepath.Join(dir, base+".tmp")
	f, err := fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, filepath.Join(dir, base)); err != nil {
		return err
	}
	return fs.SyncDir(dir)
}

func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
