package group

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestJoinSyncHeartbeatLeave(t *testing.T) {
	h := newHarness(t, nil)
	id1, j1 := h.joinNew("g")
	if j1.done() {
		t.Fatal("the first join of an empty group was answered before the initial rebalance delay")
	}
	h.advance(DefaultInitialRebalanceDelay)
	r1 := joinResp(t, j1)
	if r1.ErrorCode != 0 || r1.LeaderID != id1 || r1.MemberID != id1 || r1.Generation != 1 || len(r1.Members) != 1 {
		t.Fatalf("join response %+v", r1)
	}
	if !bytes.Equal(r1.Members[0].ProtocolMetadata, []byte("meta-range")) || *r1.Protocol != "range" {
		t.Fatalf("leader did not get the member metadata untouched: %+v", r1.Members[0])
	}
	if got := h.state("g"); got != CompletingRebalance {
		t.Fatalf("state %v after join, want CompletingRebalance", got)
	}
	s1 := h.send(syncReq("g", id1, 1, map[string]string{id1: "a1"}))
	wantCode(t, "leader sync", s1, nil)
	if got := string(s1.resp.(*kmsg.SyncGroupResponse).MemberAssignment); got != "a1" {
		t.Fatalf("assignment %q, want a1", got)
	}
	wantCode(t, "heartbeat", h.send(heartbeatReq("g", id1, 1)), nil)

	// A second member joins: the first learns of the rebalance through its
	// heartbeat and rejoins; the join phase ends when both are in.
	id2, j2 := h.joinNew("g")
	wantCode(t, "heartbeat during rebalance", h.send(heartbeatReq("g", id1, 1)), kerr.RebalanceInProgress)
	if j2.done() {
		t.Fatal("join answered before the old member rejoined")
	}
	j1 = h.send(joinReq("g", id1, nil))
	r1, r2 := joinResp(t, j1), joinResp(t, j2)
	if r1.Generation != 2 || r2.Generation != 2 || r1.LeaderID != id1 || len(r1.Members) != 2 || len(r2.Members) != 0 {
		t.Fatalf("second generation: leader %+v, follower %+v", r1, r2)
	}
	s2 := h.send(syncReq("g", id2, 2, nil))
	if s2.done() {
		t.Fatal("follower sync answered before the leader's")
	}
	s1 = h.send(syncReq("g", id1, 2, map[string]string{id1: "p0", id2: "p1"}))
	wantCode(t, "leader sync", s1, nil)
	wantCode(t, "follower sync", s2, nil)
	if got := string(s2.resp.(*kmsg.SyncGroupResponse).MemberAssignment); got != "p1" {
		t.Fatalf("follower assignment %q, want p1", got)
	}

	// Leaving (v3 batch) rebalances the rest.
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version = 5
	lr.Group = "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: id2}, {MemberID: "nobody"}}
	l := h.send(lr)
	lresp := l.resp.(*kmsg.LeaveGroupResponse)
	if lresp.ErrorCode != 0 || lresp.Members[0].ErrorCode != 0 || lresp.Members[1].ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("leave response %+v", lresp)
	}
	if got := h.state("g"); got != PreparingRebalance {
		t.Fatalf("state %v after a leave, want PreparingRebalance", got)
	}
	j1 = h.send(joinReq("g", id1, nil))
	if r := joinResp(t, j1); r.Generation != 3 || len(r.Members) != 1 {
		t.Fatalf("third generation %+v", r)
	}
}

func TestJoinV0WithoutMemberIDRequired(t *testing.T) {
	h := newHarness(t, nil)
	r := joinReq("g", "", nil)
	r.Version = 0
	r.InstanceID = nil
	j := h.send(r)
	h.advance(time.Second)
	if resp := joinResp(t, j); resp.ErrorCode != 0 || resp.MemberID == "" || resp.Generation != 1 {
		t.Fatalf("v0 join %+v", resp)
	}
}

func TestInitialDelayExtendsForAFleet(t *testing.T) {
	h := newHarness(t, nil)
	d := DefaultInitialRebalanceDelay
	_, j1 := h.joinNew("g")
	var joins []*call
	joins = append(joins, j1)
	// Members keep arriving every 2/3 of the delay: the join phase waits
	// for them and the group rebalances once.
	for range 4 {
		h.advance(d * 2 / 3)
		if j1.done() {
			t.Fatal("join phase ended while members were still arriving")
		}
		_, j := h.joinNew("g")
		joins = append(joins, j)
	}
	h.advance(2 * d)
	for i, j := range joins {
		if r := joinResp(t, j); r.ErrorCode != 0 || r.Generation != 1 {
			t.Fatalf("join %d: %+v", i, r)
		}
	}
}

