package group

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// restart returns a coordinator restored, at h's time, from the records h
// persisted, as Open does after a broker restart.
func (h *harness) restart(mod func(*Config)) *harness {
	h.t.Helper()
	r := newHarness(h.t, mod)
	r.now = h.now
	r.c.Restore(r.now, h.records)
	r.records = append(r.records, h.records...)
	r.c.Tick(r.now)
	return r
}

func lastMetadata(t *testing.T, recs []Record, group string) Record {
	t.Helper()
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Kind == RecordGroupMetadata && recs[i].Group == group {
			return recs[i]
		}
	}
	t.Fatalf("no metadata record of group %q", group)
	return Record{}
}

func syncAssignment(t *testing.T, c *call) string {
	t.Helper()
	wantCode(t, "sync", c, nil)
	return string(c.resp.(*kmsg.SyncGroupResponse).MemberAssignment)
}

// TestStableGroupSurvivesRestart: the metadata written when the group
// became Stable brings it back Stable after a restart, with the same
// members, generation, leader, protocol and assignments; members keep
// heartbeating and committing in their generation.
func TestStableGroupSurvivesRestart(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2)
	meta := lastMetadata(t, h.records, "g")
	if meta.Generation != gen || meta.Leader != ids[0] || meta.Protocol != "range" || len(meta.Members) != 2 {
		t.Fatalf("metadata record %+v", meta)
	}
	for _, m := range meta.Members {
		if string(m.Assignment) != "assignment-of-"+m.ID || m.SessionTimeout != 10_000 || m.RebalanceTimeout != 30_000 {
			t.Fatalf("member record %+v", m)
		}
	}
	wantCode(t, "commit", h.send(commitReq("g", ids[1], gen, "t", 0, 42)), nil)

	r := h.restart(nil)
	if got := r.state("g"); got != Stable {
		t.Fatalf("restored group is %v, want Stable", got)
	}
	for _, id := range ids {
		wantCode(t, "heartbeat after restart", r.send(heartbeatReq("g", id, gen)), nil)
	}
	if got := syncAssignment(t, r.send(syncReq("g", ids[1], gen, nil))); got != "assignment-of-"+ids[1] {
		t.Fatalf("assignment after restart %q", got)
	}
	wantCode(t, "commit after restart", r.send(commitReq("g", ids[1], gen, "t", 0, 43)), nil)
	if got := r.committed("g", "t", 0); got != 43 {
		t.Fatalf("committed %d, want 43", got)
	}
	// A non-leader's JoinGroup with unchanged protocols is answered with
	// the current generation, no rebalance.
	j := joinResp(t, r.send(joinReq("g", ids[1], nil)))
	if j.ErrorCode != 0 || j.Generation != gen || j.LeaderID != ids[0] {
		t.Fatalf("rejoin after restart: %+v", j)
	}
	if got := r.state("g"); got != Stable {
		t.Fatalf("group is %v, want Stable", got)
	}

	// A new member gets a new id, not a restored one, even with the same
	// id prefix and counter.
	id, _ := r.joinNew("g")
	if id == ids[0] || id == ids[1] {
		t.Fatalf("new member got a restored member's id %q", id)
	}
}

// TestRestoredMembersExpire: every restored member's session deadline
// starts at the restart; one that does not come back is removed and the
// group rebalances.
func TestRestoredMembersExpire(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2)
	h.advance(9 * time.Second) // no heartbeats: without the restart both would expire in 1 s
	r := h.restart(nil)
	r.advance(5 * time.Second)
	wantCode(t, "heartbeat", r.send(heartbeatReq("g", ids[0], gen)), nil)
	if got := r.state("g"); got != Stable {
		t.Fatalf("group is %v 5 s after the restart, want Stable", got)
	}
	r.advance(6 * time.Second) // ids[1] has been silent for its 10 s session
	if got := r.state("g"); got != PreparingRebalance {
		t.Fatalf("group is %v after a restored member expired, want PreparingRebalance", got)
	}
	wantCode(t, "survivor's heartbeat", r.send(heartbeatReq("g", ids[0], gen)), kerr.RebalanceInProgress)
	wantCode(t, "expired member's heartbeat", r.send(heartbeatReq("g", ids[1], gen)), kerr.UnknownMemberID)
	j := r.send(joinReq("g", ids[0], nil))
	r.advance(time.Second)
	if jr := joinResp(t, j); jr.ErrorCode != 0 || jr.Generation != gen+1 {
		t.Fatalf("rejoin: %+v", jr)
	}
}

