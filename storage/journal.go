package storage

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// The journal is what makes an append durable under SyncAlways. Every
// append is written to its partition's segment (page cache only) and copied
// into the journal's buffer; the flusher writes that buffer to one journal
// file and fdatasyncs that one file, where it would otherwise fsync every
// dirty partition's segment: one fdatasync per group commit however many
// partitions it covers.
//
// When the file passes journalMaxBytes the flusher switches to another one
// and the checkpointer goroutine fsyncs the segments the old one covered;
// then the old file is free to be written over from its start. A file
// written over needs no new blocks and no size change, so its fdatasync
// writes only data, not file system metadata (on ext4 that also keeps it
// out of the file system journal's commits, which the segments' fsyncs
// drive). Every entry carries the generation of the file's current use, so
// what is left of an earlier use ends the file.
//
// On open, every journal file a crash left is read, up to its first torn
// or corrupt entry or one of another generation, and, in generation order,
// the batches a segment lost are appended to it again
// (replayJournalLocked) before the partition's active segment is fsynced;
// then the files are deleted. A clean Close fsyncs every segment and
// deletes the journal.
//
// An entry is: length uint32 (of what follows the CRC), CRC-32C uint32 (of
// what follows it), generation uint64, topic id [16]byte, partition int32,
// then the appended RecordBatches with their offsets assigned. The topic
// id, not the name, ties an entry to its topic, so a topic deleted and
// created again under the same name never receives the old one's entries.
const (
	journalDirName     = "journal"
	journalSuffix      = ".wal"
	journalEntryHeader = 4 + 4 + 8 + 16 + 4
	// journalMaxBytes is when the flusher switches files and the
	// checkpointer fsyncs the segments. Small, so that a checkpoint has
	// little to write: with 64 MiB, the commit after a switch waited ~50 ms
	// on ext4 for the checkpoint's writes (weir bench: p99 6-7 ms, p999
	// ~40 ms); with 4 MiB the p999 is as low as kfake's. The files are
	// written over in turn, so the journal takes ~2x this on disk.
	journalMaxBytes = 4 << 20
	// journalKeepBuffer: a buffer grown beyond this by a burst is dropped
	// once written, not kept for the next one.
	journalKeepBuffer = 4 << 20
)

type journal struct {
	dir string

	mu struct {
		sync.Mutex
		buf   []byte
		parts map[*Partition]struct{} // partitions with entries in buf
		err   error                   // sticky: nothing more is accepted
	}

	// Owned by the flusher goroutine (by Open before it starts, by Close
	// after it stopped).
	cur       journalFile
	gen       uint64 // of cur's current use
	lastName  uint64 // the highest file number so far
	size      int64
	covered   map[*Partition]struct{} // partitions with entries in f
	spareBuf  []byte
	spareSet  map[*Partition]struct{}
	marks     []journalMark
	nextCheck int64 // size at which to try the next checkpoint

	checkpoints   chan journalCheckpoint // capacity 1; closed when the flusher stops
	checkpointing atomic.Bool            // a checkpoint was handed over and is not done
	// free is a checkpointed file to write over next, set by the
	// checkpointer before checkpointing goes false (f nil: none).
	free journalFile
}

// journalFile is an open journal file.
type journalFile struct {
	f    File
	name string
}

// journalMark is how far a partition's appends had gone when the flusher
// looked: once the journal is synced, this much is durable.
type journalMark struct {
	p    *Partition
	seg  *segment
	end  int64 // bytes of seg
	next int64 // offset after the last batch
}

// add copies records, appended to p, into the journal's buffer. Called
// with p.mu held, after the segment write, so that anything the flusher
// marks under p.mu is in the buffer it takes next (or in an earlier one).
// The generation and the CRC are filled in by seal, when the flusher knows
// which file the entry goes to.
func (j *journal) add(p *Partition, records []byte) error {
	var h [journalEntryHeader]byte
	binary.BigEndian.PutUint32(h[0:], uint32(journalEntryHeader-8+len(records)))
	copy(h[16:32], p.topic.id[:])
	binary.BigEndian.PutUint32(h[32:], uint32(p.id))

	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mu.err != nil {
		return j.mu.err
	}
	j.mu.buf = append(append(j.mu.buf, h[:]...), records...)
	j.mu.parts[p] = struct{}{}
	return nil
}

// take hands the buffered entries and the partitions they cover to the
// flusher, leaving the spare buffer in their place.
func (j *journal) take() ([]byte, map[*Partition]struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	buf, parts := j.mu.buf, j.mu.parts
	j.mu.buf, j.mu.parts = j.spareBuf[:0], j.spareSet
	j.spareBuf, j.spareSet = nil, nil
	return buf, parts
}

