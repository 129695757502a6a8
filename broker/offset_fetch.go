package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleOffsetFetch returns committed offsets (one group up to v7, a batch
// of groups from v8).
func (b *Broker) handleOffsetFetch(ctx context.Context, h *header, req *kmsg.OffsetFetchRequest) reply {
	return b.groupRequest(ctx, h, req)
}
