package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// handleDeleteTopics deletes topics by name, or (v6+) by topic id.
func (b *Broker) handleDeleteTopics(_ context.Context, _ *header, req *kmsg.DeleteTopicsRequest) reply {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if req.Version < 6 {
		for _, n := range req.TopicNames {
			targets = append(targets, target{name: ptr(n)})
		}
	} else {
		for _, t := range req.Topics {
			targets = append(targets, target{name: t.Topic, id: t.TopicID})
		}
	}
	for _, tg := range targets {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = tg.name, tg.id
		var name string
		switch {
		case tg.name != nil:
			name = *tg.name
			if t, ok := b.log.Topic(name); ok {
				st.TopicID = t.ID()
			}
		default:
			t, ok := b.topicByID(tg.id)
			if !ok {
				st.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
			name = t.Name()
			st.Topic = ptr(name)
		}
		err := b.log.DeleteTopic(name)
		if err == nil {
			b.logger.Info("weir: deleted topic", "topic", name)
			b.metrics.forgetTopic(name)
		} else if !validTopicName(name) {
			err = storage.ErrInvalidTopic
		}
		st.ErrorCode = errorCode(err)
		st.ErrorMessage = errorMessage(err)
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}