func TestSessionExpiry(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2)
	// Only the first member heartbeats; it hears of the rebalance once the
	// other's session has expired.
	var last *call
	for range 4 {
		h.advance(3 * time.Second)
		last = h.send(heartbeatReq("g", ids[0], gen))
	}
	wantCode(t, "heartbeat after the other member expired", last, kerr.RebalanceInProgress)
	if got := h.state("g"); got != PreparingRebalance {
		t.Fatalf("state %v after a session expired, want PreparingRebalance", got)
	}
	wantCode(t, "expired member heartbeat", h.send(heartbeatReq("g", ids[1], gen)), kerr.UnknownMemberID)
	j := h.send(joinReq("g", ids[0], nil))
	if r := joinResp(t, j); r.Generation != gen+1 || len(r.Members) != 1 {
		t.Fatalf("rejoin after expiry %+v", r)
	}
	// When the last member goes quiet too, the group empties.
	h.advance(11 * time.Second)
	if got := h.state("g"); got != Empty {
		t.Fatalf("state %v, want Empty", got)
	}
}

func TestRebalanceTimeoutDropsMembersThatDoNotRejoin(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2)
	_, j3 := h.joinNew("g")
	j1 := h.send(joinReq("g", ids[0], nil))
	// ids[1] heartbeats (so its session lives) but never rejoins.
	for range 12 {
		h.advance(3 * time.Second)
		h.send(heartbeatReq("g", ids[1], gen))
	}
	if !j1.done() || !j3.done() {
		t.Fatal("join phase did not end at the rebalance timeout")
	}
	if r := joinResp(t, j1); r.ErrorCode != 0 || len(r.Members) != 2 || r.Generation != gen+1 {
		t.Fatalf("after rebalance timeout: %+v", r)
	}
	wantCode(t, "dropped member heartbeat", h.send(heartbeatReq("g", ids[1], gen+1)), kerr.UnknownMemberID)
}

func TestMemberThatNeverSyncs(t *testing.T) {
	h := newHarness(t, nil)
	id1, j1 := h.joinNew("g")
	id2, j2 := h.joinNew("g")
	h.advance(time.Second)
	r1, r2 := joinResp(t, j1), joinResp(t, j2)
	leader, other := id1, id2
	if r2.LeaderID == id2 {
		leader, other = id2, id1
	}
	gen := r1.Generation
	// The leader syncs; the other member heartbeats but never syncs.
	wantCode(t, "leader sync", h.send(syncReq("g", leader, gen, map[string]string{leader: "a", other: "b"})), nil)
	for range 12 {
		h.advance(3 * time.Second)
		h.send(heartbeatReq("g", leader, gen))
		h.send(heartbeatReq("g", other, gen))
	}
	wantCode(t, "heartbeat of a member that never synced", h.send(heartbeatReq("g", other, gen)), kerr.UnknownMemberID)
	j := h.send(joinReq("g", leader, nil))
	if r := joinResp(t, j); r.ErrorCode != 0 || len(r.Members) != 1 {
		t.Fatalf("the group did not move on without the member: %+v", r)
	}
}

