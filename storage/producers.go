package storage

// The idempotent producer's per-partition state.
//
// Rules, as Kafka's ProducerStateManager and ProducerAppendInfo apply them to
// client produce requests (Kafka 2.7+):
//   - A batch whose producer id is -1 is not idempotent: nothing is checked.
//   - A producer id >= 0 needs an epoch >= 0 and a first sequence >= 0, else
//     the batch is invalid (INVALID_RECORD).
//   - A batch whose (epoch, first sequence, last sequence) equals one of the
//     producer's last producerBatchesKept batches is a duplicate: nothing is
//     stored, and the append answers the original offsets (Kafka answers
//     NONE with the original base offset).
//   - An epoch below the producer's current one: ErrInvalidProducerEpoch.
//   - A higher epoch must start at sequence 0: else ErrOutOfOrderSequence.
//   - The same epoch must continue at last sequence + 1, wrapping from
//     MaxInt32 to 0: else ErrOutOfOrderSequence.
//   - A producer the partition does not know may start at any sequence. This
//     is what Kafka does since KIP-360 (2.5): the broker cannot tell a new
//     producer from one whose state expired or whose batches retention
//     deleted, and UNKNOWN_PRODUCER_ID is no longer sent. weir never loses
//     the state of a producer with batches in the log (see below), so the
//     only producers forgotten are expired or evicted ones.
//   - Several batches in one append are checked in order, each against the
//     state the earlier ones leave: a producer's batches must be consecutive.
//     An append is a duplicate only if every batch in it is; a mix of
//     duplicate and new batches is refused as out of order.
//
// Durability: at every segment roll and at a clean close the state is
// written to <offset>.snapshot (it describes every batch below offset). Open
// loads the newest snapshot not beyond the recovered log end and replays the
// batch headers after it, so a replay reads at most the active segment (all
// of the log if no snapshot exists yet). Snapshots beyond the log end, left
// by a truncation, are deleted.
//
// Memory: a producer is forgotten when Options.ProducerIDExpiration passed
// since its last append (checked in the retention pass, like Kafka's
// producer.id.expiration.ms, default 1 day), when its last batch falls below
// the log start offset, or when a partition already tracks
// Options.MaxProducersPerPartition producers and a new one arrives: then the
// one that appended least recently is evicted (Kafka has no such bound).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// producerBatchesKept is how many of a producer's latest batches a
	// partition remembers for duplicate detection (Kafka: 5, the most
	// requests a producer may have in flight).
	producerBatchesKept = 5

	// DefaultProducerIDExpiration is Kafka's producer.id.expiration.ms.
	DefaultProducerIDExpiration = 24 * time.Hour
	// DefaultMaxProducersPerPartition bounds the producers one partition
	// tracks: about 250 bytes each, so 2.5 MB per partition at most.
	DefaultMaxProducersPerPartition = 10000

	snapshotSuffix = ".snapshot"
	snapshotsKept  = 2
	snapshotMagic  = "weirps01"
)

// producerBatch is what a partition remembers of an appended idempotent batch.
type producerBatch struct {
	firstSeq, lastSeq      int32
	baseOffset, lastOffset int64
	timestamp              int64 // maxTimestamp as stored
}

// producerEntry is one producer's state in one partition.
type producerEntry struct {
	epoch    int16
	n        int                                // batches held, oldest first
	batches  [producerBatchesKept]producerBatch // the latest n
	lastSeen int64                              // broker time (ms) of the last append, for expiry
}

func (e *producerEntry) last() producerBatch { return e.batches[e.n-1] }

func (e *producerEntry) push(b producerBatch) {
	if e.n == len(e.batches) {
		copy(e.batches[:], e.batches[1:])
		e.n--
	}
	e.batches[e.n] = b
	e.n++
}

// duplicate returns the kept batch that (epoch, first, last) repeats.
func (e *producerEntry) duplicate(epoch int16, first, last int32) (producerBatch, bool) {
	if e == nil || epoch != e.epoch {
		return producerBatch{}, false
	}
	for _, b := range e.batches[:e.n] {
		if b.firstSeq == first && b.lastSeq == last {
			return b, true
		}
	}
	return producerBatch{}, false
}

// producerInfo is the idempotence part of a batch header.
type producerInfo struct {
	id       int64
	epoch    int16
	firstSeq int32
	lastSeq  int32
}

// parseProducer reads the producer fields of the batch header at the start of b.
func parseProducer(b []byte) producerInfo {
	first := int32(binary.BigEndian.Uint32(b[offBaseSequence:]))
	return producerInfo{
		id:       int64(binary.BigEndian.Uint64(b[offProducerID:])),
		epoch:    int16(binary.BigEndian.Uint16(b[offProducerEpoch:])),
		firstSeq: first,
		lastSeq:  lastSequence(first, int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:]))),
	}
}

