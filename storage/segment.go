package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	// indexInterval is how many log bytes lie between sparse index entries.
	indexInterval = 4096

	indexEntrySize = 8  // relative offset uint32, position uint32
	timeEntrySize  = 20 // max timestamp int64, relative offset of it uint32, end position uint32, relative next offset uint32

	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
)

// indexEntry maps the base offset of a batch to its file position.
type indexEntry struct {
	rel uint32 // batch base offset - segment base
	pos uint32
}

// timeEntry says: every batch before pos has maxTimestamp <= ts; ts is the
// maxTimestamp of the batch whose last offset is base+tsRel.
type timeEntry struct {
	ts      int64
	tsRel   uint32
	pos     uint32
	nextRel uint32
}

// segment is one log file and its sparse indexes. Fields below f are guarded
// by the owning Partition's mu; base, path and f never change.
type segment struct {
	base int64
	path string // without suffix
	f    File

	created     time.Time // for segment.ms
	size        int64     // bytes written (and accepted) so far
	next        int64     // offset after the last batch
	maxTs       int64     // largest batch maxTimestamp, -1 if empty
	maxTsOffset int64     // last offset of the batch holding maxTs
	index       []indexEntry
	times       []timeEntry
	sinceIndex  int64
	sinceTime   int64
}

func segmentPath(dir string, base int64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d", base))
}

// listSegments returns the base offsets of the segment files in dir, sorted.
func listSegments(fsys FS, dir string) ([]int64, error) {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bases []int64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, logSuffix) {
			continue
		}
		base, err := strconv.ParseInt(strings.TrimSuffix(name, logSuffix), 10, 64)
		if err != nil || base < 0 {
			continue
		}
		bases = append(bases, base)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, nil
}