func TestStaticMembership(t *testing.T) {
	h := newHarness(t, nil)
	inst := strPtr("instance-1")
	j := h.send(joinReq("g", "", inst)) // static members get no MEMBER_ID_REQUIRED
	h.advance(time.Second)
	r := joinResp(t, j)
	if r.ErrorCode != 0 {
		t.Fatalf("static join: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	old, gen := r.MemberID, r.Generation
	s := syncReq("g", old, gen, map[string]string{old: "a"})
	s.InstanceID = inst
	wantCode(t, "sync", h.send(s), nil)

	// The instance restarts: it joins again with no member id and takes
	// over without a rebalance.
	j = h.send(joinReq("g", "", inst))
	r = joinResp(t, j)
	if r.ErrorCode != 0 || r.MemberID == old || r.Generation != gen {
		t.Fatalf("static rejoin %+v", r)
	}
	if got := h.state("g"); got != Stable {
		t.Fatalf("state %v after a static rejoin, want Stable (no rebalance)", got)
	}
	hb := heartbeatReq("g", old, gen)
	hb.InstanceID = inst
	wantCode(t, "old incarnation heartbeat", h.send(hb), kerr.FencedInstanceID)
	c := commitReq("g", old, gen, "t", 0, 5)
	c.InstanceID = inst
	wantCode(t, "old incarnation commit", h.send(c), kerr.FencedInstanceID)
	s = syncReq("g", r.MemberID, gen, nil)
	s.InstanceID = inst
	sc := h.send(s)
	wantCode(t, "new incarnation sync", sc, nil)
	if got := string(sc.resp.(*kmsg.SyncGroupResponse).MemberAssignment); got != "a" {
		t.Fatalf("new incarnation got assignment %q, want the old one", got)
	}
	c = commitReq("g", r.MemberID, gen, "t", 0, 5)
	c.InstanceID = inst
	wantCode(t, "new incarnation commit", h.send(c), nil)

	// Administrative removal by instance id alone.
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version = 4
	lr.Group = "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: inst}}
	wantCode(t, "leave by instance id", h.send(lr), nil)
	h.advance(time.Minute)
	if got := h.state("g"); got != Empty {
		t.Fatalf("state %v, want Empty", got)
	}
}

func TestCommitFencing(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2)
	wantCode(t, "member commit", h.send(commitReq("g", ids[1], gen, "t", 1, 10)), nil)
	wantCode(t, "stale generation", h.send(commitReq("g", ids[1], gen-1, "t", 1, 11)), kerr.IllegalGeneration)
	wantCode(t, "unknown member", h.send(commitReq("g", "ghost", gen, "t", 1, 11)), kerr.UnknownMemberID)
	wantCode(t, "memberless commit to a group with members", h.send(commitReq("g", "", -1, "t", 1, 11)), kerr.UnknownMemberID)

	// A rebalance starts; during PreparingRebalance the old generation may
	// still commit (Kafka relies on the heartbeat to stop it).
	_, j3 := h.joinNew("g")
	wantCode(t, "commit while preparing", h.send(commitReq("g", ids[1], gen, "t", 1, 12)), nil)
	h.send(joinReq("g", ids[0], nil))
	// ids[1] neither rejoins nor heartbeats: its session expires and it
	// loses its partitions.
	h.advance(11 * time.Second)
	r3 := joinResp(t, j3)
	wantCode(t, "commit by the member that lost its partitions", h.send(commitReq("g", ids[1], gen, "t", 1, 99)), kerr.UnknownMemberID)
	wantCode(t, "commit during CompletingRebalance", h.send(commitReq("g", ids[0], r3.Generation, "t", 1, 13)), kerr.RebalanceInProgress)
	wantCode(t, "commit with the old generation", h.send(commitReq("g", ids[0], gen, "t", 1, 13)), kerr.IllegalGeneration)
	if got := h.committed("g", "t", 1); got != 12 {
		t.Fatalf("committed %d, want 12 (no fenced commit may land)", got)
	}
	wantCode(t, "commit to a group never seen, with a generation", h.send(commitReq("nope", "m", 3, "t", 0, 1)), kerr.IllegalGeneration)
}

func TestSimpleCommitsFromTools(t *testing.T) {
	h := newHarness(t, nil)
	c := commitReq("tools", "", -1, "t", 2, 42)
	wantCode(t, "memberless commit", h.send(c), nil)
	if got := h.committed("tools", "t", 2); got != 42 {
		t.Fatalf("committed %d, want 42", got)
	}
	old := kmsg.NewPtrOffsetCommitRequest()
	old.Version = 0
	old.Group = "tools"
	old.Topics = c.Topics
	old.Topics[0].Partitions[0].Offset = 43
	wantCode(t, "v0 commit", h.send(old), nil)
	if got := h.committed("tools", "t", 2); got != 43 {
		t.Fatalf("committed %d, want 43", got)
	}
	if got := h.committed("tools", "t", 3); got != -1 {
		t.Fatalf("uncommitted partition reads %d, want -1", got)
	}
}

func TestBadInput(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2)
	check := func() {
		t.Helper()
		wantCode(t, "healthy member heartbeat", h.send(heartbeatReq("g", ids[0], gen)), nil)
		wantCode(t, "healthy member commit", h.send(commitReq("g", ids[0], gen, "t", 0, 1)), nil)
	}
	wantCode(t, "unknown member heartbeat", h.send(heartbeatReq("g", "ghost", gen)), kerr.UnknownMemberID)
	wantCode(t, "heartbeat to an unknown group", h.send(heartbeatReq("nogroup", "ghost", 1)), kerr.UnknownMemberID)
	wantCode(t, "wrong generation heartbeat", h.send(heartbeatReq("g", ids[0], gen+5)), kerr.IllegalGeneration)
	wantCode(t, "wrong generation sync", h.send(syncReq("g", ids[1], gen+1, nil)), kerr.IllegalGeneration)
	wantCode(t, "unknown topic commit", h.send(commitReq("g", ids[0], gen, "no-such-topic", 0, 1)), kerr.UnknownTopicOrPartition)
	wantCode(t, "unknown partition commit", h.send(commitReq("g", ids[0], gen, "t", 99, 1)), kerr.UnknownTopicOrPartition)
	big := commitReq("g", ids[0], gen, "t", 0, 1)
	big.Topics[0].Partitions[0].Metadata = strPtr(string(make([]byte, DefaultMaxOffsetMetadataBytes+1)))
	wantCode(t, "huge offset metadata", h.send(big), kerr.OffsetMetadataTooLarge)
	huge := joinReq("g", "", nil)
	huge.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: make([]byte, DefaultMaxMetadataBytes+1)}}
	wantCode(t, "huge member metadata", h.send(huge), kerr.InvalidRequest)
	many := joinReq("g", "", nil)
	for i := range maxProtocols + 1 {
		many.Protocols = append(many.Protocols, kmsg.JoinGroupRequestProtocol{Name: itoa(i)})
	}
	wantCode(t, "too many protocols", h.send(many), kerr.InvalidRequest)
	short := joinReq("g", "", nil)
	short.SessionTimeoutMillis = 10
	wantCode(t, "session timeout below the minimum", h.send(short), kerr.InvalidSessionTimeout)
	other := joinReq("g", "", nil)
	other.ProtocolType = "connect"
	wantCode(t, "other protocol type", h.send(other), kerr.InconsistentGroupProtocol)
	wantCode(t, "empty group id", h.send(joinReq("", "", nil)), kerr.InvalidGroupID)
	if got := h.state("g"); got != Stable {
		t.Fatalf("bad input moved the group to %v", got)
	}
	check()
}

