// Package faultfs wraps a storage.FS for tests: it injects errors into
// chosen operations and simulates a crash that loses every write not yet
// fsynced (optionally keeping a torn, partly written tail).
//
// The crash model, per file written through the FS:
//   - Appended bytes (past the synced length) are durable once a Sync that
//     began after they were written succeeds. A crash truncates the file to
//     its synced length; with an rng a random prefix of the rest survives.
//   - Bytes written over a range that was already durable are not durable
//     either until such a Sync: the first write over a 512-byte sector saves
//     the sector's durable bytes, and a crash puts them back. With an rng
//     each such sector keeps its new or its old bytes at random (a torn
//     write), never a mix within one sector.
//   - A Sync that fails with an injected error loses what it should have
//     made durable, as Linux may drop dirty pages when fsync reports EIO and
//     then report success on the next fsync without writing them: no later
//     Sync makes those bytes durable, and a crash always undoes them, rng
//     or not (for appended bytes: the file ends before the first lost one),
//     unless they are written again and synced. A write dirties again the
//     whole sectors it touches; lost appended bytes count as written again
//     only from the first lost sector on (a write into the middle of the
//     lost range leaves it lost).
//   - A sector written while a Sync is in progress stays undoable after
//     that Sync, though a real disk may have written it.
//   - Truncations, and directory entries (creates, removes, renames), are
//     durable at once; SyncDir changes nothing in the model.
//
// The undo bytes are kept in memory, at most UndoLimit per FS.
package faultfs

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/weirhq/weir/storage"
)

// Op is a kind of file system operation.
type Op int

const (
	OpOpen Op = iota
	OpRead
	OpWrite
	OpSync
	OpTruncate
	OpRemove
	OpRename
	OpMkdir
	OpSyncDir
)

var (
	// ErrInjected is the default injected error.
	ErrInjected = errors.New("weir: faultfs: injected error")
	// ErrCrashed is returned by every operation after Crash.
	ErrCrashed = errors.New("weir: faultfs: file system crashed")
	// ErrUndoLimit fails a write over durable bytes when the FS already
	// holds UndoLimit bytes of sectors to put back at a crash: a test that
	// overwrites that much without a Sync is not one faultfs can model.
	ErrUndoLimit = errors.New("weir: faultfs: too many unsynced overwrites to undo at a crash")
)

const (
	// SectorSize is the unit of a torn overwrite: a crash keeps each sector
	// written over either old or new.
	SectorSize = 512
	// UndoLimit bounds the memory an FS spends on the durable bytes of
	// sectors written over and not yet synced (kept until a Sync succeeds,
	// or for ever after a failed one unless the sector is written again).
	UndoLimit = 64 << 20
)

// FS is a storage.FS that can fail and crash.
type FS struct {
	inner storage.FS

	// gate is held shared by every operation and exclusively by Crash, so no
	// write lands after the crash truncated the files.
	gate sync.RWMutex

	mu struct {
		sync.Mutex
		crashed bool
		files   map[string]*fileState
		counts  map[Op]int
		rules   []rule
		// undoBytes is the total length of every file's undo sectors.
		undoBytes int64
	}
}

type fileState struct {
	size   int64 // bytes written
	synced int64 // bytes known durable, at most lostFrom while lost()
	// epoch counts the writes that completed; a Sync makes durable only
	// sectors whose last write completed before it began.
	epoch int64
	// undo holds, by sector number, the durable bytes of each sector below
	// synced written over since.
	undo map[int64]*undoSector
	// [lostFrom, lostTo) is a range of appended bytes a failed Sync lost:
	// nothing from lostFrom on becomes durable until the range is written
	// again or truncated away.
	lostFrom, lostTo int64
}

func (st *fileState) lost() bool { return st.lostTo > st.lostFrom }

// undoSector is what a crash puts back into one sector written over.
type undoSector struct {
	old     []byte // the durable bytes, from the sector's start
	epoch   int64  // of the sector's last completed write
	pending int    // writes to the sector in progress
	lost    bool   // a failed Sync lost the write: no later Sync keeps it
}

type rule struct {
	op    Op
	after int // fail once more than after operations of op happened; -1: use pred
	pred  func(op Op, name string) bool
	err   error
	stall *Stall // not nil: a StallIf rule (pred), which fails nothing
}

