package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleApiVersions lists the APIs and versions of apiTable. An unsupported
// ApiVersions version is answered in handleFrame (v0 body with
// UNSUPPORTED_VERSION).
func (b *Broker) handleApiVersions(_ context.Context, _ *header, req *kmsg.ApiVersionsRequest) reply {
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ApiKeys = supportedAPIs()
	return now(resp)
}
