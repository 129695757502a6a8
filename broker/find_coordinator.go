package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/group"
)

const coordinatorTypeGroup = 0

// handleFindCoordinator names this broker as the coordinator of every
// group (v4+ answers a batch of keys). weir has no transaction
// coordinator, so transaction keys get the same error as InitProducerId.
func (b *Broker) handleFindCoordinator(_ context.Context, _ *header, req *kmsg.FindCoordinatorRequest) reply {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	answer := func(key string) (int16, *string) {
		if req.CoordinatorType != coordinatorTypeGroup {
			return errTransactionsUnsupported, ptr("weir: no transaction coordinator")
		}
		if !group.ValidGroupID(key) {
			return kerr.InvalidGroupID.Code, ptr(invalidGroupIDMessage(key))
		}
		return 0, nil
	}
	if req.Version < 4 {
		resp.ErrorCode, resp.ErrorMessage = answer(req.CoordinatorKey)
		if resp.ErrorCode == 0 {
			resp.NodeID, resp.Host, resp.Port = b.cfg.NodeID, b.advHost, b.advPort
		} else {
			resp.NodeID, resp.Port = -1, -1
		}
		return now(resp)
	}
	for _, key := range req.CoordinatorKeys {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key = key
		c.ErrorCode, c.ErrorMessage = answer(key)
		if c.ErrorCode == 0 {
			c.NodeID, c.Host, c.Port = b.cfg.NodeID, b.advHost, b.advPort
		} else {
			c.NodeID, c.Port = -1, -1
		}
		resp.Coordinators = append(resp.Coordinators, c)
	}
	return now(resp)
}
