package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"sync"
)

const logStartFile = "logstart"

// Partition is one partition's log: segments of raw RecordBatch bytes.
//
// Lock order: Log.mu, then Partition.files, then Partition.mu, then
// flusher.mu or journal.mu. Append holds only mu. Read, OffsetForTimestamp,
// the flusher and the journal's checkpointer hold files shared and take mu
// only to snapshot, so file IO other than the append itself runs without
// mu. Retention, DeleteRecords, topic
// deletion and Close hold files exclusively while they close segment files.
type Partition struct {
	log   *Log
	topic *Topic
	id    int32
	dir   string

	files sync.RWMutex

	mu struct {
		sync.Mutex
		segs      []*segment // oldest first; the last one is active. Replaced, never shrunk in place.
		hw        int64      // high watermark: what Read serves
		hwPos     int64      // bytes of the active segment below hw
		logStart  int64
		werr      *WriteError
		state     error         // nil, ErrClosed or ErrPartitionDeleted
		queued    bool          // in the flusher's dirty list
		changed   chan struct{} // closed when hw, werr or state change; made by the first waiter after that (nil: no waiter)
		subs      map[uint64]chan<- struct{}
		subSeq    uint64
		producers producerState // idempotent producers, checked in Append (producers.go)
		evicted   int64         // producers evicted for MaxProducersPerPartition
	}
}

// openPartition opens (or creates) the partition directory and recovers it.
func openPartition(l *Log, t *Topic, id int32, clean bool) (*Partition, error) {
	p := &Partition{log: l, topic: t, id: id, dir: filepath.Join(t.dir, strconv.Itoa(int(id)))}
	p.mu.subs = make(map[uint64]chan<- struct{})
	if err := l.fs.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	if b, err := readFile(l.fs, filepath.Join(p.dir, logStartFile)); err == nil {
		n, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if perr == nil && n > 0 {
			p.mu.logStart = n
		}
	} else if !isNotExist(err) {
		return nil, err
	}
	bases, err := listSegments(l.fs, p.dir)
	if err != nil {
		return nil, err
	}
	now := l.now()
	if len(bases) == 0 {
		s, err := createSegment(l.fs, p.dir, p.mu.logStart, now)
		if err != nil {
			return nil, err
		}
		if err := l.fs.SyncDir(p.dir); err != nil {
			s.f.Close()
			return nil, err
		}
		p.mu.segs = []*segment{s}
	} else if err := p.recoverSegments(bases, clean, now); err != nil {
		for _, s := range p.mu.segs {
			s.f.Close()
		}
		return nil, err
	}
	active := p.mu.segs[len(p.mu.segs)-1]
	if entries := l.replay[journalKey{t.id, id}]; len(entries) > 0 {
		if err := p.replayJournalLocked(entries); err != nil {
			for _, s := range p.mu.segs {
				s.f.Close()
			}
			return nil, fmt.Errorf("weir: storage: replay journal into %s/%d: %w", t.name, id, err)
		}
	}
	// Bytes that survived a crash (or came from the journal) may sit only
	// in the page cache.
	if err := active.f.Sync(); err != nil {
		return nil, err
	}
	p.mu.hw, p.mu.hwPos = active.next, active.size
	p.mu.logStart = max(p.mu.logStart, p.mu.segs[0].base)
	p.mu.logStart = min(p.mu.logStart, p.mu.hw)
	if err := p.loadProducersLocked(now); err != nil {
		for _, s := range p.mu.segs {
			s.f.Close()
		}
		return nil, fmt.Errorf("weir: storage: load producer state of %s/%d: %w", t.name, id, err)
	}
	return p, nil
}

