package weir

// offsetTracker follows one partition's events from dispatch to completion
// and says which offset may be checkpointed: the offset just after the
// contiguous completed prefix. An event that completes out of order (another
// key finished first) is remembered but does not move the checkpoint until
// every earlier event has completed too.
//
// It is a deterministic core: no goroutines, no locks, no clock. The
// partition runner owns one and guards it with its mutex.
type offsetTracker struct {
	pending []trackedOffset // dispatched, in offset order; pending[head:] are live
	head    int
	// next is the checkpoint: the offset after the last event of the
	// completed prefix, or -1 before any event completed. epoch is that
	// event's leader epoch.
	next  int64
	epoch int32
}

type trackedOffset struct {
	offset int64
	epoch  int32
	done   bool
}

func newOffsetTracker() offsetTracker { return offsetTracker{next: -1, epoch: -1} }

// dispatched records an event handed out for processing. Offsets must
// increase; gaps (compacted records, transaction markers) are fine.
func (t *offsetTracker) dispatched(offset int64, epoch int32) {
	if n := len(t.pending); n > t.head && t.pending[n-1].offset >= offset {
		panic("weir: offsetTracker: offsets must increase")
	}
	t.pending = append(t.pending, trackedOffset{offset: offset, epoch: epoch})
}

// completed records that the event at offset is done (processed, or
// dead-lettered). It reports false if the offset was never dispatched or
// was already completed.
func (t *offsetTracker) completed(offset int64) bool {
	live := t.pending[t.head:]
	lo, hi := 0, len(live)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if live[m].offset < offset {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(live) || live[lo].offset != offset || live[lo].done {
		return false
	}
	live[lo].done = true
	for t.head < len(t.pending) && t.pending[t.head].done {
		t.next = t.pending[t.head].offset + 1
		t.epoch = t.pending[t.head].epoch
		t.head++
	}
	t.compact()
	return true
}

// completedThrough moves the checkpoint to next directly, for a caller
// that processes strictly in order and so never has events in flight in
// the tracker (the serial path).
func (t *offsetTracker) completedThrough(next int64, epoch int32) {
	if t.inFlight() != 0 {
		panic("weir: offsetTracker: completedThrough with events in flight")
	}
	if next > t.next {
		t.next, t.epoch = next, epoch
	}
}

// compact drops the completed prefix once it is at least half the slice, so
// that memory stays proportional to the events in flight.
func (t *offsetTracker) compact() {
	if t.head == len(t.pending) {
		t.pending, t.head = t.pending[:0], 0
		return
	}
	if t.head >= 1024 && t.head*2 >= len(t.pending) {
		n := copy(t.pending, t.pending[t.head:])
		t.pending, t.head = t.pending[:n], 0
	}
}

// checkpoint returns the offset to commit and its leader epoch, and false if
// no event has completed yet.
func (t *offsetTracker) checkpoint() (offset int64, epoch int32, ok bool) {
	return t.next, t.epoch, t.next >= 0
}

// inFlight is the number of dispatched events not yet in the completed
// prefix (running, waiting, or completed out of order).
func (t *offsetTracker) inFlight() int { return len(t.pending) - t.head }
