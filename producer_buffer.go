package weir

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// bufferRoom bounds the events, and their bytes, that a producer holds: an
// event takes room before it is handed to kgo and gives it back when its
// result is known. It is the producer's backpressure.
//
// kgo has limits of its own (MaxBufferedRecords, MaxBufferedBytes), but its
// blocking Produce waits on the context it is given, and that context also
// becomes the record's: it would cancel the event, and every event batched
// behind it. So the producer waits for room here, on the caller's context,
// and hands kgo records it has room for, under a context of its own. kgo's
// limits are set above these (see kgoOpts) so that they never bite: kgo
// counts a record until just after its promise returns, one record at a
// time, while the room is given back just before the promise
// (OnProduceRecordUnbuffered).
type bufferRoom struct {
	maxEvents, maxBytes int64

	mu struct {
		sync.Mutex
		events, bytes int64
		// freed is closed, and cleared, when room is given back while
		// someone waits for it.
		freed chan struct{}
	}
}

func newBufferRoom(events, bytes int) *bufferRoom {
	return &bufferRoom{maxEvents: int64(events), maxBytes: int64(bytes)}
}

// tryTake takes room for one event of size bytes, if there is room now.
func (b *bufferRoom) tryTake(size int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tryTakeLocked(size)
}

func (b *bufferRoom) tryTakeLocked(size int64) bool {
	if b.mu.events >= b.maxEvents || b.mu.bytes+size > b.maxBytes {
		return false
	}
	b.mu.events++
	b.mu.bytes += size
	return true
}

// take waits for room for one event of size bytes, which must be at most
// maxBytes. It returns ctx's error if ctx ends first, or ErrClosed if
// closing is closed first.
func (b *bufferRoom) take(ctx context.Context, closing <-chan struct{}, size int64) error {
	for {
		b.mu.Lock()
		if b.tryTakeLocked(size) {
			b.mu.Unlock()
			return nil
		}
		if b.mu.freed == nil {
			b.mu.freed = make(chan struct{})
		}
		freed := b.mu.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		case <-closing:
			return ErrClosed
		}
	}
}

// give returns the room of one event of size bytes.
func (b *bufferRoom) give(size int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.events--
	b.mu.bytes -= size
	if b.mu.freed != nil {
		close(b.mu.freed)
		b.mu.freed = nil
	}
}

// recordSize is the size a record takes in the buffer: the bytes of its
// key, value and headers, as kgo counts them for MaxBufferedBytes.
func recordSize(r *kgo.Record) int64 {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}
