package broker

import (
	"context"
	"github.com/weirhq/weir/internal/topicname"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// handleDeleteTopics deletes topics by name, or (v6+) by topic id. As in
// Kafka, every group's committed offsets of a deleted topic go with it, so
// that a topic created again under the same name is consumed from the
// start (per auto.offset.reset), not from offsets into the old data. The
// response waits for the offset deletions to be on disk.
func (b *Broker) handleDeleteTopics(ctx context.Context, _ *header, req *kmsg.DeleteTopicsRequest) reply {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	var deleted []string
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
			deleted = append(deleted, name)
		} else if !topicname.Valid(name) {
			err = storage.ErrInvalidTopic
		}
		st.ErrorCode = errorCode(err)
		st.ErrorMessage = errorMessage(err)
		resp.Topics = append(resp.Topics, st)
	}
	if len(deleted) == 0 {
		return now(resp)
	}
	// Submitted in the reader, so that a commit sent after this request
	// on the connection is handled after the deletion; awaited in the
	// writer.
	offsetsDeleted := b.groups.SubmitDeleteTopics(ctx, deleted)
	return deferred(func(ctx context.Context) kmsg.Response {
		select {
		case err := <-offsetsDeleted:
			if err != nil {
				// The topics are gone, and so are their offsets in memory;
				// the next start deletes those left in groups.log (unless
				// a topic of the same name exists again by then).
				b.logger.Error("weir: could not write the deletion of the committed offsets of deleted topics; "+
					"they are deleted at the next start", "topics", deleted, "err", err)
			}
			return resp
		case <-ctx.Done():
			return nil
		}
	})
}
