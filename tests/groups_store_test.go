package tests

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/storage"
	"github.com/weirhq/weir/storage/faultfs"
)

// isGroupStore reports whether name is the group coordinator's file,
// DataDir/groups/groups.log.
func isGroupStore(name string) bool { return filepath.Base(name) == "groups.log" }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestGroupBrokerCloseWithHungGroupFsync: a consumer group's commit is
// stuck in an fsync of groups.log that does not return. Broker.Close
// still returns (after the group coordinator's close timeout), instead of
// waiting for the disk forever.
func TestGroupBrokerCloseWithHungGroupFsync(t *testing.T) {
	faults := faultfs.New(storage.OSFS{})
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), FS: faults, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	createTopic(t, b.Addr(), "t", 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// From now on fsyncs of groups.log do not return until released: a
	// disk that stops answering.
	stall := faults.StallIf(func(op faultfs.Op, name string) bool { return op == faultfs.OpSync && isGroupStore(name) })
	defer stall.Release()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		offs := kadm.Offsets{}
		offs.AddOffset("t", 0, 5, -1)
		_, _ = kadm.NewClient(cl).CommitOffsets(ctx, "g", offs)
	}()
	select {
	case <-stall.Stalled():
	case <-time.After(30 * time.Second):
		t.Fatal("the commit never reached the group store's fsync")
	}

	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Broker.Close waits for an fsync of groups.log that does not return")
	}
	cancel()
	<-committed
	stall.Release() // the hung driver stops once its fsync returns (goleak checks)
}

// groupAdmin returns an admin client for b that gives up on retriable
// errors quickly (a refused commit is retried a few times, not for 30 s).
func groupAdmin(t *testing.T, b *broker.Broker) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RequestRetries(2),
		kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func commitOffset(ctx context.Context, adm *kadm.Client, group, topic string, partition int32, at int64) error {
	offs := kadm.Offsets{}
	offs.AddOffset(topic, partition, at, -1)
	r, err := adm.CommitOffsets(ctx, group, offs)
	if err != nil {
		return err
	}
	return r.Error()
}

// fetchedOffset returns group's committed offset of topic/partition, or -1.
func fetchedOffset(t *testing.T, ctx context.Context, adm *kadm.Client, group, topic string, partition int32) int64 {
	t.Helper()
	got, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = got.Error()
	}
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	if o, ok := got.Lookup(topic, partition); ok && o.Err == nil {
		return o.At
	}
	return -1
}

// lockedBuffer is a bytes.Buffer for a logger that several goroutines use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestGroupCommitRefusedWhileGroupStoreFails: an fsync of groups.log
// fails. The commit is refused with COORDINATOR_NOT_AVAILABLE and
// OffsetFetch keeps answering the last durable offset; so do later
// commits, though the disk would take them (the error is sticky), and the
// broker logs the error once. After a restart the durable offset is
// still the one served.
func TestGroupCommitRefusedWhileGroupStoreFails(t *testing.T) {
	dir := t.TempDir()
	fsys := faultfs.New(storage.OSFS{})
	var logs lockedBuffer
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir, FS: fsys,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	createTopic(t, b.Addr(), "t", 1)
	ctx := testContext(t, time.Minute)
	adm := groupAdmin(t, b)
	if err := commitOffset(ctx, adm, "g", "t", 0, 10); err != nil {
		t.Fatalf("commit: %v", err)
	}

	fsys.FailIf(func(op faultfs.Op, name string) bool { return op == faultfs.OpSync && isGroupStore(name) }, nil)
	if err := commitOffset(ctx, adm, "g", "t", 0, 20); !errors.Is(err, kerr.CoordinatorNotAvailable) {
		t.Fatalf("commit whose fsync failed: %v, want COORDINATOR_NOT_AVAILABLE", err)
	}
	if got := fetchedOffset(t, ctx, adm, "g", "t", 0); got != 10 {
		t.Fatalf("committed offset after a refused commit: %d, want the durable 10", got)
	}
	fsys.ClearFaults()
	if err := commitOffset(ctx, adm, "g", "t", 0, 30); !errors.Is(err, kerr.CoordinatorNotAvailable) {
		t.Fatalf("commit after a failed fsync: %v, want COORDINATOR_NOT_AVAILABLE (sticky)", err)
	}
	if got := fetchedOffset(t, ctx, adm, "g", "t", 0); got != 10 {
		t.Fatalf("committed offset after a second refused commit: %d, want 10", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "group store write failed"); n != 1 {
		t.Errorf("the group store's error was logged %d times, want once", n)
	}

	b, err = broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := fetchedOffset(t, ctx, groupAdmin(t, b), "g", "t", 0); got != 10 {
		t.Fatalf("committed offset after a restart: %d, want 10", got)
	}
}

// TestGroupOffsetsOfDeletedTopicDoNotComeBack: a topic is deleted, and
// the deletion of its committed offsets never reaches groups.log (here
// the write fails; a crash at that moment leaves the same file). After a
// restart the offsets are not back: a topic created again under the same
// name is consumed per auto.offset.reset, not from offsets into the old
// data. Other topics' offsets are kept.
func TestGroupOffsetsOfDeletedTopicDoNotComeBack(t *testing.T) {
	dir := t.TempDir()
	fsys := faultfs.New(storage.OSFS{})
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir, FS: fsys, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	createTopic(t, b.Addr(), "orders", 1)
	createTopic(t, b.Addr(), "users", 1)
	ctx := testContext(t, time.Minute)
	adm := groupAdmin(t, b)
	for _, c := range []struct {
		topic string
		at    int64
	}{{"orders", 500}, {"users", 7}} {
		if err := commitOffset(ctx, adm, "billing", c.topic, 0, c.at); err != nil {
			t.Fatalf("commit %s: %v", c.topic, err)
		}
	}
	fsys.FailIf(func(op faultfs.Op, name string) bool { return op == faultfs.OpWrite && isGroupStore(name) }, nil)
	if r, err := adm.DeleteTopics(ctx, "orders"); err != nil || r.Error() != nil {
		t.Fatalf("delete topic: %v %v", err, r.Error())
	}
	if got := fetchedOffset(t, ctx, adm, "billing", "orders", 0); got != -1 {
		t.Fatalf("committed offset of the deleted topic: %d, want none", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b, err = broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	createTopic(t, b.Addr(), "orders", 1)
	adm = groupAdmin(t, b)
	if got := fetchedOffset(t, ctx, adm, "billing", "orders", 0); got != -1 {
		t.Errorf("after a restart, orders created again has committed offset %d from the deleted topic", got)
	}
	if got := fetchedOffset(t, ctx, adm, "billing", "users", 0); got != 7 {
		t.Errorf("after a restart, users has committed offset %d, want 7", got)
	}
}
