package weir_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/weirhq/weir"
)

// produceTo produces values to one partition, in order.
func produceTo(t testing.TB, seeds []string, topic string, partition int32, l *ledger, values ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for _, v := range values {
		recs = append(recs, &kgo.Record{Partition: partition, Key: []byte(v), Value: []byte(v)})
	}
	for _, r := range cl.ProduceSync(ctx, recs...) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if l != nil {
			l.produce(r.Record.Partition, r.Record.Offset)
		}
	}
}

func values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

var errPoison = errors.New("cannot parse event")

func TestProcessorPoisonEventIsRetriedThenDeadLettered(t *testing.T) {
	forEachBackend(t, testPoisonEventIsRetriedThenDeadLettered)
}

func testPoisonEventIsRetriedThenDeadLettered(t *testing.T, b backend) {
	seeds := b.start(t, 2, "payments", "payments.dlq")
	l := newLedger()
	produceTo(t, seeds, "payments", 0, l, values("a", 100)...)
	produceTo(t, seeds, "payments", 0, l, "poison")
	produceTo(t, seeds, "payments", 0, l, values("b", 100)...)
	produceTo(t, seeds, "payments", 1, l, values("c", 100)...)

	var poisonCalls atomic.Int32
	h := weir.HandlerFunc(func(_ context.Context, e *kgo.Record) error {
		if string(e.Value) == "poison" {
			poisonCalls.Add(1)
			return errPoison
		}
		l.record("a", e.Partition, e.Offset)
		return nil
	})
	in := startInstance(t, "a", h, weir.Brokers(seeds...), weir.Topic("payments"), weir.Group("pay"),
		weir.Logger(quietLogger()), fastGroup(), weir.HandlerRetries(3, time.Millisecond, 4*time.Millisecond),
		weir.DeadLetterTopic("payments.dlq"))
	defer in.stop(t)

	// Everything but the poison event is processed, after it too.
	l.mu.Lock()
	for id := range l.produced {
		if id.Partition == 0 && id.Offset == 100 {
			delete(l.produced, id) // the poison event goes to the dead-letter topic instead
		}
	}
	l.mu.Unlock()
	l.waitAllProcessed(t, 30*time.Second)
	if n := poisonCalls.Load(); n != 3 {
		t.Fatalf("poison event handled %d times, want 3 attempts", n)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics("payments.dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	recs := fs.Records()
	if len(recs) != 1 || string(recs[0].Value) != "poison" {
		t.Fatalf("dead-letter topic has %d records, want the poison event", len(recs))
	}
	headers := map[string]string{}
	for _, h := range recs[0].Headers {
		headers[h.Key] = string(h.Value)
	}
	want := map[string]string{
		weir.HeaderOriginalTopic: "payments", weir.HeaderOriginalPartition: "0", weir.HeaderOriginalOffset: "100",
		weir.HeaderError: errPoison.Error(), weir.HeaderAttempts: "3",
	}
	for k, v := range want {
		if headers[k] != v {
			t.Errorf("dead-letter header %s = %q, want %q", k, headers[k], v)
		}
	}
	st := in.p.Stats()
	if st.DeadLettered != 1 || st.Failed != 3 {
		t.Fatalf("stats: dead-lettered %d, failed %d; want 1, 3", st.DeadLettered, st.Failed)
	}
	// The dead-lettered event counts as completed: the checkpoint passes it.
	waitFor(t, 10*time.Second, "partition 0 checkpointed past the poison event", func() bool {
		if err := in.p.Checkpoint(context.Background()); err != nil {
			return false
		}
		for _, ps := range in.p.Stats().Partitions {
			if ps.Partition == 0 {
				return ps.Committed == 201
			}
		}
		return false
	})
}

func TestProcessorPoisonEventStopsOnlyItsPartition(t *testing.T) {
	seeds := testBroker(t, 2, "payments")
	l := newLedger()
	produceTo(t, seeds, "payments", 0, l, values("a", 50)...)
	produceTo(t, seeds, "payments", 0, nil, "poison")
	produceTo(t, seeds, "payments", 0, nil, values("b", 50)...)
	produceTo(t, seeds, "payments", 1, l, values("c", 100)...)
	h := weir.HandlerFunc(func(_ context.Context, e *kgo.Record) error {
		if string(e.Value) == "poison" {
			return errPoison
		}
		l.record("a", e.Partition, e.Offset)
		return nil
	})
	in := startInstance(t, "a", h, weir.Brokers(seeds...), weir.Topic("payments"), weir.Group("pay"),
		weir.Logger(quietLogger()), fastGroup(), weir.HandlerRetries(2, time.Millisecond, time.Millisecond))
	defer in.stop(t)
	l.waitAllProcessed(t, 30*time.Second) // partition 1 and partition 0 up to the poison event
	produceTo(t, seeds, "payments", 1, l, values("d", 100)...)
	l.waitAllProcessed(t, 30*time.Second) // partition 1 keeps flowing
	if err := in.p.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ps := ownedStats(t, in.p, 2)[0]; !ps.Stopped || ps.Committed != 50 {
		t.Fatalf("partition 0: stopped %v, committed %d; want stopped at the poison event, offset 50", ps.Stopped, ps.Committed)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.processed {
		if id.Partition == 0 && id.Offset > 50 {
			t.Fatalf("partition 0 offset %d processed after the stopping event", id.Offset)
		}
	}
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProcessorPerKeyConcurrency processes 4 partitions with 16 workers
// each: events of a key are handled one at a time and in order, different
// keys in parallel.
func TestProcessorPerKeyConcurrency(t *testing.T) { forEachBackend(t, testPerKeyConcurrency) }

func testPerKeyConcurrency(t *testing.T, b backend) {
	seeds := b.start(t, 4, "keyed")
	l := newLedger()
	produceN(t, seeds, "keyed", l, 4000, func(i int) string { return fmt.Sprintf("key-%d", i%50) })

	var (
		mu        sync.Mutex
		last      = map[string]int64{} // partition/key -> last offset handled
		running   = map[string]bool{}
		violation error
		now, peak atomic.Int32
	)
	h := weir.HandlerFunc(func(_ context.Context, e *kgo.Record) error {
		k := fmt.Sprintf("%d/%s", e.Partition, e.Key)
		mu.Lock()
		if running[k] && violation == nil {
			violation = fmt.Errorf("key %s handled twice at once", k)
		}
		if prev, ok := last[k]; ok && prev >= e.Offset && violation == nil {
			violation = fmt.Errorf("key %s: offset %d after %d", k, e.Offset, prev)
		}
		running[k], last[k] = true, e.Offset
		mu.Unlock()
		n := now.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(time.Duration(e.Offset%7) * 100 * time.Microsecond)
		now.Add(-1)
		mu.Lock()
		running[k] = false
		mu.Unlock()
		l.record("a", e.Partition, e.Offset)
		return nil
	})
	in := startInstance(t, "a", h, weir.Brokers(seeds...), weir.Topic("keyed"), weir.Group("kg"),
		weir.Logger(quietLogger()), fastGroup(), weir.Concurrency(16), weir.CheckpointEvery(100, 200*time.Millisecond))
	l.waitAllProcessed(t, 60*time.Second)
	if err := in.p.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	ends := map[int32]int64{} // partition -> offset after the last produced event
	l.mu.Lock()
	for id := range l.produced {
		ends[id.Partition] = max(ends[id.Partition], id.Offset+1)
	}
	l.mu.Unlock()
	for p, ps := range ownedStats(t, in.p, 4) {
		if ps.Committed != ends[p] || ps.HighWatermark != ends[p] {
			t.Errorf("partition %d: committed %d, high watermark %d; want both at %d, after the last event produced", p, ps.Committed, ps.HighWatermark, ends[p])
		}
	}
	in.stop(t)
	mu.Lock()
	defer mu.Unlock()
	if violation != nil {
		t.Fatal(violation)
	}
	if peak.Load() < 2 {
		t.Fatalf("at most %d events ran at once; want parallelism across keys", peak.Load())
	}
	lost, twice, _ := l.result()
	if lost != 0 || twice != 0 {
		t.Fatalf("lost %d, twice %d", lost, twice)
	}
	t.Logf("peak parallel handlers: %d", peak.Load())
}

// misconfigured returns a broker and processor options that make Run fail
// for the named reason.
func misconfigured(t testing.TB, kind string) ([]weir.ProcessorOpt, error) {
	t.Helper()
	base := []weir.ProcessorOpt{weir.Group("g"), weir.Logger(quietLogger()), fastGroup()}
	switch kind {
	case "unknown topic":
		c := kfakeCluster(t, kfake.SeedTopics(1, "exists"))
		return append(base, weir.Brokers(c.ListenAddrs()...), weir.Topic("no-such-topic")), weir.ErrUnknownTopic
	case "bad credentials":
		c := kfakeCluster(t, kfake.SeedTopics(1, "t"), kfake.EnableSASL(), kfake.Superuser("PLAIN", "admin", "secret"))
		answerSASLFailures(c, "secret")
		return append(base, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"), weir.SASLPlain("admin", "wrong")), weir.ErrAuthentication
	case "session timeout out of bounds":
		// Brokers accept session timeouts between 6s and 30min by default.
		c := kfakeCluster(t, kfake.SeedTopics(1, "t"))
		return append(base, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"),
			weir.KgoOpts(kgo.SessionTimeout(time.Second))), weir.ErrInvalidConfig
	case "refused group":
		// The user may read the topic but not use the group.
		c := kfakeCluster(t, kfake.SeedTopics(1, "t"), kfake.EnableSASL(), kfake.EnableACLs(),
			kfake.Superuser("PLAIN", "admin", "secret"),
			kfake.User("PLAIN", "app", "pw",
				kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "t", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationRead, Allow: true},
				kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "t", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationDescribe, Allow: true},
			))
		return append(base, weir.Brokers(c.ListenAddrs()...), weir.Topic("t"), weir.SASLPlain("app", "pw")), weir.ErrAuthorization
	}
	t.Fatalf("unknown kind %q", kind)
	return nil, nil
}

// answerSASLFailures makes kfake answer a wrong PLAIN password with
// SASL_AUTHENTICATION_FAILED, as Kafka and weir do, instead of closing the
// connection (which a client cannot tell from a network fault).
func answerSASLFailures(c *kfake.Cluster, password string) {
	c.ControlKey(int16(kmsg.SASLAuthenticate), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.SASLAuthenticateRequest)
		parts := bytes.Split(req.SASLAuthBytes, []byte{0})
		if len(parts) != 3 || string(parts[2]) == password {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := "Authentication failed: Invalid username or password"
		resp.ErrorMessage = &msg
		return resp, nil, true
	})
}

func kfakeCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func runOnce(t testing.TB, opts []weir.ProcessorOpt) (error, time.Duration) {
	p, err := weir.NewProcessor(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err = p.Run(ctx, weir.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }))
	return err, time.Since(start)
}

// TestProcessorMisconfigurationIsFastAndLeakFree checks that Run returns a
// typed error within 5s for each misconfiguration, then repeats it many
// times in one process and checks that goroutines and heap are back at
// their baseline.
func TestProcessorMisconfigurationIsFastAndLeakFree(t *testing.T) {
	for _, tc := range []struct {
		kind    string
		repeats int
	}{
		{"unknown topic", 1000},
		{"bad credentials", 1000},
		{"refused group", 1000},
		{"session timeout out of bounds", 1000},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			opts, want := misconfigured(t, tc.kind)
			repeats := tc.repeats
			if testing.Short() {
				repeats = 50
			}
			checkFailsFastWithoutLeaks(t, opts, want, repeats)
		})
	}
}

