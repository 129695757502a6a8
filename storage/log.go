package storage

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/weirhq/weir/internal/topicname"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

const (
	topicsDirName  = "topics"
	deletedDirName = "deleted"
	metaFile       = "meta.json"
	cleanMarker    = ".clean-shutdown"

	// MaxPartitions bounds the partition count of one topic.
	MaxPartitions = 10000
)

// Log is a set of topics on disk.
type Log struct {
	opts     Options
	fs       FS
	logger   *slog.Logger
	defaults TopicConfig
	topics   string // <Dir>/topics
	deleted  string // <Dir>/deleted

	// mu guards the topic map; admin operations hold it exclusively, the
	// produce and fetch paths only for the map lookup.
	mu struct {
		sync.RWMutex
		topics map[string]*Topic
		closed bool
	}

	flusher flusher
	journal journal
	// replay holds the journal's entries while Open opens the partitions;
	// keepJournal is set if one of them could not be replayed whole.
	replay      map[journalKey][][]byte
	keepJournal bool
	stop        chan struct{}
	wg          sync.WaitGroup
}

// Topic is a named set of partitions with one config.
type Topic struct {
	log   *Log
	name  string
	id    [16]byte
	dir   string
	state atomic.Pointer[topicState]
}

// topicState is replaced whole on every change; readers load it atomically.
type topicState struct {
	cfg       TopicConfig
	overrides map[string]string
	parts     []*Partition
}

