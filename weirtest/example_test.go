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

// groupResume is a consumer group against the embedded broker: a member
// reads and commits, and the next member of the group resumes after the
// commit.
func groupResume(t testing.TB) {
	b := weirtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	produce := func(values ...string) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic("invoices"))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for _, v := range values {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// consume reads n records as a member of the "billing" group, commits
	// them and leaves the group.
	consume := func(n int) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("invoices"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for seen := 0; seen < n; {
			fs := cl.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				t.Fatal(err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				fmt.Printf("offset %d: %s\n", r.Offset, r.Value)
				seen++
			})
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatal(err)
		}
	}
	produce("rent", "power", "water")
	consume(3)
	produce("phone")
	consume(1) // starts at the committed offset 3
}

// Example_consumerGroup runs groupResume.
func Example_consumerGroup() {
	t := &exampleTB{}
	defer t.cleanup()
	groupResume(t)
	// Output:
	// offset 0: rent
	// offset 1: power
	// offset 2: water
	// offset 3: phone
}
