package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// Coordinator drives a RawCoordinator from one goroutine: it feeds it
// requests and the clock, persists what it outputs to the Store (one fsync
// for every batch of requests handled together), and only then delivers
// the replies. The broker owns it: Open in broker.Start, Close in
// broker.Close.
type Coordinator struct {
	logger *slog.Logger
	store  *Store          // owned by run, which closes it on its way out
	raw    *RawCoordinator // owned by run
	now    func() time.Time

	storeFailed   bool  // owned by run: the store's sticky error was logged
	storeCloseErr error // set by run before done is closed

	reqs chan request
	stop chan struct{} // closed by Close
	done chan struct{} // closed by run when it returns

	closeTimeout time.Duration
	closeOnce    sync.Once
	closeErr     error
}

// CloseTimeout bounds how long Coordinator.Close waits for the driver
// goroutine: the store write or fsync it may be in. A disk that does not
// answer for that long does not hold up the broker's shutdown.
const CloseTimeout = 5 * time.Second

// ErrCloseTimeout is returned by Close when the driver goroutine did not
// stop within CloseTimeout.
var ErrCloseTimeout = errors.New("weir: group: the group store did not answer before the close deadline")

type request struct {
	client Client
	req    kmsg.Request
	done   func(kmsg.Response)
	op     func(now time.Time, raw *RawCoordinator) // CreateGroup, DeleteTopics
	query  func(*RawCoordinator)                    // runs in the driver goroutine
}

// maxBatch bounds the requests handled between two fsyncs.
const maxBatch = 512

// Open opens the store under dataDir, restores the groups and offsets it
// holds, deletes (durably) the offsets of partitions that no longer exist
// (cfg.PartitionExists; see RawCoordinator.DeleteMissingPartitions), and
// starts the driver goroutine.
func Open(cfg Config, fsys storage.FS, dataDir string, logger *slog.Logger) (*Coordinator, error) {
	if logger == nil {
		logger = slog.Default()
	}
	raw, err := NewRawCoordinator(cfg)
	if err != nil {
		return nil, err
	}
	store, recs, err := OpenStore(fsys, dataDir, logger)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	raw.Restore(now, recs)
	if n, topics := raw.DeleteMissingPartitions(); n > 0 {
		if err := store.Append(raw.Ready().Records); err != nil {
			store.Close()
			// Starting anyway would leave the store's error sticky:
			// every commit refused until a restart.
			return nil, fmt.Errorf("weir: group store: delete the offsets of %d partitions that no longer exist: %w", n, err)
		}
		logger.Warn("weir: deleted the committed offsets of partitions that no longer exist "+
			"(their topic was deleted, and the broker stopped or failed before it wrote the deletion of the offsets)",
			"offsets", n, "topics", topics)
	}
	if store.Size() > compactMinBytes {
		// Encoded once, both to measure the live state and to write it. An
		// unstorable record counts 0 bytes, and fails the rewrite.
		live, err := encodeRecords(raw.Snapshot())
		if store.Size() > 2*int64(len(live)) {
			if err == nil {
				err = store.rewrite(live)
			}
			if err != nil {
				store.Close()
				return nil, err
			}
		}
	}
	c := &Coordinator{
		logger: logger,
		store:  store,
		raw:    raw,
		now:    time.Now,
		reqs:   make(chan request, 1024),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),

		closeTimeout: CloseTimeout,
	}
	if len(recs) > 0 {
		logger.Info("weir: group coordinator restored", "groups", raw.NumGroups(), "records", len(recs))
	}
	go c.run()
	return c, nil
}

// Submit hands a group request to the coordinator. The returned channel
// receives the response once (later for JoinGroup and SyncGroup, which
// wait for the rest of the group). Submit waits for room in the
// coordinator's queue, but not past ctx: if ctx is done first, or the
// coordinator is closed, the request is not handled and the channel never
// receives, so the caller waits for it with the same ctx. A stalled
// coordinator (a disk that does not answer an fsync) thus cannot hold a
// connection's reader past the connection's or the broker's closing.
func (c *Coordinator) Submit(ctx context.Context, cl Client, req kmsg.Request) <-chan kmsg.Response {
	ch := make(chan kmsg.Response, 1)
	r := request{client: cl, req: req, done: func(resp kmsg.Response) {
		select {
		case ch <- resp:
		default:
		}
	}}
	select {
	case c.reqs <- r:
	case <-c.stop:
	case <-ctx.Done():
	}
	return ch
}

// SubmitCreate hands CreateGroup for name to the coordinator: the group is
// created (durably) if it does not exist. The returned channel receives
// the outcome once: ErrClosed or ctx's error if the request was not taken
// (the coordinator is closed, or ctx was done while its queue was full),
// nothing if the coordinator closes after taking it.
func (c *Coordinator) SubmitCreate(ctx context.Context, name string) <-chan error {
	return c.submitOp(ctx, func(now time.Time, raw *RawCoordinator, done func(error)) {
		raw.CreateGroup(now, name, done)
	})
}

// SubmitDeleteTopics hands RawCoordinator.DeleteTopics to the coordinator:
// every group's offsets of topics are deleted (durably). The returned
// channel receives the outcome once, as SubmitCreate's.
func (c *Coordinator) SubmitDeleteTopics(ctx context.Context, topics []string) <-chan error {
	topics = append([]string(nil), topics...)
	return c.submitOp(ctx, func(_ time.Time, raw *RawCoordinator, done func(error)) {
		raw.DeleteTopics(topics, done)
	})
}

