package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// seenSet records which offsets of which partitions a fleet consumed.
type seenSet struct {
	mu sync.Mutex
	m  map[int32]map[int64]int
}

func newSeenSet() *seenSet { return &seenSet{m: map[int32]map[int64]int{}} }

func (s *seenSet) add(r *kgo.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[r.Partition] == nil {
		s.m[r.Partition] = map[int64]int{}
	}
	s.m[r.Partition][r.Offset]++
}

// missing returns how many offsets below ends were not consumed.
func (s *seenSet) missing(ends map[int32]int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for p, end := range ends {
		for o := int64(0); o < end; o++ {
			if s.m[p][o] == 0 {
				n++
			}
		}
	}
	return n
}

// groupMember is one franz-go group consumer polling in its own goroutine.
type groupMember struct {
	name     string
	cl       *kgo.Client
	cancel   context.CancelFunc
	done     chan struct{}
	consumed atomic.Int64
}

func startGroupMember(t *testing.T, name, addr, group, topic string, seen *seenSet, opts ...kgo.Opt) *groupMember {
	t.Helper()
	opts = append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.HeartbeatInterval(200 * time.Millisecond),
		kgo.SessionTimeout(6 * time.Second),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &groupMember{name: name, cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fs.EachError(func(topic string, p int32, err error) {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("%s: fetch %s/%d: %v", name, topic, p, err)
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				seen.add(r)
				m.consumed.Add(1)
			})
		}
	}()
	t.Cleanup(m.stop)
	return m
}

// stop commits what the member consumed and leaves the group.
func (m *groupMember) stop() {
	select {
	case <-m.done:
		return
	default:
	}
	m.cancel()
	<-m.done
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = m.cl.CommitUncommittedOffsets(ctx)
	m.cl.Close()
}

// startOn starts an in-process broker with its data in dataDir, for tests
// that close it and start another on the same data. The caller closes it.
func startOn(t *testing.T, dataDir string) *broker.Broker {
	t.Helper()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dataDir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// producer produces to topic until stopped and reports how many records
// were acknowledged.
type producer struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	acked  atomic.Int64
}

func startProducer(t *testing.T, addr, topic string) *producer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &producer{cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := 0; ctx.Err() == nil; i++ {
			res := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "v%d", i)})
			if err := res.FirstErr(); err != nil {
				if ctx.Err() == nil {
					t.Errorf("produce: %v", err)
				}
				return
			}
			p.acked.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *producer) stop() {
	p.cancel()
	<-p.done
	p.cl.Close()
}

func endOffsets(t *testing.T, addr, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(testContext(t, 20*time.Second), topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// waitConsumedAndCommitted waits until the fleet has consumed every offset
// below ends and the group has committed ends on every partition.
func waitConsumedAndCommitted(t *testing.T, addr, group string, seen *seenSet, ends map[int32]int64) {
	t.Helper()
	waitFor(t, 30*time.Second, "every record", func() bool { return seen.missing(ends) == 0 })
	waitFor(t, 20*time.Second, "the commits", func() bool {
		got := committedOffsets(t, addr, group)
		for p, end := range ends {
			if got[p] != end {
				return false
			}
		}
		return true
	})
}

func committedOffsets(t *testing.T, addr, group string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).FetchOffsets(testContext(t, 20*time.Second), group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) { out[o.Partition] = o.At })
	return out
}

