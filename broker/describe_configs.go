package broker

import (
	"context"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDescribeConfigs describes topic configs (effective value, and
// whether it is an override) and a few read-only broker settings.
func (b *Broker) handleDescribeConfigs(_ context.Context, _ *header, req *kmsg.DescribeConfigsRequest) reply {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		var entries []configEntry
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			t, err := b.topic(rr.ResourceName, false)
			if err != nil {
				sr.ErrorCode = errorCode(err)
				sr.ErrorMessage = errorMessage(err)
				break
			}
			entries = topicConfigEntries(t)
		case kmsg.ConfigResourceTypeBroker:
			if !b.isThisBroker(rr.ResourceName) {
				sr.ErrorCode = kerr.InvalidRequest.Code
				sr.ErrorMessage = ptr("unknown broker " + rr.ResourceName)
				break
			}
			entries = append(b.brokerConfigEntries(), b.quota.configEntries()...)
		default:
			sr.ErrorCode = kerr.InvalidRequest.Code
			sr.ErrorMessage = ptr("unsupported resource type " + rr.ResourceType.String())
		}
		for _, e := range entries {
			if rr.ConfigNames != nil && !slices.Contains(rr.ConfigNames, e.name) {
				continue
			}
			sc := kmsg.NewDescribeConfigsResponseResourceConfig()
			sc.Name = e.name
			sc.Value = ptr(e.value)
			sc.ReadOnly = e.readOnly
			sc.IsSensitive = e.sensitive
			sc.Source = e.source
			// v0 has no source: is_default says "not overridden".
			sc.IsDefault = e.source == kmsg.ConfigSourceDefaultConfig
			sc.ConfigType = e.kind
			if req.IncludeSynonyms && req.Version >= 1 {
				syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				syn.Name, syn.Value, syn.Source = e.name, ptr(e.value), e.source
				sc.ConfigSynonyms = []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{syn}
			}
			sr.Configs = append(sr.Configs, sc)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return now(resp)
}

// isThisBroker reports whether a broker resource name means this broker:
// its node id, or "" (the cluster-wide default).
func (b *Broker) isThisBroker(name string) bool {
	return name == "" || name == strconv.FormatInt(int64(b.cfg.NodeID), 10)
}
