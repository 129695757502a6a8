package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleListGroups lists groups, filtered by state (v4+) and type (v5+).
func (b *Broker) handleListGroups(ctx context.Context, h *header, req *kmsg.ListGroupsRequest) reply {
	return b.groupRequest(ctx, h, req)
}
