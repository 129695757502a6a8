package group

import (
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type topicPartition struct {
	topic     string
	partition int32
}

// Offset is one committed offset.
type Offset struct {
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	CommitTime  time.Time
}

// commit is Kafka's handleCommitOffsets: commits are fenced by member and
// generation; a memberless commit (generation -1, no member id, as tools
// send) is accepted only while the group is Empty.
func (c *RawCoordinator) commit(now time.Time, r *kmsg.OffsetCommitRequest, done func(kmsg.Response)) {
	resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
	for _, t := range r.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	all := func(code int16) {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].ErrorCode = code
			}
		}
		c.reply(done, resp)
	}
	gen, member, instance := r.Generation, r.MemberID, r.InstanceID
	if r.Version == 0 {
		gen, member = -1, ""
	}
	if !ValidGroupID(r.Group) {
		all(kerr.InvalidGroupID.Code)
		return
	}
	g := c.groups[r.Group]
	switch {
	case c.refusesUncreated(g, r.Group):
		all(kerr.GroupAuthorizationFailed.Code)
		return
	case g == nil && gen >= 0:
		// A member of a generation this coordinator never had.
		all(kerr.IllegalGeneration.Code)
		return
	case g == nil && !c.makeRoom(now):
		all(kerr.CoordinatorNotAvailable.Code)
		return
	case g == nil:
		g = c.newGroup(now, r.Group)
		c.onRefused(func() { c.forgetIfUnused(g) })
	}
	defer c.schedule(g)
	if code := g.validateOffsetCommit(gen, member, instance); code != 0 {
		all(code)
		return
	}
	switch g.state {
	case CompletingRebalance:
		// The member has its new generation from JoinGroup but not yet its
		// assignment: it must not commit for partitions it may lose.
		all(kerr.RebalanceInProgress.Code)
		return
	case Stable, PreparingRebalance:
		if m := g.members[member]; m != nil {
			m.heartbeatDeadline = now.Add(m.sessionTimeout)
		}
	}
	for i, t := range r.Topics {
		for j, p := range t.Partitions {
			rp := &resp.Topics[i].Partitions[j]
			meta := ""
			if p.Metadata != nil {
				meta = *p.Metadata
			}
			switch {
			case len(t.Topic) > MaxTopicNameBytes,
				c.cfg.PartitionExists != nil && !c.cfg.PartitionExists(t.Topic, p.Partition):
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case len(meta) > c.cfg.MaxOffsetMetadataBytes:
				rp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
			default:
				epoch := p.LeaderEpoch
				if r.Version < 6 {
					epoch = -1
				}
				c.commitOffset(g, topicPartition{t.Topic, p.Partition},
					Offset{Offset: p.Offset, LeaderEpoch: epoch, Metadata: meta, CommitTime: now})
			}
		}
	}
	c.reply(done, resp)
}

// commitOffset sets g's offset of tp. Memory is updated at once, so that
// the requests after this one in the same batch see it, and rolled back by
// Deliver if the record cannot be written: no reply that shows it leaves
// before it is durable (MustPersistFirst), and a refused commit leaves
// nothing behind.
func (c *RawCoordinator) commitOffset(g *Group, tp topicPartition, o Offset) {
	prev, had := g.offsets[tp]
	g.offsets[tp] = o
	c.persist(offsetRecord(g.name, tp.topic, tp.partition, o))
	c.onRefused(func() {
		if cur, ok := g.offsets[tp]; !ok || cur != o {
			return // changed since by a step that stays
		}
		if had {
			g.offsets[tp] = prev
		} else {
			delete(g.offsets, tp)
		}
	})
}

// validateOffsetCommit is Kafka's validateOffsetCommit.
func (g *Group) validateOffsetCommit(gen int32, member string, instance *string) int16 {
	switch {
	case gen >= 0 || member != "" || instance != nil:
		if code := g.validateMember(member, instance); code != 0 {
			return code
		}
		if gen != g.generation {
			return kerr.IllegalGeneration.Code
		}
	case g.state != Empty:
		// Only members may commit to a group that has members.
		return kerr.UnknownMemberID.Code
	}
	return 0
}

type fetchTopic struct {
	topic      string
	partitions []int32
}