// seal stamps every entry in buf with the generation and its CRC.
func (j *journal) seal(buf []byte) {
	for pos := 0; pos < len(buf); {
		end := pos + 8 + int(binary.BigEndian.Uint32(buf[pos:]))
		binary.BigEndian.PutUint64(buf[pos+8:], j.gen)
		binary.BigEndian.PutUint32(buf[pos+4:], crc32.Checksum(buf[pos+8:end], castagnoli))
		pos = end
	}
}

// recycle makes buf and parts the spare ones again.
func (j *journal) recycle(buf []byte, parts map[*Partition]struct{}) {
	if cap(buf) > journalKeepBuffer {
		buf = nil
	}
	clear(parts)
	j.spareBuf, j.spareSet = buf, parts
}

func (j *journal) fail(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mu.err == nil {
		j.mu.err = err
	}
}

// commitJournal is the flusher's group commit under SyncAlways: mark how
// far each dirty partition got, write and fsync the journal once, then
// move each partition's high watermark to its mark.
func (l *Log) commitJournal(dirty []*Partition) {
	j := &l.journal
	marks := j.marks[:0]
	for _, p := range dirty {
		if m, ok := p.mark(); ok {
			marks = append(marks, m)
		}
	}
	buf, parts := j.take()
	var err error
	if len(buf) > 0 {
		j.seal(buf)
		if _, err = j.cur.f.WriteAt(buf, j.size); err == nil {
			err = j.cur.f.Sync()
		}
	}
	if err != nil {
		j.fail(err)
		l.logger.Error("storage: journal write failed; every partition refuses further writes", "err", err)
		for p := range parts {
			p.fail("write journal", err)
		}
		for _, m := range marks {
			m.p.fail("write journal", err)
		}
	} else {
		j.size += int64(len(buf))
		for p := range parts {
			j.covered[p] = struct{}{}
		}
		for _, m := range marks {
			m.p.advanceTo(m)
		}
	}
	clear(marks)
	j.marks = marks
	j.recycle(buf, parts)
	if err == nil && j.size >= j.nextCheck {
		l.rotateJournal()
	}
}

// rotateJournal moves on to the free file (or a new one) and hands the
// current one to the checkpointer, unless that is still busy with the one
// before: then the current file grows until a later commit finds it idle.
// A commit is never held up by a checkpoint's fsyncs.
func (l *Log) rotateJournal() {
	j := &l.journal
	if j.checkpointing.Load() {
		return
	}
	next := j.free
	j.free = journalFile{}
	if next.f == nil {
		var err error
		if next, err = l.createJournalFile(); err != nil {
			l.logger.Warn("storage: cannot start a new journal file; the current one keeps growing", "err", err)
			j.nextCheck = j.size + l.opts.journalMaxBytes
			return
		}
	}
	cp := journalCheckpoint{file: j.cur, covered: j.covered}
	j.cur, j.gen, j.size, j.nextCheck = next, j.gen+1, 0, l.opts.journalMaxBytes
	j.covered = make(map[*Partition]struct{}, len(cp.covered))
	j.checkpointing.Store(true)
	j.checkpoints <- cp // never blocks: the checkpointer took the last one and is idle
}

// createJournalFile creates the next numbered journal file, durably.
func (l *Log) createJournalFile() (journalFile, error) {
	j := &l.journal
	name := journalName(j.dir, j.lastName+1)
	f, err := l.fs.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return journalFile{}, err
	}
	if err := l.fs.SyncDir(j.dir); err != nil {
		f.Close()
		return journalFile{}, err
	}
	j.lastName++
	return journalFile{f: f, name: name}, nil
}

// journalCheckpoint is a journal file no longer written to, and the
// partitions it has entries of.
type journalCheckpoint struct {
	file    journalFile
	covered map[*Partition]struct{}
}

// runCheckpointer checkpoints the journal files rotateJournal hands over
// until the flusher stops (it closes the channel).
func (l *Log) runCheckpointer() {
	defer l.wg.Done()
	for cp := range l.journal.checkpoints {
		if l.checkpoint(cp) {
			l.journal.free = cp.file
		}
		l.journal.checkpointing.Store(false)
	}
}

