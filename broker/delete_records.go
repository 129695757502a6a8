package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDeleteRecords raises log start offsets. Offset -1 means the high
// watermark; an offset beyond it is OFFSET_OUT_OF_RANGE.
func (b *Broker) handleDeleteRecords(_ context.Context, _ *header, req *kmsg.DeleteRecordsRequest) reply {
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LowWatermark = -1
			p, err := b.partition(rt.Topic, rp.Partition)
			switch {
			case err != nil:
				sp.ErrorCode = errorCode(err)
			case rp.Offset < -1 || rp.Offset > p.HighWatermark():
				sp.ErrorCode = kerr.OffsetOutOfRange.Code
			default:
				lw, err := p.DeleteRecords(rp.Offset)
				if err != nil {
					sp.ErrorCode = errorCode(err)
				} else {
					sp.LowWatermark = lw
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}
