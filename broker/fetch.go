package broker

import (
	"context"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// handleFetch runs entirely as a deferred step: the writer goroutine runs
// it in request order, so a long poll delays only this connection's later
// responses, as in Kafka.
//
// Fetch sessions (KIP-227) are not kept: every fetch is a full fetch and the
// response's session id is 0, which tells clients to keep sending full
// requests.
//
// The record bytes are read into pooled buffers, released once the writer
// has encoded the response.
func (b *Broker) handleFetch(_ context.Context, _ *header, req *kmsg.FetchRequest) reply {
	var parts []fetchPart
	return reply{
		later: func(ctx context.Context) kmsg.Response {
			var resp *kmsg.FetchResponse
			resp, parts = b.fetch(ctx, req)
			b.fetched(resp)
			return resp
		},
		done: func() {
			for i := range parts {
				putBuf(parts[i].buf)
				parts[i].buf = nil
			}
		},
	}
}

var noRecords = []byte{}

// fetchPart is one requested partition, resolved once per request.
type fetchPart struct {
	p      *storage.Partition
	err    error
	offset int64
	max    int32
	out    *kmsg.FetchResponseTopicPartition
	buf    []byte // pooled buffer behind out.RecordBatches, if any
}

// fetch answers req. The returned parts hold the pooled buffers that the
// response's record bytes point into.
func (b *Broker) fetch(ctx context.Context, req *kmsg.FetchRequest) (*kmsg.FetchResponse, []fetchPart) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if req.Version >= 7 {
		switch {
		case req.SessionID != 0:
			resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
			return resp, nil
		case req.SessionEpoch != -1 && req.SessionEpoch != 0:
			resp.ErrorCode = kerr.InvalidFetchSessionEpoch.Code
			return resp, nil
		}
	}

	var parts []fetchPart
	resp.Topics = make([]kmsg.FetchResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			p, err := b.partition(rt.Topic, rp.Partition)
			parts = append(parts, fetchPart{p: p, err: err, offset: rp.FetchOffset, max: rp.PartitionMaxBytes, out: sp})
		}
	}

	maxBytes := int32(math.MaxInt32)
	if req.Version >= 3 && req.MaxBytes > 0 {
		maxBytes = req.MaxBytes
	}
	wait := time.Duration(max(req.MaxWaitMillis, 0)) * time.Millisecond

	total, failed := b.readFetch(parts, maxBytes)
	if failed || total >= int64(req.MinBytes) || wait == 0 || ctx.Err() != nil {
		return resp, parts
	}

	// Long poll: one channel for the whole request, woken whenever any
	// requested partition's high watermark moves.
	wake := make(chan struct{}, 1)
	for _, fp := range parts {
		if fp.p != nil {
			cancel := fp.p.Subscribe(wake)
			defer cancel()
		}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		// Re-read once after subscribing: data may have landed in between.
		total, failed = b.readFetch(parts, maxBytes)
		if failed || total >= int64(req.MinBytes) {
			return resp, parts
		}
		select {
		case <-wake:
		case <-timer.C:
			b.readFetch(parts, maxBytes)
			return resp, parts
		case <-ctx.Done():
			return resp, parts
		}
	}
}

// readFetch fills every partition's response from its log, keeping the
// total under maxBytes except that the first non-empty partition always gets
// at least one whole batch (KIP-74). It reports the bytes returned, and
// whether any partition has an error (which ends a long poll at once).
func (b *Broker) readFetch(parts []fetchPart, maxBytes int32) (total int64, failed bool) {
	remaining := int64(maxBytes)
	for i := range parts {
		fp := &parts[i]
		out := fp.out
		// Empty, never null: librdkafka rejects a null record set.
		out.RecordBatches = noRecords
		putBuf(fp.buf) // an earlier read of this request, now replaced
		fp.buf = nil
		out.ErrorCode = 0
		if fp.err != nil {
			out.ErrorCode = errorCode(fp.err)
			failed = true
			continue
		}
		out.HighWatermark = fp.p.HighWatermark()
		out.LastStableOffset = out.HighWatermark
		out.LogStartOffset = fp.p.LogStartOffset()
		limit := int64(fp.max)
		if total > 0 {
			limit = min(limit, remaining)
		}
		if limit <= 0 && total > 0 {
			continue
		}
		data, err := fp.p.ReadWith(fp.offset, int32(max(min(limit, math.MaxInt32), 0)), getBuf)
		fp.buf = data
		if err != nil {
			out.ErrorCode = errorCode(err)
			failed = true
			continue
		}
		if total > 0 && int64(len(data)) > remaining {
			continue // only the first non-empty partition may go over
		}
		if data != nil {
			out.RecordBatches = data
		}
		total += int64(len(data))
		remaining -= int64(len(data))
	}
	return total, failed
}
