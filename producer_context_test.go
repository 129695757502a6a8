package weir_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/weirtest"
)

// One caller's short context must not fail another caller's event batched
// with it. Both events wait in the same partition's batch (a long linger),
// and the first send is also the one that starts the producer ID request:
// the short context ends long before the batch goes.
func TestProducerShortContextDoesNotFailOtherEvents(t *testing.T) {
	leakCheck(t)
	b := weirtest.Start(t)
	ctx := testCtx(t, 30*time.Second)
	p := newProducer(t, ctx, weir.Brokers(b.Addr()), weir.Topic("shared"), weir.AllowAutoTopicCreation(),
		weir.Linger(500*time.Millisecond))

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	o := newOutcomes()
	var wg sync.WaitGroup
	wg.Add(2)
	for _, send := range []struct {
		ctx context.Context
		v   string
	}{{short, "A"}, {ctx, "B"}} {
		result := o.callback(send.v)
		p.SendAsync(send.ctx, weir.Event{Value: []byte(send.v), Partition: weir.AtPartition(0)},
			func(r weir.Result) { result(r); wg.Done() })
	}
	wg.Wait() // not Flush: it would not wait for the linger
	if short.Err() == nil {
		t.Log("the short context outlived the linger; the test proves less this run")
	}
	for v, err := range o.failed {
		t.Errorf("event %s was returned: %v", v, err)
	}
	checkStats(t, p, 2, 2, 0)
	stored := readBack(t, ctx, b.Addr(), "shared")
	for _, v := range []string{"A", "B"} {
		checkStoredOnceAt(t, stored, v, o.ok[v])
	}
}

// Send returns when its context ends, with the context's error, and other
// senders' events, in the same partition, are unaffected. The broker holds
// the producer ID request until then, so the events are waiting inside the
// producer. The event whose caller stopped waiting is not cancelled: it is
// stored, and counted once.
func TestProducerSendStopsWaitingWhenItsContextEnds(t *testing.T) {
	leakCheck(t)
	c := kfakeCluster(t, kfake.SeedTopics(1, "t"))
	asked, release := holdRequests(t, c, kmsg.InitProducerID)
	ctx := testCtx(t, 30*time.Second)
	p := newProducer(t, ctx, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"))

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	errA := make(chan error, 1)
	go func() {
		_, err := p.Send(short, weir.Event{Value: []byte("A")})
		errA <- err
	}()
	<-asked // A is buffered, and waits for its producer ID
	type sent struct {
		r   weir.Result
		err error
	}
	doneB := make(chan sent, 1)
	go func() {
		r, err := p.Send(ctx, weir.Event{Value: []byte("B")})
		doneB <- sent{r, err}
	}()

	err := <-errA
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("A's Send: %v, want its context's deadline", err)
	}
	t.Logf("A's Send: %v", err)
	release()
	gotB := <-doneB
	if gotB.err != nil {
		t.Fatalf("B's Send, whose context never ends: %v", gotB.err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkStats(t, p, 2, 2, 0) // A too: its caller stopped waiting, it went on
	stored := readBack(t, ctx, c.ListenAddrs()[0], "t")
	checkStoredOnceAt(t, stored, "B", gotB.r)
	if stored["A"].Count != 1 {
		t.Errorf("A, acknowledged after its caller stopped waiting, is read back %d times", stored["A"].Count)
	}
}

// Waiting for buffer room ends with the caller's context; the event is then
// not sent.
func TestProducerWaitForBufferRoomEndsWithContext(t *testing.T) {
	leakCheck(t)
	c := kfakeCluster(t, kfake.SeedTopics(1, "t"))
	asked, release := holdRequests(t, c, kmsg.Produce)
	ctx := testCtx(t, 30*time.Second)
	p := newProducer(t, ctx, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"), weir.MaxBuffered(1, 1<<20))

	o := newOutcomes()
	p.SendAsync(ctx, weir.Event{Value: []byte("first")}, o.callback("first")) // fills the buffer
	<-asked

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.Send(short, weir.Event{Value: []byte("second")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send into a full buffer: %v, want its context's deadline", err)
	}
	p.SendAsync(short, weir.Event{Value: []byte("third")}, o.callback("third"))
	if _, failed, _ := o.counts(); failed != 1 || !errors.Is(o.failed["third"], context.DeadlineExceeded) {
		t.Errorf("SendAsync into a full buffer with an ended context: %v, want its context's error before it returns",
			o.failed["third"])
	}

	release()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := o.ok["first"]; !ok {
		t.Errorf("first event: %v", o.failed["first"])
	}
	checkStats(t, p, 3, 1, 2)
	stored := readBack(t, ctx, c.ListenAddrs()[0], "t")
	checkStoredOnceAt(t, stored, "first", o.ok["first"])
	if len(stored) != 1 {
		t.Errorf("stored %v, want only the first event", stored)
	}
}

// A batch larger than the buffer is sent piece by piece, in order, instead
// of waiting for room that only its own events hold.
func TestProducerSendBatchLargerThanBuffer(t *testing.T) {
	leakCheck(t)
	b := weirtest.Start(t)
	ctx := testCtx(t, 30*time.Second)
	p := newProducer(t, ctx, weir.Brokers(b.Addr()), weir.Topic("big-batch"), weir.AllowAutoTopicCreation(),
		weir.MaxBuffered(10, 1<<20))
	events := make([]weir.Event, 45)
	for i := range events {
		events[i] = weir.Event{Value: fmt.Appendf(nil, "e-%d", i), Partition: weir.AtPartition(0)}
	}
	rs, err := p.SendBatch(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Offset != rs[0].Offset+int64(i) {
			t.Fatalf("event %d stored at offset %d, event 0 at %d: out of order", i, r.Offset, rs[0].Offset)
		}
	}
	checkStats(t, p, int64(len(events)), int64(len(events)), 0)
}
