package broker

import (
	"context"
	"errors"
	"fmt"
	"github.com/weirhq/weir/internal/topicname"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// handleCreateTopics creates topics. Replication factor -1 and 1 are
// accepted; larger factors are accepted as 1 (one warning per topic) unless
// StrictReplicationFactor is set.
func (b *Broker) handleCreateTopics(_ context.Context, _ *header, req *kmsg.CreateTopicsRequest) reply {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := make(map[string]int, len(req.Topics))
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions = -1
		st.ReplicationFactor = -1
		if seen[rt.Topic] > 1 {
			st.ErrorCode = kerr.InvalidRequest.Code
			st.ErrorMessage = ptr("topic " + rt.Topic + " appears more than once in the request")
		} else {
			b.createTopic(req, rt, &st)
		}
		if req.Version < 1 {
			st.ErrorMessage = nil
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}

func (b *Broker) createTopic(req *kmsg.CreateTopicsRequest, rt *kmsg.CreateTopicsRequestTopic, st *kmsg.CreateTopicsResponseTopic) {
	fail := func(code int16, msg string) {
		st.ErrorCode = code
		st.ErrorMessage = &msg
	}
	if !topicname.Valid(rt.Topic) {
		fail(kerr.InvalidTopicException.Code, fmt.Sprintf("invalid topic name %q", rt.Topic))
		return
	}
	if _, ok := b.log.Topic(rt.Topic); ok {
		fail(kerr.TopicAlreadyExists.Code, "topic "+rt.Topic+" already exists")
		return
	}
	partitions := rt.NumPartitions
	if len(rt.ReplicaAssignment) > 0 {
		if rt.NumPartitions != -1 || rt.ReplicationFactor != -1 {
			fail(kerr.InvalidRequest.Code, "replica assignment requires partitions and replication factor -1")
			return
		}
		if msg := b.checkAssignment(rt.ReplicaAssignment); msg != "" {
			fail(kerr.InvalidReplicaAssignment.Code, msg)
			return
		}
		partitions = int32(len(rt.ReplicaAssignment))
	} else {
		switch {
		case partitions == -1:
			partitions = b.cfg.DefaultPartitions
		case partitions <= 0:
			fail(kerr.InvalidPartitions.Code, fmt.Sprintf("partition count %d must be positive", partitions))
			return
		}
		switch rf := rt.ReplicationFactor; {
		case rf == -1 || rf == 1:
		case rf <= 0:
			fail(kerr.InvalidReplicationFactor.Code, fmt.Sprintf("replication factor %d must be positive", rf))
			return
		case b.cfg.StrictReplicationFactor:
			fail(kerr.InvalidReplicationFactor.Code,
				fmt.Sprintf("replication factor %d is larger than the number of brokers (1)", rf))
			return
		default:
			if !req.ValidateOnly {
				b.logger.Warn("weir: replication factor accepted as 1: this is a single-broker cluster",
					"topic", rt.Topic, "requested", rf)
			}
		}
	}
	configs := make(map[string]string, len(rt.Configs))
	for _, c := range rt.Configs {
		if c.Value == nil {
			continue // null means "use the default"
		}
		configs[c.Name] = *c.Value
	}
	err := checkConfigNames(configs)
	if err == nil {
		if req.ValidateOnly {
			err = b.log.ValidateConfig(configs)
		} else {
			var t *storage.Topic
			t, err = b.log.CreateTopic(rt.Topic, partitions, configs)
			if err == nil {
				st.TopicID = t.ID()
				st.Configs = createTopicConfigs(t)
			}
		}
	}
	if err != nil {
		st.ErrorCode = errorCode(err)
		st.ErrorMessage = errorMessage(err)
		if errors.Is(err, storage.ErrInvalidConfig) {
			st.ErrorCode = kerr.InvalidConfig.Code
		}
		return
	}
	st.NumPartitions = partitions
	st.ReplicationFactor = 1
}

// checkAssignment accepts manual assignments only if every partition's
// replica list is exactly this node and partition ids are 0..n-1.
func (b *Broker) checkAssignment(as []kmsg.CreateTopicsRequestTopicReplicaAssignment) string {
	ids := make([]int32, 0, len(as))
	for _, a := range as {
		if len(a.Replicas) != 1 || a.Replicas[0] != b.cfg.NodeID {
			return fmt.Sprintf("partition %d: replicas %v: the only broker is %d", a.Partition, a.Replicas, b.cfg.NodeID)
		}
		ids = append(ids, a.Partition)
	}
	slices.Sort(ids)
	for i, id := range ids {
		if id != int32(i) {
			return "partition ids must be 0 to n-1 without gaps or duplicates"
		}
	}
	return ""
}

func createTopicConfigs(t *storage.Topic) []kmsg.CreateTopicsResponseTopicConfig {
	entries := topicConfigEntries(t)
	out := make([]kmsg.CreateTopicsResponseTopicConfig, 0, len(entries))
	for _, e := range entries {
		c := kmsg.NewCreateTopicsResponseTopicConfig()
		c.Name = e.name
		c.Value = ptr(e.value)
		c.ReadOnly = e.readOnly
		c.Source = int8(e.source)
		out = append(out, c)
	}
	return out
}

func ptr[T any](v T) *T { return &v }
