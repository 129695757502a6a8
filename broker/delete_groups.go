package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDeleteGroups deletes empty groups and their offsets.
func (b *Broker) handleDeleteGroups(ctx context.Context, h *header, req *kmsg.DeleteGroupsRequest) reply {
	return b.groupRequest(ctx, h, req)
}
