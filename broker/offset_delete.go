package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleOffsetDelete deletes committed offsets of topics a group no longer
// consumes (KIP-496).
func (b *Broker) handleOffsetDelete(ctx context.Context, h *header, req *kmsg.OffsetDeleteRequest) reply {
	return b.groupRequest(ctx, h, req)
}