// checkpoint fsyncs the segments of the partitions cp covers, so that its
// file may be written over. If a segment cannot be synced, the file is
// closed and stays as it is until the next open replays it.
func (l *Log) checkpoint(cp journalCheckpoint) bool {
	ps := make([]*Partition, 0, len(cp.covered))
	for p := range cp.covered {
		ps = append(ps, p)
	}
	var mu sync.Mutex
	var failed []error
	forEach(ps, func(p *Partition) {
		if err := p.syncActive(); err != nil {
			mu.Lock()
			failed = append(failed, err)
			mu.Unlock()
		}
	})
	if err := errors.Join(failed...); err != nil {
		l.logger.Error("storage: checkpoint could not sync segments; keeping the journal file for the next open",
			"file", filepath.Base(cp.file.name), "err", err)
		cp.file.f.Close()
		return false
	}
	return true
}

// journalFiles lists the numbers of the journal files in dir, in order.
func journalFiles(fsys FS, dir string) ([]uint64, error) {
	ents, err := fsys.ReadDir(dir)
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var nums []uint64
	for _, e := range ents {
		name := e.Name()
		if len(name) != 20+len(journalSuffix) || !strings.HasSuffix(name, journalSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, journalSuffix), 10, 64)
		if err != nil {
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	return nums, nil
}

func journalName(dir string, n uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", n, journalSuffix))
}

// journalKey names a partition in journal entries.
type journalKey struct {
	topic     [16]byte
	partition int32
}

// journalUse is what one journal file holds of its current use.
type journalUse struct {
	gen     uint64
	keys    []journalKey
	records [][]byte
}

// readJournal reads the journal files a crash left behind and returns the
// record bytes of their entries per partition, oldest first, and the
// highest file number and generation seen. Each file is read up to its
// first torn or corrupt entry or one of another generation than its first.
func (l *Log) readJournal() (out map[journalKey][][]byte, lastName, lastGen uint64, err error) {
	dir := l.journal.dir
	nums, err := journalFiles(l.fs, dir)
	if err != nil || len(nums) == 0 {
		return nil, 0, 0, err
	}
	var uses []journalUse
	for _, num := range nums {
		name := journalName(dir, num)
		b, err := readFile(l.fs, name)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("weir: storage: read journal %s: %w", filepath.Base(name), err)
		}
		var u journalUse
		pos := 0
		for pos+journalEntryHeader <= len(b) {
			length := int(binary.BigEndian.Uint32(b[pos:]))
			end := pos + 8 + length
			if length < journalEntryHeader-8 || end > len(b) ||
				crc32.Checksum(b[pos+8:end], castagnoli) != binary.BigEndian.Uint32(b[pos+4:]) {
				break
			}
			gen := binary.BigEndian.Uint64(b[pos+8:])
			if len(u.records) == 0 {
				u.gen = gen
			} else if gen != u.gen {
				break // left from the file's earlier use
			}
			records := b[pos+journalEntryHeader : end]
			if _, err := ValidateBatches(records, 0); err != nil {
				break
			}
			var k journalKey
			copy(k.topic[:], b[pos+16:pos+32])
			k.partition = int32(binary.BigEndian.Uint32(b[pos+32:]))
			u.keys, u.records = append(u.keys, k), append(u.records, records)
			pos = end
		}
		l.logger.Debug("storage: read journal file", "file", filepath.Base(name), "generation", u.gen,
			"entries", len(u.records), "ignored_bytes", len(b)-pos)
		if len(u.records) > 0 {
			uses = append(uses, u)
			lastGen = max(lastGen, u.gen)
		}
	}
	slices.SortFunc(uses, func(a, b journalUse) int { return cmp.Compare(a.gen, b.gen) })
	out = make(map[journalKey][][]byte)
	for _, u := range uses {
		for i, k := range u.keys {
			out[k] = append(out[k], u.records[i])
		}
	}
	return out, nums[len(nums)-1], lastGen, nil
}

// openJournal is called by Open after every partition replayed its
// entries and fsynced its segment: it deletes the old journal files and,
// under SyncAlways, starts a new one.
func (l *Log) openJournal(lastName, lastGen uint64) error {
	j := &l.journal
	nums, err := journalFiles(l.fs, j.dir)
	if err != nil {
		return err
	}
	if l.keepJournal {
		if err := l.keepJournalFiles(nums); err != nil {
			return err
		}
	} else if err := l.removeJournalFiles(nums); err != nil {
		return err
	}
	if l.opts.Sync != SyncAlways {
		return nil
	}
	if err := l.fs.MkdirAll(j.dir, 0o755); err != nil {
		return err
	}
	if err := l.fs.SyncDir(l.opts.Dir); err != nil {
		return err
	}
	j.lastName, j.gen = lastName, lastGen+1
	if j.cur, err = l.createJournalFile(); err != nil {
		return err
	}
	j.nextCheck = l.opts.journalMaxBytes
	j.covered = make(map[*Partition]struct{})
	j.mu.parts = make(map[*Partition]struct{})
	j.spareSet = make(map[*Partition]struct{})
	return nil
}

