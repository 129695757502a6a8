package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleOffsetCommit commits offsets, fenced by member and generation. The
// response is sent once the commit is fsynced.
func (b *Broker) handleOffsetCommit(ctx context.Context, h *header, req *kmsg.OffsetCommitRequest) reply {
	return b.groupRequest(ctx, h, req)
}
