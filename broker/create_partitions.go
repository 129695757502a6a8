package broker

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleCreatePartitions grows topics to a new total partition count.
// Shrinking or keeping the count is INVALID_PARTITIONS, as in Kafka.
func (b *Broker) handleCreatePartitions(_ context.Context, _ *header, req *kmsg.CreatePartitionsRequest) reply {
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	seen := make(map[string]int, len(req.Topics))
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		fail := func(code int16, msg string) {
			st.ErrorCode = code
			st.ErrorMessage = &msg
		}
		t, ok := b.log.Topic(rt.Topic)
		switch {
		case seen[rt.Topic] > 1:
			fail(kerr.InvalidRequest.Code, "topic "+rt.Topic+" appears more than once in the request")
		case !ok:
			fail(kerr.UnknownTopicOrPartition.Code, "unknown topic "+rt.Topic)
		case rt.Count <= t.NumPartitions():
			fail(kerr.InvalidPartitions.Code, fmt.Sprintf("topic %s has %d partitions; the new count %d must be larger",
				rt.Topic, t.NumPartitions(), rt.Count))
		case rt.Assignment != nil && len(rt.Assignment) != int(rt.Count-t.NumPartitions()):
			fail(kerr.InvalidReplicaAssignment.Code, "assignment must list every new partition")
		default:
			for _, a := range rt.Assignment {
				if len(a.Replicas) != 1 || a.Replicas[0] != b.cfg.NodeID {
					fail(kerr.InvalidReplicaAssignment.Code,
						fmt.Sprintf("replicas %v: the only broker is %d", a.Replicas, b.cfg.NodeID))
					break
				}
			}
			if st.ErrorCode != 0 || req.ValidateOnly {
				break
			}
			if err := b.log.CreatePartitions(rt.Topic, rt.Count); err != nil {
				st.ErrorCode = errorCode(err)
				st.ErrorMessage = errorMessage(err)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}