func TestGroupMaxSize(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxGroupSize = 2 })
	h.stableGroup("g", 2)
	wantCode(t, "third member", h.send(joinReq("g", "", nil)), kerr.GroupMaxSizeReached)
}

func TestAbandonedGroupsAreBounded(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxGroups = 500 })
	// Thousands of groups: each gets a JoinGroup and is never heard of
	// again.
	for i := range 3000 {
		j := h.send(joinReq("abandoned-"+itoa(i), "", nil))
		wantCode(t, "abandoned join", j, kerr.MemberIDRequired)
		if i%100 == 99 {
			h.advance(11 * time.Second) // their pending member ids expire
		}
		if n := h.c.NumGroups(); n > 500 {
			t.Fatalf("%d groups held, limit 500", n)
		}
	}
	// A real group still works.
	h.stableGroup("real", 1)
	wantCode(t, "commit", h.send(commitReq("real", "", -1, "t", 0, 1)), kerr.UnknownMemberID)
	wantCode(t, "tool commit", h.send(commitReq("tools", "", -1, "t", 0, 1)), nil)
	// And everything is dropped at the retention check.
	h.advance(DefaultRetentionCheckInterval + time.Second)
	if n := h.c.NumGroups(); n != 1 {
		t.Fatalf("%d groups left after the retention check, want only the one with offsets", n)
	}
}

func itoa(i int) string { return string(rune('a'+i%26)) + "-" + time.Duration(i).String() }

func TestRequireCreate(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RequireCreate = true })
	wantCode(t, "join of an uncreated group", h.send(joinReq("g", "", nil)), kerr.GroupAuthorizationFailed)
	wantCode(t, "commit to an uncreated group", h.send(commitReq("g", "", -1, "t", 0, 1)), kerr.GroupAuthorizationFailed)
	wantCode(t, "sync to an uncreated group", h.send(syncReq("g", "m", 1, nil)), kerr.GroupAuthorizationFailed)
	var err error = kerr.UnknownServerError
	h.c.CreateGroup(h.now, "g", func(e error) { err = e })
	h.flush()
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	h.stableGroup("g", 1)
	wantCode(t, "simple commit after create is fenced by members", h.send(commitReq("g", "", -1, "t", 0, 1)), kerr.UnknownMemberID)
}

func TestOffsetRetention(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.OffsetsRetention = time.Hour; c.RetentionCheckInterval = time.Minute })
	ids, gen := h.stableGroup("g", 1)
	wantCode(t, "commit", h.send(commitReq("g", ids[0], gen, "t", 0, 7)), nil)
	// Offsets of a group with members are kept however old.
	for range 1200 {
		h.advance(3 * time.Second)
		wantCode(t, "heartbeat", h.send(heartbeatReq("g", ids[0], gen)), nil)
	}
	if got := h.committed("g", "t", 0); got != 7 {
		t.Fatalf("offset of an active group expired: %d", got)
	}
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version = 1
	lr.Group, lr.MemberID = "g", ids[0]
	wantCode(t, "leave", h.send(lr), nil)
	h.advance(59 * time.Minute)
	if got := h.committed("g", "t", 0); got != 7 {
		t.Fatalf("offset expired before the retention: %d", got)
	}
	h.advance(3 * time.Minute)
	if got := h.committed("g", "t", 0); got != -1 {
		t.Fatalf("offset of a group empty for longer than the retention is %d, want -1", got)
	}
	if got := h.state("g"); got != Dead {
		t.Fatalf("expired empty group still held (%v)", got)
	}
}

