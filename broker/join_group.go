package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleJoinGroup joins a member to a group (group/ has the state machine).
// The response waits until the join phase of the rebalance ends.
func (b *Broker) handleJoinGroup(ctx context.Context, h *header, req *kmsg.JoinGroupRequest) reply {
	return b.groupRequest(ctx, h, req)
}
