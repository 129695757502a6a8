package storage_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkFdatasync measures what a group commit costs on this machine's
// disk, outside weir: one op appends 128 KiB and makes it durable, either
// as 8 files of 16 KiB each fdatasynced at once (weir's shape: one file per
// partition), as one file (one write-ahead file for all partitions would
// do this), or as 8 files written into blocks zeroed beforehand (no size
// or allocation change for fdatasync to write). It reports p50/p99 per op
// and the CPU time per op, which in a VM includes the I/O submissions.
func BenchmarkFdatasync(b *testing.B) {
	for _, c := range []struct {
		name    string
		files   int
		prezero bool
	}{{"8files", 8, false}, {"1file", 1, false}, {"8files-prezeroed", 8, true}} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			chunk := make([]byte, (128<<10)/c.files)
			var fs []*os.File
			for i := range c.files {
				f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(i)), os.O_CREATE|os.O_RDWR, 0o644)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				if c.prezero {
					if _, err := f.WriteAt(make([]byte, b.N*len(chunk)), 0); err != nil {
						b.Fatal(err)
					}
					if err := f.Sync(); err != nil {
						b.Fatal(err)
					}
				}
				fs = append(fs, f)
			}
			lat := make([]time.Duration, 0, b.N)
			cpu0 := processCPU(b)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				var wg sync.WaitGroup
				for _, f := range fs {
					wg.Go(func() {
						if _, err := f.WriteAt(chunk, int64(i*len(chunk))); err != nil {
							b.Error(err)
						}
						if err := syscall.Fdatasync(int(f.Fd())); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
