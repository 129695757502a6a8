// Package faultfs wraps a storage.FS for tests: it injects errors into
// chosen operations and simulates a crash that loses every write not yet
// fsynced (optionally keeping a torn, partly written tail).
package faultfs

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
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
	}
}

type fileState struct {
	size   int64 // bytes written
	synced int64 // bytes known durable
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

// SyncedSize reports how many bytes of name are known durable.
func (fs *FS) SyncedSize(name string) (int64, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	st, ok := fs.mu.files[filepath.Clean(name)]
	if !ok {
		return 0, false
	}
	return st.synced, true
}

// Crash truncates every file written through fs to its synced length. With
// rng, a random prefix of each file's unsynced bytes survives (a torn tail).
// Afterwards every operation fails with ErrCrashed; wrap the inner FS again
// with New to "reboot".
func (fs *FS) Crash(rng *rand.Rand) error {
	fs.gate.Lock()
	defer fs.gate.Unlock()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.mu.crashed = true
	var errs []error
	for name, st := range fs.mu.files {
		if st.size <= st.synced {
			continue
		}
		keep := st.synced
		if rng != nil {
			keep += rng.Int64N(st.size - st.synced + 1)
		}
		f, err := fs.inner.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		errs = append(errs, f.Truncate(keep), f.Close())
	}
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
		s.size, s.synced = 0, 0
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
	delete(fs.mu.files, name)
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
	n, err := f.inner.WriteAt(p, off)
	f.fs.mu.Lock()
	st := f.fs.state(f.name)
	st.size = max(st.size, off+int64(n))
	f.fs.mu.Unlock()
	return n, err
}

func (f *file) Sync() error {
	f.fs.gate.RLock()
	defer f.fs.gate.RUnlock()
	f.fs.mu.Lock()
	size := f.fs.state(f.name).size
	f.fs.mu.Unlock()
	if err := f.fs.check(OpSync, f.name); err != nil {
		return err
	}
	if err := f.inner.Sync(); err != nil {
		return err
	}
	f.fs.mu.Lock()
	st := f.fs.state(f.name)
	st.synced = max(st.synced, min(size, st.size))
	f.fs.mu.Unlock()
	return nil
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
	st := f.fs.state(f.name)
	st.size = size
	st.synced = min(st.synced, size)
	f.fs.mu.Unlock()
	return nil
}

func (f *file) Stat() (os.FileInfo, error) { return f.inner.Stat() }
func (f *file) Close() error               { return f.inner.Close() }