// TestStaticMemberMappingSurvivesRestart: a static member's instance id
// maps to its member id after a restart, also when the instance took
// over its place under a new member id without a rebalance.
func TestStaticMemberMappingSurvivesRestart(t *testing.T) {
	h := newHarness(t, nil)
	inst := strPtr("instance-1")
	old, gen, s := staticStable(t, h, "g", inst)

	r := h.restart(nil)
	hb := heartbeatReq("g", old, gen)
	hb.InstanceID = inst
	wantCode(t, "static heartbeat after restart", r.send(hb), nil)

	// The instance restarts too: it takes its place under a new id.
	jr := joinResp(t, r.send(joinReq("g", "", inst)))
	if jr.ErrorCode != 0 || jr.MemberID == old || jr.Generation != gen {
		t.Fatalf("static rejoin: %+v", jr)
	}
	if got := lastMetadata(t, r.records, "g"); got.Members[0].ID != jr.MemberID {
		t.Fatalf("metadata after a static takeover names %q, want %q", got.Members[0].ID, jr.MemberID)
	}

	r2 := r.restart(nil)
	if got := r2.state("g"); got != Stable {
		t.Fatalf("group is %v, want Stable", got)
	}
	hb = heartbeatReq("g", jr.MemberID, gen)
	hb.InstanceID = inst
	wantCode(t, "new incarnation heartbeat after restart", r2.send(hb), nil)
	hb = heartbeatReq("g", old, gen)
	hb.InstanceID = inst
	wantCode(t, "old incarnation heartbeat after restart", r2.send(hb), kerr.FencedInstanceID)
	s = syncReq("g", jr.MemberID, gen, nil)
	s.InstanceID = inst
	if got := syncAssignment(t, r2.send(s)); got != "a" {
		t.Fatalf("assignment %q, want a", got)
	}
}

// TestEmptyGroupStaysEmptyAfterRestart: a group whose members all left
// writes an Empty metadata record and comes back Empty.
func TestEmptyGroupStaysEmptyAfterRestart(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 1)
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version = 1
	lr.Group, lr.MemberID = "g", ids[0]
	wantCode(t, "leave", h.send(lr), nil)
	h.advance(time.Second)
	if got := h.state("g"); got != Empty {
		t.Fatalf("group is %v, want Empty", got)
	}
	if meta := lastMetadata(t, h.records, "g"); len(meta.Members) != 0 || meta.Generation != gen+1 {
		t.Fatalf("metadata when Empty: %+v", meta)
	}
	r := h.restart(nil)
	if got := r.state("g"); got != Empty {
		t.Fatalf("restored group is %v, want Empty", got)
	}
	wantCode(t, "heartbeat of a member that left", r.send(heartbeatReq("g", ids[0], gen)), kerr.UnknownMemberID)
	if got := r.c.groups["g"].generation; got != gen+1 {
		t.Fatalf("generation %d, want %d", got, gen+1)
	}
}