// keepJournalFiles renames the journal files out of the way
// (<name>.kept-<unix nanoseconds>), for an operator to look at: a replay
// found them not to continue a partition's log.
func (l *Log) keepJournalFiles(nums []uint64) error {
	suffix := ".kept-" + strconv.FormatInt(l.now().UnixNano(), 10)
	for _, n := range nums {
		name := journalName(l.journal.dir, n)
		if err := l.fs.Rename(name, name+suffix); err != nil {
			return err
		}
		l.logger.Warn("storage: kept a journal file that could not be replayed whole", "file", filepath.Base(name+suffix))
	}
	return l.fs.SyncDir(l.journal.dir)
}

func (l *Log) removeJournalFiles(nums []uint64) error {
	if len(nums) == 0 {
		return nil
	}
	for _, n := range nums {
		if err := l.fs.Remove(journalName(l.journal.dir, n)); err != nil && !isNotExist(err) {
			return err
		}
	}
	return l.fs.SyncDir(l.journal.dir)
}

// closeJournal is Close's last step: once every segment is fsynced the
// journal is no longer needed.
func (l *Log) closeJournal(segmentsSynced bool) error {
	j := &l.journal
	var errs []error
	for _, jf := range []journalFile{j.cur, j.free} {
		if jf.f != nil {
			errs = append(errs, jf.f.Close())
		}
	}
	j.cur, j.free = journalFile{}, journalFile{}
	if err := errors.Join(errs...); err != nil || !segmentsSynced {
		return err
	}
	nums, err := journalFiles(l.fs, j.dir)
	if err != nil {
		return err
	}
	return l.removeJournalFiles(nums)
}

// mark notes how far p's appends have gone, for commitJournal; false if
// p takes no more writes.
func (p *Partition) mark() (journalMark, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.queued = false
	if p.usableLocked() != nil {
		return journalMark{}, false
	}
	seg := p.activeLocked()
	return journalMark{p: p, seg: seg, end: seg.size, next: seg.next}, true
}

// advanceTo moves the high watermark to m once what m covers is durable.
func (p *Partition) advanceTo(m journalMark) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.usableLocked() == nil && m.next > p.mu.hw && m.seg == p.activeLocked() {
		p.advanceLocked(m.next, m.end)
	}
}

// fail is failLocked for a caller that does not hold p.mu.
func (p *Partition) fail(op string, err error) *WriteError {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failLocked(op, err)
}

// syncActive fsyncs the active segment (a journal checkpoint, or
// SyncInterval's flush). A closed or deleted partition has nothing to
// sync; a failed one answers its sticky error.
func (p *Partition) syncActive() error {
	p.files.RLock()
	defer p.files.RUnlock()
	p.mu.Lock()
	if p.mu.state != nil {
		p.mu.Unlock()
		return nil
	}
	if werr := p.mu.werr; werr != nil {
		// After a failed write or fsync the segment may lack pages that
		// a later fsync would report as written (Linux drops them on
		// EIO): a checkpoint must not count this partition as synced.
		p.mu.Unlock()
		return werr
	}
	seg := p.activeLocked()
	p.mu.Unlock()
	if err := seg.f.Sync(); err != nil {
		return p.fail("sync", err)
	}
	return nil
}

// replayJournalLocked appends the batches of entries that the active
// segment lost in a crash (those from its end on), during open.
func (p *Partition) replayJournalLocked(entries [][]byte) error {
	seg := p.activeLocked()
	var replayed, batches int64
	for _, records := range entries {
		for pos := 0; pos < len(records); {
			h := parseHeader(records[pos:])
			b := records[pos : pos+int(h.size)]
			pos += int(h.size)
			if h.nextOffset() <= seg.next {
				continue // the segment has it
			}
			if h.baseOffset != seg.next || h.nextOffset()-seg.base > math.MaxInt32 {
				p.log.logger.Error("storage: journal does not continue the partition's log; not replaying the rest, keeping the journal files",
					"topic", p.topic.name, "partition", p.id, "log_end_offset", seg.next, "journal_offset", h.baseOffset)
				p.log.keepJournal = true
				return nil
			}
			if _, err := seg.f.WriteAt(b, seg.size); err != nil {
				return err
			}
			seg.appendedLocked(h, seg.size)
			replayed += h.size
			batches++
		}
	}
	if batches > 0 {
		p.log.logger.Info("storage: replayed the journal", "topic", p.topic.name, "partition", p.id,
			"batches", batches, "bytes", replayed, "log_end_offset", seg.next)
	}
	return nil
}
