package tests

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/storage"
)

// isGroupStore reports whether name is the group coordinator's file,
// DataDir/groups/groups.log.
func isGroupStore(name string) bool { return filepath.Base(name) == "groups.log" }

// stallingGroupFS wraps a file system; once armed, fsyncs of groups.log
// do not return until released: a disk that stops answering.
type stallingGroupFS struct {
	storage.FS
	armed   chan struct{}
	stalled chan struct{}
	release chan struct{}
}

type stallingGroupFile struct {
	storage.File
	fs *stallingGroupFS
}

func newStallingGroupFS(inner storage.FS) *stallingGroupFS {
	return &stallingGroupFS{FS: inner, armed: make(chan struct{}), stalled: make(chan struct{}, 1), release: make(chan struct{})}
}

func (fs *stallingGroupFS) OpenFile(name string, flag int, perm os.FileMode) (storage.File, error) {
	f, err := fs.FS.OpenFile(name, flag, perm)
	if err != nil || !isGroupStore(name) {
		return f, err
	}
	return stallingGroupFile{f, fs}, nil
}

func (f stallingGroupFile) Sync() error {
	select {
	case <-f.fs.armed:
		select {
		case f.fs.stalled <- struct{}{}:
		default:
		}
		<-f.fs.release
	default:
	}
	return f.File.Sync()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestGroupBrokerCloseWithHungGroupFsync: a consumer group's commit is
// stuck in an fsync of groups.log that does not return. Broker.Close
// still returns (after the group coordinator's close timeout), instead of
// waiting for the disk forever.
func TestGroupBrokerCloseWithHungGroupFsync(t *testing.T) {
	fsys := newStallingGroupFS(storage.OSFS{})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(fsys.release) }) }
	defer release()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), FS: fsys, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	createTopic(t, b, "t", 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	close(fsys.armed)
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
	case <-fsys.stalled:
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
	release() // the hung driver stops once its fsync returns (goleak checks)
}
