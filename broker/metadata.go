package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// handleMetadata describes this one broker as leader of every partition.
func (b *Broker) handleMetadata(_ context.Context, _ *header, req *kmsg.MetadataRequest) reply {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	br := kmsg.NewMetadataResponseBroker()
	br.NodeID, br.Host, br.Port = b.cfg.NodeID, b.advHost, b.advPort
	resp.Brokers = []kmsg.MetadataResponseBroker{br}
	resp.ClusterID = &b.clusterID
	resp.ControllerID = b.cfg.NodeID

	// v0: an empty list means every topic; v1+: null means every topic.
	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if all {
		for _, t := range b.log.Topics() {
			resp.Topics = append(resp.Topics, b.metadataTopic(t))
		}
		return now(resp)
	}
	create := req.Version < 4 || req.AllowAutoTopicCreation
	for _, rt := range req.Topics {
		var (
			t   *storage.Topic
			err error
		)
		switch {
		case rt.Topic != nil:
			t, err = b.topic(*rt.Topic, create)
		case req.Version >= 10:
			var ok bool
			if t, ok = b.topicByID(rt.TopicID); !ok {
				mt := kmsg.NewMetadataResponseTopic()
				mt.TopicID = rt.TopicID
				mt.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
		default:
			err = storage.ErrInvalidTopic
		}
		if err != nil {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = rt.Topic
			mt.ErrorCode = errorCode(err)
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, b.metadataTopic(t))
	}
	return now(resp)
}

func (b *Broker) metadataTopic(t *storage.Topic) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.Name()
	mt.Topic = &name
	mt.TopicID = t.ID()
	n := t.NumPartitions()
	mt.Partitions = make([]kmsg.MetadataResponseTopicPartition, n)
	for i := range n {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition = i
		p.Leader = b.cfg.NodeID
		p.LeaderEpoch = 0
		p.Replicas = b.replicas()
		p.ISR = b.replicas()
		p.OfflineReplicas = []int32{}
		mt.Partitions[i] = p
	}
	return mt
}
