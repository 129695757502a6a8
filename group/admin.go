package group

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// describe is Kafka's DescribeGroups: member metadata and assignments are
// shown only for a Stable group; an unknown group is reported Dead with no
// error. A group named more than once is described once, so that a small
// request cannot ask for a large group's metadata many times over.
func (c *RawCoordinator) describe(r *kmsg.DescribeGroupsRequest, done func(kmsg.Response)) {
	resp := r.ResponseKind().(*kmsg.DescribeGroupsResponse)
	seen := make(map[string]struct{}, len(r.Groups))
	for _, name := range r.Groups {
		if _, ok := seen[name]; ok {
			continue
		}
		seen[name] = struct{}{}
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = name
		g := c.groups[name]
		switch {
		case !ValidGroupID(name):
			dg.ErrorCode = kerr.InvalidGroupID.Code
		case g == nil:
			dg.State = Dead.String()
		default:
			dg.State = g.state.String()
			dg.ProtocolType = g.protocolType
			if g.state == Stable {
				dg.Protocol = g.protocol
			}
			for _, m := range g.sortedMembers() {
				dm := kmsg.NewDescribeGroupsResponseGroupMember()
				dm.MemberID, dm.InstanceID, dm.ClientID, dm.ClientHost = m.id, m.instanceID, m.clientID, m.clientHost
				if g.state == Stable {
					dm.ProtocolMetadata = m.metadataFor(g.protocol)
					dm.MemberAssignment = m.assignment
				}
				dg.Members = append(dg.Members, dm)
			}
		}
		resp.Groups = append(resp.Groups, dg)
	}
	c.reply(done, resp)
}

// list is ListGroups, with the v4 state filter and the v5 type filter
// (every weir group is "classic").
func (c *RawCoordinator) list(r *kmsg.ListGroupsRequest, done func(kmsg.Response)) {
	resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
	typeOK := len(r.TypesFilter) == 0 || slices.ContainsFunc(r.TypesFilter, func(t string) bool { return equalFold(t, "classic") })
	for _, name := range c.sortedGroupNames() {
		g := c.groups[name]
		if !typeOK {
			break
		}
		if len(r.StatesFilter) > 0 && !slices.ContainsFunc(r.StatesFilter, func(s string) bool { return equalFold(s, g.state.String()) }) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = g.name, g.protocolType, g.state.String(), "classic"
		resp.Groups = append(resp.Groups, lg)
	}
	c.reply(done, resp)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// deleteGroups is Kafka's handleDeleteGroups: only an Empty group can be
// deleted, and its offsets go with it.
func (c *RawCoordinator) deleteGroups(r *kmsg.DeleteGroupsRequest, done func(kmsg.Response)) {
	resp := r.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, name := range r.Groups {
		dg := kmsg.NewDeleteGroupsResponseGroup()
		dg.Group = name
		g := c.groups[name]
		switch {
		case !ValidGroupID(name):
			dg.ErrorCode = kerr.InvalidGroupID.Code
		case g == nil:
			dg.ErrorCode = kerr.GroupIDNotFound.Code
		case g.state != Empty || len(g.pending) > 0:
			dg.ErrorCode = kerr.NonEmptyGroup.Code
		default:
			delete(c.groups, name)
			g.state = Dead
			c.persist(Record{Kind: RecordGroupDeleted, Group: name})
			c.out.groupDeleted = true // see MustPersistFirst
			c.onRefused(func() {
				if c.groups[name] == nil {
					c.groups[name] = g
					g.state = Empty
				}
			})
		}
		resp.Groups = append(resp.Groups, dg)
	}
	c.reply(done, resp)
}
