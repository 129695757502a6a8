package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDescribeGroups reports groups' state, members and assignments.
func (b *Broker) handleDescribeGroups(ctx context.Context, h *header, req *kmsg.DescribeGroupsRequest) reply {
	return b.groupRequest(ctx, h, req)
}
