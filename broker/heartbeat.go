package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleHeartbeat keeps a member's session alive and tells it when a
// rebalance starts (REBALANCE_IN_PROGRESS).
func (b *Broker) handleHeartbeat(ctx context.Context, h *header, req *kmsg.HeartbeatRequest) reply {
	return b.groupRequest(ctx, h, req)
}
