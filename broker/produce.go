package broker

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/quota"
	"github.com/weirhq/weir/storage"
)

// handleProduce appends every partition's batches now, in the reader
// goroutine, so that append order is request order. For acks=-1 the
// response waits (deferred, in the writer) until every appended partition
// is durable. acks=0 gets no response at all; if it failed, the connection
// is closed.
//
// Idempotent batches are checked per partition by storage: a retry of one
// of the producer's last five batches is answered with its original offsets
// and not stored again; a gap in the sequence is OUT_OF_ORDER_SEQUENCE_NUMBER
// and an older epoch INVALID_PRODUCER_EPOCH. Transactional produce is
// answered with TRANSACTIONAL_ID_AUTHORIZATION_FAILED (see
// errTransactionsUnsupported).
func (b *Broker) handleProduce(_ context.Context, _ *header, req *kmsg.ProduceRequest) reply {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	type durable struct {
		p    *storage.Partition
		last int64
		rp   *kmsg.ProduceResponseTopicPartition
	}
	var waits []durable
	var throttle time.Duration // throughput units: the largest of the topics'
	failed := false
	acksOK := req.Acks == -1 || req.Acks == 0 || req.Acks == 1
	resp.Topics = make([]kmsg.ProduceResponseTopic, 0, len(req.Topics))
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		var (
			t    *storage.Topic
			terr error
		)
		if acksOK && req.TransactionID == nil {
			t, terr = b.topic(rt.Topic, true)
		}
		var inBytes, inRecords int64
		for i, rp := range rt.Partitions {
			sp := &st.Partitions[i]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = -1, -1, -1
			var err error
			switch {
			case req.TransactionID != nil:
				sp.ErrorCode = errTransactionsUnsupported
				sp.ErrorMessage = ptr("weir does not support transactions")
				failed = true
				continue
			case !acksOK:
				sp.ErrorCode = kerr.InvalidRequiredAcks.Code
				continue
			case terr != nil:
				err = terr
			default:
				p, ok := t.Partition(rp.Partition)
				if !ok {
					err = storage.ErrUnknownPartition
					break
				}
				var res storage.AppendResult
				res, err = p.Append(rp.Records)
				if err == nil {
					sp.BaseOffset = res.BaseOffset
					sp.LogAppendTime = res.LogAppendTime
					sp.LogStartOffset = res.LogStartOffset
					inBytes += int64(len(rp.Records))
					inRecords += res.LastOffset - res.BaseOffset + 1 // Append checked each count against its offsets
					if req.Acks == -1 {
						waits = append(waits, durable{p, res.LastOffset, sp})
					}
				}
			}
			if err != nil {
				sp.ErrorCode = errorCode(err)
				sp.ErrorMessage = errorMessage(err)
			}
			failed = failed || sp.ErrorCode != 0
		}
		if inBytes > 0 {
			throttle = max(throttle, b.produced(rt.Topic, inBytes, inRecords))
		}
		resp.Topics = append(resp.Topics, st)
	}
	// KIP-219: the request is served; the answer carries the throttle and
	// the connection's next reads are held back for it.
	resp.ThrottleMillis = throttleMillis(throttle)
	if throttle > 0 {
		b.quota.throttled(quota.Ingress, throttle)
	}
	switch {
	case req.Acks == 0:
		// No response at all; a failure closes the connection so that
		// the producer notices, as Kafka does.
		return reply{none: true, hangUp: failed, throttle: throttle}
	case len(waits) == 0:
		return reply{resp: resp, throttle: throttle}
	}
	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	return reply{throttle: throttle, later: func(ctx context.Context) kmsg.Response {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		for _, w := range waits {
			if err := w.p.WaitDurable(ctx, w.last); err != nil {
				w.rp.ErrorCode = errorCode(err)
				w.rp.BaseOffset, w.rp.LogAppendTime, w.rp.LogStartOffset = -1, -1, -1
				w.rp.ErrorMessage = errorMessage(err)
			}
		}
		return resp
	}}
}
