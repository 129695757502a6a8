package storage_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

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

// BenchmarkProduceRequest is the storage side of an acks=-1 produce under
// SyncAlways: a request appends one batch to each of 8 partitions and
// waits until all are durable. Four requests are in flight at a time, as
// from a pipelining producer. It reports each request's latency quantiles.
func BenchmarkProduceRequest(b *testing.B) {
	const partitions = 8
	l := openLog(b, Options{Dir: b.TempDir()})
	defer l.Close()
	if _, err := l.CreateTopic("t", partitions, nil); err != nil {
		b.Fatal(err)
	}
	var ps []*Partition
	for i := range partitions {
		ps = append(ps, mustPartition(b, l, "t", int32(i)))
	}
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(2) // 2 x GOMAXPROCS(2) = 4 requests in flight
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		batch := makeBatch(16, make([]byte, 1000))
		last := make([]int64, partitions)
		var mine []time.Duration
		for pb.Next() {
			start := time.Now()
			for i, p := range ps {
				res, err := p.Append(batch)
				if err != nil {
					b.Error(err)
					return
				}
				last[i] = res.LastOffset
			}
			for i, p := range ps {
				if err := p.WaitDurable(context.Background(), last[i]); err != nil {
					b.Error(err)
					return
				}
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}