// lastSequence is first + delta, wrapping past MaxInt32 to 0 as Kafka does.
func lastSequence(first, delta int32) int32 {
	if first > math.MaxInt32-delta {
		return delta - (math.MaxInt32 - first) - 1
	}
	return first + delta
}

// inSequence says whether next directly follows last.
func inSequence(last, next int32) bool {
	return int64(next) == int64(last)+1 || (next == 0 && last == math.MaxInt32)
}

// checkSequence applies the epoch and sequence rules to batch b against the
// producer's state: epoch and lastSeq, with known false for a producer the
// partition does not track.
func checkSequence(b producerInfo, known bool, epoch int16, lastSeq int32) error {
	if b.epoch < 0 || b.firstSeq < 0 {
		return fmt.Errorf("%w: producer id %d with epoch %d and sequence %d", ErrInvalidBatch, b.id, b.epoch, b.firstSeq)
	}
	if !known {
		return nil
	}
	serr := &SequenceError{ProducerID: b.id, Epoch: b.epoch, FirstSeq: b.firstSeq, CurrentEpoch: epoch, LastSeq: lastSeq}
	switch {
	case b.epoch < epoch:
		serr.Err = ErrInvalidProducerEpoch
	case b.epoch > epoch && b.firstSeq != 0:
		serr.Err = ErrOutOfOrderSequence
	case b.epoch == epoch && !inSequence(lastSeq, b.firstSeq):
		serr.Err = ErrOutOfOrderSequence
	default:
		return nil
	}
	return serr
}

// producerState is a partition's producers, guarded by Partition.mu.
type producerState struct {
	m map[int64]*producerEntry
}

// seenProducer is the state a producer is left in by the earlier batches of
// the append being checked.
type seenProducer struct {
	id      int64
	epoch   int16
	lastSeq int32
}

// checkProducersLocked checks every idempotent batch of records against the
// producer state. If every batch is a duplicate it returns the original
// offsets of the first and last (dup is true); nothing must then be stored.
func (p *Partition) checkProducersLocked(records []byte) (dup bool, first, last producerBatch, err error) {
	var seenBuf [4]seenProducer
	seen := seenBuf[:0]
	batches, dups := 0, 0
	for pos := 0; pos < len(records); batches++ {
		h := parseHeader(records[pos:])
		b := parseProducer(records[pos:])
		pos += int(h.size)
		if b.id < 0 {
			continue
		}
		e := p.mu.producers.m[b.id]
		i := slices.IndexFunc(seen, func(s seenProducer) bool { return s.id == b.id })
		if i < 0 {
			if orig, ok := e.duplicate(b.epoch, b.firstSeq, b.lastSeq); ok {
				if dups == 0 {
					first = orig
				}
				last = orig
				dups++
				continue
			}
		}
		var known bool
		var epoch int16
		var lastSeq int32
		switch {
		case i >= 0:
			known, epoch, lastSeq = true, seen[i].epoch, seen[i].lastSeq
		case e != nil:
			known, epoch, lastSeq = true, e.epoch, e.last().lastSeq
		}
		if err := checkSequence(b, known, epoch, lastSeq); err != nil {
			return false, first, last, err
		}
		if i >= 0 {
			seen[i].epoch, seen[i].lastSeq = b.epoch, b.lastSeq
		} else {
			seen = append(seen, seenProducer{id: b.id, epoch: b.epoch, lastSeq: b.lastSeq})
		}
	}
	switch {
	case dups == 0:
		return false, first, last, nil
	case dups == batches:
		return true, first, last, nil
	}
	return false, first, last, fmt.Errorf("%w: %d of %d batches repeat earlier ones, the others are new",
		ErrOutOfOrderSequence, dups, batches)
}

// recordProducersLocked remembers the idempotent batches of records, whose
// offsets are already assigned. It also serves replay on open.
func (p *Partition) recordProducersLocked(records []byte, now int64) {
	for pos := 0; pos < len(records); {
		h := parseHeader(records[pos:])
		if b := parseProducer(records[pos:]); b.id >= 0 {
			p.recordBatchLocked(h, b, now)
		}
		pos += int(h.size)
	}
}

func (p *Partition) recordBatchLocked(h batchHeader, b producerInfo, now int64) {
	e := p.mu.producers.m[b.id]
	if e == nil {
		e = p.newProducerLocked(b.id, now)
	}
	if e.epoch != b.epoch {
		e.epoch, e.n = b.epoch, 0
	}
	e.push(producerBatch{firstSeq: b.firstSeq, lastSeq: b.lastSeq, baseOffset: h.baseOffset,
		lastOffset: h.lastOffset(), timestamp: h.maxTimestamp})
	e.lastSeen = now
}

