package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListOffsets special timestamps.
const (
	offsetLatest       = -1 // high watermark
	offsetEarliest     = -2 // log start offset
	offsetMaxTimestamp = -3 // v7+: the record with the largest timestamp
	offsetLocalStart   = -4 // v8+: local log start (no tiered storage: earliest)
)

// handleListOffsets answers earliest, latest, max-timestamp and
// by-timestamp lookups. IsolationLevel is ignored: without transactions the
// last stable offset is the high watermark.
func (b *Broker) handleListOffsets(_ context.Context, _ *header, req *kmsg.ListOffsetsRequest) reply {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	resp.Topics = make([]kmsg.ListOffsetsResponseTopic, 0, len(req.Topics))
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset = -1, -1
			p, err := b.partition(rt.Topic, rp.Partition)
			if err != nil {
				sp.ErrorCode = errorCode(err)
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			sp.LeaderEpoch = 0
			switch ts := rp.Timestamp; {
			case ts == offsetLatest:
				sp.Offset = p.HighWatermark()
			case ts == offsetEarliest, ts == offsetLocalStart && req.Version >= 8:
				sp.Offset = p.LogStartOffset()
			case ts == offsetMaxTimestamp && req.Version >= 7:
				sp.Offset, sp.Timestamp = p.MaxTimestamp()
			default:
				if off, at, ok := p.OffsetForTimestamp(ts); ok {
					sp.Offset, sp.Timestamp = off, at
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}