func TestDescribeListDelete(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2)
	h.send(commitReq("g", ids[0], gen, "t", 0, 3))
	dr := kmsg.NewPtrDescribeGroupsRequest()
	dr.Version = 5
	dr.Groups = []string{"g", "unknown"}
	d := h.send(dr).resp.(*kmsg.DescribeGroupsResponse)
	if d.Groups[0].State != "Stable" || len(d.Groups[0].Members) != 2 || d.Groups[0].Protocol != "range" ||
		d.Groups[0].Members[0].ClientID != "client" || len(d.Groups[0].Members[0].MemberAssignment) == 0 {
		t.Fatalf("describe %+v", d.Groups[0])
	}
	if d.Groups[1].State != "Dead" || d.Groups[1].ErrorCode != 0 {
		t.Fatalf("describe of an unknown group %+v", d.Groups[1])
	}
	lr := kmsg.NewPtrListGroupsRequest()
	lr.Version = 4
	lr.StatesFilter = []string{"Stable"}
	l := h.send(lr).resp.(*kmsg.ListGroupsResponse)
	if len(l.Groups) != 1 || l.Groups[0].Group != "g" || l.Groups[0].ProtocolType != "consumer" {
		t.Fatalf("list %+v", l.Groups)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Version = 2
	del.Groups = []string{"g", "unknown"}
	dresp := h.send(del).resp.(*kmsg.DeleteGroupsResponse)
	if dresp.Groups[0].ErrorCode != kerr.NonEmptyGroup.Code || dresp.Groups[1].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("delete %+v", dresp.Groups)
	}

	// OffsetDelete: subscribed topics are refused while the group has
	// members. The metadata here is not consumer protocol, so every topic
	// counts as subscribed.
	od := kmsg.NewPtrOffsetDeleteRequest()
	od.Group = "g"
	od.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
	odr := h.send(od).resp.(*kmsg.OffsetDeleteResponse)
	if odr.ErrorCode != 0 || odr.Topics[0].Partitions[0].ErrorCode != kerr.GroupSubscribedToTopic.Code {
		t.Fatalf("offset delete on an active group %+v", odr)
	}
	for _, id := range ids {
		lv := kmsg.NewPtrLeaveGroupRequest()
		lv.Group, lv.MemberID = "g", id
		h.send(lv)
	}
	h.advance(time.Minute)
	odr = h.send(od).resp.(*kmsg.OffsetDeleteResponse)
	if odr.ErrorCode != 0 || odr.Topics[0].Partitions[0].ErrorCode != 0 || h.committed("g", "t", 0) != -1 {
		t.Fatalf("offset delete on an empty group %+v", odr)
	}
	dresp = h.send(del).resp.(*kmsg.DeleteGroupsResponse)
	if dresp.Groups[0].ErrorCode != 0 || h.state("g") != Dead {
		t.Fatalf("delete of an empty group %+v", dresp.Groups)
	}
}

// TestDeterministic runs the same scenario twice and expects the same
// records: the coordinator has no hidden clock or randomness.
func TestDeterministic(t *testing.T) {
	run := func() []Record {
		h := newHarness(t, nil)
		ids, gen := h.stableGroup("g", 3)
		h.send(commitReq("g", ids[2], gen, "t", 1, 5))
		h.advance(20 * time.Second)
		h.stableGroup("g2", 2)
		return h.records
	}
	a, b := run(), run()
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("runs wrote %d and %d records", len(a), len(b))
	}
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			t.Fatalf("record %d differs: %+v vs %+v", i, a[i], b[i])
		}
	}
}

func TestGroupLimitWithLiveGroups(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxGroups = 3 })
	for i := range 3 {
		h.stableGroup("live-"+itoa(i), 1)
	}
	wantCode(t, "a fourth group while three have members", h.send(joinReq("fourth", "", nil)), kerr.CoordinatorNotAvailable)
	// The members go away; their groups, holding nothing, make room.
	h.advance(time.Minute)
	wantCode(t, "a fourth group after the others emptied", h.send(joinReq("fourth", "", nil)), kerr.MemberIDRequired)
}

// TestOffsetRetentionAcrossRestart: the time a group has been empty is
// persisted, so restarts do not keep its offsets alive forever.
func TestOffsetRetentionAcrossRestart(t *testing.T) {
	cfg := func(c *Config) { c.OffsetsRetention = time.Hour; c.RetentionCheckInterval = time.Minute }
	h := newHarness(t, cfg)
	ids, gen := h.stableGroup("g", 1)
	wantCode(t, "commit", h.send(commitReq("g", ids[0], gen, "t", 0, 7)), nil)
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version = 1
	lr.Group, lr.MemberID = "g", ids[0]
	wantCode(t, "leave", h.send(lr), nil)
	h.advance(50 * time.Minute)

	restarted := newHarness(t, cfg)
	restarted.now = h.now
	restarted.c.Restore(h.now, h.records)
	if got := restarted.committed("g", "t", 0); got != 7 {
		t.Fatalf("offset after restore %d, want 7", got)
	}
	restarted.advance(12 * time.Minute)
	if got := restarted.committed("g", "t", 0); got != -1 {
		t.Fatalf("offset of a group empty for over an hour (across a restart) is %d, want -1", got)
	}
}

