package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleLeaveGroup removes members (one in v0-v2, a batch from v3).
func (b *Broker) handleLeaveGroup(ctx context.Context, h *header, req *kmsg.LeaveGroupRequest) reply {
	return b.groupRequest(ctx, h, req)
}
