package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleSyncGroup hands out the leader's assignment. A follower's response
// waits for the leader's SyncGroup.
func (b *Broker) handleSyncGroup(ctx context.Context, h *header, req *kmsg.SyncGroupRequest) reply {
	return b.groupRequest(ctx, h, req)
}