// newProducerLocked adds an entry for id, first making room if the
// partition tracks as many producers as it may.
func (p *Partition) newProducerLocked(id int64, now int64) *producerEntry {
	m := p.mu.producers.m
	if m == nil {
		m = make(map[int64]*producerEntry)
		p.mu.producers.m = m
	}
	if limit := p.log.opts.MaxProducersPerPartition; len(m) >= limit {
		p.expireProducersLocked(now)
		if len(m) >= limit {
			oldest, at := int64(-1), int64(math.MaxInt64)
			for pid, e := range m {
				if e.lastSeen < at {
					oldest, at = pid, e.lastSeen
				}
			}
			delete(m, oldest)
			p.mu.evicted++
			if p.mu.evicted == 1 || p.mu.evicted%1000 == 0 {
				p.log.logger.Warn("storage: too many idempotent producers; evicting the least recently active",
					"topic", p.topic.name, "partition", p.id, "limit", limit, "evicted_total", p.mu.evicted)
			}
		}
	}
	e := &producerEntry{epoch: -1}
	m[id] = e
	return e
}

// expireProducersLocked forgets producers idle for ProducerIDExpiration.
func (p *Partition) expireProducersLocked(now int64) {
	limit := now - p.log.opts.ProducerIDExpiration.Milliseconds()
	for id, e := range p.mu.producers.m {
		if e.lastSeen <= limit {
			delete(p.mu.producers.m, id)
		}
	}
}

// pruneProducersLocked forgets producers whose batches all lie below the
// log start offset, as Kafka does when the log start moves.
func (p *Partition) pruneProducersLocked() {
	for id, e := range p.mu.producers.m {
		if e.last().lastOffset < p.mu.logStart {
			delete(p.mu.producers.m, id)
		}
	}
}

// Snapshot file: magic, offset int64, count uint32, then per producer: id
// int64, epoch int16, lastSeen int64, n uint8, n * (firstSeq int32, lastSeq
// int32, baseOffset int64, lastOffset int64, timestamp int64); then the
// CRC32C of everything before it.
const (
	snapshotHeaderSize = len(snapshotMagic) + 8 + 4
	snapshotEntrySize  = 8 + 2 + 8 + 1
	snapshotBatchSize  = 4 + 4 + 8 + 8 + 8
)

var errBadSnapshot = errors.New("weir: bad producer state snapshot")

