package storage_test

import (
	"context"
	"testing"

	. "github.com/weirhq/weir/storage"
)

func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		name string
		sync SyncPolicy
	}{{"SyncNever", SyncNever}, {"SyncAlways", SyncAlways}} {
		b.Run(c.name, func(b *testing.B) {
			l := openLog(b, Options{Dir: b.TempDir(), Sync: c.sync})
			defer l.Close()
			if _, err := l.CreateTopic("t", 1, nil); err != nil {
				b.Fatal(err)
			}
			p := mustPartition(b, l, "t", 0)
			batch := makeBatch(1, make([]byte, 1000))
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				res, err := p.Append(batch)
				if err != nil {
					b.Fatal(err)
				}
				if c.sync == SyncAlways {
					if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkAppendParallel shows the group commit: many producers share fsyncs.
func BenchmarkAppendParallel(b *testing.B) {
	l := openLog(b, Options{Dir: b.TempDir()})
	defer l.Close()
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		b.Fatal(err)
	}
	p := mustPartition(b, l, "t", 0)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		batch := makeBatch(1, make([]byte, 1000))
		for pb.Next() {
			res, err := p.Append(batch)
			if err != nil {
				b.Error(err)
				return
			}
			if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