// recoverSegments opens the segment files. The last one, any whose indexes
// do not match, and all of them after an unclean shutdown's last segment,
// are scanned; at the first bad batch the file is truncated and every later
// segment deleted.
func (p *Partition) recoverSegments(bases []int64, clean bool, now time.Time) error {
	l := p.log
	var truncated int64
	var dropped []int64
	for i, base := range bases {
		s, err := openSegment(l.fs, p.dir, base, now)
		if err != nil {
			return err
		}
		if i > 0 {
			if prev := p.mu.segs[i-1]; prev.next != base {
				s.f.Close()
				dropped = bases[i:]
				break
			}
		}
		p.mu.segs = append(p.mu.segs, s)
		last := i == len(bases)-1
		if !last || clean {
			if err := s.loadIndexes(l.fs); err == nil {
				continue
			}
		}
		cut, err := s.recover()
		if err != nil {
			return err
		}
		truncated += cut
		if !last {
			if err := s.writeIndexesLocked(l.fs); err != nil {
				return err
			}
		}
		if cut > 0 && !last {
			dropped = bases[i+1:]
			break
		}
	}
	for _, base := range dropped {
		path := segmentPath(p.dir, base)
		for _, suf := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
			if err := l.fs.Remove(path + suf); err != nil && !isNotExist(err) {
				return err
			}
		}
	}
	if len(dropped) > 0 {
		if err := l.fs.SyncDir(p.dir); err != nil {
			return err
		}
	}
	if truncated > 0 || len(dropped) > 0 {
		l.logger.Warn("storage: recovery truncated partition", "topic", p.topic.name, "partition", p.id,
			"truncated_bytes", truncated, "deleted_segments", len(dropped),
			"log_end_offset", p.mu.segs[len(p.mu.segs)-1].next)
	}
	return nil
}

func (p *Partition) activeLocked() *segment { return p.mu.segs[len(p.mu.segs)-1] }

// wakeLocked wakes WaitDurable callers. With none waiting it costs
// nothing: the channel is made only when someone waits on it.
func (p *Partition) wakeLocked() {
	if p.mu.changed != nil {
		close(p.mu.changed)
		p.mu.changed = nil
	}
}

// changedLocked returns the channel that the next change closes.
func (p *Partition) changedLocked() <-chan struct{} {
	if p.mu.changed == nil {
		p.mu.changed = make(chan struct{})
	}
	return p.mu.changed
}