func goleakBaseline() goleak.Option { return goleak.IgnoreCurrent() }

func goleakFind(baseline goleak.Option) error { return goleak.Find(baseline) }

func heapInUse() uint64 {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestProcessorDrainTimeoutCancelsStuckEvents has instance a stuck on an
// event (its handler waits for ctx) when instance b joins: the handoff
// cancels the stuck event after DrainTimeout, commits only what completed,
// and b processes the event. Nothing is lost.
func TestProcessorDrainTimeoutCancelsStuckEvents(t *testing.T) {
	seeds := testBroker(t, 2, "stuck")
	l := newLedger()
	for p := range int32(2) {
		produceTo(t, seeds, "stuck", p, l, "ok-1", "ok-2", "stuck", "ok-3")
	}
	stuckStarted := make(chan struct{}, 2)
	aHandler := &recordingHandler{HandlerFunc: func(ctx context.Context, e *kgo.Record) error {
		if string(e.Value) == "stuck" {
			stuckStarted <- struct{}{}
			<-ctx.Done() // never finishes on its own
			return ctx.Err()
		}
		l.record("a", e.Partition, e.Offset)
		return nil
	}}
	opts := []weir.ProcessorOpt{weir.Brokers(seeds...), weir.Topic("stuck"), weir.Group("stuck"),
		weir.Logger(quietLogger()), fastGroup(), weir.DrainTimeout(300 * time.Millisecond)}
	a := startInstance(t, "a", aHandler, opts...)
	<-stuckStarted
	<-stuckStarted
	b := startInstance(t, "b", l.handler("b"), opts...)
	waitBalanced(t, []*instance{a, b}, 2, 30*time.Second)
	a.stop(t) // the other stuck event: canceled after the drain timeout at shutdown too
	l.waitAllProcessed(t, 30*time.Second)
	b.stop(t)

	lost, twice, _ := l.result()
	if lost != 0 || twice != 0 {
		t.Fatalf("lost %d, processed twice %d; want 0, 0", lost, twice)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range int32(2) {
		if who := l.processed[eventID{p, 2}]; len(who) != 1 || who[0] != "b" {
			t.Errorf("partition %d: stuck event processed by %v, want b once", p, who)
		}
	}
	aHandler.mu.Lock()
	defer aHandler.mu.Unlock()
	if aHandler.closes[weir.Rebalanced] != 1 || aHandler.closes[weir.Shutdown] != 1 {
		t.Errorf("a's closes %v, want one Rebalanced (handoff to b) and one Shutdown", aHandler.closes)
	}
}
