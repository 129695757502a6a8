package faultfs_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/weirhq/weir/storage"
	"github.com/weirhq/weir/storage/faultfs"
)

// fill returns n bytes of c.
func fill(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }

// durableFile creates name through fs with data, synced.
func durableFile(t *testing.T, fs *faultfs.FS, name string, data []byte) storage.File {
	t.Helper()
	f, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	writeAt(t, f, data, 0)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return f
}

func writeAt(t *testing.T, f storage.File, b []byte, off int64) {
	t.Helper()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func crash(t *testing.T, fs *faultfs.FS, rng *rand.Rand) {
	t.Helper()
	if err := fs.Crash(rng); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// overwritten returns old with b written at off.
func overwritten(old []byte, b []byte, off int) []byte {
	out := append([]byte(nil), old...)
	if end := off + len(b); end > len(out) {
		out = append(out, make([]byte, end-len(out))...)
	}
	copy(out[off:], b)
	return out
}

func failSyncs(fs *faultfs.FS) {
	fs.FailIf(func(op faultfs.Op, _ string) bool { return op == faultfs.OpSync }, nil)
}

func TestUnsyncedOverwriteIsUndone(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	fs := faultfs.New(storage.OSFS{})
	old := fill('a', 4*faultfs.SectorSize+100)
	f := durableFile(t, fs, name, old)
	writeAt(t, f, fill('b', 1000), 300) // not sector aligned
	writeAt(t, f, fill('c', 10), 310)   // the same sectors again
	crash(t, fs, nil)
	if got := readFile(t, name); !bytes.Equal(got, old) {
		t.Fatalf("after crash: %q..., want the synced bytes back", got[:min(len(got), 400)])
	}
}

func TestSyncedOverwriteIsKept(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	fs := faultfs.New(storage.OSFS{})
	old := fill('a', 4*faultfs.SectorSize+100)
	f := durableFile(t, fs, name, old)
	writeAt(t, f, fill('b', 1000), 300)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	writeAt(t, f, fill('c', 50), 0) // unsynced again
	crash(t, fs, nil)
	if got, want := readFile(t, name), overwritten(old, fill('b', 1000), 300); !bytes.Equal(got, want) {
		t.Fatal("a synced overwrite did not survive the crash, or an unsynced one did")
	}
}

// TestOverwriteAndAppend writes over the file's end into new bytes: the
// part below the synced length is undone, the rest truncated.
func TestOverwriteAndAppend(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	fs := faultfs.New(storage.OSFS{})
	old := fill('a', 700)
	f := durableFile(t, fs, name, old)
	writeAt(t, f, fill('b', 1000), 600)
	if size, _ := fs.SyncedSize(name); size != 700 {
		t.Fatalf("synced size %d, want 700", size)
	}
	crash(t, fs, nil)
	if got := readFile(t, name); !bytes.Equal(got, old) {
		t.Fatalf("after crash: %d bytes, want the 700 synced ones", len(got))
	}
}

// TestWriteOnlyOverwrite: the old bytes are saved also when the file was
// opened write-only (faultfs reads them by name).
func TestWriteOnlyOverwrite(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	old := fill('a', 2*faultfs.SectorSize)
	if err := os.WriteFile(name, old, 0o644); err != nil {
		t.Fatal(err)
	}
	fs := faultfs.New(storage.OSFS{}) // existing files count as synced
	f, err := fs.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(fill('b', 600)); err != nil {
		t.Fatal(err)
	}
	crash(t, fs, nil)
	if got := readFile(t, name); !bytes.Equal(got, old) {
		t.Fatal("an unsynced overwrite through a write-only file survived the crash")
	}
}

// TestTornOverwrite: with an rng, each sector written over comes back
// whole, old or new, decided by the rng alone.
func TestTornOverwrite(t *testing.T) {
	const sectors = 16
	old, new := fill('a', sectors*faultfs.SectorSize), fill('b', sectors*faultfs.SectorSize)
	run := func(seed uint64) []byte {
		name := filepath.Join(t.TempDir(), "f")
		fs := faultfs.New(storage.OSFS{})
		f := durableFile(t, fs, name, old)
		writeAt(t, f, new, 0)
		crash(t, fs, rand.New(rand.NewPCG(seed, 1)))
		return readFile(t, name)
	}
	mixed := 0
	for seed := range uint64(8) {
		got := run(seed)
		if len(got) != len(old) {
			t.Fatalf("seed %d: %d bytes, want %d", seed, len(got), len(old))
		}
		var olds int
		for s := range sectors {
			sector := got[s*faultfs.SectorSize : (s+1)*faultfs.SectorSize]
			switch {
			case bytes.Equal(sector, old[:faultfs.SectorSize]):
				olds++
			case bytes.Equal(sector, new[:faultfs.SectorSize]):
			default:
				t.Fatalf("seed %d: sector %d mixes old and new bytes", seed, s)
			}
		}
		if olds > 0 && olds < sectors {
			mixed++
		}
		if again := run(seed); !bytes.Equal(again, got) {
			t.Fatalf("seed %d: a second crash with the same rng tore differently", seed)
		}
	}
	if mixed == 0 {
		t.Fatal("no crash kept some sectors old and others new")
	}
}

// TestFailedSyncAppendNeverDurable: appended bytes a failed Sync lost stay
// lost whatever later Syncs report, and so does what follows them; a torn
// tail never includes them.
func TestFailedSyncAppendNeverDurable(t *testing.T) {
	for seed := range uint64(10) {
		name := filepath.Join(t.TempDir(), "f")
		fs := faultfs.New(storage.OSFS{})
		old := fill('a', 1000)
		f := durableFile(t, fs, name, old)
		writeAt(t, f, fill('b', 500), 1000)
		failSyncs(fs)
		if err := f.Sync(); !errors.Is(err, faultfs.ErrInjected) {
			t.Fatalf("Sync: %v", err)
		}
		fs.ClearFaults()
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		writeAt(t, f, fill('c', 500), 1500)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if size, _ := fs.SyncedSize(name); size != 1000 {
			t.Fatalf("synced size %d after a failed Sync, want 1000", size)
		}
		var rng *rand.Rand
		if seed > 0 {
			rng = rand.New(rand.NewPCG(seed, 2))
		}
		crash(t, fs, rng)
		if got := readFile(t, name); !bytes.Equal(got, old) {
			t.Fatalf("seed %d: %d bytes after the crash, want the 1000 synced before the failed Sync", seed, len(got))
		}
	}
}

// TestFailedSyncOverwriteNeverDurable: an overwrite a failed Sync lost is
// undone at a crash whatever later Syncs report, never torn; sectors
// written after it follow the usual rules.
func TestFailedSyncOverwriteNeverDurable(t *testing.T) {
	for seed := range uint64(10) {
		name := filepath.Join(t.TempDir(), "f")
		fs := faultfs.New(storage.OSFS{})
		old := fill('a', 4*faultfs.SectorSize)
		f := durableFile(t, fs, name, old)
		writeAt(t, f, fill('b', faultfs.SectorSize), 0)
		fs.FailAfter(faultfs.OpSync, 0, nil)
		if err := f.Sync(); !errors.Is(err, faultfs.ErrInjected) {
			t.Fatalf("Sync: %v", err)
		}
		fs.ClearFaults()
		writeAt(t, f, fill('c', faultfs.SectorSize), 2*faultfs.SectorSize)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		var rng *rand.Rand
		if seed > 0 {
			rng = rand.New(rand.NewPCG(seed, 3))
		}
		crash(t, fs, rng)
		want := overwritten(old, fill('c', faultfs.SectorSize), 2*faultfs.SectorSize)
		if got := readFile(t, name); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: the lost overwrite survived, or the synced one did not", seed)
		}
	}
}

// TestRewriteAfterFailedSync: bytes written again after a failed Sync (the
// file cut back and appended to, or a range written over again) are
// durable once a later Sync succeeds.
func TestRewriteAfterFailedSync(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	fs := faultfs.New(storage.OSFS{})
	old := fill('a', 2*faultfs.SectorSize)
	f := durableFile(t, fs, name, old)
	writeAt(t, f, fill('b', 100), 10)              // overwrite
	writeAt(t, f, fill('b', 300), int64(len(old))) // append
	failSyncs(fs)
	if err := f.Sync(); err == nil {
		t.Fatal("Sync succeeded")
	}
	fs.ClearFaults()
	if err := f.Truncate(int64(len(old))); err != nil {
		t.Fatal(err)
	}
	writeAt(t, f, fill('c', 100), 10)
	writeAt(t, f, fill('c', 200), int64(len(old)))
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	crash(t, fs, nil)
	want := append(overwritten(old, fill('c', 100), 10), fill('c', 200)...)
	if got := readFile(t, name); !bytes.Equal(got, want) {
		t.Fatal("bytes written again after a failed Sync and synced did not survive")
	}
}

// TestTruncateDropsUndo: a sector cut off by Truncate is not put back.
func TestTruncateDropsUndo(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	fs := faultfs.New(storage.OSFS{})
	old := fill('a', 4*faultfs.SectorSize)
	f := durableFile(t, fs, name, old)
	writeAt(t, f, fill('b', len(old)), 0)
	if err := f.Truncate(faultfs.SectorSize + 10); err != nil {
		t.Fatal(err)
	}
	crash(t, fs, nil)
	if got := readFile(t, name); !bytes.Equal(got, old[:faultfs.SectorSize+10]) {
		t.Fatalf("after crash: %d bytes, want %d old ones", len(got), faultfs.SectorSize+10)
	}
}

// TestRenameKeepsUndo: the undo travels with the file.
func TestRenameKeepsUndo(t *testing.T) {
	dir := t.TempDir()
	name, moved := filepath.Join(dir, "f"), filepath.Join(dir, "g")
	fs := faultfs.New(storage.OSFS{})
	old := fill('a', faultfs.SectorSize)
	f := durableFile(t, fs, name, old)
	writeAt(t, f, fill('b', 10), 0)
	if err := fs.Rename(name, moved); err != nil {
		t.Fatal(err)
	}
	crash(t, fs, nil)
	if got := readFile(t, moved); !bytes.Equal(got, old) {
		t.Fatal("an unsynced overwrite survived the crash after a rename")
	}
}

// TestUndoLimit: a write that would need more than UndoLimit bytes of undo
// fails; once a Sync frees them, writes go on.
func TestUndoLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2x UndoLimit bytes")
	}
	name := filepath.Join(t.TempDir(), "f")
	fs := faultfs.New(storage.OSFS{})
	f := durableFile(t, fs, name, make([]byte, faultfs.UndoLimit+faultfs.SectorSize))
	writeAt(t, f, fill('b', faultfs.UndoLimit), 0)
	if _, err := f.WriteAt([]byte("x"), faultfs.UndoLimit); !errors.Is(err, faultfs.ErrUndoLimit) {
		t.Fatalf("write past the undo limit: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	writeAt(t, f, []byte("x"), faultfs.UndoLimit)
}

// TestCrashWithoutWrites leaves untouched files alone.
func TestCrashWithoutWrites(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := faultfs.New(storage.OSFS{})
	f, err := fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	crash(t, fs, rand.New(rand.NewPCG(1, 1)))
	if got := readFile(t, name); string(got) != "kept" {
		t.Fatalf("after crash: %q", got)
	}
	if _, err := fs.OpenFile(name, os.O_RDONLY, 0); !errors.Is(err, faultfs.ErrCrashed) {
		t.Fatalf("open after crash: %v", err)
	}
}
