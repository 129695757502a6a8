package storage

import (
	"sync"
	"time"
)

// maxFlushWorkers bounds how many partitions the flusher (or a journal
// checkpoint) fsyncs at once.
const maxFlushWorkers = 16

// flusher is the Log's single group-commit point. Partitions add themselves
// after writing; runFlusher makes them durable: under SyncAlways at once, by
// one fsync of the journal (journal.go); under SyncInterval every
// Options.SyncInterval, by an fsync of each one's active segment.
type flusher struct {
	mu    sync.Mutex
	dirty []*Partition
	wake  chan struct{} // capacity 1
}

// add queues p. Called with p.mu held (lock order: Partition.mu, flusher.mu).
func (f *flusher) add(p *Partition, wake bool) {
	f.mu.Lock()
	f.dirty = append(f.dirty, p)
	f.mu.Unlock()
	if wake {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

func (f *flusher) take(buf []*Partition) []*Partition {
	f.mu.Lock()
	defer f.mu.Unlock()
	buf = append(buf[:0], f.dirty...)
	clear(f.dirty)
	f.dirty = f.dirty[:0]
	return buf
}

func (l *Log) runFlusher() {
	defer l.wg.Done()
	defer close(l.journal.checkpoints) // the checkpointer finishes what it has and stops
	var tick <-chan time.Time
	if l.opts.Sync == SyncInterval {
		t := time.NewTicker(l.opts.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	var batch []*Partition
	for {
		stopping := false
		select {
		case <-l.stop:
			stopping = true
		case <-l.flusher.wake:
		case <-tick:
		}
		batch = l.flusher.take(batch)
		if l.journal.cur.f != nil {
			l.commitJournal(batch)
		} else {
			forEach(batch, (*Partition).flush)
		}
		clear(batch)
		if stopping {
			return
		}
	}
}

// forEach runs fn on each partition, a few at a time.
func forEach(ps []*Partition, fn func(*Partition)) {
	if len(ps) == 1 {
		fn(ps[0])
		return
	}
	n := min(len(ps), maxFlushWorkers)
	var wg sync.WaitGroup
	next := make(chan *Partition)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range next {
				fn(p)
			}
		}()
	}
	for _, p := range ps {
		next <- p
	}
	close(next)
	wg.Wait()
}
