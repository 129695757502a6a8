package weirtest_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// produceTo produces rs to the broker at addr, with a client that may
// create topics, and returns the client and a context, both ended with the
// test.
func produceTo(t *testing.T, addr string, rs ...*kgo.Record) (*kgo.Client, context.Context) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return cl, ctx
}

func TestStart(t *testing.T) {
	produceAndConsume(t)
}

func TestStartAppliesOptions(t *testing.T) {
	b := weirtest.Start(t, func(c *broker.Config) { c.DefaultPartitions = 3 }, weirtest.Logger(t, 0))
	cl, ctx := produceTo(t, b.Addr(), &kgo.Record{Topic: "auto", Value: []byte("x")})
	details, err := kadm.NewClient(cl).ListTopics(ctx, "auto")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(details["auto"].Partitions); got != 3 {
		t.Fatalf("auto-created topic has %d partitions, want DefaultPartitions=3", got)
	}
}

func TestCloseReleasesPort(t *testing.T) {
	var addr string
	t.Run("broker", func(t *testing.T) {
		addr = weirtest.Start(t).Addr()
	})
	// The subtest's cleanup closed the broker: its port is free again.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port of a closed broker is still in use: %v", err)
	}
	ln.Close()
}

// Every client connection goes through the proxy, not only the first, and
// edit sees each response with the API of the request it answers.
func TestStartProxiedSeesEveryResponse(t *testing.T) {
	var mu sync.Mutex
	seen := map[kmsg.Key]int{}
	_, px := weirtest.StartProxied(t, func(r weirtest.Response) ([]byte, bool) {
		mu.Lock()
		seen[r.Key]++
		mu.Unlock()
		return r.Frame, true
	})
	produceTo(t, px.Addr(), &kgo.Record{Topic: "proxied", Value: []byte("x")})
	mu.Lock()
	defer mu.Unlock()
	if seen[kmsg.Produce] != 1 || seen[kmsg.Metadata] == 0 {
		t.Fatalf("responses seen by the proxy: %v, want 1 Produce and some Metadata", seen)
	}
}

func TestMetricsReadsTheBrokersPage(t *testing.T) {
	b := weirtest.Start(t)
	produceTo(t, b.Addr(), &kgo.Record{Topic: "metered", Value: []byte("x")}, &kgo.Record{Topic: "metered", Value: []byte("y")})
	m := weirtest.Metrics(t, b)
	if got, found := m[`weir_topic_incoming_messages_total{topic="metered"}`]; got != 2 {
		t.Fatalf(`weir_topic_incoming_messages_total{topic="metered"} = %v (found %v), want 2`, got, found)
	}
}

func TestReadAllReturnsEachPartitionInOrder(t *testing.T) {
	b := weirtest.Start(t, func(c *broker.Config) { c.DefaultPartitions = 2 })
	var rs []*kgo.Record
	for i, v := range []string{"a", "b", "c"} {
		rs = append(rs, &kgo.Record{Topic: "read", Partition: int32(i % 2), Value: []byte(v)})
	}
	_, ctx := produceTo(t, b.Addr(), rs...)
	got := weirtest.ReadAll(ctx, t, b.Addr(), "read")
	values := func(p int32) (vs []string) {
		for _, r := range got[p] {
			vs = append(vs, string(r.Value))
		}
		return vs
	}
	if p0, p1 := values(0), values(1); len(got) != 2 || fmt.Sprint(p0) != "[a c]" || fmt.Sprint(p1) != "[b]" {
		t.Fatalf("read back %v in partition 0 and %v in partition 1, want [a c] and [b]", p0, p1)
	}
}

// TestReadAllSkipsDeletedPartitions: a partition whose records were all
// deleted (DeleteRecords up to its end) reads as empty at once, instead of
// waiting for records that will never come.
func TestReadAllSkipsDeletedPartitions(t *testing.T) {
	b := weirtest.Start(t, func(c *broker.Config) { c.DefaultPartitions = 2 })
	cl, ctx := produceTo(t, b.Addr(),
		&kgo.Record{Topic: "gone", Partition: 0, Value: []byte("a")},
		&kgo.Record{Topic: "gone", Partition: 1, Value: []byte("b")})
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := adm.DeleteRecords(ctx, kadm.Offsets{"gone": {0: {At: ends["gone"][0].Offset}}})
	if err == nil {
		err = deleted.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got := weirtest.ReadAll(rctx, t, b.Addr(), "gone")
	if len(got[0]) != 0 || len(got[1]) != 1 || string(got[1][0].Value) != "b" {
		t.Fatalf("read back %d records of partition 0 and %v of partition 1, want none and [b]", len(got[0]), got[1])
	}
}

// TestStartProxiedNilEditPassesThrough: with no edit function the proxy
// passes responses on unchanged.
func TestStartProxiedNilEditPassesThrough(t *testing.T) {
	_, p := weirtest.StartProxied(t, nil)
	_, ctx := produceTo(t, p.Addr(), &kgo.Record{Topic: "plain", Value: []byte("x")})
	if got := weirtest.ReadAll(ctx, t, p.Addr(), "plain"); len(got[0]) != 1 || string(got[0][0].Value) != "x" {
		t.Fatalf("read back %v through the proxy, want [x]", got)
	}
}