// TestRestartDuringRebalanceRestoresLastStable: a rebalance in progress is
// not persisted. The last Stable generation comes back; the next
// generation is numbered above the one the interrupted rebalance had
// handed out, and a SyncGroup of that one gets ILLEGAL_GENERATION.
func TestRestartDuringRebalanceRestoresLastStable(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2)
	j0 := h.send(joinReq("g", ids[0], nil)) // the leader rejoins: a rebalance
	j1 := h.send(joinReq("g", ids[1], nil))
	if jr := joinResp(t, j0); jr.ErrorCode != 0 || jr.Generation != gen+1 {
		t.Fatalf("rejoin: %+v", jr)
	}
	joinResp(t, j1)
	if got := h.state("g"); got != CompletingRebalance {
		t.Fatalf("group is %v, want CompletingRebalance", got)
	}

	// The snapshot (compaction) keeps the same state as the log.
	snap := newHarness(t, nil)
	snap.now = h.now
	snap.c.Restore(h.now, h.c.Snapshot())

	for _, r := range []*harness{h.restart(nil), snap} {
		if got := r.state("g"); got != Stable || r.c.groups["g"].generation != gen {
			t.Fatalf("restored %v generation %d, want Stable %d", got, r.c.groups["g"].generation, gen)
		}
		wantCode(t, "heartbeat of the last stable generation", r.send(heartbeatReq("g", ids[1], gen)), nil)
		wantCode(t, "sync of the interrupted generation", r.send(syncReq("g", ids[1], gen+1, nil)), kerr.IllegalGeneration)
		a := r.send(joinReq("g", ids[0], nil))
		b := r.send(joinReq("g", ids[1], nil))
		if ja, jb := joinResp(t, a), joinResp(t, b); ja.Generation != gen+2 || jb.Generation != gen+2 {
			t.Fatalf("generation after the restart's rebalance %d/%d, want %d", ja.Generation, jb.Generation, gen+2)
		}
	}
}

// TestSnapshotKeepsMetadata: a rewrite of the store keeps each group's
// last metadata record.
func TestSnapshotKeepsMetadata(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2)
	h.stableGroup("e", 1)
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version = 3
	lr.Group = "e"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: h.c.groups["e"].leader}}
	wantCode(t, "leave", h.send(lr), nil)
	h.advance(time.Second)

	r := newHarness(t, nil)
	r.now = h.now
	r.c.Restore(h.now, h.c.Snapshot())
	if got := r.state("g"); got != Stable {
		t.Fatalf("g from a snapshot is %v, want Stable", got)
	}
	if got := r.state("e"); got != Empty {
		t.Fatalf("e from a snapshot is %v, want Empty", got)
	}
	if got := syncAssignment(t, r.send(syncReq("g", ids[0], gen, nil))); got != "assignment-of-"+ids[0] {
		t.Fatalf("assignment from a snapshot %q", got)
	}
}

// TestFailedMetadataWrite: if the metadata of a new Stable generation
// cannot be written, every SyncGroup answer that depended on it is
// COORDINATOR_NOT_AVAILABLE and the group rebalances; a restart brings
// back the last generation that was written.
func TestFailedMetadataWrite(t *testing.T) {
	h := newHarness(t, nil)
	ids, gen := h.stableGroup("g", 2)
	a := h.send(joinReq("g", ids[0], nil))
	b := h.send(joinReq("g", ids[1], nil))
	next := joinResp(t, a).Generation
	joinResp(t, b)
	follower := h.send(syncReq("g", ids[1], next, nil))
	leader := h.sendUnpersisted(syncReq("g", ids[0], next, map[string]string{ids[0]: "x", ids[1]: "y"}))
	wantCode(t, "leader's sync", leader, kerr.CoordinatorNotAvailable)
	wantCode(t, "follower's sync", follower, kerr.CoordinatorNotAvailable)
	if got := string(follower.resp.(*kmsg.SyncGroupResponse).MemberAssignment); got != "" {
		t.Fatalf("refused sync carries assignment %q", got)
	}
	if got := h.state("g"); got != PreparingRebalance {
		t.Fatalf("group is %v after a refused Stable, want PreparingRebalance", got)
	}
	if meta := lastMetadata(t, h.records, "g"); meta.Generation != gen {
		t.Fatalf("metadata generation %d, want the last written %d", meta.Generation, gen)
	}
	if got := h.c.groups["g"].meta.Generation; got != gen {
		t.Fatalf("snapshot's metadata generation %d, want %d", got, gen)
	}

	// The members rejoin, and this time the write succeeds.
	a = h.send(joinReq("g", ids[0], nil))
	b = h.send(joinReq("g", ids[1], nil))
	next = joinResp(t, a).Generation
	joinResp(t, b)
	follower = h.send(syncReq("g", ids[1], next, nil))
	wantCode(t, "leader", h.send(syncReq("g", ids[0], next, map[string]string{ids[0]: "x", ids[1]: "y"})), nil)
	wantCode(t, "follower", follower, nil)
	r := h.restart(nil)
	if got := r.c.groups["g"].generation; r.state("g") != Stable || got != next {
		t.Fatalf("restored %v generation %d, want Stable %d", r.state("g"), got, next)
	}

	// A static takeover whose metadata cannot be written is refused too.
	hs := newHarness(t, nil)
	inst := strPtr("i")
	j := hs.send(joinReq("s", "", inst))
	hs.advance(time.Second)
	jr := joinResp(t, j)
	s := syncReq("s", jr.MemberID, jr.Generation, map[string]string{jr.MemberID: "a"})
	s.InstanceID = inst
	wantCode(t, "static sync", hs.send(s), nil)
	take := hs.sendUnpersisted(joinReq("s", "", inst))
	wantCode(t, "static takeover", take, kerr.CoordinatorNotAvailable)
	if got := hs.state("s"); got != PreparingRebalance {
		t.Fatalf("group is %v after a refused static takeover, want PreparingRebalance", got)
	}
}