// advanceLocked moves the high watermark to hw (ending at hwPos in the active
// segment) and tells waiters and subscribers.
func (p *Partition) advanceLocked(hw, hwPos int64) {
	p.mu.hw, p.mu.hwPos = hw, hwPos
	p.wakeLocked()
	for _, ch := range p.mu.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// failLocked records the first write failure; it is sticky.
func (p *Partition) failLocked(op string, err error) *WriteError {
	if p.mu.werr == nil {
		p.mu.werr = &WriteError{Topic: p.topic.name, Partition: p.id, Op: op, Err: err}
		p.log.logger.Error("storage: write failed; partition refuses further writes",
			"topic", p.topic.name, "partition", p.id, "op", op, "err", err)
		p.wakeLocked()
	}
	return p.mu.werr
}

func (p *Partition) usableLocked() error {
	if p.mu.state != nil {
		return p.mu.state
	}
	if p.mu.werr != nil {
		return p.mu.werr
	}
	return nil
}

// Append validates every batch in records, checks idempotent producers'
// epochs and sequence numbers, assigns offsets by rewriting each baseOffset
// in place (and, for LogAppendTime topics, the timestamp), and writes all
// batches or none. A retried append that repeats already stored batches is
// not stored again: it answers the original offsets with Duplicate set.
func (p *Partition) Append(records []byte) (AppendResult, error) {
	cfg := p.topic.Config()
	if _, err := ValidateBatches(records, cfg.MaxMessageBytes); err != nil {
		return AppendResult{}, err
	}
	var span int64
	for pos := 0; pos < len(records); {
		h := parseHeader(records[pos:])
		span += int64(h.lastOffsetDelta) + 1
		pos += int(h.size)
	}
	now := p.log.now()

	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usableLocked(); err != nil {
		return AppendResult{}, err
	}
	dup, first, last, err := p.checkProducersLocked(records)
	if err != nil {
		return AppendResult{}, err
	}
	if dup {
		appendTime := int64(-1)
		if cfg.logAppendTime() {
			appendTime = last.timestamp
		}
		return AppendResult{BaseOffset: first.baseOffset, LastOffset: last.lastOffset,
			LogAppendTime: appendTime, LogStartOffset: p.mu.logStart, Duplicate: true}, nil
	}
	seg := p.activeLocked()
	if seg.size > 0 && (seg.size+int64(len(records)) > cfg.SegmentBytes ||
		now.Sub(seg.created) >= time.Duration(cfg.SegmentMs)*time.Millisecond ||
		seg.next+span-seg.base > math.MaxInt32) {
		if err := p.rollLocked(now); err != nil {
			return AppendResult{}, err
		}
		seg = p.activeLocked()
	}
	base := seg.next
	appendTime := int64(-1)
	if cfg.logAppendTime() {
		appendTime = now.UnixMilli()
	}
	off := base
	for pos := 0; pos < len(records); {
		h := parseHeader(records[pos:])
		setBaseOffset(records[pos:], off)
		if appendTime >= 0 {
			setLogAppendTime(records[pos:], int(h.size), appendTime)
		}
		off += int64(h.lastOffsetDelta) + 1
		pos += int(h.size)
	}
	start := seg.size
	if _, err := seg.f.WriteAt(records, start); err != nil {
		return AppendResult{}, p.failLocked("write", err)
	}
	if p.log.opts.Sync == SyncAlways {
		if err := p.log.journal.add(p, records); err != nil {
			return AppendResult{}, p.failLocked("write journal", err)
		}
	}
	for pos := 0; pos < len(records); {
		h := parseHeader(records[pos:])
		seg.appendedLocked(h, start+int64(pos))
		pos += int(h.size)
	}
	p.recordProducersLocked(records, now.UnixMilli())
	switch p.log.opts.Sync {
	case SyncAlways:
		p.queueFlushLocked(true)
	case SyncInterval:
		p.queueFlushLocked(false)
		p.advanceLocked(seg.next, seg.size)
	default:
		p.advanceLocked(seg.next, seg.size)
	}
	return AppendResult{BaseOffset: base, LastOffset: seg.next - 1, LogAppendTime: appendTime, LogStartOffset: p.mu.logStart}, nil
}

func (p *Partition) queueFlushLocked(wake bool) {
	if p.mu.queued {
		return
	}
	p.mu.queued = true
	p.log.flusher.add(p, wake)
}

// rollLocked seals the active segment (fsync of data and indexes) and starts
// a new one. Everything in sealed segments is durable, so the high
// watermark moves to the new segment's base.
func (p *Partition) rollLocked(now time.Time) error {
	old := p.activeLocked()
	if err := old.f.Sync(); err != nil {
		return p.failLocked("sync", err)
	}
	if err := old.writeIndexesLocked(p.log.fs); err != nil {
		return p.failLocked("write index", err)
	}
	p.snapshotProducersLocked(old.next)
	s, err := createSegment(p.log.fs, p.dir, old.next, now)
	if err != nil {
		return p.failLocked("create segment", err)
	}
	if err := p.log.fs.SyncDir(p.dir); err != nil {
		s.f.Close()
		return p.failLocked("sync dir", err)
	}
	p.mu.segs = append(p.mu.segs, s)
	p.advanceLocked(old.next, 0)
	return nil
}

// flush fsyncs the active segment (SyncInterval). Called by the flusher.
func (p *Partition) flush() {
	p.mu.Lock()
	p.mu.queued = false
	p.mu.Unlock()
	_ = p.syncActive()
}

// WaitDurable returns once every offset <= offset is durable under the sync
// policy (at once for SyncInterval and SyncNever), or the sticky
// *WriteError, or ctx.Err().
func (p *Partition) WaitDurable(ctx context.Context, offset int64) error {
	for {
		ch, err, done := p.durableOrWait(offset)
		if done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// durableOrWait takes p.mu and tells WaitDurable whether it is done (with
// the sticky write error, the partition's state, or nil once offset is
// durable) or else which channel to wait on.
func (p *Partition) durableOrWait(offset int64) (ch <-chan struct{}, err error, done bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.mu.werr != nil:
		return nil, p.mu.werr, true
	case p.log.opts.Sync != SyncAlways || p.mu.hw > offset:
		return nil, nil, true
	case p.mu.state != nil:
		return nil, p.mu.state, true
	}
	return p.changedLocked(), nil, false // about to wait
}

// Read returns whole batches starting with the one that contains offset, up
// to the high watermark and at most maxBytes, except that the first batch is
// always returned whole. It returns nil, nil at the high watermark.
func (p *Partition) Read(offset int64, maxBytes int32) ([]byte, error) {
	return p.ReadWith(offset, maxBytes, nil)
}

// ReadWith is Read with the buffer that receives the bytes coming from
// alloc(n), which must return a slice of length n (nil alloc: make). The
// result is a prefix of that buffer, so the caller can reuse it once done.
// alloc is not called when there is nothing to read.
func (p *Partition) ReadWith(offset int64, maxBytes int32, alloc func(n int) []byte) ([]byte, error) {
	p.files.RLock()
	defer p.files.RUnlock()
	p.mu.Lock()
	if p.mu.state != nil {
		err := p.mu.state
		p.mu.Unlock()
		return nil, err
	}
	hw, logStart := p.mu.hw, p.mu.logStart
	if offset < logStart || offset > hw {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, offset, logStart, hw)
	}
	if offset == hw {
		p.mu.Unlock()
		return nil, nil
	}
	segs := p.mu.segs
	i := max(sort.Search(len(segs), func(i int) bool { return segs[i].base > offset })-1, 0)
	seg := segs[i]
	limit := seg.size
	if i == len(segs)-1 {
		limit = p.mu.hwPos
	}
	index := seg.index
	p.mu.Unlock()

	var hb [batchHeaderSize]byte
	pos := positionOf(index, seg.base, offset)
	var first int64
	for {
		if pos+batchHeaderSize > limit {
			return nil, fmt.Errorf("%w: offset %d not found in segment %d", ErrCorruptBatch, offset, seg.base)
		}
		h, err := readHeader(seg.f, pos, hb[:])
		if err != nil {
			return nil, err
		}
		if h.size < batchHeaderSize || pos+h.size > limit {
			return nil, fmt.Errorf("%w: bad batch at position %d of segment %d", ErrCorruptBatch, pos, seg.base)
		}
		if h.nextOffset() > offset {
			first = h.size
			break
		}
		pos += h.size
	}
	n := min(max(int64(maxBytes), first), limit-pos)
	var buf []byte
	if alloc != nil {
		buf = alloc(int(n))
	} else {
		buf = make([]byte, n)
	}
	if _, err := seg.f.ReadAt(buf, pos); err != nil {
		return nil, err
	}
	end := first
	for end+batchHeaderSize <= n {
		size := batchSize(buf[end:])
		if size < batchHeaderSize || end+size > n {
			break
		}
		end += size
	}
	return buf[:end], nil
}

// HighWatermark is the offset after the last record consumers may read.
func (p *Partition) HighWatermark() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.hw
}

