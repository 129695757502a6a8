package weir_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// backend is a broker the processor tests run against.
type backend struct {
	name  string
	start func(t testing.TB, partitions int32, topics ...string) []string
}

// backends are kfake (franz-go's fake cluster) and weir's own broker
// (in-process, with its group coordinator). Tests that need kfake's
// controls (leader moves, fake answers) use kfake only.
var backends = []backend{{"kfake", kfakeBroker}, {"weir", weirBroker}}

// testBroker returns seed brokers with the given topics created: kfake, or
// a running broker when WEIR_PROCESSOR_TEST_BROKERS=host:port is set.
func testBroker(t testing.TB, partitions int32, topics ...string) []string {
	t.Helper()
	if addrs := os.Getenv("WEIR_PROCESSOR_TEST_BROKERS"); addrs != "" {
		seeds := strings.Split(addrs, ",")
		createTopics(t, seeds, partitions, topics...)
		return seeds
	}
	return kfakeBroker(t, partitions, topics...)
}

func kfakeBroker(t testing.TB, partitions int32, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// weirBroker starts weir's broker in-process (weirtest) with the topics.
// The group's first rebalance does not wait for more members, so tests
// measure the processor, not the delay.
func weirBroker(t testing.TB, partitions int32, topics ...string) []string {
	t.Helper()
	b := weirtest.Start(t, func(c *broker.Config) { c.GroupInitialRebalanceDelay = -1 })
	seeds := []string{b.Addr()}
	createTopics(t, seeds, partitions, topics...)
	return seeds
}

func createTopics(t testing.TB, seeds []string, partitions int32, topics ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, 1, nil, topics...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns an address on 127.0.0.1 that was free a moment ago, for
// a broker that must come back at the same address after a restart.
func freeAddr(t testing.TB) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr)
}

