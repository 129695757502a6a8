package group

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// stallingFS is a file system whose fsyncs, once armed, do not return
// until released: a disk that stops answering.
type stallingFS struct {
	storage.OSFS
	armed   chan struct{} // closed: Sync stalls
	stalled chan struct{} // gets a value when a Sync stalls
	release chan struct{} // closed: stalled Syncs return
}

type stallingFile struct {
	storage.File
	fs *stallingFS
}

func newStallingFS() *stallingFS {
	return &stallingFS{armed: make(chan struct{}), stalled: make(chan struct{}, 1), release: make(chan struct{})}
}

func (fs *stallingFS) OpenFile(name string, flag int, perm os.FileMode) (storage.File, error) {
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return stallingFile{f, fs}, nil
}

func (f stallingFile) Sync() error {
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

// TestSubmitGivesUpWithItsContext: the coordinator's driver is stuck in an
// fsync and its queue is full. Submit, SubmitCreate and SubmitDeleteTopics
// return once their context is done instead of blocking their caller (a
// connection's reader) for good; the requests they gave up on are never
// answered, and the coordinator carries on once the disk answers.
func TestSubmitGivesUpWithItsContext(t *testing.T) {
	fsys := newStallingFS()
	c, err := Open(Config{}, fsys, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(fsys.release) }) }
	defer c.Close()
	defer release()

	close(fsys.armed)
	first := c.Submit(context.Background(), Client{}, commitReq("g", "", -1, "t", 0, 1))
	<-fsys.stalled
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

	release()
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
