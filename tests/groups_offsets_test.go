package tests

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// TestGroupLongGroupIDRefused: over a real socket, a tool commits
// (memberless OffsetCommit, a flexible version) for a group whose id is
// 40,000 bytes. It gets INVALID_GROUP_ID, and the commits acknowledged
// before and after it, by other groups, survive a restart.
func TestGroupLongGroupIDRefused(t *testing.T) {
	dir := t.TempDir()
	start := func() *broker.Broker { return startOn(t, dir) }
	b := start()
	createTopic(t, b.Addr(), "t", 1)
	ctx := testContext(t, 30*time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	// Sent to the broker itself: through the client's coordinator lookup
	// the long id already fails at FindCoordinator (checked below).
	commit := func(group string, offset int64) int16 {
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Group, r.Generation = group, -1
		r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: offset, LeaderEpoch: -1}}}}
		resp, err := cl.SeedBrokers()[0].Request(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		cr := resp.(*kmsg.OffsetCommitResponse)
		if cr.Version < 8 {
			t.Fatalf("OffsetCommit v%d: not a flexible version", cr.Version)
		}
		return cr.Topics[0].Partitions[0].ErrorCode
	}
	if code := commit("before", 1); code != 0 {
		t.Fatalf("commit before: %v", kerr.ErrorForCode(code))
	}
	if code := commit(strings.Repeat("x", 40_000), 2); code != kerr.InvalidGroupID.Code {
		t.Fatalf("commit by a 40,000-byte group id: %v, want INVALID_GROUP_ID", kerr.ErrorForCode(code))
	}
	if code := commit("after", 3); code != 0 {
		t.Fatalf("commit after: %v", kerr.ErrorForCode(code))
	}
	resp, err := kadm.NewClient(cl).CommitOffsets(ctx, strings.Repeat("x", 40_000), kadm.OffsetsFromRecords(kgo.Record{Topic: "t", Partition: 0, Offset: 4}))
	if err == nil {
		err = resp.Error()
	}
	if !errors.Is(err, kerr.InvalidGroupID) {
		t.Fatalf("commit by a 40,000-byte group id through the client: %v, want INVALID_GROUP_ID", err)
	}
	cl.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = start()
	defer b.Close()
	cl, err = kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for group, want := range map[string]int64{"before": 1, "after": 3} {
		os, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := os.Lookup("t", 0); !ok || o.At != want {
			t.Errorf("group %s after restart: offset %d (found %v), want %d", group, o.At, ok, want)
		}
	}
}

// TestGroupOffsetsGoWithDeletedTopic: a group commits for orders/0, the
// topic is deleted and created again, and the group has no committed
// offset for it any more (it would otherwise resume at an offset into the
// old data).
func TestGroupOffsetsGoWithDeletedTopic(t *testing.T) {
	b := weirtest.Start(t)
	createTopic(t, b.Addr(), "orders", 1)
	ctx := testContext(t, 30*time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	os := kadm.Offsets{}
	os.AddOffset("orders", 0, 500, -1)
	if r, err := adm.CommitOffsets(ctx, "billing", os); err != nil || r.Error() != nil {
		t.Fatalf("commit: %v %v", err, r.Error())
	}
	if r, err := adm.DeleteTopics(ctx, "orders"); err != nil || r.Error() != nil {
		t.Fatalf("delete topic: %v %v", err, r.Error())
	}
	createTopic(t, b.Addr(), "orders", 1)
	got, err := adm.FetchOffsets(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := got.Lookup("orders", 0); ok && o.At >= 0 {
		t.Errorf("recreated topic orders: group billing still has committed offset %d from the deleted topic", o.At)
	}
}
