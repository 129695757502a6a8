package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/weirhq/weir/internal/topicname"
	"log/slog"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/quota"
	"github.com/weirhq/weir/storage"
)

// throughput is the broker's thread-safe driver of a quota.Namespace: it
// reads the clock, counts metrics, logs and persists TU changes.
//
// Lock order: persistMu before mu. mu is held only for in-memory work,
// never across file I/O; persistMu serializes writes of the state file.
type throughput struct {
	logger  *slog.Logger
	metrics *metrics
	fs      storage.FS
	dir     string
	static  quota.Config // Config.Quota, from the command line

	limited atomic.Bool // false: skip the namespace entirely (the default)

	persistMu sync.Mutex

	mu struct {
		sync.Mutex
		ns        *quota.Namespace
		overrides map[string]string // dynamic configs set at runtime (weir tu set), persisted
	}
}

// quotaStateFile keeps the runtime TU settings across restarts.
const quotaStateFile = "quota.json"

// quotaState is quotaStateFile's content.
type quotaState struct {
	// Overrides are the dynamic broker configs (weir.* keys) set at
	// runtime; they override Config.Quota, as Kafka's dynamic broker
	// configs override server.properties.
	Overrides map[string]string `json:"overrides"`
	// Units is the TU count in force, which auto-inflate may have raised.
	Units int `json:"units"`
}

func openThroughput(cfg Config, logger *slog.Logger, m *metrics) (*throughput, error) {
	q := &throughput{logger: logger, metrics: m, fs: cfg.FS, dir: cfg.DataDir, static: cfg.Quota}
	var st quotaState
	data, err := readFile(cfg.FS, q.path())
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("weir: read %s: %w", q.path(), err)
		}
	case !isNotExist(err):
		return nil, fmt.Errorf("weir: read %s: %w", q.path(), err)
	}
	overrides, err := usableOverrides(cfg.Quota, st.Overrides)
	if err != nil {
		logger.Warn("weir: ignoring throughput settings of "+q.path()+" that conflict with the command line; "+
			"the command line wins, and the next 'weir tu set' rewrites the file without them",
			"ignored", ignoredKeys(st.Overrides, overrides), "err", err)
	}
	qc, err := quotaConfig(cfg.Quota, overrides)
	if err != nil {
		return nil, err // cannot happen: usableOverrides checked it
	}
	ns, err := quota.New(qc, st.Units, time.Now())
	if err != nil {
		return nil, err
	}
	q.mu.ns = ns
	q.mu.overrides = overrides
	q.limited.Store(ns.Limited())
	if ns.Limited() {
		logger.Info("weir: throughput units", "units", ns.Units(), "auto_inflate", qc.AutoInflate,
			"auto_inflate_max_units", qc.AutoInflateMaxUnits, "topic_caps", len(qc.TopicUnits))
	}
	return q, nil
}

// usableOverrides returns the persisted overrides that can be put in force
// over static (the command line). They normally all can; when flags changed
// since they were set, some may conflict (auto-inflate max units below new
// --throughput-units, say). Then the command line wins: the broker-wide
// settings are ignored as a whole if they conflict, a topic's cap on its
// own if it is invalid, and the error says why. Startup never fails for
// them.
func usableOverrides(static quota.Config, saved map[string]string) (map[string]string, error) {
	if _, err := quotaConfig(static, saved); err == nil {
		kept := maps.Clone(saved)
		if kept == nil {
			kept = map[string]string{}
		}
		return kept, nil
	}
	topics, wide := map[string]string{}, map[string]string{}
	var errs []error
	for k, v := range saved {
		if !strings.HasPrefix(k, keyTopicUnitsPrefix) {
			wide[k] = v
		} else if _, err := quotaConfig(quota.Config{}, map[string]string{k: v}); err != nil {
			errs = append(errs, err)
		} else {
			topics[k] = v
		}
	}
	kept := topics
	if _, err := quotaConfig(static, wide); err != nil {
		errs = append(errs, err)
	} else {
		maps.Copy(kept, wide)
	}
	if _, err := quotaConfig(static, kept); err != nil {
		return map[string]string{}, errors.Join(append(errs, err)...)
	}
	return kept, errors.Join(errs...)
}