// TestFranzGoGroups runs three-member franz-go consumer groups under
// continuous production while members join and leave, with the range and
// cooperative-sticky balancers and with static membership, and checks
// that every record is consumed and the final commits are the end
// offsets.
func TestFranzGoGroups(t *testing.T) {
	b := weirtest.Start(t)
	cases := []struct {
		name   string
		opts   func(member int) []kgo.Opt
		static bool
	}{
		{"range", func(int) []kgo.Opt { return []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())} }, false},
		{"cooperative-sticky", func(int) []kgo.Opt { return []kgo.Opt{kgo.Balancers(kgo.CooperativeStickyBalancer())} }, false},
		{"static", func(i int) []kgo.Opt {
			return []kgo.Opt{kgo.Balancers(kgo.RangeBalancer()), kgo.InstanceID(fmt.Sprintf("instance-%d", i))}
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			topic, group := "groups-"+c.name, "g-"+c.name
			createTopic(t, b.Addr(), topic, 6)
			seen := newSeenSet()
			prod := startProducer(t, b.Addr(), topic)
			m1 := startGroupMember(t, "m1", b.Addr(), group, topic, seen, c.opts(1)...)
			m2 := startGroupMember(t, "m2", b.Addr(), group, topic, seen, c.opts(2)...)
			waitFor(t, 20*time.Second, "the first two members to consume", func() bool { return m1.consumed.Load() > 0 && m2.consumed.Load() > 0 })
			m3 := startGroupMember(t, "m3", b.Addr(), group, topic, seen, c.opts(3)...)
			waitFor(t, 20*time.Second, "a third member to get partitions", func() bool { return m3.consumed.Load() > 0 })
			if c.static {
				// A static member restarts under the same instance id and
				// takes its partitions back.
				m1.stop()
				m1 = startGroupMember(t, "m1-again", b.Addr(), group, topic, seen, c.opts(1)...)
				waitFor(t, 20*time.Second, "the restarted static member to consume", func() bool { return m1.consumed.Load() > 0 })
			} else {
				// One leaves, another joins.
				m1.stop()
				before := m2.consumed.Load() + m3.consumed.Load()
				waitFor(t, 20*time.Second, "the rest to go on after a leave", func() bool { return m2.consumed.Load()+m3.consumed.Load() > before+50 })
				m1 = startGroupMember(t, "m4", b.Addr(), group, topic, seen, c.opts(4)...)
				waitFor(t, 20*time.Second, "a new member to get partitions", func() bool { return m1.consumed.Load() > 0 })
			}
			prod.stop()
			ends := endOffsets(t, b.Addr(), topic)
			waitFor(t, 30*time.Second, "every record to be consumed", func() bool { return seen.missing(ends) == 0 })
			for _, m := range []*groupMember{m1, m2, m3} {
				m.stop()
			}
			got := committedOffsets(t, b.Addr(), group)
			for p, end := range ends {
				if got[p] != end {
					t.Errorf("partition %d: committed %d, end %d", p, got[p], end)
				}
			}
		})
	}
}

// TestGroupOffsetsSurviveRestart commits with a group consumer, restarts
// the broker on the same data dir, and checks that a new member of the
// group resumes exactly at the commits.
func TestGroupOffsetsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	start := func() *broker.Broker { return startOn(t, dir) }
	b := start()
	topic, group := "resume", "resumers"
	createTopic(t, b.Addr(), topic, 3)
	produceN(t, b.Addr(), topic, 90, "first")
	seen := newSeenSet()
	m := startGroupMember(t, "m", b.Addr(), group, topic, seen)
	ends := endOffsets(t, b.Addr(), topic)
	waitFor(t, 20*time.Second, "all records", func() bool { return seen.missing(ends) == 0 })
	m.stop()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = start()
	defer b.Close()
	if got := committedOffsets(t, b.Addr(), group); len(got) != 3 || got[0] != ends[0] || got[1] != ends[1] || got[2] != ends[2] {
		t.Fatalf("after restart committed %v, want %v", got, ends)
	}
	produceN(t, b.Addr(), topic, 30, "second")
	seen2 := newSeenSet()
	m = startGroupMember(t, "m-again", b.Addr(), group, topic, seen2)
	ends2 := endOffsets(t, b.Addr(), topic)
	waitFor(t, 20*time.Second, "the new records", func() bool {
		seen2.mu.Lock()
		defer seen2.mu.Unlock()
		for p, end := range ends2 {
			if seen2.m[p][end-1] == 0 {
				return false
			}
		}
		return true
	})
	m.stop()
	seen2.mu.Lock()
	defer seen2.mu.Unlock()
	for p, offs := range seen2.m {
		for o := range offs {
			if o < ends[p] {
				t.Errorf("partition %d: offset %d consumed again after restart (committed %d)", p, o, ends[p])
			}
		}
	}
}