// TestUnsubscribedOffsetsExpire: a stable consumer group keeps the offsets
// of topics it consumes however old, and loses, after the retention, those
// of a topic no member subscribes to any more.
func TestUnsubscribedOffsetsExpire(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.OffsetsRetention = time.Hour; c.RetentionCheckInterval = time.Minute })
	j := joinReq("g", "", nil)
	j.Version = 3
	j.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: (&kmsg.ConsumerMemberMetadata{Topics: []string{"t"}}).AppendTo(nil)}}
	jc := h.send(j)
	h.advance(time.Second)
	r := joinResp(t, jc)
	id, gen := r.MemberID, r.Generation
	s := syncReq("g", id, gen, map[string]string{id: "a"})
	wantCode(t, "sync", h.send(s), nil)
	wantCode(t, "commit t", h.send(commitReq("g", id, gen, "t", 0, 5)), nil)
	wantCode(t, "commit u", h.send(commitReq("g", id, gen, "u", 0, 6)), nil)
	for range 1300 { // 65 minutes of heartbeats
		h.advance(3 * time.Second)
		wantCode(t, "heartbeat", h.send(heartbeatReq("g", id, gen)), nil)
	}
	if got := h.committed("g", "t", 0); got != 5 {
		t.Errorf("subscribed topic's offset %d, want 5", got)
	}
	if got := h.committed("g", "u", 0); got != -1 {
		t.Errorf("unsubscribed topic's offset %d after the retention, want -1", got)
	}
}

// TestTimersStayBounded: heartbeats move deadlines all the time; the timer
// heap does not keep every superseded one.
func TestTimersStayBounded(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 3)
	for range 5000 {
		h.now = h.now.Add(10 * time.Millisecond)
		for _, id := range ids {
			h.c.Handle(h.now, Client{}, heartbeatReq("g", id, gen), func(kmsg.Response) {})
		}
		h.c.Tick(h.now)
		h.flush()
	}
	if n := len(h.c.timers); n > 1024 {
		t.Fatalf("%d timers held for one group", n)
	}
	wantCode(t, "heartbeat", h.send(heartbeatReq("g", ids[0], gen)), nil)
}

// TestGroupIDBound: every group API refuses a group id over
// MaxGroupIDBytes with INVALID_GROUP_ID and stores nothing for it, so that
// no record can name a group the store cannot hold; an id at the bound
// works.
func TestGroupIDBound(t *testing.T) {
	h := newHarness(t, nil)
	for _, long := range []string{strings.Repeat("x", MaxGroupIDBytes+1), strings.Repeat("x", 40_000)} {
		before := len(h.records)
		invalid := kerr.InvalidGroupID
		wantCode(t, "join", h.send(joinReq(long, "", nil)), invalid)
		wantCode(t, "sync", h.send(syncReq(long, "m", 1, nil)), invalid)
		wantCode(t, "heartbeat", h.send(heartbeatReq(long, "m", 1)), invalid)
		lv := kmsg.NewPtrLeaveGroupRequest()
		lv.Version = 3
		lv.Group = long
		lv.Members = []kmsg.LeaveGroupRequestMember{{MemberID: "m"}}
		if r := h.send(lv).resp.(*kmsg.LeaveGroupResponse); r.ErrorCode != invalid.Code {
			t.Errorf("leave: %v", kerr.ErrorForCode(r.ErrorCode))
		}
		wantCode(t, "memberless commit", h.send(commitReq(long, "", -1, "t", 0, 1)), invalid)
		for _, v := range []int16{1, 7} {
			f := kmsg.NewPtrOffsetFetchRequest()
			f.Version, f.Group = v, long
			f.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0}}}
			r := h.send(f).resp.(*kmsg.OffsetFetchResponse)
			if r.ErrorCode != invalid.Code && (v >= 2 || r.Topics[0].Partitions[0].ErrorCode != invalid.Code) {
				t.Errorf("offset fetch v%d: %+v", v, r)
			}
		}
		f := kmsg.NewPtrOffsetFetchRequest()
		f.Version = 8
		f.Groups = []kmsg.OffsetFetchRequestGroup{{Group: long}, {Group: "ok"}}
		if r := h.send(f).resp.(*kmsg.OffsetFetchResponse); r.Groups[0].ErrorCode != invalid.Code || r.Groups[1].ErrorCode != 0 {
			t.Errorf("offset fetch v8: %+v", r.Groups)
		}
		d := kmsg.NewPtrDescribeGroupsRequest()
		d.Groups = []string{long}
		if r := h.send(d).resp.(*kmsg.DescribeGroupsResponse); r.Groups[0].ErrorCode != invalid.Code {
			t.Errorf("describe: %v", kerr.ErrorForCode(r.Groups[0].ErrorCode))
		}
		del := kmsg.NewPtrDeleteGroupsRequest()
		del.Groups = []string{long}
		if r := h.send(del).resp.(*kmsg.DeleteGroupsResponse); r.Groups[0].ErrorCode != invalid.Code {
			t.Errorf("delete groups: %v", kerr.ErrorForCode(r.Groups[0].ErrorCode))
		}
		od := kmsg.NewPtrOffsetDeleteRequest()
		od.Group = long
		od.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
		if r := h.send(od).resp.(*kmsg.OffsetDeleteResponse); r.ErrorCode != invalid.Code {
			t.Errorf("offset delete: %v", kerr.ErrorForCode(r.ErrorCode))
		}
		var createErr error
		h.c.CreateGroup(h.now, long, func(err error) { createErr = err })
		h.flush()
		if createErr != invalid {
			t.Errorf("create: %v", createErr)
		}
		if h.c.NumGroups() != 0 || len(h.records) != before {
			t.Fatalf("a refused group id left %d groups and %d records", h.c.NumGroups(), len(h.records)-before)
		}
	}
	atBound := strings.Repeat("y", MaxGroupIDBytes)
	wantCode(t, "commit by a group id at the bound", h.send(commitReq(atBound, "", -1, "t", 0, 7)), nil)
	if got := h.committed(atBound, "t", 0); got != 7 {
		t.Fatalf("offset of a group id at the bound: %d", got)
	}
}

