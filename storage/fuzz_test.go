package storage_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	. "github.com/weirhq/weir/storage"
)

// FuzzRecovery appends arbitrary bytes to a segment as its tail after an
// unclean stop: recovery must not panic, must keep the valid batches before
// the tail, and every byte it then serves must validate.
func FuzzRecovery(f *testing.F) {
	b1 := makeBatch(10, []byte("one"))
	f.Add([]byte{})
	f.Add(b1[:30])
	f.Add(append([]byte(nil), b1...))
	next := append([]byte(nil), b1...)
	next[7] = 3 // baseOffset 3 continues the log
	f.Add(next)
	f.Add(bytes.Repeat([]byte{0xff}, 100))
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		l := openLog(t, Options{Dir: dir, Sync: SyncNever})
		if _, err := l.CreateTopic("t", 1, nil); err != nil {
			t.Fatal(err)
		}
		p := mustPartition(t, l, "t", 0)
		var want []byte
		for i := range 3 {
			b := makeBatch(int64(i), valueOf(i, 20))
			if _, err := p.Append(b); err != nil {
				t.Fatal(err)
			}
			want = append(want, b...)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, cleanMarker)); err != nil {
			t.Fatal(err)
		}
		seg := filepath.Join(dir, "topics", "t", "0", "00000000000000000000.log")
		fh, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.Write(tail); err != nil {
			t.Fatal(err)
		}
		fh.Close()

		l = openLog(t, Options{Dir: dir, Sync: SyncNever})
		defer l.Close()
		p = mustPartition(t, l, "t", 0)
		got := readAll(t, p, 1<<20) // validates every response
		if !bytes.HasPrefix(got, want) {
			t.Fatalf("recovery lost valid batches: %d bytes kept, %d written before the tail", len(got), len(want))
		}
		if !bytes.HasPrefix(tail, got[len(want):]) {
			t.Fatal("recovery served bytes that were never written")
		}
	})
}
