package weir

import "github.com/twmb/franz-go/pkg/kgo"

// keyScheduler orders the events of one partition for a pool of workers:
// events with the same key run one at a time, in offset order; events with
// different keys (or no key) may run in parallel. It hands out runnable
// events in the order they became runnable.
//
// It is a deterministic core: no goroutines, no locks. The partition runner
// owns one, adds events as they are fetched, takes runnable ones for its
// workers and reports each as done.
type keyScheduler struct {
	// keys holds, per key with an event running or runnable, the later
	// events of that key waiting their turn.
	keys  map[string]*keyQueue
	ready []*kgo.Record // runnable, FIFO from readyHead
	head  int
	count int // added and not yet done
}

type keyQueue struct {
	waiting []*kgo.Record
}

func newKeyScheduler() keyScheduler {
	return keyScheduler{keys: make(map[string]*keyQueue)}
}

// add queues an event. Events must be added in offset order.
func (s *keyScheduler) add(r *kgo.Record) {
	s.count++
	if len(r.Key) == 0 {
		s.ready = append(s.ready, r)
		return
	}
	if q, ok := s.keys[string(r.Key)]; ok {
		q.waiting = append(q.waiting, r)
		return
	}
	s.keys[string(r.Key)] = &keyQueue{}
	s.ready = append(s.ready, r)
}

// peek returns the next runnable event without taking it.
func (s *keyScheduler) peek() (*kgo.Record, bool) {
	if s.head == len(s.ready) {
		return nil, false
	}
	return s.ready[s.head], true
}

// next takes the next runnable event.
func (s *keyScheduler) next() (*kgo.Record, bool) {
	r, ok := s.peek()
	if !ok {
		return nil, false
	}
	s.ready[s.head] = nil
	s.head++
	if s.head == len(s.ready) {
		s.ready, s.head = s.ready[:0], 0
	}
	return r, true
}

// done reports that an event taken with next has finished. The next event
// with the same key, if any, becomes runnable.
func (s *keyScheduler) done(r *kgo.Record) {
	s.count--
	if len(r.Key) == 0 {
		return
	}
	q, ok := s.keys[string(r.Key)]
	if !ok {
		panic("weir: keyScheduler: done for a key that is not running")
	}
	if len(q.waiting) == 0 {
		delete(s.keys, string(r.Key))
		return
	}
	s.ready = append(s.ready, q.waiting[0])
	q.waiting[0] = nil
	q.waiting = q.waiting[1:]
}

// len is the number of events added and not yet done.
func (s *keyScheduler) len() int { return s.count }