// quietLogger keeps test output readable; set WEIR_TEST_LOG=1 for logs
// (WEIR_TEST_LOG=kgo adds kgo's logs in child processes).
func quietLogger() *slog.Logger {
	if os.Getenv("WEIR_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fastGroup makes group changes quick in tests: short session, heartbeat
// and rebalance timeout. The short rebalance timeout also bounds a rare kfake
// stall (seen about once in four runs of the per-key crash test): a member's
// JoinGroup answer never arrives while the other member waits in SyncGroup;
// kgo recovers when the rebalance timeout expires.
func fastGroup() weir.ClientOpt {
	return weir.KgoOpts(
		kgo.SessionTimeout(6*time.Second),
		kgo.RebalanceTimeout(10*time.Second),
		kgo.HeartbeatInterval(100*time.Millisecond),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
}

// ledger records every processed event with the instance that processed
// it, and every produced event, and tells what was lost or done twice.
type ledger struct {
	mu        sync.Mutex
	processed map[eventID][]string
	produced  map[eventID]bool
}

type eventID struct {
	Partition int32
	Offset    int64
}

func newLedger() *ledger {
	return &ledger{processed: map[eventID][]string{}, produced: map[eventID]bool{}}
}

func (l *ledger) record(instance string, partition int32, offset int64) {
	l.mu.Lock()
	id := eventID{partition, offset}
	l.processed[id] = append(l.processed[id], instance)
	l.mu.Unlock()
}

func (l *ledger) produce(partition int32, offset int64) {
	l.mu.Lock()
	l.produced[eventID{partition, offset}] = true
	l.mu.Unlock()
}

func (l *ledger) handler(instance string) weir.HandlerFunc {
	return func(_ context.Context, e *kgo.Record) error {
		l.record(instance, e.Partition, e.Offset)
		return nil
	}
}

// result counts produced events never processed, and events processed more
// than once (total extra processings, and the most for one partition).
func (l *ledger) result() (lost, twice int, twicePerPartition map[int32]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	twicePerPartition = map[int32]int{}
	for id := range l.produced {
		if len(l.processed[id]) == 0 {
			lost++
		}
	}
	for id, who := range l.processed {
		if len(who) > 1 {
			twice += len(who) - 1
			twicePerPartition[id.Partition] += len(who) - 1
		}
	}
	return lost, twice, twicePerPartition
}

// checkProduced fails the test if no event was acknowledged into the
// ledger: checks of what was lost or processed twice would pass, proving
// nothing.
func (l *ledger) checkProduced(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	n := len(l.produced)
	l.mu.Unlock()
	if n == 0 {
		t.Fatal("no produced event was acknowledged: nothing to check")
	}
}

// waitAllProcessed waits until every produced event was processed. Some
// must have been.
func (l *ledger) waitAllProcessed(t testing.TB, timeout time.Duration) {
	t.Helper()
	l.checkProduced(t)
	deadline := time.Now().Add(timeout)
	for {
		lost, _, _ := l.result()
		if lost == 0 {
			return
		}
		if time.Now().After(deadline) {
			l.mu.Lock()
			var missing []eventID
			for id := range l.produced {
				if len(l.processed[id]) == 0 && len(missing) < 10 {
					missing = append(missing, id)
				}
			}
			l.mu.Unlock()
			t.Fatalf("%d produced events never processed after %v, e.g. %v", lost, timeout, missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// producer produces continuously into every partition until stopped, and
// records each acknowledged event in the ledger.
type producer struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startProducer(t testing.TB, seeds []string, topic string, l *ledger, perSecond int) *producer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &producer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer cl.Close()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		n := 0
		var wg sync.WaitGroup
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-tick.C:
				for range perSecond / 100 {
					n++
					wg.Add(1)
					cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", n%64)), Value: []byte(fmt.Sprint(n))},
						func(r *kgo.Record, err error) {
							defer wg.Done()
							if err == nil {
								l.produce(r.Partition, r.Offset)
							}
						})
				}
			}
		}
		wg.Wait()
	}()
	return p
}

func (p *producer) stop() {
	p.cancel()
	<-p.done
}

// produceN produces n events synchronously, spread over partitions by key.
func produceN(t testing.TB, seeds []string, topic string, l *ledger, n int, key func(i int) string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: []byte(key(i)), Value: []byte(fmt.Sprint(i))}
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

// instance is one in-process processor of a fleet.
type instance struct {
	name   string
	p      *weir.Processor
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned; err is then set
	err    error

	stopOnce sync.Once
}

// startInstance runs a processor until stop, or until the test ends: a test
// that fails half-way does not leave it running into the next test.
func startInstance(t testing.TB, name string, h weir.Handler, opts ...weir.ProcessorOpt) *instance {
	t.Helper()
	p, err := weir.NewProcessor(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{name: name, p: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		in.err = p.Run(ctx, h)
		close(in.done)
	}()
	t.Cleanup(func() { in.stop(t) })
	return in
}

// stop shuts the instance down gracefully and fails the test if Run
// returned an error. Calls after the first do nothing.
func (in *instance) stop(t testing.TB) {
	t.Helper()
	in.stopOnce.Do(func() {
		in.cancel()
		select {
		case <-in.done:
			if in.err != nil {
				t.Errorf("instance %s: Run returned %v", in.name, in.err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("instance %s: Run did not return 60s after its context ended", in.name)
		}
	})
}

// balanced reports whether the instances own all partitions between them,
// each exactly once, as evenly as possible.
func balanced(fleet []*instance, partitions int) bool {
	owners := map[int32]int{}
	lo, hi := partitions, 0
	for _, in := range fleet {
		n := len(in.p.Stats().Partitions)
		lo, hi = min(lo, n), max(hi, n)
		for _, ps := range in.p.Stats().Partitions {
			owners[ps.Partition]++
		}
	}
	if len(owners) != partitions || hi-lo > 1 {
		return false
	}
	for _, n := range owners {
		if n != 1 {
			return false
		}
	}
	return true
}

// waitBalanced waits for a balanced assignment and returns how long it
// took.
func waitBalanced(t testing.TB, fleet []*instance, partitions int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for !balanced(fleet, partitions) {
		if time.Since(start) > timeout {
			var counts []int
			for _, in := range fleet {
				counts = append(counts, len(in.p.Stats().Partitions))
			}
			t.Fatalf("not balanced after %v: partitions per instance %v", timeout, counts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// ownedStats returns the processor's stats of partitions 0 to n-1 and
// fails the test unless it owns each of them, and no other: a loop over
// Stats().Partitions alone passes when a partition is missing.
func ownedStats(t testing.TB, p *weir.Processor, n int) map[int32]weir.PartitionStats {
	t.Helper()
	st := p.Stats()
	byPartition := make(map[int32]weir.PartitionStats, len(st.Partitions))
	for _, ps := range st.Partitions {
		byPartition[ps.Partition] = ps
	}
	for i := range int32(n) {
		if _, ok := byPartition[i]; !ok {
			t.Fatalf("partition %d missing from Stats: %+v", i, st.Partitions)
		}
	}
	if len(st.Partitions) != n {
		t.Fatalf("Stats has %d partitions, want the %d of the topic: %+v", len(st.Partitions), n, st.Partitions)
	}
	return byPartition
}

func owned(in *instance) []int32 {
	var ps []int32
	for _, s := range in.p.Stats().Partitions {
		ps = append(ps, s.Partition)
	}
	slices.Sort(ps)
	return ps
}

// forEachBackend runs a test against every backend, as subtests.
func forEachBackend(t *testing.T, test func(*testing.T, backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b) })
	}
}
