package group

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func syncResponse(version int16, code int16) *kmsg.SyncGroupResponse {
	r := kmsg.NewPtrSyncGroupResponse()
	r.Version = version
	r.ErrorCode = code
	return r
}

// sync is Kafka's handleSyncGroup: the leader's SyncGroup carries every
// member's assignment and makes the group Stable; the others wait for it.
func (c *RawCoordinator) sync(now time.Time, r *kmsg.SyncGroupRequest, done func(kmsg.Response)) {
	fail := func(code int16) { c.reply(done, syncResponse(r.Version, code)) }
	g := c.groups[r.Group]
	switch {
	case !ValidGroupID(r.Group):
		fail(kerr.InvalidGroupID.Code)
		return
	case c.refusesUncreated(g, r.Group):
		fail(kerr.GroupAuthorizationFailed.Code)
		return
	case g == nil:
		fail(kerr.UnknownMemberID.Code)
		return
	}
	defer c.schedule(g)
	if code := g.validateMember(r.MemberID, r.InstanceID); code != 0 {
		fail(code)
		return
	}
	switch {
	case r.Generation != g.generation:
		fail(kerr.IllegalGeneration.Code)
		return
	case r.ProtocolType != nil && *r.ProtocolType != g.protocolType,
		r.Protocol != nil && *r.Protocol != g.protocol:
		fail(kerr.InconsistentGroupProtocol.Code)
		return
	}
	for _, a := range r.GroupAssignment {
		if len(a.MemberAssignment) > c.cfg.MaxMetadataBytes {
			fail(kerr.InvalidRequest.Code)
			return
		}
	}
	m := g.members[r.MemberID]
	switch g.state {
	case Empty:
		fail(kerr.UnknownMemberID.Code)
	case PreparingRebalance:
		fail(kerr.RebalanceInProgress.Code)
	case CompletingRebalance:
		if m.sync != nil {
			c.reply(m.sync.done, syncResponse(m.sync.version, kerr.RebalanceInProgress.Code))
		}
		m.sync = &waiter{version: r.Version, done: done}
		m.heartbeatDeadline = now.Add(m.sessionTimeout)
		delete(g.pendingSync, m.id)
		if m.id != g.leader {
			return
		}
		for _, o := range g.members {
			o.assignment = nil
		}
		for _, a := range r.GroupAssignment {
			if o := g.members[a.MemberID]; o != nil {
				o.assignment = append([]byte(nil), a.MemberAssignment...)
			}
		}
		g.transition(now, Stable)
		c.persistMetadata(g)
		var answers []kmsg.Response
		for _, o := range g.sortedMembers() {
			if o.sync != nil {
				r := c.syncResult(g, o, o.sync.version)
				answers = append(answers, r)
				c.reply(o.sync.done, r)
				o.sync = nil
				o.heartbeatDeadline = now.Add(o.sessionTimeout)
			}
		}
		c.refuseStable(now, g, answers...)
	case Stable:
		delete(g.pendingSync, m.id)
		m.heartbeatDeadline = now.Add(m.sessionTimeout)
		c.reply(done, c.syncResult(g, m, r.Version))
	}
}

func (c *RawCoordinator) syncResult(g *Group, m *Member, version int16) *kmsg.SyncGroupResponse {
	r := syncResponse(version, 0)
	r.ProtocolType = strPtr(g.protocolType)
	r.Protocol = strPtr(g.protocol)
	r.MemberAssignment = m.assignment
	if r.MemberAssignment == nil {
		r.MemberAssignment = []byte{}
	}
	return r
}

// heartbeat is Kafka's handleHeartbeat.
func (c *RawCoordinator) heartbeat(now time.Time, r *kmsg.HeartbeatRequest, done func(kmsg.Response)) {
	resp := kmsg.NewPtrHeartbeatResponse()
	resp.Version = r.Version
	answer := func(code int16) {
		resp.ErrorCode = code
		c.reply(done, resp)
	}
	g := c.groups[r.Group]
	switch {
	case !ValidGroupID(r.Group):
		answer(kerr.InvalidGroupID.Code)
		return
	case g == nil:
		answer(kerr.UnknownMemberID.Code)
		return
	}
	defer c.schedule(g)
	if code := g.validateMember(r.MemberID, r.InstanceID); code != 0 {
		answer(code)
		return
	}
	if r.Generation != g.generation {
		answer(kerr.IllegalGeneration.Code)
		return
	}
	m := g.members[r.MemberID]
	switch g.state {
	case Empty:
		answer(kerr.UnknownMemberID.Code)
	case CompletingRebalance, Stable:
		m.heartbeatDeadline = now.Add(m.sessionTimeout)
		answer(0)
	case PreparingRebalance:
		m.heartbeatDeadline = now.Add(m.sessionTimeout)
		answer(kerr.RebalanceInProgress.Code)
	}
}

// leave is Kafka's handleLeaveGroup: v0-v2 name one member, v3+ a batch,
// where a member may be named by group.instance.id alone (an
// administrative removal).
func (c *RawCoordinator) leave(now time.Time, r *kmsg.LeaveGroupRequest, done func(kmsg.Response)) {
	resp := kmsg.NewPtrLeaveGroupResponse()
	resp.Version = r.Version
	leaving := r.Members
	if r.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: r.MemberID}}
	}
	g := c.groups[r.Group]
	switch {
	case !ValidGroupID(r.Group):
		resp.ErrorCode = kerr.InvalidGroupID.Code
	case g == nil:
		resp.ErrorCode = kerr.UnknownMemberID.Code
	}
	if resp.ErrorCode != 0 {
		c.reply(done, resp)
		return
	}
	defer c.schedule(g)
	for _, lm := range leaving {
		code := c.leaveOne(now, g, lm.MemberID, lm.InstanceID)
		if r.Version < 3 {
			resp.ErrorCode = code
			continue
		}
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID, rm.ErrorCode = lm.MemberID, lm.InstanceID, code
		resp.Members = append(resp.Members, rm)
	}
	c.reply(done, resp)
}

func (c *RawCoordinator) leaveOne(now time.Time, g *Group, id string, instanceID *string) int16 {
	if id == "" {
		if instanceID == nil {
			return kerr.UnknownMemberID.Code
		}
		cur, ok := g.static[*instanceID]
		if !ok {
			return kerr.UnknownMemberID.Code
		}
		c.removeMemberAndUpdateGroup(now, g, g.members[cur])
		return 0
	}
	if _, ok := g.pending[id]; ok {
		delete(g.pending, id)
		c.tryCompleteJoin(now, g)
		return 0
	}
	if code := g.validateMember(id, instanceID); code != 0 {
		return code
	}
	c.removeMemberAndUpdateGroup(now, g, g.members[id])
	return 0
}
