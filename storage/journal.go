package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The journal is what makes an append durable under SyncAlways. Every
// append is written to its partition's segment (page cache only) and copied
// into the journal's buffer; the flusher writes that buffer to one file,
// <Dir>/journal/<seq>.wal, and fsyncs that one file, where it would
// otherwise fsync every dirty partition's segment: one fdatasync per group
// commit however many partitions it covers.
//
// When the file passes journalMaxBytes the flusher starts a new one, fsyncs
// the segments the old one covered (a checkpoint), and deletes it. On open,
// every journal file left by a crash is read and the batches a segment lost
// are appended to it again (replayJournalLocked) before the partition's
// active segment is fsynced; then the files are deleted. A clean Close
// fsyncs every segment and deletes the journal.
//
// An entry is: length uint32 (of what follows the CRC), CRC-32C uint32 (of
// what follows it), topic id [16]byte, partition int32, then the appended
// RecordBatches with their offsets assigned. The topic id, not the name,
// ties an entry to its topic, so a topic deleted and created again under
// the same name never receives the old one's entries.
const (
	journalDirName     = "journal"
	journalSuffix      = ".wal"
	journalEntryHeader = 4 + 4 + 16 + 4
	journalMaxBytes    = 64 << 20
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
	f         File
	seq       uint64
	size      int64
	covered   map[*Partition]struct{} // partitions with entries in f
	spareBuf  []byte
	spareSet  map[*Partition]struct{}
	marks     []journalMark
	nextCheck int64 // size at which to try the next checkpoint
}

// journalMark is how far a partition's appends had gone when the flusher
// looked: once the journal is synced, this much is durable.
type journalMark struct {
	p    *Partition
	seg  *segment
	end  int64 // bytes of seg
	next int64 // offset after the last batch
}

func journalName(dir string, seq uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", seq, journalSuffix))
}

// add copies records, appended to p, into the journal's buffer. Called
// with p.mu held, after the segment write, so that anything the flusher
// marks under p.mu is in the buffer it takes next (or in an earlier one).
func (j *journal) add(p *Partition, records []byte) error {
	var h [journalEntryHeader]byte
	binary.BigEndian.PutUint32(h[0:], uint32(16+4+len(records)))
	copy(h[8:24], p.topic.id[:])
	binary.BigEndian.PutUint32(h[24:], uint32(p.id))
	crc := crc32.Update(crc32.Update(0, castagnoli, h[8:]), castagnoli, records)
	binary.BigEndian.PutUint32(h[4:], crc)

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
		if _, err = j.f.WriteAt(buf, j.size); err == nil {
			err = j.f.Sync()
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
		l.checkpointJournal()
	}
}