// TestStaticTakeoverDuringRebalanceSurvivesRestart: a static member that
// takes over its place under a new id while the group rebalances is not
// fenced after a restart that restores the last Stable generation.
func TestStaticTakeoverDuringRebalanceSurvivesRestart(t *testing.T) {
	h := newHarness(t, nil)
	inst := strPtr("instance-1")
	old, gen, _ := staticStable(t, h, "g", inst)
	h.joinNew("g") // a new member: the group rebalances
	if got := h.state("g"); got != PreparingRebalance {
		t.Fatalf("group is %v, want PreparingRebalance", got)
	}
	h.send(joinReq("g", "", inst)) // the instance restarts meanwhile
	newID := h.c.groups["g"].static[*inst]
	if newID == old {
		t.Fatal("the static member kept its id")
	}

	r := h.restart(nil)
	if got := r.state("g"); got != Stable {
		t.Fatalf("group is %v, want Stable", got)
	}
	hb := heartbeatReq("g", newID, gen)
	hb.InstanceID = inst
	wantCode(t, "heartbeat of the new incarnation", r.send(hb), nil)
}

// TestMetadataTooLargeIsWrittenWithoutMembers: a group whose members do not
// fit in one record (1 MiB) is still served; its record has no members,
// so after a restart it comes back Empty and its members rejoin.
func TestMetadataTooLargeIsWrittenWithoutMembers(t *testing.T) {
	h := newHarness(t, nil)
	a, ja := h.joinNew("g")
	b, jb := h.joinNew("g")
	h.advance(time.Second)
	gen := joinResp(t, ja).Generation
	leader := joinResp(t, ja).LeaderID
	joinResp(t, jb)
	big := string(make([]byte, 700<<10))
	follower := a
	if leader == a {
		follower = b
	}
	fs := h.send(syncReq("g", follower, gen, nil))
	wantCode(t, "leader's sync", h.send(syncReq("g", leader, gen, map[string]string{a: big, b: big})), nil)
	if got := syncAssignment(t, fs); len(got) != len(big) {
		t.Fatalf("follower's assignment is %d bytes, want %d", len(got), len(big))
	}
	if meta := lastMetadata(t, h.records, "g"); meta.Generation != gen || len(meta.Members) != 0 {
		t.Fatalf("metadata of a too large group: generation %d, %d members; want %d, none", meta.Generation, len(meta.Members), gen)
	}
	r := h.restart(nil)
	if got := r.state("g"); got != Empty {
		t.Fatalf("restored group is %v, want Empty", got)
	}
}

// staticStable makes group a Stable group of one static member, instance
// inst, and returns its member id, generation and its SyncGroup request.
func staticStable(t *testing.T, h *harness, group string, inst *string) (string, int32, *kmsg.SyncGroupRequest) {
	t.Helper()
	j := h.send(joinReq(group, "", inst))
	h.advance(time.Second)
	jr := joinResp(t, j)
	id, gen := jr.MemberID, jr.Generation
	s := syncReq(group, id, gen, map[string]string{id: "a"})
	s.InstanceID = inst
	wantCode(t, "sync", h.send(s), nil)
	return id, gen, s
}
