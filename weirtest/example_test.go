package weirtest_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/weirtest"
)

// produceAndConsume is what a test of yours looks like: start weir, point a
// Kafka client at it, produce, consume. In your code it is
// func TestOrders(t *testing.T) { ... } with the same body.
func produceAndConsume(t testing.TB) {
	b := weirtest.Start(t) // random port, temp dir, closed when the test ends

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addr()),
		kgo.AllowAutoTopicCreation(),
		kgo.DefaultProduceTopic("orders"),
		kgo.ConsumeTopics("orders"),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range []string{"apple", "pear", "plum"} {
		r := &kgo.Record{Key: []byte("basket-1"), Value: []byte(v)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	for seen := 0; seen < 3; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			fmt.Printf("%d %s=%s\n", r.Offset, r.Key, r.Value)
			seen++
		})
	}
}

// Example shows how to use weir in your own tests. A runnable example has no
// *testing.T, so this one hands produceAndConsume a small stand-in; your test
// passes its own t.
func Example() {
	t := &exampleTB{}
	defer t.cleanup()
	produceAndConsume(t)
	// Output:
	// 0 basket-1=apple
	// 1 basket-1=pear
	// 2 basket-1=plum
}

// exampleTB is the least of testing.TB that a runnable example needs. Do not
// copy it into tests: there, use the *testing.T you are given.
type exampleTB struct {
	testing.TB // unimplemented methods panic
	cleanups   []func()
	dirs       []string
}

func (t *exampleTB) Helper()                      {}
func (t *exampleTB) Cleanup(f func())             { t.cleanups = append(t.cleanups, f) }
func (t *exampleTB) Fatal(args ...any)            { panic(fmt.Sprint(args...)) }
func (t *exampleTB) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
func (t *exampleTB) Errorf(f string, args ...any) { fmt.Fprintf(os.Stderr, f+"\n", args...) }
func (t *exampleTB) TempDir() string {
	dir, err := os.MkdirTemp("", "weirtest-example-")
	if err != nil {
		panic(err)
	}
	t.dirs = append(t.dirs, dir)
	return dir
}

func (t *exampleTB) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	for _, d := range t.dirs {
		os.RemoveAll(d)
	}
}
