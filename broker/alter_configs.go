package broker

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// errBrokerConfigReadOnly answers attempts to alter static broker configs.
// Only the throughput-unit settings (weir.*) change at runtime.
var errBrokerConfigReadOnly = errors.New("weir: broker config is read-only; restart with new settings")

// handleAlterConfigs replaces all of a topic's overrides with the given
// configs (the legacy, non-incremental semantics).
func (b *Broker) handleAlterConfigs(_ context.Context, _ *header, req *kmsg.AlterConfigsRequest) reply {
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if rr.ResourceType == kmsg.ConfigResourceTypeBroker {
			code, err := b.replaceQuotaConfigs(rr.ResourceName, rr.Configs, req.ValidateOnly)
			sr.ErrorCode, sr.ErrorMessage = code, errorMessage(err)
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		set := make(map[string]string, len(rr.Configs))
		for _, c := range rr.Configs {
			if c.Value != nil {
				set[c.Name] = *c.Value
			}
		}
		code, err := b.alterTopicConfig(rr.ResourceType, rr.ResourceName, req.ValidateOnly, func(t *storage.Topic) (map[string]string, []string, error) {
			var del []string
			for k := range t.ConfigOverrides() {
				if _, ok := set[k]; !ok {
					del = append(del, k)
				}
			}
			return set, del, nil
		})
		sr.ErrorCode, sr.ErrorMessage = code, errorMessage(err)
		resp.Resources = append(resp.Resources, sr)
	}
	return now(resp)
}

// alterTopicConfig checks the resource, lets change compute the keys to set
// and delete, validates names, and applies (unless validateOnly).
func (b *Broker) alterTopicConfig(kind kmsg.ConfigResourceType, name string, validateOnly bool,
	change func(t *storage.Topic) (set map[string]string, del []string, err error),
) (int16, error) {
	switch kind {
	case kmsg.ConfigResourceTypeTopic:
	case kmsg.ConfigResourceTypeBroker:
		return kerr.InvalidRequest.Code, errBrokerConfigReadOnly
	default:
		return kerr.InvalidRequest.Code, errors.New("weir: unsupported resource type " + kind.String())
	}
	t, err := b.topic(name, false)
	if err != nil {
		return errorCode(err), err
	}
	set, del, err := change(t)
	if err != nil {
		return kerr.InvalidRequest.Code, err
	}
	if err := checkConfigNames(set); err != nil {
		return kerr.InvalidConfig.Code, err
	}
	for _, k := range del {
		if ok, _ := knownTopicConfig(k); !ok {
			return kerr.InvalidConfig.Code, unknownConfigError(k)
		}
	}
	if validateOnly {
		err = b.log.ValidateConfig(set)
	} else {
		err = b.log.AlterTopicConfig(name, set, del)
	}
	if err != nil {
		return errorCode(err), err
	}
	return 0, nil
}
