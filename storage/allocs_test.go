package storage_test

import (
	"testing"

	. "github.com/weirhq/weir/storage"
)

// An append that nobody waits on allocates nothing: the channel that wakes
// WaitDurable callers is made only when one waits.
func TestAppendAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("allocation counts differ under -cover")
	}
	l := openLog(t, Options{Dir: t.TempDir(), Sync: SyncNever})
	defer l.Close()
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	batch := makeBatch(1, make([]byte, 1000))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := p.Append(batch); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("Append under SyncNever: %v allocations, want 0", allocs)
	}
}
