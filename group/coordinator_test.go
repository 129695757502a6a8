package group

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
	"github.com/weirhq/weir/storage/faultfs"
)

// stallSyncs makes every fsync through faults wait until the returned
// Stall is released: a disk that stops answering.
func stallSyncs(faults *faultfs.FS) *faultfs.Stall {
	return faults.StallIf(func(op faultfs.Op, _ string) bool { return op == faultfs.OpSync })
}

// TestSubmitGivesUpWithItsContext: the coordinator's driver is stuck in an
// fsync and its queue is full. Submit, SubmitCreate and SubmitDeleteTopics
// return once their context is done instead of blocking their caller (a
// connection's reader) for good; the requests they gave up on are never
// answered, and the coordinator carries on once the disk answers.
func TestSubmitGivesUpWithItsContext(t *testing.T) {
	faults := faultfs.New(storage.OSFS{})
	c, err := Open(Config{}, faults, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	stall := stallSyncs(faults)
	defer stall.Release()
	first := c.Submit(context.Background(), Client{}, commitReq("g", "", -1, "t", 0, 1))
	<-stall.Stalled()
	for len(c.reqs) < cap(c.reqs) {
		c.Submit(context.Background(), Client{}, commitReq("g", "", -1, "t", 0, 2))
	}

	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan string, 3)
	var given struct {
		commit <-chan kmsg.Response
		create <-chan error
		del    <-chan error
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		given.commit = c.Submit(ctx, Client{}, commitReq("g", "", -1, "t", 0, 3))
		returned <- "Submit"
	}()
	go func() {
		defer wg.Done()
		given.create = c.SubmitCreate(ctx, "h")
		returned <- "SubmitCreate"
	}()
	go func() {
		defer wg.Done()
		given.del = c.SubmitDeleteTopics(ctx, []string{"t"})
		returned <- "SubmitDeleteTopics"
	}()
	select {
	case name := <-returned:
		t.Fatalf("%s returned while the queue was full and its context live", name)
	default:
	}
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Submit did not return after its context was cancelled, with the coordinator stalled")
	}
	if err := <-given.create; err != context.Canceled {
		t.Errorf("SubmitCreate gave up with %v, want context.Canceled", err)
	}
	if err := <-given.del; err != context.Canceled {
		t.Errorf("SubmitDeleteTopics gave up with %v, want context.Canceled", err)
	}

	stall.Release()
	if resp := (<-first).(*kmsg.OffsetCommitResponse); resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("the stalled commit: %+v", resp)
	}
	r := kmsg.NewPtrOffsetFetchRequest()
	r.Version = 5
	r.Group = "g"
	r.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0}}}
	fr := (<-c.Submit(context.Background(), Client{}, r)).(*kmsg.OffsetFetchResponse)
	if got := fr.Topics[0].Partitions[0].Offset; got != 2 {
		t.Fatalf("offset %d after the disk answered, want 2 (the commit given up on is not applied)", got)
	}
	select {
	case resp := <-given.commit:
		t.Fatalf("a request Submit gave up on was answered: %+v", resp)
	default:
	}
}

// fetchOffset returns c's committed offset of group/topic/partition, or -1.
func fetchOffset(t *testing.T, c *Coordinator, group, topic string, partition int32) int64 {
	t.Helper()
	r := kmsg.NewPtrOffsetFetchRequest()
	r.Version = 5
	r.Group = group
	r.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: topic, Partitions: []int32{partition}}}
	fr := (<-c.Submit(context.Background(), Client{}, r)).(*kmsg.OffsetFetchResponse)
	return fr.Topics[0].Partitions[0].Offset
}

func commitCode(c *Coordinator, group, topic string, partition int32, offset int64) int16 {
	resp := (<-c.Submit(context.Background(), Client{}, commitReq(group, "", -1, topic, partition, offset))).(*kmsg.OffsetCommitResponse)
	return resp.Topics[0].Partitions[0].ErrorCode
}

func isStoreFile(name string) bool { return filepath.Base(name) == storeFileName }