// TestStoredStringsAreBounded: the other strings a record holds are
// bounded too, even without a PartitionExists check, and the offset
// metadata bound cannot be configured past what a record holds.
func TestStoredStringsAreBounded(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PartitionExists = nil })
	wantCode(t, "commit to a topic name over 249 bytes",
		h.send(commitReq("g", "", -1, strings.Repeat("t", MaxTopicNameBytes+1), 0, 1)), kerr.UnknownTopicOrPartition)
	jr := joinReq("g", "", nil)
	jr.ProtocolType = strings.Repeat("p", 40_000)
	wantCode(t, "join with a 40,000-byte protocol type", h.send(jr), kerr.InvalidRequest)
	if _, err := NewRawCoordinator(Config{MaxOffsetMetadataBytes: MaxOffsetMetadataLimit + 1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("MaxOffsetMetadataBytes past the limit: %v", err)
	}
}

// TestStaticMemberKeptThroughJoinPhase: Kafka's onCompleteJoin removes only
// dynamic members that did not rejoin. Static members a and b are Stable,
// b (the leader) restarts, and a triggers a rebalance meanwhile: when the
// join phase ends b is still a member (a leads and assigns it partitions),
// and it either comes back to its assignment without another rebalance, or
// is removed once its session times out, not before.
func TestStaticMemberKeptThroughJoinPhase(t *testing.T) {
	const session, rebalance = 120 * time.Second, 30 * time.Second
	join := func(h *harness, member, instance string, protos ...string) *call {
		r := joinReq("g", member, strPtr(instance))
		r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = int32(session/time.Millisecond), int32(rebalance/time.Millisecond)
		if len(protos) > 0 {
			r.Protocols = protocols(protos...)
		}
		return h.send(r)
	}
	sync := func(h *harness, member, instance string, gen int32, assign map[string]string) *call {
		r := syncReq("g", member, gen, assign)
		r.InstanceID = strPtr(instance)
		return h.send(r)
	}
	// setup returns a harness at the end of the join phase a triggered
	// while b was away, with a's join answered, and the ids of a and b.
	setup := func(t *testing.T) (h *harness, a, b string, gen int32, bLastHeartbeat time.Time) {
		h = newHarness(t, nil)
		jb, ja := join(h, "", "b"), join(h, "", "a")
		h.advance(time.Second)
		rb, ra := joinResp(t, jb), joinResp(t, ja)
		a, b, gen = ra.MemberID, rb.MemberID, rb.Generation
		if rb.LeaderID != b {
			t.Fatalf("leader %s, want b (%s), the first to join", rb.LeaderID, b)
		}
		sa := sync(h, a, "a", gen, nil)
		wantCode(t, "b's sync", sync(h, b, "b", gen, map[string]string{a: "A", b: "B"}), nil)
		wantCode(t, "a's sync", sa, nil)
		bLastHeartbeat = h.now

		// b restarts and is silent; a changes its subscription.
		ja = join(h, a, "a", "range", "roundrobin")
		if h.state("g") != PreparingRebalance {
			t.Fatalf("state %v after a's new subscription", h.state("g"))
		}
		h.advance(rebalance + time.Second)
		ra = joinResp(t, ja)
		if ra.ErrorCode != 0 || ra.Generation != gen+1 {
			t.Fatalf("a's join at the end of the join phase: %v, generation %d", kerr.ErrorForCode(ra.ErrorCode), ra.Generation)
		}
		if ra.LeaderID != a || len(ra.Members) != 2 {
			t.Fatalf("leader %s with %d members; want a (%s), who rejoined, assigning both", ra.LeaderID, len(ra.Members), a)
		}
		if _, ok := h.c.groups["g"].members[b]; !ok {
			t.Fatalf("static member b was removed at the end of the join phase")
		}
		wantCode(t, "a's sync as the new leader", sync(h, a, "a", ra.Generation, map[string]string{a: "A2", b: "B2"}), nil)
		if h.state("g") != Stable {
			t.Fatalf("state %v after the leader's sync", h.state("g"))
		}
		return h, a, b, ra.Generation, bLastHeartbeat
	}

	t.Run("comes back", func(t *testing.T) {
		h, _, _, gen, _ := setup(t)
		jb := join(h, "", "b")
		rb := joinResp(t, jb)
		if rb.ErrorCode != 0 || rb.Generation != gen || h.state("g") != Stable {
			t.Fatalf("b's rejoin: %v, generation %d, state %v; want its place back without a rebalance",
				kerr.ErrorForCode(rb.ErrorCode), rb.Generation, h.state("g"))
		}
		sc := sync(h, rb.MemberID, "b", gen, nil)
		wantCode(t, "b's sync", sc, nil)
		if got := string(sc.resp.(*kmsg.SyncGroupResponse).MemberAssignment); got != "B2" {
			t.Fatalf("b's assignment %q, want the one a gave it, B2", got)
		}
	})

	t.Run("never comes back", func(t *testing.T) {
		h, a, b, gen, bLast := setup(t)
		heartbeatA := func() {
			hb := heartbeatReq("g", a, gen)
			hb.InstanceID = strPtr("a")
			h.send(hb)
		}
		h.advance(bLast.Add(session - time.Second).Sub(h.now))
		heartbeatA()
		if _, ok := h.c.groups["g"].members[b]; !ok || h.state("g") != Stable {
			t.Fatalf("b removed (or the group rebalanced: %v) before its session timed out", h.state("g"))
		}
		h.advance(2 * time.Second)
		if _, ok := h.c.groups["g"].members[b]; ok {
			t.Fatalf("b is still a member after its session timed out")
		}
		if h.state("g") != PreparingRebalance {
			t.Fatalf("state %v after b's session timed out, want a rebalance", h.state("g"))
		}
	})
}

