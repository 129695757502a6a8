package group

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func offsetDeleteReq(group, topic string, partition int32) *kmsg.OffsetDeleteRequest {
	r := kmsg.NewPtrOffsetDeleteRequest()
	r.Group = group
	r.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: partition}}}}
	return r
}

func deleteGroupsReq(groups ...string) *kmsg.DeleteGroupsRequest {
	r := kmsg.NewPtrDeleteGroupsRequest()
	r.Version = 2
	r.Groups = groups
	return r
}

func listGroups(h *harness) []string {
	h.t.Helper()
	r := kmsg.NewPtrListGroupsRequest()
	r.Version = 4
	var names []string
	for _, g := range h.send(r).resp.(*kmsg.ListGroupsResponse).Groups {
		names = append(names, g.Group)
	}
	return names
}

// TestRefusedCommitIsRolledBack: a commit whose record cannot be written
// is answered COORDINATOR_NOT_AVAILABLE and leaves nothing behind:
// OffsetFetch still serves the last durable offset, and a group that only
// the refused commit created does not exist.
func TestRefusedCommitIsRolledBack(t *testing.T) {
	h := newHarness(t, nil)
	wantCode(t, "durable commit", h.send(commitReq("g", "", -1, "t", 0, 10)), nil)
	wantCode(t, "refused commit", h.sendUnpersisted(commitReq("g", "", -1, "t", 0, 20)), kerr.CoordinatorNotAvailable)
	if got := h.committed("g", "t", 0); got != 10 {
		t.Fatalf("after a refused commit of 20: offset %d, want the durable 10", got)
	}
	wantCode(t, "refused first commit of a partition", h.sendUnpersisted(commitReq("g", "", -1, "t", 1, 5)), kerr.CoordinatorNotAvailable)
	if got := h.committed("g", "t", 1); got != -1 {
		t.Fatalf("after a refused first commit: offset %d, want none (-1)", got)
	}

	wantCode(t, "refused commit of a new group", h.sendUnpersisted(commitReq("new", "", -1, "t", 0, 1)), kerr.CoordinatorNotAvailable)
	if got := h.state("new"); got != Dead {
		t.Fatalf("a group created only by a refused commit is %v, want gone", got)
	}
	if names := listGroups(h); len(names) != 1 || names[0] != "g" {
		t.Fatalf("groups listed %v, want [g]", names)
	}

	// Members' commits are rolled back the same way.
	ids, gen := h.stableGroup("m", 1)
	wantCode(t, "member's commit", h.send(commitReq("m", ids[0], gen, "t", 2, 100)), nil)
	wantCode(t, "member's refused commit", h.sendUnpersisted(commitReq("m", ids[0], gen, "t", 2, 200)), kerr.CoordinatorNotAvailable)
	if got := h.committed("m", "t", 2); got != 100 {
		t.Fatalf("member's offset after a refused commit: %d, want 100", got)
	}
}

// TestRefusedDeletionsAndCreationAreRolledBack: OffsetDelete, DeleteGroups
// and CreateGroup that cannot be written are refused and change nothing,
// so a retry after the disk is fixed (a restart) finds what the disk holds.
func TestRefusedDeletionsAndCreationAreRolledBack(t *testing.T) {
	h := newHarness(t, nil)
	wantCode(t, "commit", h.send(commitReq("g", "", -1, "t", 0, 10)), nil)

	od := h.sendUnpersisted(offsetDeleteReq("g", "t", 0)).resp.(*kmsg.OffsetDeleteResponse)
	if od.ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("refused OffsetDelete: %v", kerr.ErrorForCode(od.ErrorCode))
	}
	if got := h.committed("g", "t", 0); got != 10 {
		t.Fatalf("after a refused OffsetDelete: offset %d, want 10", got)
	}

	dg := h.sendUnpersisted(deleteGroupsReq("g")).resp.(*kmsg.DeleteGroupsResponse)
	if dg.Groups[0].ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("refused DeleteGroups: %v", kerr.ErrorForCode(dg.Groups[0].ErrorCode))
	}
	if got := h.state("g"); got != Empty {
		t.Fatalf("after a refused DeleteGroups the group is %v, want Empty", got)
	}
	if got := h.committed("g", "t", 0); got != 10 {
		t.Fatalf("after a refused DeleteGroups: offset %d, want 10", got)
	}
	// The group works on: a member joins and commits.
	ids, gen := h.stableGroup("g", 1)
	wantCode(t, "commit after the refused deletion", h.send(commitReq("g", ids[0], gen, "t", 0, 11)), nil)

	var err error
	h.c.CreateGroup(h.now, "made", func(e error) { err = e })
	h.c.Deliver(h.c.Ready(), errDisk)
	if err != kerr.CoordinatorNotAvailable {
		t.Fatalf("refused CreateGroup: %v", err)
	}
	if got := h.state("made"); got != Dead {
		t.Fatalf("a group whose creation was refused is %v, want gone", got)
	}
	h.c.CreateGroup(h.now, "g", func(e error) { err = e })
	h.c.Deliver(h.c.Ready(), errDisk)
	if err != kerr.CoordinatorNotAvailable || h.c.groups["g"].created {
		t.Fatalf("refused CreateGroup of an existing group: %v, created %v", err, h.c.groups["g"].created)
	}
}