// TestCoordinatorFailedWriteIsNotServed: once an fsync of groups.log
// fails, the commit is refused with COORDINATOR_NOT_AVAILABLE and never
// served: OffsetFetch keeps answering the last durable offset, before and
// after a restart. The error is sticky (a later commit is refused too,
// though the disk would take it) and logged once.
func TestCoordinatorFailedWriteIsNotServed(t *testing.T) {
	dir := t.TempDir()
	fsys := faultfs.New(storage.OSFS{})
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	c, err := Open(Config{}, fsys, dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code := commitCode(c, "g", "t", 0, 10); code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}
	fsys.FailIf(func(op faultfs.Op, name string) bool { return op == faultfs.OpSync && isStoreFile(name) }, nil)
	if code := commitCode(c, "g", "t", 0, 20); code != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("commit whose fsync failed: %v, want COORDINATOR_NOT_AVAILABLE", kerr.ErrorForCode(code))
	}
	if got := fetchOffset(t, c, "g", "t", 0); got != 10 {
		t.Fatalf("offset after a refused commit: %d, want the durable 10", got)
	}
	fsys.ClearFaults()
	if code := commitCode(c, "g", "t", 0, 30); code != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("commit after a failed fsync: %v, want COORDINATOR_NOT_AVAILABLE (sticky)", kerr.ErrorForCode(code))
	}
	if got := fetchOffset(t, c, "g", "t", 0); got != 10 {
		t.Fatalf("offset after a second refused commit: %d, want 10", got)
	}
	if n := strings.Count(logs.String(), "group store write failed"); n != 1 {
		t.Errorf("the store's error was logged %d times, want once:\n%s", n, logs.String())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c, err = Open(Config{}, nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := fetchOffset(t, c, "g", "t", 0); got != 10 {
		t.Fatalf("offset after a restart: %d, want 10 (the refused commits' bytes are cut off)", got)
	}
}

// TestCoordinatorReadWaitsForTheWriteBeforeIt: a commit and an
// OffsetFetch after it land in one batch, and the commit's fsync fails.
// The fetch is answered with the durable offset, not with the commit it
// followed: the driver writes the commit before it handles the read.
func TestCoordinatorReadWaitsForTheWriteBeforeIt(t *testing.T) {
	faults := faultfs.New(storage.OSFS{})
	c, err := Open(Config{}, faults, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code := commitCode(c, "g", "t", 0, 1); code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}

	stall := stallSyncs(faults)
	defer stall.Release()
	stalled := c.Submit(context.Background(), Client{}, commitReq("g", "", -1, "t", 0, 2))
	<-stall.Stalled()
	// Queued while the driver is stuck: handled together, in one batch.
	queued := c.Submit(context.Background(), Client{}, commitReq("g", "", -1, "t", 0, 3))
	r := kmsg.NewPtrOffsetFetchRequest()
	r.Version = 5
	r.Group = "g"
	r.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0}}}
	fetched := c.Submit(context.Background(), Client{}, r)
	faults.FailIf(func(op faultfs.Op, name string) bool { return op == faultfs.OpSync && isStoreFile(name) }, nil)
	stall.Release()

	for _, ch := range []<-chan kmsg.Response{stalled, queued} {
		if code := (<-ch).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode; code != kerr.CoordinatorNotAvailable.Code {
			t.Fatalf("commit whose fsync failed: %v", kerr.ErrorForCode(code))
		}
	}
	if got := (<-fetched).(*kmsg.OffsetFetchResponse).Topics[0].Partitions[0].Offset; got != 1 {
		t.Fatalf("a fetch in the batch of a refused commit answered %d, want the durable 1", got)
	}
}

// TestCloseGivesUpOnAHungFsync: the driver is stuck in an fsync that does
// not return. Close returns ErrCloseTimeout after the close timeout
// instead of waiting for it. When the fsync returns at last, the driver
// stops without writing the commit queued behind it and closes the store.
func TestCloseGivesUpOnAHungFsync(t *testing.T) {
	dir := t.TempDir()
	faults := faultfs.New(storage.OSFS{})
	c, err := Open(Config{}, faults, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.closeTimeout = 50 * time.Millisecond

	stall := stallSyncs(faults)
	defer stall.Release()
	c.Submit(context.Background(), Client{}, commitReq("g", "", -1, "t", 0, 1))
	<-stall.Stalled()
	c.Submit(context.Background(), Client{}, commitReq("g", "", -1, "t", 0, 2))

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, ErrCloseTimeout) {
			t.Fatalf("Close with the store hung: %v, want ErrCloseTimeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close waits for an fsync that does not return")
	}
	select {
	case <-c.done:
		t.Fatal("the driver stopped while its fsync is hung")
	default:
	}
	if err := c.CreateGroup(context.Background(), "h"); !errors.Is(err, ErrClosed) {
		t.Fatalf("CreateGroup on a closed coordinator: %v, want ErrClosed", err)
	}

	stall.Release()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the driver did not stop once its fsync returned")
	}
	if c.store.f != nil {
		t.Fatal("the driver stopped without closing the store")
	}
	c, err = Open(Config{}, nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := fetchOffset(t, c, "g", "t", 0); got != 1 {
		t.Fatalf("offset after a restart: %d, want 1 (the commit being fsynced, and not the one queued after Close)", got)
	}
}
