package broker

import (
	"context"
	"errors"
	"sort"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const apiKeyApiVersions = 18

// header is a parsed request header.
type header struct {
	key     int16
	version int16
	corr    int32
	// rawClientID is the client id as it stands in the frame, which may be
	// reused once the request is answered: only clientID copies it out.
	// Most requests never need it, so they do not pay for the string.
	rawClientID []byte
}

// clientID returns a copy of the request's client id ("" if null).
func (h *header) clientID() string { return string(h.rawClientID) }

// api is one entry of the handler table: the versions this broker fully
// implements and advertises, and the handler. Adding a Kafka API is one file
// with its handler plus one line in apiTable.
type api struct {
	key      int16
	min, max int16
	handle   func(b *Broker, ctx context.Context, h *header, req kmsg.Request) reply
}

// on adapts a handler taking its concrete request type.
func on[R kmsg.Request](f func(b *Broker, ctx context.Context, h *header, req R) reply) func(*Broker, context.Context, *header, kmsg.Request) reply {
	return func(b *Broker, ctx context.Context, h *header, req kmsg.Request) reply {
		r, ok := req.(R)
		if !ok { // cannot happen: the table and kmsg.RequestForKey agree
			return reply{}
		}
		return f(b, ctx, h, r)
	}
}

// apiTable lists every API the broker serves, keyed by API key.
var apiTable map[int16]api

func init() { apiTable = buildAPITable() }

func buildAPITable() map[int16]api {
	list := []api{
		{0, 3, 12, on((*Broker).handleProduce)},
		{1, 4, 12, on((*Broker).handleFetch)},
		{2, 1, 8, on((*Broker).handleListOffsets)},
		{3, 0, 12, on((*Broker).handleMetadata)},
		{8, 0, 8, on((*Broker).handleOffsetCommit)},
		{9, 0, 8, on((*Broker).handleOffsetFetch)},
		{10, 0, 4, on((*Broker).handleFindCoordinator)},
		{11, 0, 9, on((*Broker).handleJoinGroup)},
		{12, 0, 4, on((*Broker).handleHeartbeat)},
		{13, 0, 5, on((*Broker).handleLeaveGroup)},
		{14, 0, 5, on((*Broker).handleSyncGroup)},
		{15, 0, 5, on((*Broker).handleDescribeGroups)},
		{16, 0, 5, on((*Broker).handleListGroups)},
		{18, 0, 4, on((*Broker).handleApiVersions)},
		{19, 0, 7, on((*Broker).handleCreateTopics)},
		{20, 0, 6, on((*Broker).handleDeleteTopics)},
		{21, 0, 2, on((*Broker).handleDeleteRecords)},
		{22, 0, 4, on((*Broker).handleInitProducerID)},
		{32, 0, 4, on((*Broker).handleDescribeConfigs)},
		{33, 0, 2, on((*Broker).handleAlterConfigs)},
		{37, 0, 3, on((*Broker).handleCreatePartitions)},
		{42, 0, 2, on((*Broker).handleDeleteGroups)},
		{44, 0, 1, on((*Broker).handleIncrementalAlterConfigs)},
		{47, 0, 0, on((*Broker).handleOffsetDelete)},
		{60, 0, 1, on((*Broker).handleDescribeCluster)},
	}
	m := make(map[int16]api, len(list))
	for _, a := range list {
		m[a.key] = a
	}
	return m
}

// supportedAPIs returns the table as ApiVersions entries, sorted by key,
// plus the SASL APIs when the broker has SASL (sasl.go).
func (b *Broker) supportedAPIs() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]kmsg.ApiVersionsResponseApiKey, 0, len(apiTable)+len(saslAPIs))
	add := func(a api) {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = a.key, a.min, a.max
		keys = append(keys, k)
	}
	for _, a := range apiTable {
		add(a)
	}
	if b.cfg.SASL.enabled() {
		for _, a := range saslAPIs {
			add(a)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ApiKey < keys[j].ApiKey })
	return keys
}

var errShortHeader = errors.New("truncated request header")

// parseHeader reads the request header v1 fields (key, version, correlation
// id, client id). The flexible tag section (header v2) is skipped later,
// once the version is known to be ours.
func parseHeader(frame []byte) (header, []byte, error) {
	r := kbin.Reader{Src: frame}
	var h header
	h.key = r.Int16()
	h.version = r.Int16()
	h.corr = r.Int32()
	if n := r.Int16(); n > 0 {
		h.rawClientID = r.Span(int(n))
	}
	if !r.Ok() {
		return h, nil, &frameError{Reason: "bad header", Key: h.key, Ver: h.version, Err: errShortHeader}
	}
	return h, r.Src, nil
}

// handleFrame parses one request frame (without its size prefix), and runs
// the immediate part of its handler. An error means: close the connection.
func (b *Broker) handleFrame(ctx context.Context, frame []byte) (pending, error) {
	h, body, err := parseHeader(frame)
	if err != nil {
		return pending{}, err
	}
	return b.handleRequest(ctx, h, body)
}

// handleRequest is handleFrame once the header is parsed.
func (b *Broker) handleRequest(ctx context.Context, h header, body []byte) (pending, error) {
	a, ok := apiTable[h.key]
	if !ok {
		return pending{}, &frameError{Reason: "unknown api key", Key: h.key, Ver: h.version}
	}
	if h.version < a.min || h.version > a.max {
		if h.key == apiKeyApiVersions {
			// Clients retry with the version we list in a v0 body.
			resp := kmsg.NewPtrApiVersionsResponse()
			resp.Version = 0
			resp.ErrorCode = errUnsupportedVersion
			resp.ApiKeys = b.supportedAPIs()
			return pending{corr: h.corr, key: h.key, reply: now(resp)}, nil
		}
		return pending{}, &frameError{Reason: "unsupported version", Key: h.key, Ver: h.version}
	}
	req, err := decodeRequest(&h, body)
	if err != nil {
		return pending{}, err
	}
	return pending{corr: h.corr, key: h.key, reply: a.handle(b, ctx, &h, req)}, nil
}

// decodeRequest decodes the body of a request whose key and version are
// known to be served.
func decodeRequest(h *header, body []byte) (kmsg.Request, error) {
	req := kmsg.RequestForKey(h.key)
	req.SetVersion(h.version)
	if req.IsFlexible() {
		r := kbin.Reader{Src: body}
		kmsg.SkipTags(&r)
		if !r.Ok() {
			return nil, &frameError{Reason: "bad header tags", Key: h.key, Ver: h.version, Err: errShortHeader}
		}
		body = r.Src
	}
	if err := req.ReadFrom(body); err != nil {
		return nil, &frameError{Reason: "bad request body", Key: h.key, Ver: h.version, Err: err}
	}
	return req, nil
}