func produceN(t *testing.T, addr, topic string, n int, prefix string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rs []*kgo.Record
	for i := range n {
		rs = append(rs, &kgo.Record{Value: fmt.Appendf(nil, "%s-%d", prefix, i)})
	}
	if err := cl.ProduceSync(testContext(t, 20*time.Second), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestGroupFencing drives the protocol with raw requests over a real
// socket: a member that lost its partitions in a rebalance cannot commit
// for them, and a commit with an old generation is refused.
func TestGroupFencing(t *testing.T) {
	b := weirtest.Start(t, func(c *broker.Config) { c.GroupInitialRebalanceDelay = -1 })
	createTopic(t, b.Addr(), "fenced", 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testContext(t, 30*time.Second)
	meta := (&kmsg.ConsumerMemberMetadata{Topics: []string{"fenced"}}).AppendTo(nil)
	join := func(member string) *kmsg.JoinGroupResponse {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.MemberID = "fence", member
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 6000, 1000
		req.ProtocolType = "consumer"
		req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta}}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode == kerr.MemberIDRequired.Code {
			return joinAgain(t, ctx, cl, req, resp.MemberID)
		}
		return resp
	}
	sync := func(member string, gen int32, assign map[string][]byte) *kmsg.SyncGroupResponse {
		req := kmsg.NewPtrSyncGroupRequest()
		req.Group, req.MemberID, req.Generation = "fence", member, gen
		for m, a := range assign {
			req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: m, MemberAssignment: a})
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	commit := func(member string, gen int32, offset int64) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.Generation = "fence", member, gen
		req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "fenced", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: offset, LeaderEpoch: -1}}}}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}

	a := join("")
	if a.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(a.ErrorCode))
	}
	if s := sync(a.MemberID, a.Generation, map[string][]byte{a.MemberID: []byte("all")}); s.ErrorCode != 0 {
		t.Fatalf("sync: %v", kerr.ErrorForCode(s.ErrorCode))
	}
	if code := commit(a.MemberID, a.Generation, 5); code != 0 {
		t.Fatalf("owner commit: %v", kerr.ErrorForCode(code))
	}
	// B joins; A does not rejoin within the rebalance timeout (1 s) and
	// loses its partitions.
	bResp := join("")
	if bResp.ErrorCode != 0 || bResp.Generation != a.Generation+1 {
		t.Fatalf("second join: %v generation %d", kerr.ErrorForCode(bResp.ErrorCode), bResp.Generation)
	}
	if s := sync(bResp.MemberID, bResp.Generation, map[string][]byte{bResp.MemberID: []byte("all")}); s.ErrorCode != 0 {
		t.Fatalf("sync: %v", kerr.ErrorForCode(s.ErrorCode))
	}
	if code := commit(a.MemberID, a.Generation, 99); code != kerr.UnknownMemberID.Code {
		t.Errorf("commit by the member that lost its partitions: %v, want UNKNOWN_MEMBER_ID", kerr.ErrorForCode(code))
	}
	if code := commit(bResp.MemberID, a.Generation, 99); code != kerr.IllegalGeneration.Code {
		t.Errorf("commit with the previous generation: %v, want ILLEGAL_GENERATION", kerr.ErrorForCode(code))
	}
	if code := commit(bResp.MemberID, bResp.Generation, 7); code != 0 {
		t.Errorf("new owner commit: %v", kerr.ErrorForCode(code))
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation = "fence", a.MemberID, a.Generation
	if resp, err := hb.RequestWith(ctx, cl); err != nil || resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Errorf("heartbeat of the removed member: %v %v", resp, err)
	}
	if got := committedOffsets(t, b.Addr(), "fence"); got[0] != 7 {
		t.Errorf("committed %d, want the new owner's 7", got[0])
	}
}

func joinAgain(t *testing.T, ctx context.Context, cl *kgo.Client, req *kmsg.JoinGroupRequest, id string) *kmsg.JoinGroupResponse {
	t.Helper()
	req.MemberID = id
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestRequireGroupCreate checks that with RequireGroupCreate a consumer of
// an uncreated group fails fast with GROUP_AUTHORIZATION_FAILED, and works
// once the group is created (IncrementalAlterConfigs on a GROUP resource).
func TestRequireGroupCreate(t *testing.T) {
	b := weirtest.Start(t, func(c *broker.Config) { c.RequireGroupCreate = true })
	createTopic(t, b.Addr(), "guarded", 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := testContext(t, 30*time.Second)
	resp, err := adm.CommitOffsets(ctx, "typo", kadm.OffsetsFromRecords(kgo.Record{Topic: "guarded", Partition: 0, Offset: 0}))
	if err == nil {
		err = resp.Error()
	}
	if !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("commit to an uncreated group: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	req.Resources = []kmsg.IncrementalAlterConfigsRequestResource{{ResourceType: 32, ResourceName: "real"}}
	ar, err := req.RequestWith(ctx, cl)
	if err != nil || ar.Resources[0].ErrorCode != 0 {
		t.Fatalf("create group: %v %+v", err, ar)
	}
	resp, err = adm.CommitOffsets(ctx, "real", kadm.OffsetsFromRecords(kgo.Record{Topic: "guarded", Partition: 0, Offset: 0}))
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("commit to a created group: %v", err)
	}
}