// Stall holds back the operations a StallIf rule matches: a disk that
// stops answering.
type Stall struct {
	stalled chan string // capacity 1
	release chan struct{}
	once    sync.Once
}

// Stalled gets the file name of an operation that stalls (if nobody reads
// it, later ones are dropped until it is read).
func (s *Stall) Stalled() <-chan string { return s.stalled }

// Release lets every stalled and later matching operation go on. It may be
// called more than once.
func (s *Stall) Release() { s.once.Do(func() { close(s.release) }) }

func (s *Stall) wait(name string) {
	select {
	case <-s.release:
		return
	default:
	}
	select {
	case s.stalled <- name:
	default:
	}
	<-s.release
}

// New wraps inner. Files that already exist count as fully synced.
func New(inner storage.FS) *FS {
	fs := &FS{inner: inner}
	fs.mu.files = make(map[string]*fileState)
	fs.mu.counts = make(map[Op]int)
	return fs
}

// FailAfter makes every operation of kind op after the first n fail with err
// (ErrInjected if err is nil).
func (fs *FS) FailAfter(op Op, n int, err error) {
	if err == nil {
		err = ErrInjected
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.mu.rules = append(fs.mu.rules, rule{op: op, after: fs.mu.counts[op] + n, err: err})
}

// FailIf makes every operation for which pred returns true fail with err
// (ErrInjected if err is nil).
func (fs *FS) FailIf(pred func(op Op, name string) bool, err error) {
	if err == nil {
		err = ErrInjected
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.mu.rules = append(fs.mu.rules, rule{after: -1, pred: pred, err: err})
}

// StallIf makes every operation for which pred returns true wait, before
// it runs, until the returned Stall is released; then it goes on, and
// fails if a rule in force at that moment says so. A stalled operation
// holds up Crash.
func (fs *FS) StallIf(pred func(op Op, name string) bool) *Stall {
	st := &Stall{stalled: make(chan string, 1), release: make(chan struct{})}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.mu.rules = append(fs.mu.rules, rule{after: -1, pred: pred, stall: st})
	return st
}

// ClearFaults removes every injection rule (a stalled operation waits for
// its Stall's release all the same).
func (fs *FS) ClearFaults() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.mu.rules = nil
}

// SyncedSize reports how many bytes of name are known durable as appended
// bytes (never past one a failed Sync lost); sectors written over below it
// may still be undone by a crash.
func (fs *FS) SyncedSize(name string) (int64, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	st, ok := fs.mu.files[filepath.Clean(name)]
	if !ok {
		return 0, false
	}
	return st.synced, true
}

// Crash puts back the durable bytes of every sector written over since the
// last successful Sync of its file, and truncates every file written
// through fs to its synced length. With rng, each such sector keeps its
// new bytes or its old ones at random, and a random prefix of each file's
// unsynced appended bytes survives (a torn tail); bytes a failed Sync lost
// never survive. The same rng state and writes give the same result.
// Afterwards every operation fails with ErrCrashed; wrap the inner FS again
// with New to "reboot".
func (fs *FS) Crash(rng *rand.Rand) error {
	fs.gate.Lock()
	defer fs.gate.Unlock()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.mu.crashed = true
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(fs.mu.files)) {
		if err := fs.crashFileLocked(name, fs.mu.files[name], rng); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (fs *FS) crashFileLocked(name string, st *fileState, rng *rand.Rand) error {
	limit := st.size // what may survive
	if st.lost() {
		limit = min(limit, st.lostFrom)
	}
	keep := st.synced
	if rng != nil && limit > keep {
		keep += rng.Int64N(limit - keep + 1)
	}
	type sector struct {
		off int64
		old []byte
	}
	var undo []sector
	for _, n := range slices.Sorted(maps.Keys(st.undo)) {
		u := st.undo[n]
		if n*SectorSize >= keep || (!u.lost && rng != nil && rng.IntN(2) == 0) {
			continue // truncated anyway, or torn: the new bytes stay
		}
		undo = append(undo, sector{n * SectorSize, u.old})
	}
	if len(undo) == 0 && st.size <= keep {
		return nil
	}
	f, err := fs.inner.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var errs []error
	for _, u := range undo {
		if _, err := f.WriteAt(u.old, u.off); err != nil {
			errs = append(errs, err)
		}
	}
	if st.size > keep {
		errs = append(errs, f.Truncate(keep))
	}
	errs = append(errs, f.Close())
	return errors.Join(errs...)
}

// check waits out the stalls that match op, then counts it and returns
// the error to inject, if any, by the rules in force at that moment.
func (fs *FS) check(op Op, name string) error {
	for _, st := range fs.stalls(op, name) {
		st.wait(name)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.mu.crashed {
		return ErrCrashed
	}
	fs.mu.counts[op]++
	for _, r := range fs.mu.rules {
		switch {
		case r.stall != nil:
		case r.after >= 0 && r.op == op && fs.mu.counts[op] > r.after:
			return r.err
		case r.after < 0 && r.pred(op, name):
			return r.err
		}
	}
	return nil
}

func (fs *FS) stalls(op Op, name string) []*Stall {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var stalls []*Stall
	for _, r := range fs.mu.rules {
		if r.stall != nil && r.pred(op, name) {
			stalls = append(stalls, r.stall)
		}
	}
	return stalls
}

func (fs *FS) state(name string) *fileState {
	st, ok := fs.mu.files[name]
	if !ok {
		st = &fileState{}
		fs.mu.files[name] = st
	}
	return st
}

// dropUndoLocked forgets the undo sectors of st from byte size on (a
// truncation), and cuts the one size falls into.
func (fs *FS) dropUndoLocked(st *fileState, size int64) {
	for n, u := range st.undo {
		start := n * SectorSize
		switch {
		case start >= size:
			fs.mu.undoBytes -= int64(len(u.old))
			delete(st.undo, n)
		case start+int64(len(u.old)) > size:
			fs.mu.undoBytes -= start + int64(len(u.old)) - size
			u.old = u.old[:size-start]
		}
	}
}

// truncateLocked records that name was cut to size (durably at once).
func (fs *FS) truncateLocked(st *fileState, size int64) {
	fs.dropUndoLocked(st, size)
	st.size = size
	st.synced = min(st.synced, size)
	st.lostTo = min(st.lostTo, size)
	if !st.lost() {
		st.lostFrom, st.lostTo = 0, 0
	}
}

// sectors returns the sectors [lo, hi) that a write of n bytes at off
// touches below the synced length (lo == hi: none).
func sectors(st *fileState, off, n int64) (lo, hi int64) {
	end := min(off+n, st.synced)
	if n <= 0 || off >= end {
		return 0, 0
	}
	return off / SectorSize, (end + SectorSize - 1) / SectorSize
}

// beginWrite saves the durable bytes of every sector below the synced
// length that a write of n bytes at off is about to change, and marks the
// write in progress on them; endWrite undoes the mark. It returns the
// sectors it marked.
func (f *file) beginWrite(off, n int64) (lo, hi int64, err error) {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	st := fs.state(f.name)
	lo, hi = sectors(st, off, n)
	var need int64
	for s := lo; s < hi; s++ {
		if _, ok := st.undo[s]; !ok {
			need += min(SectorSize, st.synced-s*SectorSize)
		}
	}
	if need > 0 && fs.mu.undoBytes+need > UndoLimit {
		return 0, 0, fmt.Errorf("%w (%s: %d bytes held)", ErrUndoLimit, f.name, fs.mu.undoBytes)
	}
	if st.undo == nil && hi > lo {
		st.undo = make(map[int64]*undoSector)
	}
	for s := lo; s < hi; s++ {
		u, ok := st.undo[s]
		if !ok {
			start := s * SectorSize
			old, err := f.readDurable(start, min(SectorSize, st.synced-start))
			if err != nil {
				f.endWriteLocked(st, lo, s, false)
				return 0, 0, fmt.Errorf("weir: faultfs: save bytes to undo: %w", err)
			}
			u = &undoSector{old: old}
			st.undo[s] = u
			fs.mu.undoBytes += int64(len(old))
		}
		u.pending++
		u.lost = false // written again: the next Sync may keep it
	}
	return lo, hi, nil
}

// readDurable reads n bytes at off from the inner file, or from the file
// by its name if the open one cannot be read (opened write-only). A file
// shorter than off+n (changed behind fs's back) gives fewer bytes.
func (f *file) readDurable(off, n int64) ([]byte, error) {
	b := make([]byte, n)
	got, err := f.inner.ReadAt(b, off)
	if err != nil && err != io.EOF {
		r, oerr := f.fs.inner.OpenFile(f.name, os.O_RDONLY, 0)
		if oerr != nil {
			return nil, errors.Join(err, oerr)
		}
		got, err = r.ReadAt(b, off)
		r.Close()
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	return b[:got], nil
}

// endWriteLocked ends the write on sectors [lo, hi); done: it reached the
// inner file (as far as it got), so it counts in the file's epoch.
func (f *file) endWriteLocked(st *fileState, lo, hi int64, done bool) {
	if done {
		st.epoch++
	}
	for s := lo; s < hi; s++ {
		if u, ok := st.undo[s]; ok { // else truncated away meanwhile
			u.pending = max(u.pending-1, 0)
			if done {
				u.epoch = st.epoch
			}
		}
	}
}

func (fs *FS) OpenFile(name string, flag int, perm os.FileMode) (storage.File, error) {
	name = filepath.Clean(name)
	fs.gate.RLock()
	defer fs.gate.RUnlock()
	if err := fs.check(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := fs.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	fs.mu.Lock()
	s, known := fs.mu.files[name]
	if !known {
		s = fs.state(name)
		s.size, s.synced = st.Size(), st.Size()
	}
	if flag&os.O_TRUNC != 0 {
		fs.truncateLocked(s, 0)
	}
	fs.mu.Unlock()
	return &file{fs: fs, name: name, inner: f}, nil
}

func (fs *FS) Remove(name string) error {
	name = filepath.Clean(name)
	fs.gate.RLock()
	defer fs.gate.RUnlock()
	if err := fs.check(OpRemove, name); err != nil {
		return err
	}
	if err := fs.inner.Remove(name); err != nil {
		return err
	}
	fs.mu.Lock()
	if st, ok := fs.mu.files[name]; ok {
		fs.dropUndoLocked(st, 0)
		delete(fs.mu.files, name)
	}
	fs.mu.Unlock()
	return nil
}

func (fs *FS) RemoveAll(name string) error {
	name = filepath.Clean(name)
	fs.gate.RLock()
	defer fs.gate.RUnlock()
	if err := fs.check(OpRemove, name); err != nil {
		return err
	}
	if err := fs.inner.RemoveAll(name); err != nil {
		return err
	}
	fs.mu.Lock()
	for k := range fs.mu.files {
		if k == name || strings.HasPrefix(k, name+string(filepath.Separator)) {
			fs.dropUndoLocked(fs.mu.files[k], 0)
			delete(fs.mu.files, k)
		}
	}
	fs.mu.Unlock()
	return nil
}

func (fs *FS) Rename(oldname, newname string) error {
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	fs.gate.RLock()
	defer fs.gate.RUnlock()
	if err := fs.check(OpRename, oldname); err != nil {
		return err
	}
	if err := fs.inner.Rename(oldname, newname); err != nil {
		return err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	moved := make(map[string]*fileState)
	for k, st := range fs.mu.files {
		switch {
		case k == oldname:
			moved[newname] = st
			delete(fs.mu.files, k)
		case strings.HasPrefix(k, oldname+string(filepath.Separator)):
			moved[newname+strings.TrimPrefix(k, oldname)] = st
			delete(fs.mu.files, k)
		}
	}
	for k, st := range moved {
		if replaced, ok := fs.mu.files[k]; ok {
			fs.dropUndoLocked(replaced, 0)
		}
		fs.mu.files[k] = st
	}
	return nil
}

func (fs *FS) MkdirAll(name string, perm os.FileMode) error {
	fs.gate.RLock()
	defer fs.gate.RUnlock()
	if err := fs.check(OpMkdir, filepath.Clean(name)); err != nil {
		return err
	}
	return fs.inner.MkdirAll(name, perm)
}

func (fs *FS) ReadDir(name string) ([]os.DirEntry, error) {
	fs.gate.RLock()
	defer fs.gate.RUnlock()
	if err := fs.check(OpRead, filepath.Clean(name)); err != nil {
		return nil, err
	}
	return fs.inner.ReadDir(name)
}

func (fs *FS) Stat(name string) (os.FileInfo, error) {
	fs.gate.RLock()
	defer fs.gate.RUnlock()
	if err := fs.check(OpRead, filepath.Clean(name)); err != nil {
		return nil, err
	}
	return fs.inner.Stat(name)
}

func (fs *FS) SyncDir(name string) error {
	fs.gate.RLock()
	defer fs.gate.RUnlock()
	if err := fs.check(OpSyncDir, filepath.Clean(name)); err != nil {
		return err
	}
	return fs.inner.SyncDir(name)
}

// file tracks writes and syncs of one open file.
type file struct {
	fs    *FS
	name  string
	inner storage.File
	mu    sync.Mutex // guards off
	off   int64      // position for Write
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	f.fs.gate.RLock()
	defer f.fs.gate.RUnlock()
	if err := f.fs.check(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.inner.ReadAt(p, off)
}

func (f *file) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.WriteAt(p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *file) WriteAt(p []byte, off int64) (int, error) {
	f.fs.gate.RLock()
	defer f.fs.gate.RUnlock()
	if err := f.fs.check(OpWrite, f.name); err != nil {
		return 0, err
	}
	lo, hi, err := f.beginWrite(off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	n, err := f.inner.WriteAt(p, off)
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	st := f.fs.state(f.name)
	f.endWriteLocked(st, lo, hi, true)
	end := off + int64(n)
	st.size = max(st.size, end)
	// Writing lost appended bytes again dirties them again, whole sectors.
	if st.lost() && off/SectorSize*SectorSize <= st.lostFrom && end > st.lostFrom {
		st.lostFrom = (end + SectorSize - 1) / SectorSize * SectorSize
		if !st.lost() {
			st.lostFrom, st.lostTo = 0, 0
		}
	}
	return n, err
}

// Sync makes durable what was written before it began: appended bytes up
// to the first one a failed Sync lost, and the sectors written over (but
// not those a failed Sync lost and nobody wrote again). If an injected
// error fails it, that is all lost.
func (f *file) Sync() error {
	f.fs.gate.RLock()
	defer f.fs.gate.RUnlock()
	f.fs.mu.Lock()
	st := f.fs.state(f.name)
	size, epoch := st.size, st.epoch
	limit := size // what it may make durable
	if st.lost() {
		limit = min(limit, st.lostFrom)
	}
	f.fs.mu.Unlock()
	if err := f.fs.check(OpSync, f.name); err != nil {
		if !errors.Is(err, ErrCrashed) {
			f.fs.mu.Lock()
			f.fs.loseLocked(f.fs.state(f.name), size, epoch)
			f.fs.mu.Unlock()
		}
		return err
	}
	if err := f.inner.Sync(); err != nil {
		return err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	st = f.fs.state(f.name)
	limit = min(limit, st.size)
	if st.lost() {
		limit = min(limit, st.lostFrom)
	}
	st.synced = max(st.synced, limit)
	for n, u := range st.undo {
		if u.pending == 0 && u.epoch <= epoch && !u.lost {
			f.fs.mu.undoBytes -= int64(len(u.old))
			delete(st.undo, n)
		}
	}
	return nil
}

// loseLocked records a Sync, begun when st had size bytes and epoch, that
// failed: what it should have made durable is lost.
func (fs *FS) loseLocked(st *fileState, size, epoch int64) {
	for _, u := range st.undo {
		if u.pending == 0 && u.epoch <= epoch {
			u.lost = true
		}
	}
	size = min(size, st.size)
	if size <= st.synced {
		return
	}
	if st.lost() {
		st.lostTo = max(st.lostTo, size)
	} else {
		st.lostTo = size
	}
	st.lostFrom = st.synced
}

func (f *file) Truncate(size int64) error {
	f.fs.gate.RLock()
	defer f.fs.gate.RUnlock()
	if err := f.fs.check(OpTruncate, f.name); err != nil {
		return err
	}
	if err := f.inner.Truncate(size); err != nil {
		return err
	}
	f.fs.mu.Lock()
	f.fs.truncateLocked(f.fs.state(f.name), size)
	f.fs.mu.Unlock()
	return nil
}

func (f *file) Stat() (os.FileInfo, error) { return f.inner.Stat() }
func (f *file) Close() error               { return f.inner.Close() }