// LogStartOffset is the first offset still readable.
func (p *Partition) LogStartOffset() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.logStart
}

// Err returns the sticky write error, or nil.
func (p *Partition) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.werr == nil {
		return nil
	}
	return p.mu.werr
}

// Size is the bytes of all segments.
func (p *Partition) Size() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, s := range p.mu.segs {
		n += s.size
	}
	return n
}

// Subscribe makes the partition send on ch, without blocking, whenever the
// high watermark advances.
func (p *Partition) Subscribe(ch chan<- struct{}) (cancel func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.subSeq++
	id := p.mu.subSeq
	p.mu.subs[id] = ch
	return func() {
		p.mu.Lock()
		delete(p.mu.subs, id)
		p.mu.Unlock()
	}
}

// MaxTimestamp returns the largest batch maxTimestamp and the last offset of
// its batch, or -1, -1 for an empty partition (ListOffsets -3).
func (p *Partition) MaxTimestamp() (offset, timestamp int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	offset, timestamp = -1, -1
	for _, s := range p.mu.segs {
		if s.maxTs > timestamp && s.maxTsOffset < p.mu.hw {
			offset, timestamp = s.maxTsOffset, s.maxTs
		}
	}
	return offset, timestamp
}

// OffsetForTimestamp returns the base offset and maxTimestamp of the first
// batch whose maxTimestamp >= ts (ListOffsets semantics).
func (p *Partition) OffsetForTimestamp(ts int64) (offset, timestamp int64, ok bool) {
	p.files.RLock()
	defer p.files.RUnlock()
	type view struct {
		seg   *segment
		maxTs int64
		limit int64
		times []timeEntry
	}
	p.mu.Lock()
	if p.mu.state != nil {
		p.mu.Unlock()
		return -1, -1, false
	}
	hw, logStart := p.mu.hw, p.mu.logStart
	views := make([]view, len(p.mu.segs))
	for i, s := range p.mu.segs {
		views[i] = view{seg: s, maxTs: s.maxTs, limit: s.size, times: s.times}
	}
	views[len(views)-1].limit = p.mu.hwPos
	p.mu.Unlock()

	var hb [batchHeaderSize]byte
	for _, v := range views {
		if v.maxTs < ts {
			continue
		}
		for pos := positionOfTime(v.times, ts); pos+batchHeaderSize <= v.limit; {
			h, err := readHeader(v.seg.f, pos, hb[:])
			if err != nil || h.size < batchHeaderSize || h.baseOffset >= hw {
				return -1, -1, false
			}
			if h.maxTimestamp >= ts && h.lastOffset() >= logStart {
				return max(h.baseOffset, logStart), h.maxTimestamp, true
			}
			pos += h.size
		}
	}
	return -1, -1, false
}