// checkpointJournal starts a new journal file, fsyncs the segments of the
// partitions the old one covered, and deletes it. If a segment cannot be
// synced, the old file stays until the next open replays it.
func (l *Log) checkpointJournal() {
	j := &l.journal
	f, err := l.fs.OpenFile(journalName(j.dir, j.seq+1), os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err == nil {
		if err = l.fs.SyncDir(j.dir); err != nil {
			f.Close()
		}
	}
	if err != nil {
		l.logger.Warn("storage: cannot start a new journal file; the current one keeps growing", "err", err)
		j.nextCheck = j.size + l.opts.journalMaxBytes
		return
	}
	old, oldName, covered := j.f, journalName(j.dir, j.seq), j.covered
	j.f, j.seq, j.size, j.nextCheck = f, j.seq+1, 0, l.opts.journalMaxBytes
	j.covered = make(map[*Partition]struct{}, len(covered))
	ps := make([]*Partition, 0, len(covered))
	for p := range covered {
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
	cerr := old.Close()
	if err := errors.Join(failed...); err != nil {
		l.logger.Error("storage: checkpoint could not sync segments; keeping the journal file for the next open",
			"file", filepath.Base(oldName), "err", err)
		return
	}
	if cerr != nil {
		l.logger.Warn("storage: closing the old journal file failed", "file", filepath.Base(oldName), "err", cerr)
	}
	if err := l.fs.Remove(oldName); err != nil {
		l.logger.Warn("storage: removing the old journal file failed", "file", filepath.Base(oldName), "err", err)
		return
	}
	if err := l.fs.SyncDir(j.dir); err != nil {
		l.logger.Warn("storage: sync of the journal directory failed", "err", err)
	}
}

// journalFiles lists the journal files in dir by sequence number.
func journalFiles(fsys FS, dir string) ([]uint64, error) {
	ents, err := fsys.ReadDir(dir)
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, journalSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, journalSuffix), 10, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// journalKey names a partition in journal entries.
type journalKey struct {
	topic     [16]byte
	partition int32
}

// readJournal reads the journal files a crash left behind and returns the
// record bytes of their entries per partition, oldest first, and the
// highest sequence number seen. Each file is read up to its first torn or
// corrupt entry.
func (l *Log) readJournal(dir string) (map[journalKey][][]byte, uint64, error) {
	seqs, err := journalFiles(l.fs, dir)
	if err != nil || len(seqs) == 0 {
		return nil, 0, err
	}
	out := make(map[journalKey][][]byte)
	for _, seq := range seqs {
		name := journalName(dir, seq)
		b, err := readFile(l.fs, name)
		if err != nil {
			return nil, 0, fmt.Errorf("weir: storage: read journal %s: %w", filepath.Base(name), err)
		}
		n, pos := 0, 0
		for pos+journalEntryHeader <= len(b) {
			length := int(binary.BigEndian.Uint32(b[pos:]))
			end := pos + 8 + length
			if length < 20 || end > len(b) ||
				crc32.Checksum(b[pos+8:end], castagnoli) != binary.BigEndian.Uint32(b[pos+4:]) {
				break
			}
			records := b[pos+journalEntryHeader : end]
			if _, err := ValidateBatches(records, 0); err != nil {
				break
			}
			var k journalKey
			copy(k.topic[:], b[pos+8:pos+24])
			k.partition = int32(binary.BigEndian.Uint32(b[pos+24:]))
			out[k] = append(out[k], records)
			pos, n = end, n+1
		}
		if pos < len(b) {
			l.logger.Warn("storage: journal ends in a torn or corrupt entry; the rest was never acknowledged",
				"file", filepath.Base(name), "entries", n, "ignored_bytes", len(b)-pos)
		}
	}
	return out, seqs[len(seqs)-1], nil
}

// openJournal is called by Open after every partition replayed its
// entries and fsynced its segment: it deletes the old journal files and,
// under SyncAlways, starts a new one.
func (l *Log) openJournal(lastSeq uint64) error {
	j := &l.journal
	seqs, err := journalFiles(l.fs, j.dir)
	if err != nil {
		return err
	}
	if err := l.removeJournalFiles(seqs); err != nil {
		return err
	}
	if l.opts.Sync != SyncAlways {
		return nil
	}
	if err := l.fs.MkdirAll(j.dir, 0o755); err != nil {
		return err
	}
	j.seq = lastSeq + 1
	f, err := l.fs.OpenFile(journalName(j.dir, j.seq), os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := l.fs.SyncDir(j.dir); err != nil {
		f.Close()
		return err
	}
	j.f, j.nextCheck = f, l.opts.journalMaxBytes
	j.covered = make(map[*Partition]struct{})
	j.mu.parts = make(map[*Partition]struct{})
	j.spareSet = make(map[*Partition]struct{})
	return nil
}

func (l *Log) removeJournalFiles(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	for _, seq := range seqs {
		if err := l.fs.Remove(journalName(l.journal.dir, seq)); err != nil && !isNotExist(err) {
			return err
		}
	}
	return l.fs.SyncDir(l.journal.dir)
}

// closeJournal is Close's last step once every segment is fsynced: the
// journal is no longer needed.
func (l *Log) closeJournal(segmentsSynced bool) error {
	j := &l.journal
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	if !segmentsSynced || err != nil {
		return err
	}
	return l.removeJournalFiles([]uint64{j.seq})
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

func (p *Partition) fail(op string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failLocked(op, err)
}

// syncActive fsyncs the active segment (a journal checkpoint). A closed
// or deleted partition has nothing to sync.
func (p *Partition) syncActive() error {
	p.files.RLock()
	defer p.files.RUnlock()
	p.mu.Lock()
	if p.mu.state != nil {
		p.mu.Unlock()
		return nil
	}
	seg := p.activeLocked()
	p.mu.Unlock()
	if err := seg.f.Sync(); err != nil {
		return p.failSync(err)
	}
	return nil
}

func (p *Partition) failSync(err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failLocked("sync", err)
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
			if h.baseOffset != seg.next {
				p.log.logger.Error("storage: journal does not continue the partition's log; not replaying the rest",
					"topic", p.topic.name, "partition", p.id, "log_end_offset", seg.next, "journal_offset", h.baseOffset)
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
