package group

import (
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Group membership is persisted as Kafka persists it (the GroupMetadata
// record of __consumer_offsets): a RecordGroupMetadata is written when a
// generation becomes Stable (the leader's assignment is stored) and when
// the group becomes Empty. A restart restores the last one: a Stable
// group comes back Stable with its members, so they keep heartbeating in
// the same generation and nothing rebalances. PreparingRebalance and
// CompletingRebalance are never persisted: a restart during a rebalance
// restores the last Stable generation.

// persistMetadata writes g's current generation and members, and
// remembers the record for Snapshot. If Deliver refuses the write, the
// previous record is remembered again. A record too large to store (over
// 1 MiB of member metadata and assignments) is written without members:
// after a restart such a group comes back Empty and its members rejoin.
func (c *RawCoordinator) persistMetadata(g *Group) {
	r := metadataRecord(g)
	if _, err := AppendRecord(nil, r); err != nil {
		if c.cfg.Logger != nil {
			c.cfg.Logger.Warn("weir: group members too large to persist; after a restart this group rebalances",
				"group", g.name, "members", len(r.Members), "err", err)
		}
		r.Members = nil
	}
	c.setMeta(g, r)
}

// metadataRecord describes g's generation and members.
func metadataRecord(g *Group) Record {
	r := Record{
		Kind: RecordGroupMetadata, Group: g.name, Generation: g.generation,
		ProtocolType: g.protocolType, Protocol: g.protocol, Leader: g.leader,
	}
	for _, m := range g.sortedMembers() {
		mr := MemberRecord{
			ID: m.id, ClientID: m.clientID, ClientHost: m.clientHost,
			SessionTimeout:   int32(m.sessionTimeout / time.Millisecond),
			RebalanceTimeout: int32(m.rebalanceTimeout / time.Millisecond),
			Assignment:       m.assignment,
		}
		if m.instanceID != nil {
			mr.InstanceID = strPtr(*m.instanceID)
		}
		for _, p := range m.protocols {
			mr.Protocols = append(mr.Protocols, MemberProtocol{Name: p.Name, Metadata: p.Metadata})
		}
		r.Members = append(r.Members, mr)
	}
	return r
}

// refuseStable registers what Deliver does if the metadata of g's new
// Stable generation cannot be written. Rolling the transition back to
// CompletingRebalance would leave the members waiting for an assignment
// no one sends again, so the refusal is Kafka's: the SyncGroup (or
// JoinGroup) answers that depended on it get COORDINATOR_NOT_AVAILABLE
// and the group rebalances, unless a later step already moved it on.
func (c *RawCoordinator) refuseStable(now time.Time, g *Group, answers ...kmsg.Response) {
	gen := g.generation
	c.onRefused(func() {
		for _, a := range answers {
			switch r := a.(type) {
			case *kmsg.SyncGroupResponse:
				r.ErrorCode = kerr.CoordinatorNotAvailable.Code
				r.MemberAssignment = []byte{}
			case *kmsg.JoinGroupResponse:
				r.ErrorCode = kerr.CoordinatorNotAvailable.Code
				r.Generation = -1
				r.Members = nil
			}
		}
		if c.groups[g.name] != g || g.state != Stable || g.generation != gen {
			return
		}
		for _, m := range g.members {
			m.assignment = nil
		}
		c.prepareRebalance(now, g)
		c.schedule(g)
	})
}

// restoreMetadata notes r, read from the store, as g's last persisted
// membership; finishRestore applies it once every record is read.
func restoreMetadata(g *Group, r Record) {
	rec := r
	g.meta = &rec
	g.persistedGeneration = max(g.persistedGeneration, r.Generation)
}

// finishRestore brings g back as its last metadata record left it: Stable
// with its members if it had any, each with a session deadline starting
// now (so members that do not come back expire and the group rebalances),
// else Empty.
func (c *RawCoordinator) finishRestore(now time.Time, g *Group) {
	meta := g.meta
	if meta == nil || len(meta.Members) == 0 {
		return
	}
	g.generation = meta.Generation
	g.protocolType = meta.ProtocolType
	g.protocol = meta.Protocol
	for _, mr := range meta.Members {
		m := &Member{
			id:               mr.ID,
			clientID:         mr.ClientID,
			clientHost:       mr.ClientHost,
			sessionTimeout:   ms(mr.SessionTimeout),
			rebalanceTimeout: ms(mr.RebalanceTimeout),
			assignment:       slices.Clone(mr.Assignment),
		}
		if m.rebalanceTimeout <= 0 {
			m.rebalanceTimeout = m.sessionTimeout
		}
		m.heartbeatDeadline = now.Add(m.sessionTimeout)
		for _, p := range mr.Protocols {
			m.protocols = append(m.protocols, kmsg.JoinGroupRequestProtocol{Name: p.Name, Metadata: slices.Clone(p.Metadata)})
		}
		if old := g.members[m.id]; old != nil { // a corrupt record naming a member twice: the last wins
			if old.instanceID != nil && g.static[*old.instanceID] == old.id {
				delete(g.static, *old.instanceID)
			}
			delete(g.members, old.id)
		}
		if mr.InstanceID != nil {
			m.instanceID = strPtr(*mr.InstanceID)
			if old, ok := g.static[*m.instanceID]; ok {
				delete(g.members, old) // an instance named twice: the last wins
			}
			g.static[*m.instanceID] = m.id
		}
		g.members[m.id] = m
	}
	g.leader = meta.Leader
	if g.members[g.leader] == nil {
		g.leader = g.sortedMembers()[0].id
	}
	g.transition(now, Stable)
	c.schedule(g)
}

// renameInMetadata persists that a static member of the last persisted
// Stable generation now has member id newID (the instance restarted during
// a rebalance). Without it, a restart before the rebalance completes would
// restore the old id, and the instance's new id would be fenced
// (FENCED_INSTANCE_ID, fatal in clients).
func (c *RawCoordinator) renameInMetadata(g *Group, oldID, newID string) {
	if g.meta == nil || !slices.ContainsFunc(g.meta.Members, func(m MemberRecord) bool { return m.ID == oldID }) {
		return
	}
	r := *g.meta
	r.Members = slices.Clone(r.Members)
	for i := range r.Members {
		if r.Members[i].ID == oldID {
			r.Members[i].ID = newID
		}
	}
	if r.Leader == oldID {
		r.Leader = newID
	}
	c.setMeta(g, r)
}

// setMeta makes r g's last metadata record and persists it; a refused
// write puts the previous one back.
func (c *RawCoordinator) setMeta(g *Group, r Record) {
	prev, rec := g.meta, &r
	g.meta = rec
	c.persist(r)
	c.onRefused(func() {
		if g.meta == rec {
			g.meta = prev
		}
	})
}
