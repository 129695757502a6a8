package broker

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/group"
	"github.com/weirhq/weir/storage"
)

// TestGroupRepliesInOrderWithoutBlockingOthers pipelines a JoinGroup, which
// waits in the coordinator, and an ApiVersions on one connection: the
// answers come in request order. Meanwhile another connection is served.
func TestGroupRepliesInOrderWithoutBlockingOthers(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.GroupInitialRebalanceDelay = time.Hour })
	a := dialRaw(t, b)
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version = 3 // no MEMBER_ID_REQUIRED: the join waits at once
	join.Group = "waiting"
	join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = 10_000, 10_000
	join.ProtocolType = "consumer"
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0}}}
	versions := kmsg.NewPtrApiVersionsRequest()
	a.write(append(frameOf(join, 1), frameOf(versions, 2)...))

	// The other connection's group requests are answered while the join
	// waits (the initial delay is an hour).
	other := dialRaw(t, b)
	// The join reaches the coordinator through the other connection's
	// reader, so wait until it has.
	desc := kmsg.NewPtrDescribeGroupsRequest()
	desc.Groups = []string{"waiting"}
	var resp *kmsg.DescribeGroupsResponse
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp = other.roundTrip(desc).(*kmsg.DescribeGroupsResponse)
		if len(resp.Groups) == 1 && resp.Groups[0].State != "Dead" || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(resp.Groups) != 1 || resp.Groups[0].State != "PreparingRebalance" || len(resp.Groups[0].Members) != 1 {
		t.Fatalf("describe while the join waits: %+v", resp.Groups)
	}

	// Remove the waiting member: its JoinGroup is answered, then the
	// ApiVersions queued behind it.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version = 3
	leave.Group = "waiting"
	leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: resp.Groups[0].Members[0].MemberID}}
	if lr := other.roundTrip(leave).(*kmsg.LeaveGroupResponse); lr.ErrorCode != 0 || lr.Members[0].ErrorCode != 0 {
		t.Fatalf("leave: %+v", lr)
	}
	for want := int32(1); want <= 2; want++ {
		rd := kbin.Reader{Src: a.readFrame()}
		if corr := rd.Int32(); corr != want {
			t.Fatalf("response %d came with correlation id %d: out of order", want, corr)
		}
	}
}

// TestGroupLagMetricFromCommits commits through a real connection and
// reads weir_consumer_group_lag from the metrics handler.
func TestGroupLagMetricFromCommits(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.Sync = storage.SyncNever })
	topicWithBatches(t, b, "lagging", 1, 5, "r")
	r := dialRaw(t, b)
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version = 8
	commit.Group, commit.Generation = "readers", -1
	commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "lagging", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 2, LeaderEpoch: -1}}}}
	if resp := r.roundTrip(commit).(*kmsg.OffsetCommitResponse); resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("commit: %+v", resp)
	}
	m := scrapeHandler(t, b)
	if got, ok := m[`weir_consumer_group_lag{group="readers",partition="0",topic="lagging"}`]; !ok || got != 3 {
		t.Fatalf("lag %v (present %v), want 3", got, ok)
	}
}

// TestFindCoordinator: the broker is every group's coordinator, in the
// single-key (v0-v3) and batched (v4+) forms; transaction keys get the
// same error as InitProducerId.
func TestFindCoordinator(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b)
	for _, v := range []int16{0, 3} {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.Version = v
		req.CoordinatorKey = "g"
		resp := r.roundTrip(req).(*kmsg.FindCoordinatorResponse)
		if resp.ErrorCode != 0 || resp.NodeID != b.cfg.NodeID || resp.Port != b.advPort || resp.Host != b.advHost {
			t.Errorf("v%d: %+v", v, resp)
		}
	}
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.Version = 4
	req.CoordinatorKeys = []string{"a", "b", "", strings.Repeat("x", group.MaxGroupIDBytes+1)}
	resp := r.roundTrip(req).(*kmsg.FindCoordinatorResponse)
	if len(resp.Coordinators) != 4 || resp.Coordinators[0].ErrorCode != 0 || resp.Coordinators[1].Port != b.advPort ||
		resp.Coordinators[2].ErrorCode != kerr.InvalidGroupID.Code || resp.Coordinators[3].ErrorCode != kerr.InvalidGroupID.Code {
		t.Errorf("v4 batch: %+v", resp.Coordinators)
	}
	req.CoordinatorType = 1 // transaction
	req.CoordinatorKeys = []string{"txn"}
	resp = r.roundTrip(req).(*kmsg.FindCoordinatorResponse)
	if resp.Coordinators[0].ErrorCode != errTransactionsUnsupported {
		t.Errorf("transaction coordinator: %+v", resp.Coordinators)
	}
}

// TestCreateGroupRefusesLongGroupID: creating a group (IncrementalAlterConfigs
// on a GROUP resource) with an id over group.MaxGroupIDBytes gets
// INVALID_GROUP_ID; one at the bound is created.
func TestCreateGroupRefusesLongGroupID(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b)
	long, atBound := strings.Repeat("x", group.MaxGroupIDBytes+1), strings.Repeat("y", group.MaxGroupIDBytes)
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	req.Resources = []kmsg.IncrementalAlterConfigsRequestResource{
		{ResourceType: configResourceTypeGroup, ResourceName: long},
		{ResourceType: configResourceTypeGroup, ResourceName: atBound},
	}
	resp := r.roundTrip(req).(*kmsg.IncrementalAlterConfigsResponse)
	if resp.Resources[0].ErrorCode != kerr.InvalidGroupID.Code || resp.Resources[1].ErrorCode != 0 {
		t.Fatalf("create: %+v", resp.Resources)
	}
	list := r.roundTrip(kmsg.NewPtrListGroupsRequest()).(*kmsg.ListGroupsResponse)
	if len(list.Groups) != 1 || list.Groups[0].Group != atBound {
		t.Fatalf("groups after create: %+v", list.Groups)
	}
}
