package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/group"
	"github.com/weirhq/weir/storage"
)

// runServe runs the broker until ctx is done (SIGINT/SIGTERM), then closes it
// gracefully: connections closed, log flushed.
func runServe(ctx context.Context, e *env, args []string) error {
	const cmd = "serve"
	fs := e.newFlagSet(cmd, "serve [flags]")
	var (
		addr           = fs.String("addr", "127.0.0.1:9092", "listen `host:port` (port 0 picks a free port)")
		advertised     = fs.String("advertised-addr", "", "`host:port` given to clients in Metadata (default: the listen address)")
		dataDir        = fs.String("data-dir", "", "data `directory` (default $WEIR_DATA_DIR, else $XDG_DATA_HOME/weir, else ~/.local/share/weir)")
		fsync          = fs.String("fsync", "always", "fsync `policy`: always (fsync before acks=-1 is answered and consumers see data), interval, never")
		fsyncInterval  = fs.Duration("fsync-interval", time.Second, "fsync period for --fsync interval")
		autoCreate     = fs.Bool("auto-create-topics", true, "create unknown topics on Metadata/Produce requests that ask for it")
		defParts       = fs.Int("default-partitions", 1, "`partitions` of auto-created topics")
		strictRF       = fs.Bool("strict-replication-factor", false, "reject replication factor > 1 instead of accepting it as 1")
		maxReq         = fs.Int("max-request-bytes", 100<<20, "largest request frame in `bytes`; larger ones close the connection")
		retentionMs    = fs.Int64("retention-ms", 7*24*3600*1000, "default retention.ms of topics (-1 = forever)")
		segmentBytes   = fs.Int64("segment-bytes", 1<<30, "default segment.bytes of topics")
		rebalanceDelay = fs.Duration("group-initial-rebalance-delay", group.DefaultInitialRebalanceDelay,
			"how long the first rebalance of an empty group waits for more members (extended per joining member); 0 for none")
		requireGroup     = fs.Bool("require-group-create", false, "refuse consumer groups not created with 'weir group create' (GROUP_AUTHORIZATION_FAILED)")
		offsetsRetention = fs.Duration("offsets-retention", group.DefaultOffsetsRetention, "keep committed offsets of a group without members this `long`")
		logLevel         = fs.String("log-level", "info", "log `level`: debug, info, warn, error")
		logFormat        = fs.String("log-format", "text", "log `format`: text or json")
		metricsAddr      = fs.String("metrics-addr", "", "serve Prometheus metrics on http://`host:port`/metrics (default: off)")
	)
	qf := addQuotaFlags(fs)
	af := addAuthFlags(fs)
	pos, err := e.parseFlags(fs, cmd, args)
	if err != nil {
		return err
	}
	if err := noArgs(cmd, pos); err != nil {
		return err
	}
	logger, err := newLogger(e.stderr, *logLevel, *logFormat)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	policy, err := parseSyncPolicy(*fsync)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	switch {
	case *fsyncInterval <= 0:
		return usagef(cmd, "--fsync-interval must be positive")
	case *defParts < 1 || *defParts > 1<<20:
		return usagef(cmd, "--default-partitions must be between 1 and %d", 1<<20)
	case *maxReq < 1024 || *maxReq > 1<<30:
		return usagef(cmd, "--max-request-bytes must be between 1024 and %d", 1<<30)
	case *retentionMs < -1 || *retentionMs == 0:
		return usagef(cmd, "--retention-ms must be positive or -1")
	case *segmentBytes < 14:
		return usagef(cmd, "--segment-bytes is too small")
	case *rebalanceDelay < 0:
		return usagef(cmd, "--group-initial-rebalance-delay must be >= 0")
	case *offsetsRetention <= 0:
		return usagef(cmd, "--offsets-retention must be positive")
	}
	if *rebalanceDelay == 0 {
		*rebalanceDelay = -1 // broker.Config: negative means none, zero the default
	}
	quotaCfg, err := qf.config()
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	tlsCfg, saslCfg, err := af.config(e.getenv)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	dir := *dataDir
	if dir == "" {
		if dir, err = defaultDataDir(e.getenv); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("weir: data dir: %w", err)
	}

	cfg := broker.Config{
		Addr:                    *addr,
		AdvertisedAddr:          *advertised,
		DataDir:                 dir,
		DisableAutoCreateTopics: !*autoCreate,
		DefaultPartitions:       int32(*defParts),
		StrictReplicationFactor: *strictRF,
		MaxRequestBytes:         int32(*maxReq),
		Sync:                    policy,
		SyncInterval:            *fsyncInterval,
		Defaults: storage.TopicConfig{
			RetentionMs:  *retentionMs,
			SegmentBytes: *segmentBytes,
		},
		GroupInitialRebalanceDelay: *rebalanceDelay,
		RequireGroupCreate:         *requireGroup,
		OffsetsRetention:           *offsetsRetention,
		Quota:                      quotaCfg,
		TLS:                        tlsCfg,
		SASL:                       saslCfg,
		Metrics:                    newMetricsRegistry(),
		Logger:                     logger,
	}
	start := time.Now()
	b, err := broker.Start(cfg)
	if err != nil {
		return fmt.Errorf("weir: start broker: %w", err)
	}
	logger.Info("weir listening", "addr", b.Addr(), "data_dir", dir, "fsync", *fsync,
		"startup", time.Since(start).Round(time.Millisecond))
	stopMetrics := func() {}
	if *metricsAddr != "" {
		if stopMetrics, err = serveMetrics(*metricsAddr, b, logger); err != nil {
			b.Close()
			return err
		}
	}

	<-ctx.Done()
	logger.Info("shutting down")
	stopMetrics()
	if err := b.Close(); err != nil {
		return fmt.Errorf("weir: close broker: %w", err)
	}
	logger.Info("stopped")
	return nil
}

func parseSyncPolicy(s string) (storage.SyncPolicy, error) {
	switch s {
	case "always":
		return storage.SyncAlways, nil
	case "interval":
		return storage.SyncInterval, nil
	case "never":
		return storage.SyncNever, nil
	}
	return 0, fmt.Errorf("--fsync must be always, interval or never, not %q", s)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

// defaultDataDir is $WEIR_DATA_DIR, else $XDG_DATA_HOME/weir, else
// ~/.local/share/weir.
func defaultDataDir(getenv func(string) string) (string, error) {
	if d := getenv("WEIR_DATA_DIR"); d != "" {
		return d, nil
	}
	if d := getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "weir"), nil
	}
	home := getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("weir: no data dir: set --data-dir or $WEIR_DATA_DIR: %w", err)
		}
		home = h
	}
	return filepath.Join(home, ".local", "share", "weir"), nil
}
