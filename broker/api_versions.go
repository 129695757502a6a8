package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleApiVersions lists the APIs and versions of apiTable, and the
// SASL APIs on a broker with SASL. An unsupported
// ApiVersions version is answered in handleFrame (v0 body with
// UNSUPPORTED_VERSION).
func (b *Broker) handleApiVersions(_ context.Context, _ *header, req *kmsg.ApiVersionsRequest) reply {
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ApiKeys = b.supportedAPIs()
	return now(resp)
}
