package broker

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/group"
	"github.com/weirhq/weir/storage"
)

// handleIncrementalAlterConfigs applies SET and DELETE to topic configs.
// APPEND and SUBTRACT work on list configs (cleanup.policy) only; on other
// keys they are INVALID_REQUEST.
//
// On a GROUP resource (type 32, as Kafka 4 group configs) it creates the
// group, durably, if it does not exist: that is `weir group create`, and
// what RequireGroupCreate asks for. No group config keys are supported.
func (b *Broker) handleIncrementalAlterConfigs(ctx context.Context, _ *header, req *kmsg.IncrementalAlterConfigsRequest) reply {
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	created := map[int]<-chan error{} // resource index -> group creation
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeBroker:
			// Throughput units are the broker's dynamic configs (quota.go).
			code, err := b.alterQuotaConfigs(rr.ResourceName, rr.Configs, req.ValidateOnly)
			sr.ErrorCode, sr.ErrorMessage = code, errorMessage(err)
			resp.Resources = append(resp.Resources, sr)
			continue
		case configResourceTypeGroup:
			sr.ErrorCode, sr.ErrorMessage = checkGroupCreate(rr.ResourceName, len(rr.Configs))
			if sr.ErrorCode == 0 && !req.ValidateOnly {
				created[len(resp.Resources)] = b.groups.SubmitCreate(ctx, rr.ResourceName)
			}
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		code, err := b.alterTopicConfig(rr.ResourceType, rr.ResourceName, req.ValidateOnly, func(t *storage.Topic) (map[string]string, []string, error) {
			return incrementalChanges(t, rr.Configs)
		})
		sr.ErrorCode, sr.ErrorMessage = code, errorMessage(err)
		resp.Resources = append(resp.Resources, sr)
	}
	if len(created) == 0 {
		return now(resp)
	}
	// Group creation waits for the coordinator's fsync: in the writer, not
	// the reader.
	return deferred(func(ctx context.Context) kmsg.Response {
		for i, ch := range created {
			select {
			case err := <-ch:
				resp.Resources[i].ErrorCode, resp.Resources[i].ErrorMessage = groupCreateError(err)
			case <-ctx.Done():
				return nil
			}
		}
		return resp
	})
}

// configResourceTypeGroup is Kafka 4's GROUP config resource type.
const configResourceTypeGroup kmsg.ConfigResourceType = 32

// checkGroupCreate validates an IncrementalAlterConfigs on a GROUP
// resource: a name, and no config keys (none are supported).
func checkGroupCreate(name string, configs int) (int16, *string) {
	switch {
	case !group.ValidGroupID(name):
		return kerr.InvalidGroupID.Code, ptr(invalidGroupIDMessage(name))
	case configs > 0:
		return kerr.InvalidConfig.Code, ptr("weir: group configs are not supported; altering a GROUP resource only creates the group")
	}
	return 0, nil
}

func groupCreateError(err error) (int16, *string) {
	return errorCode(err), errorMessage(err)
}

// incrementalChanges turns incremental operations into keys to set and
// delete. Unknown keys are left for the caller's name check.
func incrementalChanges(t *storage.Topic, ops []kmsg.IncrementalAlterConfigsRequestResourceConfig) (map[string]string, []string, error) {
	set := make(map[string]string)
	var del []string
	current := func(name string) string {
		if v, ok := set[name]; ok {
			return v
		}
		for _, e := range topicConfigEntries(t) {
			if e.name == name {
				return e.value
			}
		}
		return ""
	}
	for _, c := range ops {
		value := ""
		if c.Value != nil {
			value = *c.Value
		}
		known, list := knownTopicConfig(c.Name)
		switch c.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			set[c.Name] = value
		case kmsg.IncrementalAlterConfigOpDelete:
			delete(set, c.Name)
			del = append(del, c.Name)
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			if !known {
				set[c.Name] = value // reported as unknown by the caller
				continue
			}
			if !list {
				return nil, nil, fmt.Errorf("weir: %s is not a list config; %s is not allowed", c.Name, c.Op)
			}
			items := splitList(current(c.Name))
			for _, v := range splitList(value) {
				i := slices.Index(items, v)
				switch {
				case c.Op == kmsg.IncrementalAlterConfigOpAppend && i < 0:
					items = append(items, v)
				case c.Op == kmsg.IncrementalAlterConfigOpSubtract && i >= 0:
					items = slices.Delete(items, i, i+1)
				}
			}
			set[c.Name] = strings.Join(items, ",")
		default:
			return nil, nil, fmt.Errorf("weir: unknown config operation %d", c.Op)
		}
	}
	return set, del, nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
