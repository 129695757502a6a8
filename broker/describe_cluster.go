package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDescribeCluster reports this single broker as the whole cluster.
func (b *Broker) handleDescribeCluster(_ context.Context, _ *header, req *kmsg.DescribeClusterRequest) reply {
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.ClusterID = b.clusterID
	resp.ControllerID = b.cfg.NodeID
	resp.EndpointType = 1 // brokers
	if req.Version >= 1 && req.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		return now(resp)
	}
	br := kmsg.NewDescribeClusterResponseBroker()
	br.NodeID, br.Host, br.Port = b.cfg.NodeID, b.advHost, b.advPort
	resp.Brokers = []kmsg.DescribeClusterResponseBroker{br}
	return now(resp)
}