func encodeSnapshot(offset int64, m map[int64]*producerEntry) []byte {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := make([]byte, 0, snapshotHeaderSize+len(m)*(snapshotEntrySize+producerBatchesKept*snapshotBatchSize)+4)
	b = append(b, snapshotMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		e := m[id]
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.BigEndian.AppendUint16(b, uint16(e.epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.lastSeen))
		b = append(b, byte(e.n))
		for _, bt := range e.batches[:e.n] {
			b = binary.BigEndian.AppendUint32(b, uint32(bt.firstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(bt.lastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(bt.baseOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(bt.lastOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(bt.timestamp))
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeSnapshot(b []byte) (offset int64, m map[int64]*producerEntry, err error) {
	if len(b) < snapshotHeaderSize+4 || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return 0, nil, errBadSnapshot
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(body):]) {
		return 0, nil, errBadSnapshot
	}
	b = body[len(snapshotMagic):]
	offset = int64(binary.BigEndian.Uint64(b))
	count := binary.BigEndian.Uint32(b[8:])
	b = b[12:]
	if uint64(count)*snapshotEntrySize > uint64(len(b)) {
		return 0, nil, errBadSnapshot
	}
	m = make(map[int64]*producerEntry, count)
	for range count {
		if len(b) < snapshotEntrySize {
			return 0, nil, errBadSnapshot
		}
		id := int64(binary.BigEndian.Uint64(b))
		e := &producerEntry{
			epoch:    int16(binary.BigEndian.Uint16(b[8:])),
			lastSeen: int64(binary.BigEndian.Uint64(b[10:])),
			n:        int(b[18]),
		}
		b = b[snapshotEntrySize:]
		if e.n < 1 || e.n > producerBatchesKept || len(b) < e.n*snapshotBatchSize {
			return 0, nil, errBadSnapshot
		}
		for i := range e.n {
			e.batches[i] = producerBatch{
				firstSeq:   int32(binary.BigEndian.Uint32(b)),
				lastSeq:    int32(binary.BigEndian.Uint32(b[4:])),
				baseOffset: int64(binary.BigEndian.Uint64(b[8:])),
				lastOffset: int64(binary.BigEndian.Uint64(b[16:])),
				timestamp:  int64(binary.BigEndian.Uint64(b[24:])),
			}
			b = b[snapshotBatchSize:]
		}
		m[id] = e
	}
	if len(b) != 0 {
		return 0, nil, errBadSnapshot
	}
	return offset, m, nil
}

func snapshotPath(dir string, offset int64) string {
	return segmentPath(dir, offset) + snapshotSuffix
}

// listSnapshots returns the offsets of the snapshot files in dir, newest first.
func listSnapshots(fsys FS, dir string) ([]int64, error) {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var offs []int64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), snapshotSuffix)
		if !ok {
			continue
		}
		if off, err := strconv.ParseInt(name, 10, 64); err == nil && off >= 0 {
			offs = append(offs, off)
		}
	}
	slices.Sort(offs)
	slices.Reverse(offs)
	return offs, nil
}

// writeSnapshotLocked persists the producer state as of offset (every batch
// below it) and deletes all but the newest snapshotsKept snapshots. A
// failure costs only a longer replay on the next open.
func (p *Partition) writeSnapshotLocked(offset int64) error {
	fsys := p.log.fs
	if err := writeFileAtomic(fsys, p.dir, snapshotPath(p.dir, offset), encodeSnapshot(offset, p.mu.producers.m)); err != nil {
		return err
	}
	offs, err := listSnapshots(fsys, p.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, off := range offs[min(snapshotsKept, len(offs)):] {
		if err := fsys.Remove(snapshotPath(p.dir, off)); err != nil && !isNotExist(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// snapshotProducersLocked writes a snapshot as of offset, logging a
// failure: a missing snapshot only makes the next open replay more. Every
// roll writes one, even an empty one, so that an open replays at most the
// active segment.
func (p *Partition) snapshotProducersLocked(offset int64) {
	if err := p.writeSnapshotLocked(offset); err != nil {
		p.log.logger.Warn("storage: writing producer state snapshot failed", "topic", p.topic.name,
			"partition", p.id, "offset", offset, "err", err)
	}
}

// loadProducersLocked rebuilds the producer state on open: the newest
// readable snapshot at or below the log end, then the batches after it.
// Snapshots beyond the log end (the log was truncated below them) are
// deleted so that no later open trusts them.
func (p *Partition) loadProducersLocked(now time.Time) error {
	fsys := p.log.fs
	end := p.activeLocked().next
	offs, err := listSnapshots(fsys, p.dir)
	if err != nil {
		return err
	}
	from := int64(-1)
	for _, off := range offs {
		path := snapshotPath(p.dir, off)
		if off > end {
			if err := fsys.Remove(path); err != nil && !isNotExist(err) {
				return err
			}
			continue
		}
		if from >= 0 {
			break
		}
		b, err := readFile(fsys, path)
		if err != nil {
			return err
		}
		soff, m, derr := decodeSnapshot(b)
		if derr != nil || soff != off {
			p.log.logger.Warn("storage: ignoring unreadable producer state snapshot",
				"topic", p.topic.name, "partition", p.id, "file", filepath.Base(path))
			continue
		}
		p.mu.producers.m, from = m, off
	}
	if from < 0 {
		p.mu.producers.m, from = nil, 0
	}
	nowMs := now.UnixMilli()
	for _, s := range p.mu.segs {
		if s.next <= from || s.size == 0 {
			continue
		}
		if err := p.replaySegmentLocked(s, from, nowMs); err != nil {
			return err
		}
	}
	p.pruneProducersLocked()
	return nil
}

// replaySegmentLocked records the idempotent batches of s at or after from.
// It reads the file in large chunks and decodes only batch headers.
func (p *Partition) replaySegmentLocked(s *segment, from, now int64) error {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	pos := positionOf(s.index, s.base, from)
	var bufPos, bufLen int64 // buf holds the file's bytes [bufPos, bufPos+bufLen)
	for pos+batchHeaderSize <= s.size {
		if pos < bufPos || pos+batchHeaderSize > bufPos+bufLen {
			n := min(int64(chunk), s.size-pos)
			if _, err := s.f.ReadAt(buf[:n], pos); err != nil {
				return err
			}
			bufPos, bufLen = pos, n
		}
		hb := buf[pos-bufPos:]
		h := parseHeader(hb)
		if h.size < batchHeaderSize {
			return fmt.Errorf("%w: batch length at position %d of segment %d", ErrCorruptBatch, pos, s.base)
		}
		if b := parseProducer(hb); b.id >= 0 && h.baseOffset >= from {
			p.recordBatchLocked(h, b, now)
		}
		pos += h.size
	}
	return nil
}