// fetch answers OffsetFetch: v0-v7 for one group, v8+ for many. A null
// topic list (v2+) asks for every committed offset of the group.
func (c *RawCoordinator) fetch(r *kmsg.OffsetFetchRequest, done func(kmsg.Response)) {
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	if r.Version < 8 {
		var topics []fetchTopic
		if r.Topics != nil || r.Version < 2 {
			topics = make([]fetchTopic, 0, len(r.Topics))
			for _, t := range r.Topics {
				topics = append(topics, fetchTopic{t.Topic, t.Partitions})
			}
		}
		code, parts := c.fetchGroup(r.Group, topics)
		resp.ErrorCode = code
		for _, t := range parts {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.topic
			for _, p := range t.parts {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.partition, p.offset, p.epoch, strPtr(p.metadata), p.code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		c.reply(done, resp)
		return
	}
	for _, rg := range r.Groups {
		var topics []fetchTopic
		if rg.Topics != nil {
			topics = make([]fetchTopic, 0, len(rg.Topics))
			for _, t := range rg.Topics {
				topics = append(topics, fetchTopic{t.Topic, t.Partitions})
			}
		}
		code, parts := c.fetchGroup(rg.Group, topics)
		og := kmsg.NewOffsetFetchResponseGroup()
		og.Group, og.ErrorCode = rg.Group, code
		for _, t := range parts {
			rt := kmsg.NewOffsetFetchResponseGroupTopic()
			rt.Topic = t.topic
			for _, p := range t.parts {
				rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.partition, p.offset, p.epoch, strPtr(p.metadata), p.code
				rt.Partitions = append(rt.Partitions, rp)
			}
			og.Topics = append(og.Topics, rt)
		}
		resp.Groups = append(resp.Groups, og)
	}
	c.reply(done, resp)
}

type fetchedPartition struct {
	partition int32
	offset    int64
	epoch     int32
	metadata  string
	code      int16
}

type fetchedTopic struct {
	topic string
	parts []fetchedPartition
}

// fetchGroup looks up offsets of one group; topics nil means all.
func (c *RawCoordinator) fetchGroup(name string, topics []fetchTopic) (int16, []fetchedTopic) {
	if code := groupIDError(name); code != 0 {
		return code, nil
	}
	g := c.groups[name]
	var out []fetchedTopic
	if topics == nil {
		if g == nil {
			return 0, nil
		}
		byTopic := map[string][]fetchedPartition{}
		for tp, o := range g.offsets {
			byTopic[tp.topic] = append(byTopic[tp.topic], fetchedPartition{tp.partition, o.Offset, o.LeaderEpoch, o.Metadata, 0})
		}
		names := make([]string, 0, len(byTopic))
		for t := range byTopic {
			names = append(names, t)
		}
		sort.Strings(names)
		for _, t := range names {
			ps := byTopic[t]
			sort.Slice(ps, func(i, j int) bool { return ps[i].partition < ps[j].partition })
			out = append(out, fetchedTopic{t, ps})
		}
		return 0, out
	}
	for _, t := range topics {
		ft := fetchedTopic{topic: t.topic}
		for _, p := range t.partitions {
			fp := fetchedPartition{partition: p, offset: -1, epoch: -1}
			if g != nil {
				if o, ok := g.offsets[topicPartition{t.topic, p}]; ok {
					fp.offset, fp.epoch, fp.metadata = o.Offset, o.LeaderEpoch, o.Metadata
				}
			}
			ft.parts = append(ft.parts, fp)
		}
		out = append(out, ft)
	}
	return 0, out
}

// offsetDelete is Kafka's handleDeleteOffsets (KIP-496): offsets of an
// empty group can be deleted; a group with members keeps the offsets of
// topics it is subscribed to (GROUP_SUBSCRIBED_TO_TOPIC).
func (c *RawCoordinator) offsetDelete(r *kmsg.OffsetDeleteRequest, done func(kmsg.Response)) {
	resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
	g := c.groups[r.Group]
	switch {
	case !ValidGroupID(r.Group):
		resp.ErrorCode = kerr.InvalidGroupID.Code
	case g == nil:
		resp.ErrorCode = kerr.GroupIDNotFound.Code
	case g.state != Empty && g.protocolType != "consumer":
		resp.ErrorCode = kerr.NonEmptyGroup.Code
	}
	if resp.ErrorCode != 0 {
		c.reply(done, resp)
		return
	}
	subscribed := func(string) bool { return false }
	if g.state != Empty {
		subscribed = g.subscribedTo()
	}
	for _, t := range r.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			tp := topicPartition{t.Topic, p.Partition}
			switch {
			case subscribed(t.Topic):
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			default:
				if prev, ok := g.offsets[tp]; ok {
					c.deleteOffset(g, tp)
					c.onRefused(func() {
						if _, ok := g.offsets[tp]; !ok {
							g.offsets[tp] = prev
						}
					})
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	c.reply(done, resp)
}

// subscribedTo returns whether any member of a consumer group subscribes
// to a topic, from the consumer protocol metadata of the chosen protocol.
// Metadata that does not parse counts as subscribed to everything, as in
// Kafka.
func (g *Group) subscribedTo() func(string) bool {
	topics := map[string]bool{}
	for _, m := range g.members {
		var md kmsg.ConsumerMemberMetadata
		meta := m.metadataFor(g.protocol)
		if g.protocol == "" && len(m.protocols) > 0 {
			meta = m.protocols[0].Metadata
		}
		if err := md.ReadFrom(meta); err != nil {
			return func(string) bool { return true }
		}
		for _, t := range md.Topics {
			topics[t] = true
		}
	}
	return func(t string) bool { return topics[t] }
}

// expireOffsets deletes the offsets of groups that have been empty longer
// than the retention (counted from the later of the commit and the moment
// the group became empty), and those of a stable consumer group's topics
// that no member subscribes to any more (counted from the commit), then
// drops empty groups with nothing left.
func (c *RawCoordinator) expireOffsets(now time.Time) {
	for _, name := range c.sortedGroupNames() {
		g := c.groups[name]
		if g.state == Stable && g.protocolType == "consumer" {
			// Kafka also expires, by commit time, the offsets of topics a
			// live consumer group no longer subscribes to.
			subscribed := g.subscribedTo()
			for _, tp := range g.sortedOffsets() {
				o := g.offsets[tp]
				if !subscribed(tp.topic) && now.Sub(o.CommitTime) >= c.cfg.OffsetsRetention {
					c.deleteOffset(g, tp)
				}
			}
			continue
		}
		if g.state != Empty {
			continue
		}
		for _, tp := range g.sortedOffsets() {
			o := g.offsets[tp]
			base := o.CommitTime
			if g.stateSince.After(base) {
				base = g.stateSince
			}
			if now.Sub(base) >= c.cfg.OffsetsRetention {
				c.deleteOffset(g, tp)
			}
		}
		c.maybeDropGroup(g)
	}
}

func (g *Group) droppable() bool {
	return g.state == Empty && len(g.members) == 0 && len(g.pending) == 0 && len(g.offsets) == 0 && !g.created
}

// maybeDropGroup forgets an empty group that holds nothing worth keeping.
func (c *RawCoordinator) maybeDropGroup(g *Group) {
	if !g.droppable() {
		return
	}
	delete(c.groups, g.name)
	g.state = Dead
	if g.generation > 0 {
		c.persist(Record{Kind: RecordGroupDeleted, Group: g.name})
	}
}

// makeRoom reports whether another group fits, dropping abandoned groups
// (empty, nothing committed) when the limit is reached. A sweep is O(groups),
// so one that freed nothing is not repeated for a second: a flood of new
// group ids cannot make every request pay for it.
func (c *RawCoordinator) makeRoom(now time.Time) bool {
	if len(c.groups) < c.cfg.MaxGroups {
		return true
	}
	if now.Before(c.nextSweep) {
		return false
	}
	var drop []string
	for name, g := range c.groups {
		if g.droppable() {
			drop = append(drop, name)
		}
	}
	sort.Strings(drop) // the records they write are in a deterministic order
	for _, name := range drop {
		c.maybeDropGroup(c.groups[name])
	}
	if len(drop) == 0 {
		c.nextSweep = now.Add(time.Second)
	}
	return len(c.groups) < c.cfg.MaxGroups
}

func (c *RawCoordinator) sortedGroupNames() []string { return slices.Sorted(maps.Keys(c.groups)) }

func (c *RawCoordinator) persistGroup(g *Group) { c.persist(groupRecord(g)) }

// groupRecord describes g. EmptySince keeps offset retention counting
// across restarts: a group restored Empty (one that was Empty, or had
// members that were not persisted) has been empty only since the restart
// unless the record says since when. Generation is the highest the group
// has had, also when a generation restored as Stable is older than one an
// interrupted rebalance had started.
func groupRecord(g *Group) Record {
	r := Record{
		Kind: RecordGroup, Group: g.name, Generation: max(g.generation, g.persistedGeneration),
		ProtocolType: g.protocolType, Created: g.created,
	}
	if g.state == Empty {
		r.EmptySince = g.stateSince.UnixMilli()
	}
	return r
}

func offsetRecord(group, topic string, partition int32, o Offset) Record {
	return Record{
		Kind: RecordOffset, Group: group, Topic: topic, Partition: partition,
		Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, CommitTime: o.CommitTime.UnixMilli(),
	}
}

// Restore loads records read from the Store, in order. A group whose
// last metadata record has members comes back Stable with them (see
// finishRestore); other groups come back Empty.
func (c *RawCoordinator) Restore(now time.Time, recs []Record) {
	for _, r := range recs {
		g := c.groups[r.Group]
		switch r.Kind {
		case RecordGroup:
			if g == nil {
				g = c.newGroup(now, r.Group)
			}
			g.generation, g.protocolType, g.created = r.Generation, r.ProtocolType, r.Created
			g.persistedGeneration = max(g.persistedGeneration, r.Generation)
			g.stateSince = now
			if r.EmptySince > 0 {
				g.stateSince = time.UnixMilli(r.EmptySince)
				g.meta = nil // the group became Empty after its last Stable generation
			}
		case RecordGroupMetadata:
			if g == nil {
				g = c.newGroup(now, r.Group)
			}
			restoreMetadata(g, r)
		case RecordGroupDeleted:
			delete(c.groups, r.Group)
		case RecordOffset:
			if g == nil {
				g = c.newGroup(now, r.Group)
			}
			g.offsets[topicPartition{r.Topic, r.Partition}] = Offset{
				Offset: r.Offset, LeaderEpoch: r.LeaderEpoch, Metadata: r.Metadata, CommitTime: time.UnixMilli(r.CommitTime),
			}
		case RecordOffsetDeleted:
			if g != nil {
				delete(g.offsets, topicPartition{r.Topic, r.Partition})
			}
		}
	}
	for _, name := range c.sortedGroupNames() {
		c.finishRestore(now, c.groups[name])
	}
}

// Snapshot returns the records that rebuild the current durable state;
// the Store rewrites its file with them when it compacts.
func (c *RawCoordinator) Snapshot() []Record {
	var out []Record
	for _, name := range c.sortedGroupNames() {
		g := c.groups[name]
		if g.created || g.generation > 0 || g.persistedGeneration > 0 {
			out = append(out, groupRecord(g))
		}
		if g.meta != nil {
			out = append(out, *g.meta)
		}
		tps := g.sortedOffsets()
		for _, tp := range tps {
			out = append(out, offsetRecord(g.name, tp.topic, tp.partition, g.offsets[tp]))
		}
	}
	return out
}

// sortedOffsets returns the partitions g has offsets for, in order, so
// that the records written about them are deterministic.
func (g *Group) sortedOffsets() []topicPartition {
	tps := make([]topicPartition, 0, len(g.offsets))
	for tp := range g.offsets {
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].topic != tps[j].topic {
			return tps[i].topic < tps[j].topic
		}
		return tps[i].partition < tps[j].partition
	})
	return tps
}

// EachOffset calls fn for every committed offset, in group, topic,
// partition order.
func (c *RawCoordinator) EachOffset(fn func(group, topic string, partition int32, o Offset)) {
	for _, name := range c.sortedGroupNames() {
		g := c.groups[name]
		for _, tp := range g.sortedOffsets() {
			fn(name, tp.topic, tp.partition, g.offsets[tp])
		}
	}
}

// DeleteMissingPartitions deletes (durably, through Ready) every committed
// offset of a partition that cfg.PartitionExists says does not exist, and
// returns how many it deleted and of which topics. Commits are accepted only
// for partitions that exist, so these are offsets of a topic deleted
// while its offsets' deletion was not yet written: the broker stopped in
// between, or the write failed. Without this they would come back, and
// apply to a topic created again under the same name.
func (c *RawCoordinator) DeleteMissingPartitions() (int, []string) {
	if c.cfg.PartitionExists == nil {
		return 0, nil
	}
	return c.deleteOffsetsIf(func(tp topicPartition) bool { return !c.cfg.PartitionExists(tp.topic, tp.partition) })
}

// deleteOffsetsIf deletes (persisting each deletion, not rolled back if the
// write fails) every group's committed offsets that drop says, in group and
// partition order, and returns how many and of which topics.
func (c *RawCoordinator) deleteOffsetsIf(drop func(topicPartition) bool) (int, []string) {
	n := 0
	gone := map[string]bool{}
	for _, name := range c.sortedGroupNames() {
		g := c.groups[name]
		for _, tp := range g.sortedOffsets() {
			if drop(tp) {
				c.deleteOffset(g, tp)
				gone[tp.topic] = true
				n++
			}
		}
	}
	return n, slices.Sorted(maps.Keys(gone))
}

func (c *RawCoordinator) deleteOffset(g *Group, tp topicPartition) {
	delete(g.offsets, tp)
	c.persist(Record{Kind: RecordOffsetDeleted, Group: g.name, Topic: tp.topic, Partition: tp.partition})
}