// ignoredKeys returns the keys of saved that are not in kept, sorted.
func ignoredKeys(saved, kept map[string]string) []string {
	var out []string
	for k := range saved {
		if _, ok := kept[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (q *throughput) path() string { return filepath.Join(q.dir, quotaStateFile) }

// record records usage on one topic of a request and returns the throttle.
func (q *throughput) record(d quota.Direction, topic string, bytes, events int64) time.Duration {
	if !q.limited.Load() {
		return 0
	}
	now := time.Now()
	q.mu.Lock()
	th := q.mu.ns.Record(now, d, topic, bytes, events)
	changes := q.mu.ns.TakeChanges()
	q.mu.Unlock()
	if len(changes) > 0 {
		q.changed(changes)
	}
	return th
}

// throttled counts a request answered with throttle th.
func (q *throughput) throttled(d quota.Direction, th time.Duration) {
	q.metrics.throttled[d].Inc()
	q.metrics.throttleSeconds[d].Add(th.Seconds())
}

// current returns the TU count in force and the config, after letting time
// pass (so an idle broker can scale down).
func (q *throughput) current() (int, quota.Config) {
	q.mu.Lock()
	q.mu.ns.Tick(time.Now())
	units, cfg := q.mu.ns.Units(), q.mu.ns.Config()
	changes := q.mu.ns.TakeChanges()
	q.mu.Unlock()
	if len(changes) > 0 {
		q.changed(changes)
	}
	return units, cfg
}

// changed logs, counts and persists TU changes.
func (q *throughput) changed(changes []quota.Change) {
	for _, c := range changes {
		q.logger.Info("weir: throughput units changed", "from", c.From, "to", c.To, "reason", c.Reason)
		q.metrics.unitChanges.WithLabelValues(c.Reason).Inc()
	}
	q.persistMu.Lock()
	defer q.persistMu.Unlock()
	if err := q.persistLocked(); err != nil {
		q.logger.Error("weir: cannot persist throughput units; they will be lost on restart", "err", err)
	}
}

// persistLocked writes the state in force to the state file; persistMu
// must be held.
func (q *throughput) persistLocked() error {
	q.mu.Lock()
	st := quotaState{Overrides: maps.Clone(q.mu.overrides), Units: q.mu.ns.Units()}
	q.mu.Unlock()
	return q.writeStateLocked(st)
}

// writeStateLocked writes st to the state file; persistMu must be held.
func (q *throughput) writeStateLocked(st quotaState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(q.fs, q.dir, quotaStateFile, append(data, '\n'))
}

// overrideKeys returns the keys of the dynamic configs set at runtime.
func (q *throughput) overrideKeys() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Sorted(maps.Keys(q.mu.overrides))
}

// alter applies set and del to the dynamic overrides: validated,
// persisted, then put in force. On an error nothing changes: neither the
// file nor the settings in force.
func (q *throughput) alter(set map[string]string, del []string, validateOnly bool) error {
	q.persistMu.Lock()
	defer q.persistMu.Unlock()
	q.mu.Lock()
	next := maps.Clone(q.mu.overrides)
	q.mu.Unlock()
	for k, v := range set {
		next[k] = v
	}
	for _, k := range del {
		delete(next, k)
	}
	cfg, err := quotaConfig(q.static, next)
	if err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	_, reset := set[keyUnits] // an explicit count undoes auto-inflate's raises
	q.mu.Lock()
	units := q.mu.ns.UnitsAfter(cfg, reset)
	q.mu.Unlock()
	if err := q.writeStateLocked(quotaState{Overrides: next, Units: units}); err != nil {
		return err
	}

	q.mu.Lock()
	now := time.Now()
	if err := q.mu.ns.SetConfig(cfg, now); err != nil {
		q.mu.Unlock()
		panic("weir: a validated quota config was rejected: " + err.Error())
	}
	if reset {
		q.mu.ns.ResetUnits(now)
	}
	q.mu.overrides = next
	changes := q.mu.ns.TakeChanges()
	q.limited.Store(q.mu.ns.Limited())
	inForce := q.mu.ns.Units()
	q.mu.Unlock()
	for _, c := range changes {
		q.logger.Info("weir: throughput units changed", "from", c.From, "to", c.To, "reason", c.Reason)
		q.metrics.unitChanges.WithLabelValues(c.Reason).Inc()
	}
	q.logger.Info("weir: throughput settings changed", "set", set, "deleted", del)
	if inForce != units {
		// Auto-inflate stepped in between: keep the file up to date.
		if err := q.persistLocked(); err != nil {
			q.logger.Error("weir: cannot persist throughput units; they will be lost on restart", "err", err)
		}
	}
	return nil
}

// Dynamic broker config keys of throughput units (DescribeConfigs and
// IncrementalAlterConfigs on the BROKER resource).
const (
	keyUnits            = "weir.throughput.units"
	keyUnitsCurrent     = "weir.throughput.units.current" // read-only
	keyAutoInflate      = "weir.auto.inflate.enabled"
	keyAutoInflateMax   = "weir.auto.inflate.max.units"
	keyAutoInflateWin   = "weir.auto.inflate.window.ms"
	keyScaleDown        = "weir.auto.inflate.scale.down.enabled"
	keyQuietPeriod      = "weir.auto.inflate.quiet.period.ms"
	keyTopicUnitsPrefix = "weir.topic.throughput.units." // followed by the topic name
)

// isQuotaKey reports whether name is a writable throughput key.
func isQuotaKey(name string) bool {
	switch name {
	case keyUnits, keyAutoInflate, keyAutoInflateMax, keyAutoInflateWin, keyScaleDown, keyQuietPeriod:
		return true
	}
	topic, ok := strings.CutPrefix(name, keyTopicUnitsPrefix)
	return ok && topicname.Valid(topic)
}

// quotaConfig applies overrides to the static config.
func quotaConfig(static quota.Config, overrides map[string]string) (quota.Config, error) {
	c := static
	c.TopicUnits = maps.Clone(static.TopicUnits)
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys) // first error is stable
	for _, k := range keys {
		v := strings.TrimSpace(overrides[k])
		var err error
		switch k {
		case keyUnits:
			c.ThroughputUnits, err = parseUnits(k, v)
		case keyAutoInflate:
			c.AutoInflate, err = parseBool(k, v)
		case keyAutoInflateMax:
			c.AutoInflateMaxUnits, err = parseUnits(k, v)
		case keyAutoInflateWin:
			c.Window, err = parseMillis(k, v)
		case keyScaleDown:
			c.ScaleDown, err = parseBool(k, v)
		case keyQuietPeriod:
			c.QuietPeriod, err = parseMillis(k, v)
		default:
			topic, ok := strings.CutPrefix(k, keyTopicUnitsPrefix)
			if !ok || !topicname.Valid(topic) {
				return c, fmt.Errorf("%w: unknown broker config %q", quota.ErrInvalidConfig, k)
			}
			var u int
			if u, err = parseUnits(k, v); err == nil {
				if c.TopicUnits == nil {
					c.TopicUnits = map[string]int{}
				}
				c.TopicUnits[topic] = u
			}
		}
		if err != nil {
			return c, err
		}
	}
	return c, c.Validate()
}

func parseUnits(key, v string) (int, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > quota.MaxUnits {
		return 0, fmt.Errorf("%w: %s=%q: want a whole number of throughput units from 0 to %d", quota.ErrInvalidConfig, key, v, quota.MaxUnits)
	}
	return int(n), nil
}

func parseBool(key, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s=%q: want true or false", quota.ErrInvalidConfig, key, v)
}

func parseMillis(key, v string) (time.Duration, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/int64(time.Millisecond) {
		return 0, fmt.Errorf("%w: %s=%q: want milliseconds >= 0 (0 = default)", quota.ErrInvalidConfig, key, v)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// configEntries describes the throughput settings for DescribeConfigs.
func (q *throughput) configEntries() []configEntry {
	units, cfg := q.current()
	q.mu.Lock()
	overrides := maps.Clone(q.mu.overrides)
	q.mu.Unlock()
	source := func(key string, static bool) kmsg.ConfigSource {
		switch _, dyn := overrides[key]; {
		case dyn:
			return kmsg.ConfigSourceDynamicBrokerConfig
		case static:
			return kmsg.ConfigSourceStaticBrokerConfig
		}
		return kmsg.ConfigSourceDefaultConfig
	}
	s := q.static
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	out := []configEntry{
		{keyUnits, strconv.Itoa(cfg.ThroughputUnits), kmsg.ConfigTypeInt, source(keyUnits, s.ThroughputUnits != 0), false, false},
		{keyUnitsCurrent, strconv.Itoa(units), kmsg.ConfigTypeInt, kmsg.ConfigSourceDefaultConfig, true, false},
		{keyAutoInflate, strconv.FormatBool(cfg.AutoInflate), kmsg.ConfigTypeBoolean, source(keyAutoInflate, s.AutoInflate), false, false},
		{keyAutoInflateMax, strconv.Itoa(cfg.AutoInflateMaxUnits), kmsg.ConfigTypeInt, source(keyAutoInflateMax, s.AutoInflateMaxUnits != 0), false, false},
		{keyAutoInflateWin, ms(cfg.Window), kmsg.ConfigTypeLong, source(keyAutoInflateWin, s.Window != 0), false, false},
		{keyScaleDown, strconv.FormatBool(cfg.ScaleDown), kmsg.ConfigTypeBoolean, source(keyScaleDown, s.ScaleDown), false, false},
		{keyQuietPeriod, ms(cfg.QuietPeriod), kmsg.ConfigTypeLong, source(keyQuietPeriod, s.QuietPeriod != 0), false, false},
	}
	topics := make([]string, 0, len(cfg.TopicUnits))
	for t, u := range cfg.TopicUnits {
		if u > 0 {
			topics = append(topics, t)
		}
	}
	sort.Strings(topics)
	for _, t := range topics {
		k := keyTopicUnitsPrefix + t
		out = append(out, configEntry{k, strconv.Itoa(cfg.TopicUnits[t]), kmsg.ConfigTypeInt,
			source(k, s.TopicUnits[t] != 0), false, false})
	}
	return out
}

// throttleMillis converts a throttle for throttle_time_ms.
func throttleMillis(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	return int32(min((d+time.Millisecond-1)/time.Millisecond, math.MaxInt32))
}

// produced accounts the records of one topic of a produce request that were
// appended: metrics, then quota. It returns the topic's throttle.
func (b *Broker) produced(topic string, bytes, events int64) time.Duration {
	tm := b.metrics.topic(topic)
	tm.inBytes.Add(float64(bytes))
	tm.inMessages.Add(float64(events))
	th := b.quota.record(quota.Ingress, topic, bytes, events)
	if th > 0 {
		tm.throttled[quota.Ingress].Inc()
	}
	return th
}

// fetched accounts what a fetch response returns, and sets its throttle.
// The connection's writer holds back the next reads for it.
func (b *Broker) fetched(resp *kmsg.FetchResponse) {
	var throttle time.Duration
	for i := range resp.Topics {
		st := &resp.Topics[i]
		var bytes, events int64
		for j := range st.Partitions {
			rb := st.Partitions[j].RecordBatches
			bytes += int64(len(rb))
			events += storage.CountRecords(rb)
		}
		if bytes == 0 {
			continue
		}
		tm := b.metrics.topic(st.Topic)
		tm.outBytes.Add(float64(bytes))
		tm.outMessages.Add(float64(events))
		if th := b.quota.record(quota.Egress, st.Topic, bytes, events); th > 0 {
			tm.throttled[quota.Egress].Inc()
			throttle = max(throttle, th)
		}
	}
	if throttle > 0 {
		resp.ThrottleMillis = throttleMillis(throttle)
		b.quota.throttled(quota.Egress, throttle)
	}
}

// alterQuotaConfigs applies IncrementalAlterConfigs on the BROKER
// resource: SET and DELETE of the throughput keys. Anything else about the
// broker is read-only. Bad values are INVALID_CONFIG, and change nothing.
func (b *Broker) alterQuotaConfigs(name string, ops []kmsg.IncrementalAlterConfigsRequestResourceConfig, validateOnly bool) (int16, error) {
	if !b.isThisBroker(name) {
		return kerr.InvalidRequest.Code, errors.New("weir: unknown broker " + name)
	}
	set := map[string]string{}
	var del []string
	for _, op := range ops {
		if !isQuotaKey(op.Name) {
			if op.Name == keyUnitsCurrent || slices.ContainsFunc(b.brokerConfigEntries(), func(e configEntry) bool { return e.name == op.Name }) {
				return kerr.InvalidConfig.Code, fmt.Errorf("%w: %s is read-only", errBrokerConfigReadOnly, op.Name)
			}
			return kerr.InvalidConfig.Code, fmt.Errorf("%w: unknown broker config %q (dynamic broker configs: %s, %s, %s, %s, %s, %s, %s<topic>)",
				quota.ErrInvalidConfig, op.Name, keyUnits, keyAutoInflate, keyAutoInflateMax, keyAutoInflateWin, keyScaleDown, keyQuietPeriod, keyTopicUnitsPrefix)
		}
		switch op.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			if op.Value == nil {
				return kerr.InvalidConfig.Code, fmt.Errorf("%w: %s: null value", quota.ErrInvalidConfig, op.Name)
			}
			set[op.Name] = *op.Value
			del = slices.DeleteFunc(del, func(k string) bool { return k == op.Name })
		case kmsg.IncrementalAlterConfigOpDelete:
			delete(set, op.Name)
			del = append(del, op.Name)
		default:
			return kerr.InvalidRequest.Code, fmt.Errorf("weir: %s is not a list config; %s is not allowed", op.Name, op.Op)
		}
	}
	err := b.quota.alter(set, del, validateOnly)
	switch {
	case err == nil:
		return 0, nil
	case errors.Is(err, quota.ErrInvalidConfig):
		return kerr.InvalidConfig.Code, err
	default:
		return kerr.KafkaStorageError.Code, fmt.Errorf("weir: throughput settings not persisted, so not changed: %w", err)
	}
}

// replaceQuotaConfigs applies the legacy AlterConfigs on the BROKER
// resource: the given keys become the dynamic configs, and every other
// dynamic config is deleted.
func (b *Broker) replaceQuotaConfigs(name string, configs []kmsg.AlterConfigsRequestResourceConfig, validateOnly bool) (int16, error) {
	var ops []kmsg.IncrementalAlterConfigsRequestResourceConfig
	given := map[string]bool{}
	for _, c := range configs {
		op := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		op.Name, op.Value, op.Op = c.Name, c.Value, kmsg.IncrementalAlterConfigOpSet
		if c.Value == nil {
			op.Op = kmsg.IncrementalAlterConfigOpDelete
		}
		ops = append(ops, op)
		given[c.Name] = true
	}
	for _, k := range b.quota.overrideKeys() {
		if !given[k] {
			op := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			op.Name, op.Op = k, kmsg.IncrementalAlterConfigOpDelete
			ops = append(ops, op)
		}
	}
	return b.alterQuotaConfigs(name, ops, validateOnly)
}