// DeleteRecords raises the log start offset to before (-1: the high
// watermark), persists it, and deletes the segments wholly below it.
func (p *Partition) DeleteRecords(before int64) (lowWatermark int64, err error) {
	p.files.Lock()
	defer p.files.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.state != nil {
		return 0, p.mu.state
	}
	if before == -1 {
		before = p.mu.hw
	}
	if before < 0 || before > p.mu.hw {
		return 0, fmt.Errorf("%w: %d beyond high watermark %d", ErrOffsetOutOfRange, before, p.mu.hw)
	}
	if before > p.mu.logStart {
		data := []byte(strconv.FormatInt(before, 10) + "\n")
		if err := writeFileAtomic(p.log.fs, p.dir, filepath.Join(p.dir, logStartFile), data); err != nil {
			return 0, &WriteError{Topic: p.topic.name, Partition: p.id, Op: "write log start", Err: err}
		}
		p.mu.logStart = before
		p.deleteSegmentsLocked(func(s *segment, _ int64) bool { return s.next <= before })
		p.pruneProducersLocked()
	}
	return p.mu.logStart, nil
}

// deleteSegmentsLocked deletes leading non-active segments while del says so
// (given the partition's size including the segment), then moves the log
// start offset up to the first segment left. Needs files held exclusively.
func (p *Partition) deleteSegmentsLocked(del func(s *segment, total int64) bool) int {
	var total int64
	for _, s := range p.mu.segs {
		total += s.size
	}
	n := 0
	for n < len(p.mu.segs)-1 && del(p.mu.segs[n], total) {
		total -= p.mu.segs[n].size
		n++
	}
	if n == 0 {
		return 0
	}
	gone := p.mu.segs[:n]
	p.mu.segs = slices.Clone(p.mu.segs[n:])
	p.mu.logStart = max(p.mu.logStart, p.mu.segs[0].base)
	var errs []error
	for _, s := range gone {
		errs = append(errs, s.remove(p.log.fs))
	}
	if err := errors.Join(errs...); err != nil {
		p.log.logger.Warn("storage: deleting segments failed", "topic", p.topic.name, "partition", p.id, "err", err)
	}
	return n
}

// retain rolls an old active segment (segment.ms) and applies retention.ms
// and retention.bytes.
func (p *Partition) retain(now time.Time, cfg TopicConfig) {
	p.files.Lock()
	defer p.files.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.usableLocked() != nil {
		return
	}
	if a := p.activeLocked(); a.size > 0 && now.Sub(a.created) >= time.Duration(cfg.SegmentMs)*time.Millisecond {
		if err := p.rollLocked(now); err != nil {
			return
		}
	}
	logStart := p.mu.logStart
	n := p.deleteSegmentsLocked(func(s *segment, total int64) bool {
		if s.next <= logStart {
			return true
		}
		if !cfg.deletes() {
			return false
		}
		if cfg.RetentionMs >= 0 && s.maxTs < now.UnixMilli()-cfg.RetentionMs {
			return true
		}
		return cfg.RetentionBytes >= 0 && total-s.size >= cfg.RetentionBytes
	})
	p.expireProducersLocked(now.UnixMilli())
	if n > 0 {
		p.pruneProducersLocked()
	}
	if n > 0 && p.log.logger.Enabled(context.Background(), slog.LevelDebug) {
		p.log.logger.Debug("storage: retention deleted segments", "topic", p.topic.name, "partition", p.id,
			"segments", n, "log_start_offset", p.mu.logStart)
	}
}

// close fsyncs the active segment, writes its indexes and closes every file.
// After close the partition answers state (ErrClosed or ErrPartitionDeleted).
func (p *Partition) close(state error, sync bool) error {
	p.files.Lock()
	defer p.files.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.state != nil {
		return nil
	}
	var errs []error
	if sync && p.mu.werr == nil {
		a := p.activeLocked()
		if err := a.f.Sync(); err != nil {
			errs = append(errs, p.failLocked("sync", err))
		} else if err := a.writeIndexesLocked(p.log.fs); err != nil {
			errs = append(errs, p.failLocked("write index", err))
		} else if state == ErrClosed && len(p.mu.producers.m) > 0 {
			p.snapshotProducersLocked(a.next)
		}
	}
	for _, s := range p.mu.segs {
		if err := s.f.Close(); err != nil && sync {
			errs = append(errs, err)
		}
	}
	p.mu.state = state
	p.wakeLocked()
	return errors.Join(errs...)
}