// topicMeta is meta.json.
type topicMeta struct {
	ID         string            `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// Open opens (creating if needed) the log in opts.Dir and recovers every
// partition.
func Open(opts Options) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("weir: storage: Options.Dir is required")
	}
	if opts.FS == nil {
		opts.FS = OSFS{}
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = time.Second
	}
	if opts.RetentionCheckInterval <= 0 {
		opts.RetentionCheckInterval = time.Minute
	}
	if opts.ProducerIDExpiration <= 0 {
		opts.ProducerIDExpiration = DefaultProducerIDExpiration
	}
	if opts.MaxProducersPerPartition <= 0 {
		opts.MaxProducersPerPartition = DefaultMaxProducersPerPartition
	}
	if opts.journalMaxBytes <= 0 {
		opts.journalMaxBytes = journalMaxBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sync < SyncAlways || opts.Sync > SyncNever {
		return nil, fmt.Errorf("weir: storage: unknown sync policy %d", opts.Sync)
	}
	defaults := opts.Defaults.withDefaults()
	if err := defaults.validate(); err != nil {
		return nil, err
	}
	l := &Log{
		opts: opts, fs: opts.FS, logger: opts.Logger, defaults: defaults,
		topics:  filepath.Join(opts.Dir, topicsDirName),
		deleted: filepath.Join(opts.Dir, deletedDirName),
		stop:    make(chan struct{}),
	}
	l.mu.topics = make(map[string]*Topic)
	l.flusher.wake = make(chan struct{}, 1)
	l.journal.checkpoints = make(chan journalCheckpoint, 1)
	if err := l.fs.MkdirAll(l.topics, 0o755); err != nil {
		return nil, err
	}
	if err := l.fs.RemoveAll(l.deleted); err != nil {
		return nil, err
	}
	marker := filepath.Join(opts.Dir, cleanMarker)
	_, err := l.fs.Stat(marker)
	clean := err == nil
	if clean {
		if err := l.fs.Remove(marker); err != nil {
			return nil, err
		}
		if err := l.fs.SyncDir(opts.Dir); err != nil {
			return nil, err
		}
	}
	l.journal.dir = filepath.Join(opts.Dir, journalDirName)
	replay, lastName, lastGen, err := l.readJournal()
	if err != nil {
		return nil, err
	}
	l.replay = replay
	err = l.loadTopics(clean)
	l.replay = nil
	if err == nil {
		err = l.openJournal(lastName, lastGen)
	}
	if err != nil {
		l.closeTopics(false)
		return nil, err
	}
	l.wg.Add(3)
	go l.runFlusher()
	go l.runCheckpointer()
	go l.runRetention()
	return l, nil
}

func (l *Log) now() time.Time { return l.opts.Now() }

func (l *Log) loadTopics(clean bool) error {
	ents, err := l.fs.ReadDir(l.topics)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() || validateTopicName(e.Name()) != nil {
			continue
		}
		dir := filepath.Join(l.topics, e.Name())
		b, err := readFile(l.fs, filepath.Join(dir, metaFile))
		if isNotExist(err) {
			l.logger.Warn("storage: removing half-created topic", "topic", e.Name())
			if err := l.fs.RemoveAll(dir); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		var m topicMeta
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("weir: storage: topic %s: bad %s: %w", e.Name(), metaFile, err)
		}
		id, err := hex.DecodeString(m.ID)
		if err != nil || len(id) != 16 || m.Partitions < 1 {
			return fmt.Errorf("weir: storage: topic %s: bad %s", e.Name(), metaFile)
		}
		cfg, err := parseConfigs(l.defaults, m.Configs)
		if err != nil {
			return fmt.Errorf("weir: storage: topic %s: %w", e.Name(), err)
		}
		t := &Topic{log: l, name: e.Name(), dir: dir}
		copy(t.id[:], id)
		st := &topicState{cfg: cfg, overrides: m.Configs}
		if st.overrides == nil {
			st.overrides = map[string]string{}
		}
		t.state.Store(st)
		l.mu.topics[t.name] = t // before opening partitions, so a failure closes what opened
		for i := int32(0); i < m.Partitions; i++ {
			p, err := openPartition(l, t, i, clean)
			if err != nil {
				return fmt.Errorf("weir: storage: topic %s partition %d: %w", t.name, i, err)
			}
			st.parts = append(st.parts, p)
		}
	}
	return nil
}

// validateTopicName applies Kafka's rules (topicname.Valid), saying what is
// wrong.
func validateTopicName(name string) error {
	if i := topicname.BadChar(name); i >= 0 {
		return fmt.Errorf("%w: %q has character %q", ErrInvalidTopic, name, name[i])
	}
	if !topicname.Valid(name) {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, name)
	}
	return nil
}

func (t *Topic) writeMeta(st *topicState) error {
	m := topicMeta{ID: hex.EncodeToString(t.id[:]), Partitions: int32(len(st.parts)), Configs: st.overrides}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(t.log.fs, t.dir, filepath.Join(t.dir, metaFile), b)
}

// CreateTopic creates a topic with partitions partitions and config overrides.
func (l *Log) CreateTopic(name string, partitions int32, configs map[string]string) (*Topic, error) {
	if err := validateTopicName(name); err != nil {
		return nil, err
	}
	if partitions < 1 || partitions > MaxPartitions {
		return nil, fmt.Errorf("%w: %d", ErrInvalidPartitions, partitions)
	}
	cfg, err := parseConfigs(l.defaults, configs)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return nil, ErrClosed
	}
	if _, ok := l.mu.topics[name]; ok {
		return nil, fmt.Errorf("%w: %s", ErrTopicExists, name)
	}
	t := &Topic{log: l, name: name, dir: filepath.Join(l.topics, name)}
	if _, err := rand.Read(t.id[:]); err != nil {
		return nil, err
	}
	st := &topicState{cfg: cfg, overrides: make(map[string]string, len(configs))}
	for k, v := range configs {
		st.overrides[k] = v
	}
	fail := func(err error) (*Topic, error) {
		for _, p := range st.parts {
			_ = p.close(ErrPartitionDeleted, false)
		}
		_ = l.fs.RemoveAll(t.dir)
		return nil, err
	}
	if err := l.fs.MkdirAll(t.dir, 0o755); err != nil {
		return fail(err)
	}
	for i := int32(0); i < partitions; i++ {
		p, err := openPartition(l, t, i, true)
		if err != nil {
			return fail(err)
		}
		st.parts = append(st.parts, p)
	}
	if err := t.writeMeta(st); err != nil {
		return fail(err)
	}
	if err := l.fs.SyncDir(l.topics); err != nil {
		return fail(err)
	}
	t.state.Store(st)
	l.mu.topics[name] = t
	return t, nil
}

// DeleteTopic removes a topic. Readers in flight finish first; later calls
// on its partitions return ErrPartitionDeleted.
func (l *Log) DeleteTopic(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return ErrClosed
	}
	t, ok := l.mu.topics[name]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, name)
	}
	if err := l.fs.MkdirAll(l.deleted, 0o755); err != nil {
		return err
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	grave := filepath.Join(l.deleted, name+"-"+hex.EncodeToString(suffix[:]))
	if err := l.fs.Rename(t.dir, grave); err != nil {
		return err
	}
	delete(l.mu.topics, name)
	if err := l.fs.SyncDir(l.topics); err != nil {
		l.logger.Warn("storage: sync after topic delete failed", "topic", name, "err", err)
	}
	for _, p := range t.state.Load().parts {
		_ = p.close(ErrPartitionDeleted, false)
	}
	if err := l.fs.RemoveAll(grave); err != nil {
		l.logger.Warn("storage: removing deleted topic failed; retried on next open", "topic", name, "err", err)
	}
	return nil
}

// CreatePartitions grows a topic to total partitions.
func (l *Log) CreatePartitions(name string, total int32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return ErrClosed
	}
	t, ok := l.mu.topics[name]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, name)
	}
	old := t.state.Load()
	if total <= int32(len(old.parts)) || total > MaxPartitions {
		return fmt.Errorf("%w: %d (topic has %d)", ErrInvalidPartitions, total, len(old.parts))
	}
	st := &topicState{cfg: old.cfg, overrides: old.overrides, parts: append([]*Partition(nil), old.parts...)}
	var added []*Partition
	for i := int32(len(old.parts)); i < total; i++ {
		p, err := openPartition(l, t, i, true)
		if err == nil {
			added = append(added, p)
			st.parts = append(st.parts, p)
			continue
		}
		for _, p := range added {
			_ = p.close(ErrPartitionDeleted, false)
			_ = l.fs.RemoveAll(p.dir)
		}
		return err
	}
	if err := t.writeMeta(st); err != nil {
		for _, p := range added {
			_ = p.close(ErrPartitionDeleted, false)
			_ = l.fs.RemoveAll(p.dir)
		}
		return err
	}
	t.state.Store(st)
	return nil
}

// Topic returns the named topic.
func (l *Log) Topic(name string) (*Topic, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	t, ok := l.mu.topics[name]
	return t, ok
}

// Topics returns every topic, sorted by name.
func (l *Log) Topics() []*Topic {
	l.mu.RLock()
	out := make([]*Topic, 0, len(l.mu.topics))
	for _, t := range l.mu.topics {
		out = append(out, t)
	}
	l.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// AlterTopicConfig validates set and del together, then applies them and
// persists the topic's overrides atomically. Deleted keys return to the
// default.
func (l *Log) AlterTopicConfig(name string, set map[string]string, del []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return ErrClosed
	}
	t, ok := l.mu.topics[name]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, name)
	}
	old := t.state.Load()
	overrides := make(map[string]string, len(old.overrides)+len(set))
	for k, v := range old.overrides {
		overrides[k] = v
	}
	for _, k := range del {
		if _, err := parseConfigs(l.defaults, map[string]string{k: l.defaults.value(k)}); err != nil {
			return err // unknown key
		}
		delete(overrides, k)
	}
	for k, v := range set {
		overrides[k] = v
	}
	cfg, err := parseConfigs(l.defaults, overrides)
	if err != nil {
		return err
	}
	st := &topicState{cfg: cfg, overrides: overrides, parts: old.parts}
	if err := t.writeMeta(st); err != nil {
		return err
	}
	t.state.Store(st)
	return nil
}

// ValidateConfig checks configs as CreateTopic would, without creating anything.
func (l *Log) ValidateConfig(configs map[string]string) error {
	_, err := parseConfigs(l.defaults, configs)
	return err
}

// DefaultConfigs lists every supported key with the log-wide default value.
func (l *Log) DefaultConfigs() []ConfigEntry { return describeConfigs(l.defaults, nil) }

// RunRetention runs one retention pass (segment.ms rolls, retention.ms,
// retention.bytes, segments below the log start offset) now.
func (l *Log) RunRetention() {
	now := l.now()
	for _, t := range l.Topics() {
		st := t.state.Load()
		for _, p := range st.parts {
			p.retain(now, st.cfg)
		}
	}
}

func (l *Log) runRetention() {
	defer l.wg.Done()
	tick := time.NewTicker(l.opts.RetentionCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
			l.RunRetention()
		}
	}
}

// Close flushes every partition, stops the log's goroutines, closes every
// file and, if nothing failed, writes the clean-shutdown marker.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return nil
	}
	l.mu.closed = true
	l.mu.Unlock()
	close(l.stop)
	l.wg.Wait()
	errs := l.closeTopics(true)
	if err := l.closeJournal(errs == nil); err != nil {
		errs = errors.Join(errs, err)
	}
	if errs == nil {
		errs = l.writeCleanMarker()
	}
	return errs
}

func (l *Log) closeTopics(sync bool) error {
	var errs []error
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, t := range l.mu.topics {
		st := t.state.Load()
		for _, p := range st.parts {
			errs = append(errs, p.close(ErrClosed, sync))
			if err := p.Err(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (l *Log) writeCleanMarker() error {
	f, err := l.fs.OpenFile(filepath.Join(l.opts.Dir, cleanMarker), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	serr := f.Sync()
	if err := errors.Join(serr, f.Close()); err != nil {
		return err
	}
	return l.fs.SyncDir(l.opts.Dir)
}

// Name is the topic's name.
func (t *Topic) Name() string { return t.name }

// ID is the topic's random UUID, persisted in meta.json.
func (t *Topic) ID() [16]byte { return t.id }

// NumPartitions is the partition count.
func (t *Topic) NumPartitions() int32 { return int32(len(t.state.Load().parts)) }

// Partition returns partition i.
func (t *Topic) Partition(i int32) (*Partition, bool) {
	parts := t.state.Load().parts
	if i < 0 || int(i) >= len(parts) {
		return nil, false
	}
	return parts[i], true
}

// Config is the topic's effective config.
func (t *Topic) Config() TopicConfig { return t.state.Load().cfg }

// ConfigOverrides returns only the explicitly set keys.
func (t *Topic) ConfigOverrides() map[string]string {
	ov := t.state.Load().overrides
	out := make(map[string]string, len(ov))
	for k, v := range ov {
		out[k] = v
	}
	return out
}

// DescribeConfigs lists every supported key with its effective value and
// whether the topic overrides it.
func (t *Topic) DescribeConfigs() []ConfigEntry {
	st := t.state.Load()
	return describeConfigs(st.cfg, st.overrides)
}
