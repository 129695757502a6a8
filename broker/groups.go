package broker

import (
	"context"
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/group"
)

// Group requests go to the group coordinator's driver goroutine in the
// connection's reader, so they reach it in request order; the response is
// awaited in the writer, in order with the connection's other responses.
// A JoinGroup or SyncGroup that waits for the rest of the group holds up
// only its own connection's later responses, as in Kafka; the reader keeps
// reading up to maxInFlight requests.
func (b *Broker) groupRequest(ctx context.Context, h *header, req kmsg.Request) reply {
	ch := b.groups.Submit(ctx, group.Client{ID: h.clientID(), Host: clientHost(ctx)}, req)
	return deferred(func(ctx context.Context) kmsg.Response {
		select {
		case resp := <-ch:
			return resp
		case <-ctx.Done():
			return nil // the connection or the broker is closing
		}
	})
}

// invalidGroupIDMessage says why a group id is refused, for the APIs whose
// responses carry a message.
func invalidGroupIDMessage(id string) string {
	if id == "" {
		return "weir: empty group id"
	}
	return fmt.Sprintf("weir: group id of %d bytes; at most %d", len(id), group.MaxGroupIDBytes)
}

type remoteKey struct{}

// clientHost is the peer's host as Kafka shows it in DescribeGroups
// ("/127.0.0.1").
func clientHost(ctx context.Context) string {
	addr, _ := ctx.Value(remoteKey{}).(string)
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return "/" + host
	}
	return addr
}