// submitOp hands op to the driver goroutine; the returned channel gets
// the error op reports (through Ready, after its records are on disk).
func (c *Coordinator) submitOp(ctx context.Context, op func(now time.Time, raw *RawCoordinator, done func(error))) <-chan error {
	ch := make(chan error, 1)
	done := func(err error) {
		select {
		case ch <- err:
		default:
		}
	}
	r := request{op: func(now time.Time, raw *RawCoordinator) { op(now, raw, done) }}
	select {
	case c.reqs <- r:
	case <-c.stop:
		ch <- ErrClosed
	case <-ctx.Done():
		ch <- ctx.Err()
	}
	return ch
}

// CreateGroup creates name (durably) if it does not exist, and waits.
func (c *Coordinator) CreateGroup(ctx context.Context, name string) error {
	select {
	case err := <-c.SubmitCreate(ctx, name):
		return err
	case <-c.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the driver goroutine, waits for it, and closes the store.
// Requests still waiting (a JoinGroup in a rebalance) are not answered;
// their connections are closing too.
//
// Close waits at most CloseTimeout. If the driver is stuck in a write or
// fsync that does not return (a disk that stopped answering), Close
// returns ErrCloseTimeout without it: the batch being written was not
// acknowledged, so nothing acknowledged is lost. The goroutine then stays
// in the system call as long as the system call lasts (nothing can end
// it); when it returns, the goroutine stops without touching the disk
// again and closes the store. Until then the store's file stays open, so
// the same data directory must not be opened again in this process.
func (c *Coordinator) Close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		t := time.NewTimer(c.closeTimeout)
		defer t.Stop()
		select {
		case <-c.done:
			c.closeErr = c.storeCloseErr
		case <-t.C:
			c.closeErr = fmt.Errorf("%w (%v): a write or fsync of the group store is still in progress; "+
				"the store is closed when it returns", ErrCloseTimeout, c.closeTimeout)
		}
	})
	return c.closeErr
}

// stopping reports whether Close was called. The driver checks it before
// every step, so once a write that held it up returns, it stops without
// starting another.
func (c *Coordinator) stopping() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

func (c *Coordinator) run() {
	defer close(c.done)
	defer func() { c.storeCloseErr = c.store.Close() }()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for !c.stopping() {
		c.raw.Tick(c.now())
		c.flush()
		wait := time.Hour
		if next, ok := c.raw.NextDeadline(); ok {
			wait = max(next.Sub(c.now()), 0)
		}
		timer.Reset(wait)
		select {
		case <-c.stop:
			return
		case <-timer.C:
		case r := <-c.reqs:
			c.apply(r)
		drain:
			for i := 1; i < maxBatch && !c.stopping(); i++ {
				select {
				case r := <-c.reqs:
					c.apply(r)
				default:
					break drain
				}
			}
		}
	}
}

// EachCommitted calls fn for every committed offset of every group, in
// group, topic, partition order (the broker's consumer group lag metric).
// The offsets are copied by the driver goroutine and fn runs in the
// caller's; after Close it calls nothing.
func (c *Coordinator) EachCommitted(fn func(group, topic string, partition int32, offset int64)) {
	type committed struct {
		group, topic string
		partition    int32
		offset       int64
	}
	ch := make(chan []committed, 1)
	r := request{query: func(raw *RawCoordinator) {
		var out []committed
		raw.EachOffset(func(group, topic string, partition int32, o Offset) {
			out = append(out, committed{group, topic, partition, o.Offset})
		})
		ch <- out
	}}
	select {
	case c.reqs <- r:
	case <-c.stop:
		return
	}
	select {
	case out := <-ch:
		for _, o := range out {
			fn(o.group, o.topic, o.partition, o.offset)
		}
	case <-c.stop:
	}
}

func (c *Coordinator) apply(r request) {
	if c.stopping() {
		return // taken from the queue as Close was called: never answered
	}
	if c.raw.MustPersistFirst(r.req) {
		// A read must not see a commit of this batch before it is
		// durable, nor a request re-create a group this batch deleted:
		// write what came before it first.
		c.flush()
	}
	defer func() {
		// The last resort, as for connections: a bug handling one request
		// must not take the broker down. That request is not answered (its
		// client times out and retries); the rest carry on.
		if p := recover(); p != nil {
			c.logger.Error("weir: panic in the group coordinator; request dropped",
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	if r.query != nil {
		r.query(c.raw)
		return
	}
	now := c.now()
	if r.op != nil {
		r.op(now, c.raw)
		return
	}
	c.raw.Handle(now, r.client, r.req, r.done)
}

// flush persists the records of the steps run so far, then delivers their
// replies (refused and rolled back if the records could not be written).
func (c *Coordinator) flush() {
	rd := c.raw.Ready()
	if len(rd.Records) == 0 && len(rd.Replies) == 0 {
		return
	}
	err := c.store.Append(rd.Records)
	switch {
	case errors.Is(err, ErrUnstorableRecord):
		// A bug: the coordinator bounds what it accepts so that every
		// record can be stored. Nothing was written; the batch's commits
		// are refused, and later batches are not affected.
		c.logger.Error("weir: group coordinator produced a record it cannot store; the batch is refused", "err", err)
	case err != nil && !c.storeFailed:
		// Sticky: every later batch fails with the same error. Logged
		// once, not per batch.
		c.storeFailed = true
		c.logger.Error("weir: group store write failed; until the broker restarts, every offset commit, "+
			"offset or group deletion and group creation is refused with COORDINATOR_NOT_AVAILABLE, "+
			"no rebalance can complete (its SyncGroup is refused the same way), "+
			"and committed offsets and group members stay as they were on disk", "err", err)
	}
	c.raw.Deliver(rd, err)
	if err == nil && !c.stopping() && c.store.NeedsRewrite() {
		if err := c.store.Rewrite(c.raw.Snapshot()); err != nil {
			c.logger.Error("weir: group store rewrite failed", "err", err)
		}
	}
}
