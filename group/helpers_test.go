package group

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// harness steps a RawCoordinator with explicit time. Nothing sleeps.
type harness struct {
	t       *testing.T
	c       *RawCoordinator
	now     time.Time
	records []Record
	topics  map[string]int32
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, now: time.Unix(1_700_000_000, 0), topics: map[string]int32{"t": 4, "u": 2}}
	cfg := Config{
		MemberIDPrefix:  "x",
		PartitionExists: func(topic string, p int32) bool { n, ok := h.topics[topic]; return ok && p >= 0 && p < n },
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewRawCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	h.c.Tick(h.now)
	return h
}

// call is one request; resp is set when the coordinator answers it.
type call struct {
	resp  kmsg.Response
	calls int
}

func (c *call) done() bool { return c.resp != nil }

// send runs req and delivers whatever is ready.
func (h *harness) send(req kmsg.Request) *call {
	h.t.Helper()
	cl := &call{}
	h.c.Handle(h.now, Client{ID: "client", Host: "/127.0.0.1"}, req, func(r kmsg.Response) {
		cl.resp = r
		cl.calls++
		if cl.calls > 1 {
			h.t.Errorf("request %T answered %d times", req, cl.calls)
		}
	})
	h.flush()
	return cl
}

func (h *harness) flush() {
	rd := h.c.Ready()
	h.records = append(h.records, rd.Records...)
	h.c.Deliver(rd, nil)
}

// errDisk stands for a store write that failed.
var errDisk = errors.New("test: disk failed")

// sendUnpersisted runs req as send does, but the records of its step
// cannot be written.
func (h *harness) sendUnpersisted(req kmsg.Request) *call {
	h.t.Helper()
	cl := &call{}
	h.c.Handle(h.now, Client{ID: "client", Host: "/127.0.0.1"}, req, func(r kmsg.Response) { cl.resp = r; cl.calls++ })
	h.c.Deliver(h.c.Ready(), errDisk)
	return cl
}

// advance moves time forward by d in small steps, firing timers as a
// driver would.
func (h *harness) advance(d time.Duration) {
	end := h.now.Add(d)
	for {
		next, ok := h.c.NextDeadline()
		if !ok || next.After(end) {
			break
		}
		if next.After(h.now) {
			h.now = next
		}
		h.c.Tick(h.now)
		h.flush()
	}
	h.now = end
	h.c.Tick(h.now)
	h.flush()
}

func (h *harness) state(group string) State {
	g := h.c.groups[group]
	if g == nil {
		return Dead
	}
	return g.state
}

func protocols(names ...string) []kmsg.JoinGroupRequestProtocol {
	var ps []kmsg.JoinGroupRequestProtocol
	for _, n := range names {
		ps = append(ps, kmsg.JoinGroupRequestProtocol{Name: n, Metadata: []byte("meta-" + n)})
	}
	return ps
}

func joinReq(group, member string, instance *string) *kmsg.JoinGroupRequest {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version = 9
	r.Group = group
	r.MemberID = member
	r.InstanceID = instance
	r.SessionTimeoutMillis = 10_000
	r.RebalanceTimeoutMillis = 30_000
	r.ProtocolType = "consumer"
	r.Protocols = protocols("range")
	return r
}

func joinResp(t *testing.T, c *call) *kmsg.JoinGroupResponse {
	t.Helper()
	if !c.done() {
		t.Fatalf("JoinGroup not answered")
	}
	return c.resp.(*kmsg.JoinGroupResponse)
}

func code(t *testing.T, c *call) int16 {
	t.Helper()
	if !c.done() {
		t.Fatalf("request not answered")
	}
	switch r := c.resp.(type) {
	case *kmsg.JoinGroupResponse:
		return r.ErrorCode
	case *kmsg.SyncGroupResponse:
		return r.ErrorCode
	case *kmsg.HeartbeatResponse:
		return r.ErrorCode
	case *kmsg.LeaveGroupResponse:
		if r.ErrorCode == 0 && len(r.Members) == 1 {
			return r.Members[0].ErrorCode
		}
		return r.ErrorCode
	case *kmsg.OffsetCommitResponse:
		return r.Topics[0].Partitions[0].ErrorCode
	}
	t.Fatalf("no single error code in %T", c.resp)
	return 0
}

func wantCode(t *testing.T, what string, c *call, want *kerr.Error) {
	t.Helper()
	got := code(t, c)
	var wantCode int16
	if want != nil {
		wantCode = want.Code
	}
	if got != wantCode {
		t.Fatalf("%s: error %v, want %v", what, kerr.ErrorForCode(got), want)
	}
}

