package group

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkOffsetCommit measures durable memberless commits through the
// driver with the real store: each is fsynced before it is answered, and
// concurrent commits share fsyncs.
func BenchmarkOffsetCommit(b *testing.B) {
	c, err := Open(Config{}, nil, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	b.SetParallelism(16) // 32 committers on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for i := int64(0); pb.Next(); i++ {
			resp := (<-c.Submit(context.Background(), Client{}, commitReq("bench", "", -1, "t", int32(i%8), i))).(*kmsg.OffsetCommitResponse)
			if resp.Topics[0].Partitions[0].ErrorCode != 0 {
				b.Error("commit failed")
				return
			}
		}
	})
}
