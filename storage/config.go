package storage

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Supported topic config keys.
const (
	ConfigRetentionMs     = "retention.ms"
	ConfigRetentionBytes  = "retention.bytes"
	ConfigSegmentBytes    = "segment.bytes"
	ConfigSegmentMs       = "segment.ms"
	ConfigMaxMessageBytes = "max.message.bytes"
	ConfigCleanupPolicy   = "cleanup.policy"
	ConfigTimestampType   = "message.timestamp.type"
)

// MinSegmentBytes is the smallest accepted segment.bytes. Kafka accepts 14;
// weir wants room for at least one small batch per segment.
const MinSegmentBytes = 1024

// Kafka's defaults.
const (
	defaultRetentionMs     = 7 * 24 * 60 * 60 * 1000
	defaultRetentionBytes  = -1
	defaultSegmentBytes    = 1 << 30
	defaultSegmentMs       = 7 * 24 * 60 * 60 * 1000
	defaultMaxMessageBytes = 1048588
	defaultCleanupPolicy   = "delete"
	defaultTimestampType   = "CreateTime"
)

// configKeys lists every supported key, in DescribeConfigs order.
var configKeys = []string{
	ConfigCleanupPolicy,
	ConfigMaxMessageBytes,
	ConfigTimestampType,
	ConfigRetentionBytes,
	ConfigRetentionMs,
	ConfigSegmentBytes,
	ConfigSegmentMs,
}

// ConfigError says why a topic config value was rejected. It unwraps to
// ErrInvalidConfig.
type ConfigError struct {
	Key    string
	Value  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("weir: invalid topic config %s=%q: %s", e.Key, e.Value, e.Reason)
}
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// ConfigEntry is one topic config as DescribeConfigs reports it.
type ConfigEntry struct {
	Name      string
	Value     string
	IsDefault bool // true unless the topic overrides the key
}

// withDefaults fills zero fields of c with Kafka's defaults.
func (c TopicConfig) withDefaults() TopicConfig {
	if c.RetentionMs == 0 {
		c.RetentionMs = defaultRetentionMs
	}
	if c.RetentionBytes == 0 {
		c.RetentionBytes = defaultRetentionBytes
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = defaultSegmentBytes
	}
	if c.SegmentMs == 0 {
		c.SegmentMs = defaultSegmentMs
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = defaultMaxMessageBytes
	}
	if c.CleanupPolicy == "" {
		c.CleanupPolicy = defaultCleanupPolicy
	}
	if c.TimestampType == "" {
		c.TimestampType = defaultTimestampType
	}
	return c
}

// validate checks a full config (used for Options.Defaults).
func (c TopicConfig) validate() error {
	for _, k := range configKeys {
		if _, err := parseConfigs(TopicConfig{}.withDefaults(), map[string]string{k: c.value(k)}); err != nil {
			return err
		}
	}
	return nil
}

// value renders the value of key k.
func (c TopicConfig) value(k string) string {
	switch k {
	case ConfigRetentionMs:
		return strconv.FormatInt(c.RetentionMs, 10)
	case ConfigRetentionBytes:
		return strconv.FormatInt(c.RetentionBytes, 10)
	case ConfigSegmentBytes:
		return strconv.FormatInt(c.SegmentBytes, 10)
	case ConfigSegmentMs:
		return strconv.FormatInt(c.SegmentMs, 10)
	case ConfigMaxMessageBytes:
		return strconv.FormatInt(int64(c.MaxMessageBytes), 10)
	case ConfigCleanupPolicy:
		return c.CleanupPolicy
	case ConfigTimestampType:
		return c.TimestampType
	}
	return ""
}

// deletes reports whether retention may delete segments of the topic.
func (c TopicConfig) deletes() bool { return strings.Contains(c.CleanupPolicy, "delete") }

func (c TopicConfig) logAppendTime() bool { return c.TimestampType == "LogAppendTime" }

// parseConfigs applies overrides to base, validating every key and value.
func parseConfigs(base TopicConfig, overrides map[string]string) (TopicConfig, error) {
	c := base
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same error for the same input
	for _, k := range keys {
		v := overrides[k]
		bad := func(reason string) error { return &ConfigError{Key: k, Value: v, Reason: reason} }
		num := func(lo, hi int64) (int64, error) {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, bad("not an integer")
			}
			if n < lo || n > hi {
				return 0, bad(fmt.Sprintf("must be between %d and %d", lo, hi))
			}
			return n, nil
		}
		var err error
		switch k {
		case ConfigRetentionMs:
			c.RetentionMs, err = num(-1, math.MaxInt64)
		case ConfigRetentionBytes:
			c.RetentionBytes, err = num(-1, math.MaxInt64)
		case ConfigSegmentBytes:
			c.SegmentBytes, err = num(MinSegmentBytes, math.MaxInt32)
		case ConfigSegmentMs:
			c.SegmentMs, err = num(1, math.MaxInt64)
		case ConfigMaxMessageBytes:
			var n int64
			n, err = num(0, math.MaxInt32)
			c.MaxMessageBytes = int32(n)
		case ConfigCleanupPolicy:
			switch strings.ReplaceAll(v, " ", "") {
			case "delete":
				c.CleanupPolicy = "delete"
			case "compact":
				c.CleanupPolicy = "compact"
			case "compact,delete", "delete,compact":
				c.CleanupPolicy = "compact,delete"
			default:
				err = bad("must be delete, compact or compact,delete")
			}
		case ConfigTimestampType:
			if v != "CreateTime" && v != "LogAppendTime" {
				err = bad("must be CreateTime or LogAppendTime")
			} else {
				c.TimestampType = v
			}
		default:
			err = bad("unknown config key")
		}
		if err != nil {
			return TopicConfig{}, err
		}
	}
	return c, nil
}

// describeConfigs lists every supported key with its effective value.
func describeConfigs(c TopicConfig, overrides map[string]string) []ConfigEntry {
	out := make([]ConfigEntry, 0, len(configKeys))
	for _, k := range configKeys {
		_, set := overrides[k]
		out = append(out, ConfigEntry{Name: k, Value: c.value(k), IsDefault: !set})
	}
	return out
}