// TestRollbackKeepsWhatStays: in one batch whose write fails, the refused
// requests are rolled back newest first, and what is not refused (a
// topic's deletion) stays: a rolled-back commit does not bring back an
// offset the deletion removed after it.
func TestRollbackKeepsWhatStays(t *testing.T) {
	h := newHarness(t, nil)
	wantCode(t, "commit t", h.send(commitReq("g", "", -1, "t", 0, 10)), nil)
	wantCode(t, "commit u", h.send(commitReq("g", "", -1, "u", 0, 3)), nil)

	var calls []*call
	handle := func(req kmsg.Request) {
		cl := &call{}
		calls = append(calls, cl)
		h.c.Handle(h.now, Client{}, req, func(r kmsg.Response) { cl.resp = r })
	}
	handle(commitReq("g", "", -1, "t", 0, 20))
	var deleted error = kerr.UnknownServerError
	h.c.DeleteTopics([]string{"t"}, func(err error) { deleted = err })
	handle(commitReq("g", "", -1, "u", 0, 4))
	handle(commitReq("g", "", -1, "u", 0, 5))
	h.c.Deliver(h.c.Ready(), errDisk)

	for _, cl := range calls {
		wantCode(t, "commit in the failed batch", cl, kerr.CoordinatorNotAvailable)
	}
	if deleted != kerr.CoordinatorNotAvailable {
		t.Fatalf("DeleteTopics in the failed batch: %v", deleted)
	}
	if got := h.committed("g", "t", 0); got != -1 {
		t.Fatalf("offset of the deleted topic is %d after the rollback, want none", got)
	}
	if got := h.committed("g", "u", 0); got != 3 {
		t.Fatalf("after two refused commits: offset %d, want the durable 3", got)
	}
}

// TestReadsWaitForUnpersistedChanges: a read of offsets or groups handled
// after a change that is not yet written must wait for the write
// (MustPersistFirst), so that no reply shows a change that could still be
// rolled back. Other requests, and reads with nothing pending, need not.
func TestReadsWaitForUnpersistedChanges(t *testing.T) {
	h := newHarness(t, nil)
	fetch := kmsg.NewPtrOffsetFetchRequest()
	if h.c.MustPersistFirst(fetch) || h.c.MustPersistFirst(nil) {
		t.Fatal("a read must wait with nothing pending")
	}
	h.c.Handle(h.now, Client{}, commitReq("g", "", -1, "t", 0, 1), func(kmsg.Response) {})
	for _, req := range []kmsg.Request{fetch, kmsg.NewPtrDescribeGroupsRequest(), kmsg.NewPtrListGroupsRequest(), nil} {
		if !h.c.MustPersistFirst(req) {
			t.Errorf("%T handled after an unwritten commit does not wait for it", req)
		}
	}
	if h.c.MustPersistFirst(heartbeatReq("g", "m", 1)) {
		t.Error("a heartbeat waits for an unwritten commit")
	}
	h.flush()
	if h.c.MustPersistFirst(fetch) {
		t.Fatal("a read waits after the commit was written")
	}
	// A commit refused before it changes anything leaves nothing to wait for.
	h.c.Handle(h.now, Client{}, commitReq("g", "m", 5, "t", 0, 2), func(kmsg.Response) {})
	if h.c.MustPersistFirst(fetch) {
		t.Fatal("a read waits for a commit that changed nothing")
	}
	h.flush()
}

// TestRequestsAfterDeleteGroupsWaitForIt: a DeleteGroups not yet written is
// written before the next request of any kind, since a JoinGroup (or a
// commit, or CreateGroup) would make a new group of the deleted name and a
// refused deletion could then not put the old group and its offsets back.
func TestRequestsAfterDeleteGroupsWaitForIt(t *testing.T) {
	h := newHarness(t, nil)
	wantCode(t, "commit", h.send(commitReq("g", "", -1, "t", 0, 10)), nil)
	h.c.Handle(h.now, Client{}, deleteGroupsReq("g"), func(kmsg.Response) {})
	for _, req := range []kmsg.Request{joinReq("g", "", nil), commitReq("g", "", -1, "t", 0, 20), heartbeatReq("g", "m", 1), nil} {
		if !h.c.MustPersistFirst(req) {
			t.Errorf("%T handled after an unwritten DeleteGroups does not wait for it", req)
		}
	}
	// What the driver does then: the deletion's write fails, and the join
	// runs only after the rollback.
	h.c.Deliver(h.c.Ready(), errDisk)
	h.c.Handle(h.now, Client{ID: "c"}, joinReq("g", "", nil), func(kmsg.Response) {})
	h.flush()
	if got := h.committed("g", "t", 0); got != 10 {
		t.Errorf("after a refused DeleteGroups and a JoinGroup: offset %d, want the durable 10", got)
	}
}