// joinNew joins a new dynamic member the v4+ way (MEMBER_ID_REQUIRED, then
// again with the id) and returns the pending second JoinGroup.
func (h *harness) joinNew(group string) (string, *call) {
	h.t.Helper()
	first := h.send(joinReq(group, "", nil))
	wantCode(h.t, "first join", first, kerr.MemberIDRequired)
	id := joinResp(h.t, first).MemberID
	return id, h.send(joinReq(group, id, nil))
}

func syncReq(group, member string, gen int32, assign map[string]string) *kmsg.SyncGroupRequest {
	r := kmsg.NewPtrSyncGroupRequest()
	r.Version = 5
	r.Group, r.MemberID, r.Generation = group, member, gen
	r.ProtocolType, r.Protocol = strPtr("consumer"), strPtr("range")
	for m, a := range assign {
		ga := kmsg.NewSyncGroupRequestGroupAssignment()
		ga.MemberID, ga.MemberAssignment = m, []byte(a)
		r.GroupAssignment = append(r.GroupAssignment, ga)
	}
	return r
}

func heartbeatReq(group, member string, gen int32) *kmsg.HeartbeatRequest {
	r := kmsg.NewPtrHeartbeatRequest()
	r.Version = 4
	r.Group, r.MemberID, r.Generation = group, member, gen
	return r
}

func commitReq(group, member string, gen int32, topic string, partition int32, offset int64) *kmsg.OffsetCommitRequest {
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version = 8
	r.Group, r.MemberID, r.Generation = group, member, gen
	t := kmsg.NewOffsetCommitRequestTopic()
	t.Topic = topic
	p := kmsg.NewOffsetCommitRequestTopicPartition()
	p.Partition, p.Offset, p.LeaderEpoch = partition, offset, -1
	t.Partitions = append(t.Partitions, p)
	r.Topics = append(r.Topics, t)
	return r
}

// committed returns the committed offset of group/topic/partition through
// OffsetFetch v8, or -1.
func (h *harness) committed(group, topic string, partition int32) int64 {
	h.t.Helper()
	r := kmsg.NewPtrOffsetFetchRequest()
	r.Version = 8
	g := kmsg.NewOffsetFetchRequestGroup()
	g.Group = group
	ft := kmsg.NewOffsetFetchRequestGroupTopic()
	ft.Topic, ft.Partitions = topic, []int32{partition}
	g.Topics = append(g.Topics, ft)
	r.Groups = append(r.Groups, g)
	c := h.send(r)
	resp := c.resp.(*kmsg.OffsetFetchResponse)
	p := resp.Groups[0].Topics[0].Partitions[0]
	if p.ErrorCode != 0 || resp.Groups[0].ErrorCode != 0 {
		h.t.Fatalf("offset fetch: %v %v", kerr.ErrorForCode(p.ErrorCode), kerr.ErrorForCode(resp.Groups[0].ErrorCode))
	}
	return p.Offset
}

// stableGroup makes a Stable group of n dynamic members and returns their
// ids (the first is the leader) and the generation.
func (h *harness) stableGroup(group string, n int) ([]string, int32) {
	h.t.Helper()
	var ids []string
	var joins []*call
	for range n {
		id, c := h.joinNew(group)
		ids = append(ids, id)
		joins = append(joins, c)
	}
	h.advance(h.c.cfg.InitialRebalanceDelay * time.Duration(n+1))
	var leader string
	var gen int32
	for i, c := range joins {
		r := joinResp(h.t, c)
		if r.ErrorCode != 0 {
			h.t.Fatalf("join %d: %v", i, kerr.ErrorForCode(r.ErrorCode))
		}
		leader, gen = r.LeaderID, r.Generation
	}
	// Put the leader first.
	for i, id := range ids {
		if id == leader {
			ids[0], ids[i] = ids[i], ids[0]
		}
	}
	assign := map[string]string{}
	for _, id := range ids {
		assign[id] = "assignment-of-" + id
	}
	var syncs []*call
	for i, id := range ids {
		if i == 0 {
			continue
		}
		syncs = append(syncs, h.send(syncReq(group, id, gen, nil)))
	}
	lc := h.send(syncReq(group, ids[0], gen, assign))
	syncs = append(syncs, lc)
	for _, s := range syncs {
		wantCode(h.t, "sync", s, nil)
	}
	if got := h.state(group); got != Stable {
		h.t.Fatalf("group is %v, want Stable", got)
	}
	return ids, gen
}

func (h *harness) String() string { return fmt.Sprintf("t=%v", h.now) }
