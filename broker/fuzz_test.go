package broker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzRequest feeds arbitrary bytes as a request frame (without the size
// prefix) through parsing, dispatch, the deferred step and response
// encoding, in process. It must never panic; an error only closes the
// connection.
func FuzzRequest(f *testing.F) {
	b := startBroker(f, func(c *Config) { c.DefaultPartitions = 2 })
	if _, err := b.Log().CreateTopic("fuzz", 2, nil); err != nil {
		f.Fatal(err)
	}
	seed := func(req kmsg.Request) {
		fr := frameOf(req, 1)
		f.Add(fr[4:])
	}
	for _, a := range apiTable {
		for v := a.min; v <= a.max; v++ {
			req := kmsg.RequestForKey(a.key)
			req.SetVersion(v)
			seed(req)
		}
	}
	for _, v := range []int16{3, 7, 9, 12} {
		req := produceReq("fuzz", 1, recordBatch("a", "bc"))
		req.Version = v
		seed(req)
	}
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 12
	md.Topics = []kmsg.MetadataRequestTopic{{Topic: ptrTo("fuzz")}, {Topic: ptrTo("other")}}
	seed(md)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 12
	fetch.MinBytes = 1
	fetch.MaxWaitMillis = 100
	fetch.Topics = []kmsg.FetchRequestTopic{{Topic: "fuzz", Partitions: []kmsg.FetchRequestTopicPartition{{Partition: 1, PartitionMaxBytes: 100}}}}
	seed(fetch)
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version = 9
	join.Group, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = "g", 6000, 1000
	join.InstanceID = ptrTo("i")
	join.ProtocolType = "consumer"
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0, 1, 0, 0, 0, 1, 0, 4, 'f', 'u', 'z', 'z'}}}
	seed(join)
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Version = 5
	sync.Group, sync.MemberID, sync.Generation = "g", "m", 1
	sync.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{{MemberID: "m", MemberAssignment: []byte{0, 1}}}
	seed(sync)
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version = 8
	commit.Group, commit.Generation = "g", -1
	commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "fuzz", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 1, Offset: 3, Metadata: ptrTo("m")}}}}
	seed(commit)
	ofetch := kmsg.NewPtrOffsetFetchRequest()
	ofetch.Version = 8
	ofetch.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g"}, {Group: "g", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "fuzz", Partitions: []int32{0, 1}}}}}
	seed(ofetch)
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version = 5
	leave.Group = "g"
	leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: "m"}, {InstanceID: ptrTo("i")}}
	seed(leave)
	f.Add([]byte{})
	f.Add([]byte{0, 18, 3, 231, 0, 0, 0, 1, 255, 255, 0})

	f.Fuzz(func(t *testing.T, frame []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		p, err := b.handleFrame(ctx, frame)
		if err != nil {
			return
		}
		resp := p.reply.resp
		if p.reply.later != nil {
			resp = p.reply.later(ctx)
		}
		if resp != nil {
			out := appendResponse(nil, p.corr, resp)
			if len(out) < 8 {
				t.Fatalf("response frame of %d bytes", len(out))
			}
		}
	})
}
