package broker

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// topicConfigKeys are the topic configs weir knows, in the order they are
// described, with their Kafka config types.
var topicConfigKeys = []struct {
	name string
	kind kmsg.ConfigType
	list bool
}{
	{"cleanup.policy", kmsg.ConfigTypeList, true},
	{"max.message.bytes", kmsg.ConfigTypeInt, false},
	{"message.timestamp.type", kmsg.ConfigTypeString, false},
	{"retention.bytes", kmsg.ConfigTypeLong, false},
	{"retention.ms", kmsg.ConfigTypeLong, false},
	{"segment.bytes", kmsg.ConfigTypeInt, false},
	{"segment.ms", kmsg.ConfigTypeLong, false},
}

// knownTopicConfig reports whether name is a topic config, and whether it
// is a list.
func knownTopicConfig(name string) (known, list bool) {
	for _, k := range topicConfigKeys {
		if k.name == name {
			return true, k.list
		}
	}
	return false, false
}

// configEntry is one described config.
type configEntry struct {
	name      string
	value     string
	kind      kmsg.ConfigType
	source    kmsg.ConfigSource
	readOnly  bool
	sensitive bool
}

// topicConfigEntries describes a topic's effective configs.
func topicConfigEntries(t *storage.Topic) []configEntry {
	cfg := t.Config()
	overrides := t.ConfigOverrides()
	values := map[string]string{
		"cleanup.policy":         cfg.CleanupPolicy,
		"max.message.bytes":      strconv.FormatInt(int64(cfg.MaxMessageBytes), 10),
		"message.timestamp.type": cfg.TimestampType,
		"retention.bytes":        strconv.FormatInt(cfg.RetentionBytes, 10),
		"retention.ms":           strconv.FormatInt(cfg.RetentionMs, 10),
		"segment.bytes":          strconv.FormatInt(cfg.SegmentBytes, 10),
		"segment.ms":             strconv.FormatInt(cfg.SegmentMs, 10),
	}
	out := make([]configEntry, 0, len(topicConfigKeys))
	for _, k := range topicConfigKeys {
		e := configEntry{name: k.name, value: values[k.name], kind: k.kind, source: kmsg.ConfigSourceDefaultConfig}
		if v, ok := overrides[k.name]; ok {
			e.source = kmsg.ConfigSourceDynamicTopicConfig
			if e.value == "" {
				e.value = v
			}
		}
		out = append(out, e)
	}
	return out
}

// brokerConfigEntries describes the broker's (read-only) settings.
func (b *Broker) brokerConfigEntries() []configEntry {
	static := kmsg.ConfigSourceStaticBrokerConfig
	return []configEntry{
		{"auto.create.topics.enable", strconv.FormatBool(!b.cfg.DisableAutoCreateTopics), kmsg.ConfigTypeBoolean, static, true, false},
		{"broker.id", strconv.FormatInt(int64(b.cfg.NodeID), 10), kmsg.ConfigTypeInt, static, true, false},
		{"default.replication.factor", "1", kmsg.ConfigTypeShort, static, true, false},
		{"log.dirs", b.cfg.DataDir, kmsg.ConfigTypeString, static, true, false},
		{"num.partitions", strconv.FormatInt(int64(b.cfg.DefaultPartitions), 10), kmsg.ConfigTypeInt, static, true, false},
		{"socket.request.max.bytes", strconv.FormatInt(int64(b.cfg.MaxRequestBytes), 10), kmsg.ConfigTypeInt, static, true, false},
	}
}

// unknownConfigError names a config key weir does not know.
func unknownConfigError(name string) error {
	return fmt.Errorf("%w: unknown topic config %q (known: %s)", storage.ErrInvalidConfig, name, knownConfigNames())
}

func knownConfigNames() string {
	names := make([]string, len(topicConfigKeys))
	for i, k := range topicConfigKeys {
		names[i] = k.name
	}
	return strings.Join(names, ", ")
}

// checkConfigNames rejects unknown keys before storage sees them, so the
// error message names the key.
func checkConfigNames[V any](configs map[string]V) error {
	for name := range configs {
		if ok, _ := knownTopicConfig(name); !ok {
			return unknownConfigError(name)
		}
	}
	return nil
}