// TestDescribeGroupsOnceEach: a group named many times in one
// DescribeGroups is described once.
func TestDescribeGroupsOnceEach(t *testing.T) {
	h := newHarness(t, nil)
	h.stableGroup("g", 2)
	d := kmsg.NewPtrDescribeGroupsRequest()
	d.Version = 5
	d.Groups = []string{"g", "other", "g", "g", "other"}
	r := h.send(d).resp.(*kmsg.DescribeGroupsResponse)
	if len(r.Groups) != 2 || r.Groups[0].Group != "g" || len(r.Groups[0].Members) != 2 || r.Groups[1].Group != "other" {
		t.Fatalf("describe of g, other, g, g, other: %d groups %+v", len(r.Groups), r.Groups)
	}
}

// TestJoinPhaseWithOnlyAbsentStaticMembers: a rebalance that no member
// rejoins (a new member came and left again while static a and b were
// away) does not start a generation with nobody to assign: the join phase
// waits another rebalance timeout, and the members' session timeouts
// end it.
func TestJoinPhaseWithOnlyAbsentStaticMembers(t *testing.T) {
	const session, rebalance = 60 * time.Second, 20 * time.Second
	h := newHarness(t, nil)
	join := func(instance string) *call {
		r := joinReq("g", "", strPtr(instance))
		r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = int32(session/time.Millisecond), int32(rebalance/time.Millisecond)
		return h.send(r)
	}
	ja, jb := join("a"), join("b")
	h.advance(time.Second)
	ra, rb := joinResp(t, ja), joinResp(t, jb)
	gen := ra.Generation
	sa := syncReq("g", ra.MemberID, gen, map[string]string{ra.MemberID: "A", rb.MemberID: "B"})
	sa.InstanceID = strPtr("a")
	sb := syncReq("g", rb.MemberID, gen, nil)
	sb.InstanceID = strPtr("b")
	cb := h.send(sb) // answered with the leader's
	wantCode(t, "a's sync", h.send(sa), nil)
	wantCode(t, "b's sync", cb, nil)
	sessionsEnd := h.now.Add(session)

	// Both instances go away; a dynamic member comes and goes.
	id, jc := h.joinNew("g")
	lv := kmsg.NewPtrLeaveGroupRequest()
	lv.Group, lv.MemberID = "g", id
	wantCode(t, "c's leave", h.send(lv), nil)
	wantCode(t, "c's join", jc, kerr.UnknownMemberID)
	h.advance(30*time.Second + time.Second) // c's rebalance timeout set the join phase's end
	if g := h.c.groups["g"]; g.state != PreparingRebalance || g.generation != gen || len(g.members) != 2 {
		t.Fatalf("after a join phase nobody rejoined: %v, generation %d (was %d), %d members; want the join phase to go on",
			g.state, g.generation, gen, len(g.members))
	}
	h.advance(sessionsEnd.Sub(h.now) + time.Second)
	if g := h.c.groups["g"]; g.state != Empty || len(g.members) != 0 {
		t.Fatalf("after the sessions timed out: %v with %d members, want Empty", g.state, len(g.members))
	}
}