// createSegment creates an empty segment file.
func createSegment(fsys FS, dir string, base int64, now time.Time) (*segment, error) {
	path := segmentPath(dir, base)
	f, err := fsys.OpenFile(path+logSuffix, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	_ = fsys.Remove(path + indexSuffix)
	_ = fsys.Remove(path + timeIndexSuffix)
	return &segment{base: base, path: path, f: f, created: now, next: base, maxTs: -1, maxTsOffset: -1}, nil
}

// openSegment opens an existing segment file. The caller then either loads
// its indexes (loadIndexes) or scans it (recover).
func openSegment(fsys FS, dir string, base int64, now time.Time) (*segment, error) {
	path := segmentPath(dir, base)
	f, err := fsys.OpenFile(path+logSuffix, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &segment{base: base, path: path, f: f, created: now, size: st.Size(), next: base, maxTs: -1, maxTsOffset: -1}, nil
}

// appendedLocked updates the indexes for a batch just written at pos.
func (s *segment) appendedLocked(h batchHeader, pos int64) {
	if s.sinceIndex >= indexInterval {
		s.index = append(s.index, indexEntry{rel: uint32(h.baseOffset - s.base), pos: uint32(pos)})
		s.sinceIndex = 0
	}
	s.sinceIndex += h.size
	if h.maxTimestamp > s.maxTs {
		s.maxTs = h.maxTimestamp
		s.maxTsOffset = h.lastOffset()
	}
	s.size = pos + h.size
	s.next = h.nextOffset()
	s.sinceTime += h.size
	if s.sinceTime >= indexInterval {
		s.addTimeEntryLocked()
	}
}

// addTimeEntryLocked records the segment's state so far in the time index.
func (s *segment) addTimeEntryLocked() {
	s.sinceTime = 0
	if s.maxTs < 0 {
		return
	}
	e := timeEntry{ts: s.maxTs, tsRel: uint32(s.maxTsOffset - s.base), pos: uint32(s.size), nextRel: uint32(s.next - s.base)}
	if n := len(s.times); n > 0 && s.times[n-1].ts == e.ts {
		s.times[n-1] = e // same ts, later end: keep only the furthest
		return
	}
	s.times = append(s.times, e)
}

// positionOf returns a file position at or before the batch holding offset.
func positionOf(index []indexEntry, base, offset int64) int64 {
	rel := offset - base
	i := sort.Search(len(index), func(i int) bool { return int64(index[i].rel) > rel })
	if i == 0 {
		return 0
	}
	return int64(index[i-1].pos)
}

// positionOfTime returns a file position before which every batch has
// maxTimestamp < ts.
func positionOfTime(times []timeEntry, ts int64) int64 {
	i := sort.Search(len(times), func(i int) bool { return times[i].ts >= ts })
	if i == 0 {
		return 0
	}
	return int64(times[i-1].pos)
}

// readHeader reads the batch header at pos.
func readHeader(f File, pos int64, buf []byte) (batchHeader, error) {
	buf = buf[:batchHeaderSize]
	if _, err := f.ReadAt(buf, pos); err != nil {
		return batchHeader{}, err
	}
	return parseHeader(buf), nil
}

// writeIndexes writes both index files from memory and fsyncs them. The
// time index ends with an entry describing the whole segment, which lets
// loadIndexes check it against the log file.
func (s *segment) writeIndexesLocked(fsys FS) error {
	if s.size == 0 {
		return nil
	}
	if n := len(s.times); n == 0 || int64(s.times[n-1].pos) != s.size {
		s.addTimeEntryLocked()
	}
	b := make([]byte, 0, len(s.index)*indexEntrySize)
	for _, e := range s.index {
		b = binary.BigEndian.AppendUint32(b, e.rel)
		b = binary.BigEndian.AppendUint32(b, e.pos)
	}
	if err := writeWhole(fsys, s.path+indexSuffix, b); err != nil {
		return err
	}
	b = make([]byte, 0, len(s.times)*timeEntrySize)
	for _, e := range s.times {
		b = binary.BigEndian.AppendUint64(b, uint64(e.ts))
		b = binary.BigEndian.AppendUint32(b, e.tsRel)
		b = binary.BigEndian.AppendUint32(b, e.pos)
		b = binary.BigEndian.AppendUint32(b, e.nextRel)
	}
	return writeWhole(fsys, s.path+timeIndexSuffix, b)
}

func writeWhole(fsys FS, name string, b []byte) error {
	f, err := fsys.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	return errors.Join(werr, serr, f.Close())
}

var errBadIndex = errors.New("weir: index does not match segment")

// loadIndexes reads the index files written by writeIndexesLocked and checks
// them against the log file size. On errBadIndex the caller scans instead.
func (s *segment) loadIndexes(fsys FS) error {
	if s.size == 0 {
		return nil
	}
	tb, err := readFile(fsys, s.path+timeIndexSuffix)
	if err != nil || len(tb) == 0 || len(tb)%timeEntrySize != 0 {
		return errBadIndex
	}
	ib, err := readFile(fsys, s.path+indexSuffix)
	if err != nil || len(ib)%indexEntrySize != 0 {
		return errBadIndex
	}
	var times []timeEntry
	for b := tb; len(b) > 0; b = b[timeEntrySize:] {
		e := timeEntry{
			ts:      int64(binary.BigEndian.Uint64(b)),
			tsRel:   binary.BigEndian.Uint32(b[8:]),
			pos:     binary.BigEndian.Uint32(b[12:]),
			nextRel: binary.BigEndian.Uint32(b[16:]),
		}
		if n := len(times); n > 0 && (e.ts < times[n-1].ts || e.pos < times[n-1].pos) {
			return errBadIndex
		}
		times = append(times, e)
	}
	last := times[len(times)-1]
	if int64(last.pos) != s.size || last.nextRel == 0 {
		return errBadIndex
	}
	var index []indexEntry
	for b := ib; len(b) > 0; b = b[indexEntrySize:] {
		e := indexEntry{rel: binary.BigEndian.Uint32(b), pos: binary.BigEndian.Uint32(b[4:])}
		if int64(e.pos) >= s.size || e.rel >= last.nextRel {
			return errBadIndex
		}
		if n := len(index); n > 0 && (e.rel <= index[n-1].rel || e.pos <= index[n-1].pos) {
			return errBadIndex
		}
		index = append(index, e)
	}
	s.index, s.times = index, times
	s.next = s.base + int64(last.nextRel)
	s.maxTs, s.maxTsOffset = last.ts, s.base+int64(last.tsRel)
	s.sinceTime = 0
	s.sinceIndex = s.size
	if len(index) > 0 {
		s.sinceIndex = s.size - int64(index[len(index)-1].pos)
	}
	return nil
}

// recover scans the segment batch by batch from the start, checking length,
// magic, CRC32C, counts and offset continuity, and rebuilds the indexes. At
// the first invalid or torn batch it truncates the file there and fsyncs it.
// It returns how many bytes were cut off.
func (s *segment) recover() (truncated int64, err error) {
	fileSize := s.size
	s.size, s.next, s.maxTs, s.maxTsOffset = 0, s.base, -1, -1
	s.index, s.times, s.sinceIndex, s.sinceTime = nil, nil, 0, 0
	var buf []byte
	hdr := make([]byte, batchHeaderSize)
	pos := int64(0)
	for pos < fileSize {
		if fileSize-pos < batchHeaderSize {
			break
		}
		if _, err := s.f.ReadAt(hdr, pos); err != nil {
			return 0, err
		}
		h := parseHeader(hdr)
		if h.size < batchHeaderSize || h.size > fileSize-pos || h.baseOffset != s.next {
			break
		}
		if int64(cap(buf)) < h.size {
			buf = make([]byte, h.size)
		}
		b := buf[:h.size]
		if _, err := s.f.ReadAt(b, pos); err != nil && !(errors.Is(err, io.EOF)) {
			return 0, err
		}
		if _, err := checkBatch(b, 0); err != nil {
			break
		}
		if h.nextOffset()-s.base > 1<<31 {
			break // cannot be indexed; a writer never produces this
		}
		s.appendedLocked(h, pos)
		pos += h.size
	}
	if pos == fileSize {
		return 0, nil
	}
	if err := s.f.Truncate(pos); err != nil {
		return 0, err
	}
	if err := s.f.Sync(); err != nil {
		return 0, err
	}
	return fileSize - pos, nil
}

// remove closes the segment and deletes its files.
func (s *segment) remove(fsys FS) error {
	cerr := s.f.Close()
	var errs []error
	for _, suf := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		if err := fsys.Remove(s.path + suf); err != nil && !isNotExist(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, cerr)...)
}
