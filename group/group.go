package group

import (
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// State is a group's state, named as Kafka names it in DescribeGroups.
type State int8

const (
	Empty State = iota
	PreparingRebalance
	CompletingRebalance
	Stable
	Dead
)

func (s State) String() string {
	switch s {
	case Empty:
		return "Empty"
	case PreparingRebalance:
		return "PreparingRebalance"
	case CompletingRebalance:
		return "CompletingRebalance"
	case Stable:
		return "Stable"
	case Dead:
		return "Dead"
	}
	return "Unknown"
}

// Group is one consumer group: its members and generation, and its
// committed offsets.
type Group struct {
	name         string
	state        State
	stateSince   time.Time
	protocolType string
	protocol     string
	generation   int32
	leader       string
	created      bool // explicitly created (CreateGroup)

	members     map[string]*Member
	static      map[string]string    // group.instance.id -> member id
	pending     map[string]time.Time // member ids given out with MEMBER_ID_REQUIRED -> expiry
	pendingSync map[string]struct{}  // members that have not sent SyncGroup this generation

	// PreparingRebalance: when the join phase ends.
	joinDeadline time.Time
	// Initial rebalance delay of an empty group (Kafka's InitialDelayedJoin).
	initialDelay     bool
	initialRemaining time.Duration
	newMemberAdded   bool
	// CompletingRebalance/Stable: when members still in pendingSync are
	// removed.
	syncDeadline time.Time

	offsets map[topicPartition]Offset

	// meta is the last RecordGroupMetadata written (or restored), which
	// Snapshot keeps. persistedGeneration is the highest generation the
	// store held at restore: a generation restored as Stable may be older
	// than one a rebalance had started, and the next generation is
	// numbered above both, so that no number is handed out twice.
	meta                *Record
	persistedGeneration int32

	wake time.Time // the deadline armed in the timer heap
}

// Member is one member of a group.
type Member struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	protocols        []kmsg.JoinGroupRequestProtocol
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	assignment       []byte

	join *waiter // a JoinGroup waiting for the join phase to end
	sync *waiter // a SyncGroup waiting for the leader's assignment

	heartbeatDeadline time.Time
	newJoinDeadline   time.Time // a new member's JoinGroup gives up then
	isNew             bool
}

type waiter struct {
	version int16
	done    func(kmsg.Response)
}

func (c *RawCoordinator) newGroup(now time.Time, name string) *Group {
	g := &Group{
		name:        name,
		state:       Empty,
		stateSince:  now,
		members:     make(map[string]*Member),
		static:      make(map[string]string),
		pending:     make(map[string]time.Time),
		pendingSync: make(map[string]struct{}),
		offsets:     make(map[topicPartition]Offset),
	}
	c.groups[name] = g
	return g
}

func (g *Group) transition(now time.Time, s State) {
	g.state = s
	g.stateSince = now
}

// maxProtocols bounds the protocols (assignors) one member may offer:
// clients offer a handful, and choosing among them costs members x
// protocols^2.
const maxProtocols = 64

func ms(v int32) time.Duration { return time.Duration(v) * time.Millisecond }

// sortedMembers returns the members in id order, so that everything the
// coordinator does is deterministic.
func (g *Group) sortedMembers() []*Member {
	ms := make([]*Member, 0, len(g.members))
	for _, m := range g.members {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].id < ms[j].id })
	return ms
}

func (g *Group) rebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

// supportsProtocols is Kafka's GroupMetadata.supportsProtocols.
func (g *Group) supportsProtocols(protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	if len(g.members) == 0 {
		return protocolType != "" && len(protocols) > 0
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		if g.supportedByAll(p.Name) {
			return true
		}
	}
	return false
}

func (g *Group) supportedByAll(name string) bool {
	for _, m := range g.members {
		if !slices.ContainsFunc(m.protocols, func(p kmsg.JoinGroupRequestProtocol) bool { return p.Name == name }) {
			return false
		}
	}
	return true
}

// selectProtocol is Kafka's: among protocols every member supports, each
// member votes for its most preferred; the most votes wins (ties go to the
// leader's preference order).
func (g *Group) selectProtocol() string {
	ms := g.sortedMembers()
	if len(ms) == 0 {
		return ""
	}
	votes := map[string]int{}
	for _, m := range ms {
		for _, p := range m.protocols {
			if g.supportedByAll(p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	order := ms[0].protocols
	if l := g.members[g.leader]; l != nil {
		order = l.protocols
	}
	best, bestVotes := "", -1
	for _, p := range order {
		if v, ok := votes[p.Name]; ok && v > bestVotes {
			best, bestVotes = p.Name, v
		}
	}
	return best
}

func (m *Member) metadataFor(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

func (m *Member) matches(protocols []kmsg.JoinGroupRequestProtocol) bool {
	if len(protocols) != len(m.protocols) {
		return false
	}
	for i := range protocols {
		if protocols[i].Name != m.protocols[i].Name || string(protocols[i].Metadata) != string(m.protocols[i].Metadata) {
			return false
		}
	}
	return true
}

func copyProtocols(ps []kmsg.JoinGroupRequestProtocol) []kmsg.JoinGroupRequestProtocol {
	out := make([]kmsg.JoinGroupRequestProtocol, len(ps))
	for i, p := range ps {
		out[i] = kmsg.JoinGroupRequestProtocol{Name: p.Name, Metadata: slices.Clone(p.Metadata)}
	}
	return out
}

func metadataBytes(ps []kmsg.JoinGroupRequestProtocol) int {
	n := 0
	for _, p := range ps {
		n += len(p.Name) + len(p.Metadata)
	}
	return n
}

func strPtr(s string) *string { return &s }

func joinResponse(version int16, code int16) *kmsg.JoinGroupResponse {
	r := kmsg.NewPtrJoinGroupResponse()
	r.Version = version
	r.ErrorCode = code
	r.Generation = -1
	return r
}

// join is Kafka's GroupCoordinator.handleJoinGroup.
func (c *RawCoordinator) join(now time.Time, cl Client, r *kmsg.JoinGroupRequest, done func(kmsg.Response)) {
	fail := func(code int16) { c.reply(done, joinResponse(r.Version, code)) }
	session := ms(r.SessionTimeoutMillis)
	rebalance := ms(r.RebalanceTimeoutMillis)
	if r.Version == 0 {
		rebalance = session
	}
	switch {
	case !ValidGroupID(r.Group):
		fail(kerr.InvalidGroupID.Code)
		return
	case session < c.cfg.MinSessionTimeout || session > c.cfg.MaxSessionTimeout:
		fail(kerr.InvalidSessionTimeout.Code)
		return
	case len(r.Protocols) > maxProtocols, metadataBytes(r.Protocols) > c.cfg.MaxMetadataBytes,
		len(r.ProtocolType) > MaxProtocolTypeBytes:
		// Kafka has no specific code for this; INVALID_REQUEST is fatal
		// in clients, which is right for metadata that can never fit.
		fail(kerr.InvalidRequest.Code)
		return
	}
	if rebalance <= 0 {
		rebalance = session
	}
	unknown := r.MemberID == ""
	g := c.groups[r.Group]
	switch {
	case g == nil && !unknown:
		fail(kerr.UnknownMemberID.Code)
		return
	case c.refusesUncreated(g, r.Group):
		fail(kerr.GroupAuthorizationFailed.Code)
		return
	case g == nil && !c.makeRoom(now):
		fail(kerr.CoordinatorNotAvailable.Code)
		return
	case g == nil:
		g = c.newGroup(now, r.Group)
	}
	defer c.schedule(g)
	if !c.acceptJoiningMember(g, r.MemberID, r.InstanceID) {
		fail(kerr.GroupMaxSizeReached.Code)
		return
	}
	if !g.supportsProtocols(r.ProtocolType, r.Protocols) {
		fail(kerr.InconsistentGroupProtocol.Code)
		return
	}
	w := &waiter{version: r.Version, done: done}
	spec := memberSpec{
		clientID: cl.ID, clientHost: cl.Host, protocolType: r.ProtocolType, protocols: r.Protocols,
		session: session, rebalance: rebalance, instanceID: r.InstanceID,
	}
	if unknown {
		c.joinNew(now, g, spec, w, r.Version >= 4)
	} else {
		c.joinCurrent(now, g, r.MemberID, spec, w)
	}
	c.tryCompleteJoin(now, g)
}

type memberSpec struct {
	clientID, clientHost string
	protocolType         string
	protocols            []kmsg.JoinGroupRequestProtocol
	session, rebalance   time.Duration
	instanceID           *string
}

// acceptJoiningMember is Kafka's group.max.size check: known and pending
// members (and a static member taking over its own place) may always
// rejoin; a new one only while there is room.
func (c *RawCoordinator) acceptJoiningMember(g *Group, memberID string, instanceID *string) bool {
	if _, ok := g.members[memberID]; ok {
		return true
	}
	if instanceID != nil {
		if _, ok := g.static[*instanceID]; ok {
			return true
		}
	}
	if _, ok := g.pending[memberID]; ok {
		return true
	}
	return len(g.members)+len(g.pending) < c.cfg.MaxGroupSize
}

func (c *RawCoordinator) joinNew(now time.Time, g *Group, spec memberSpec, w *waiter, requireKnownID bool) {
	id := c.newMemberID(g, spec.clientID)
	if spec.instanceID != nil {
		if old, ok := g.static[*spec.instanceID]; ok {
			c.replaceStaticMember(now, g, old, id, spec, w)
			return
		}
		c.addMemberAndRebalance(now, g, id, spec, w)
		return
	}
	if requireKnownID {
		// KIP-394: the member retries with this id; until then it is
		// pending and holds up the join phase.
		g.pending[id] = now.Add(spec.session)
		resp := joinResponse(w.version, kerr.MemberIDRequired.Code)
		resp.MemberID = id
		c.reply(w.done, resp)
		return
	}
	c.addMemberAndRebalance(now, g, id, spec, w)
}

func (c *RawCoordinator) joinCurrent(now time.Time, g *Group, id string, spec memberSpec, w *waiter) {
	if _, ok := g.pending[id]; ok {
		if spec.instanceID != nil {
			// Static members are never pending; a client mixing the two
			// is broken.
			c.reply(w.done, joinResponse(w.version, kerr.UnknownMemberID.Code))
			return
		}
		delete(g.pending, id)
		c.addMemberAndRebalance(now, g, id, spec, w)
		return
	}
	if code := g.validateMember(id, spec.instanceID); code != 0 {
		c.reply(w.done, joinResponse(w.version, code))
		return
	}
	m := g.members[id]
	switch g.state {
	case PreparingRebalance:
		c.updateMemberAndRebalance(now, g, m, spec, w)
	case CompletingRebalance:
		if m.matches(spec.protocols) {
			// A retry of a join that already completed: answer it again.
			c.reply(w.done, c.joinResult(g, m, w.version))
			return
		}
		c.updateMemberAndRebalance(now, g, m, spec, w)
	case Stable:
		if g.leader == id || !m.matches(spec.protocols) {
			c.updateMemberAndRebalance(now, g, m, spec, w)
			return
		}
		m.heartbeatDeadline = now.Add(m.sessionTimeout)
		c.reply(w.done, c.joinResult(g, m, w.version))
	default:
		c.reply(w.done, joinResponse(w.version, kerr.UnknownMemberID.Code))
	}
}

// validateMember is Kafka's validateCurrentMember.
func (g *Group) validateMember(id string, instanceID *string) int16 {
	if instanceID != nil {
		cur, ok := g.static[*instanceID]
		if !ok {
			return kerr.UnknownMemberID.Code
		}
		if cur != id {
			return kerr.FencedInstanceID.Code
		}
		return 0
	}
	if _, ok := g.members[id]; !ok {
		return kerr.UnknownMemberID.Code
	}
	return 0
}

// joinResult is the JoinGroup response for m in g's current generation:
// the leader gets every member's metadata for the chosen protocol.
func (c *RawCoordinator) joinResult(g *Group, m *Member, version int16) *kmsg.JoinGroupResponse {
	r := joinResponse(version, 0)
	r.Generation = g.generation
	r.ProtocolType = strPtr(g.protocolType)
	r.Protocol = strPtr(g.protocol)
	r.LeaderID = g.leader
	r.MemberID = m.id
	if m.id == g.leader {
		for _, o := range g.sortedMembers() {
			jm := kmsg.NewJoinGroupResponseMember()
			jm.MemberID = o.id
			jm.InstanceID = o.instanceID
			jm.ProtocolMetadata = o.metadataFor(g.protocol)
			r.Members = append(r.Members, jm)
		}
	}
	return r
}

func (c *RawCoordinator) addMemberAndRebalance(now time.Time, g *Group, id string, spec memberSpec, w *waiter) {
	m := &Member{
		id:               id,
		instanceID:       spec.instanceID,
		clientID:         spec.clientID,
		clientHost:       spec.clientHost,
		protocols:        copyProtocols(spec.protocols),
		sessionTimeout:   spec.session,
		rebalanceTimeout: spec.rebalance,
		join:             w,
		isNew:            true,
		newJoinDeadline:  now.Add(c.cfg.NewMemberJoinTimeout),
	}
	if g.state == PreparingRebalance && g.initialDelay {
		// Kafka extends the initial delay only for generation 0; weir
		// extends it for any rebalance that started from Empty, so that a
		// whole fleet restarting after its group became Empty (which keeps
		// its generation) also rebalances once.
		g.newMemberAdded = true
	}
	if len(g.members) == 0 {
		g.protocolType = spec.protocolType
	}
	g.members[id] = m
	if spec.instanceID != nil {
		g.static[*spec.instanceID] = id
	}
	if g.leader == "" {
		g.leader = id
	}
	c.maybePrepareRebalance(now, g)
}

func (c *RawCoordinator) updateMemberAndRebalance(now time.Time, g *Group, m *Member, spec memberSpec, w *waiter) {
	c.updateMember(g, m, spec, w)
	c.maybePrepareRebalance(now, g)
}

func (c *RawCoordinator) updateMember(g *Group, m *Member, spec memberSpec, w *waiter) {
	m.protocols = copyProtocols(spec.protocols)
	m.sessionTimeout, m.rebalanceTimeout = spec.session, spec.rebalance
	m.clientID, m.clientHost = spec.clientID, spec.clientHost
	if m.join != nil && m.join != w {
		// A second JoinGroup replaces the first (the client gave up on it).
		c.reply(m.join.done, joinResponse(m.join.version, kerr.UnknownMemberID.Code))
	}
	m.join = w
}

// replaceStaticMember is Kafka's updateStaticMemberAndRebalance: a known
// group.instance.id joins with no member id (the instance restarted), so
// it takes over the old member's place under a new id; the old id is
// fenced.
func (c *RawCoordinator) replaceStaticMember(now time.Time, g *Group, oldID, newID string, spec memberSpec, w *waiter) {
	m := g.members[oldID]
	if m == nil { // cannot happen: static maps to members only
		delete(g.static, *spec.instanceID)
		c.addMemberAndRebalance(now, g, newID, spec, w)
		return
	}
	oldLeader := g.leader
	c.failWaiting(m, kerr.FencedInstanceID.Code)
	delete(g.members, oldID)
	if _, ok := g.pendingSync[oldID]; ok {
		delete(g.pendingSync, oldID)
		g.pendingSync[newID] = struct{}{}
	}
	m.id = newID
	g.members[newID] = m
	g.static[*spec.instanceID] = newID
	if g.leader == oldID {
		g.leader = newID
	}
	m.heartbeatDeadline = now.Add(spec.session)
	if g.state != Stable {
		c.renameInMetadata(g, oldID, newID)
	}
	oldProtocol := g.protocol
	c.updateMember(g, m, spec, w)
	switch g.state {
	case Stable:
		if g.selectProtocol() == oldProtocol {
			// Nothing changes for the group: answer with the current
			// generation and the old leader id, so that this member does
			// not think it must assign (a Stable group would not
			// propagate a new assignment).
			m.join = nil
			r := c.joinResult(g, m, w.version)
			r.LeaderID = oldLeader
			r.Members = nil
			c.reply(w.done, r)
			// The member id changed: persist it, or after a restart the
			// instance's new id would be fenced.
			c.persistMetadata(g)
			c.refuseStable(now, g, r)
			return
		}
		c.renameInMetadata(g, oldID, newID)
		c.maybePrepareRebalance(now, g)
	case CompletingRebalance:
		c.prepareRebalance(now, g)
	}
}

func (c *RawCoordinator) maybePrepareRebalance(now time.Time, g *Group) {
	switch g.state {
	case Stable, CompletingRebalance, Empty:
		c.prepareRebalance(now, g)
	}
}

func (c *RawCoordinator) prepareRebalance(now time.Time, g *Group) {
	if g.state == CompletingRebalance {
		c.failSyncWaiters(g, kerr.RebalanceInProgress.Code)
	}
	g.syncDeadline = time.Time{}
	clear(g.pendingSync)
	if g.state == Empty {
		delay := c.cfg.InitialRebalanceDelay
		g.initialDelay = true
		g.initialRemaining = max(g.rebalanceTimeout()-delay, 0)
		g.newMemberAdded = false
		g.joinDeadline = now.Add(delay)
	} else {
		g.initialDelay = false
		g.joinDeadline = now.Add(g.rebalanceTimeout())
	}
	g.transition(now, PreparingRebalance)
}

func (c *RawCoordinator) failSyncWaiters(g *Group, code int16) {
	for _, m := range g.sortedMembers() {
		if m.sync != nil {
			c.reply(m.sync.done, syncResponse(m.sync.version, code))
			m.sync = nil
		}
	}
}

// tryCompleteJoin ends the join phase early when every member has rejoined
// and no member id handed out with MEMBER_ID_REQUIRED is outstanding. The
// initial delay of an empty group always runs its course.
func (c *RawCoordinator) tryCompleteJoin(now time.Time, g *Group) {
	if g.state != PreparingRebalance || g.initialDelay {
		return
	}
	if len(g.pending) > 0 {
		return
	}
	for _, m := range g.members {
		if m.join == nil {
			return
		}
	}
	c.completeJoin(now, g)
}

// completeJoin is Kafka's onCompleteJoin: dynamic members that did not
// rejoin are removed, the next generation starts, and every waiting
// JoinGroup is answered. A static member that did not rejoin (an instance
// restarting) keeps its place: the leader assigns it partitions, and it
// takes them back when it joins again with its group.instance.id; if it
// does not come back, its session timeout removes it (counted from its
// last heartbeat; it is not a pending SyncGroup, whose shorter timeout is
// for members that joined and then went quiet).
func (c *RawCoordinator) completeJoin(now time.Time, g *Group) {
	g.initialDelay = false
	g.joinDeadline = time.Time{}
	for _, m := range g.sortedMembers() {
		if m.join == nil && m.instanceID == nil {
			c.removeMember(g, m)
		}
	}
	if !c.electJoinedLeader(g) {
		// Only static members that did not rejoin are left: wait another
		// rebalance timeout for them (Kafka does the same); their session
		// timeouts remove those that do not come back.
		g.joinDeadline = now.Add(g.rebalanceTimeout())
		return
	}
	g.generation = max(g.generation, g.persistedGeneration) + 1
	if len(g.members) == 0 {
		g.protocol = ""
		g.transition(now, Empty)
		c.persistGroup(g)
		c.persistMetadata(g)
		return
	}
	g.protocol = g.selectProtocol()
	g.transition(now, CompletingRebalance)
	c.persistGroup(g)
	for _, m := range g.sortedMembers() {
		if m.join == nil {
			continue // a static member away
		}
		c.reply(m.join.done, c.joinResult(g, m, m.join.version))
		m.join = nil
		m.isNew = false
		m.heartbeatDeadline = now.Add(m.sessionTimeout)
		g.pendingSync[m.id] = struct{}{}
	}
	g.syncDeadline = now.Add(g.rebalanceTimeout())
}

// electJoinedLeader is Kafka's maybeElectNewJoinedLeader: the leader must
// be a member that rejoined (it assigns the partitions). It reports false
// when members remain but none of them rejoined.
func (c *RawCoordinator) electJoinedLeader(g *Group) bool {
	if len(g.members) == 0 {
		g.leader = ""
		return true
	}
	if l := g.members[g.leader]; l != nil && l.join != nil {
		return true
	}
	for _, m := range g.sortedMembers() {
		if m.join != nil {
			g.leader = m.id
			return true
		}
	}
	return false
}

// failWaiting answers m's waiting JoinGroup and SyncGroup, if any, with
// code.
func (c *RawCoordinator) failWaiting(m *Member, code int16) {
	if m.join != nil {
		c.reply(m.join.done, joinResponse(m.join.version, code))
		m.join = nil
	}
	if m.sync != nil {
		c.reply(m.sync.done, syncResponse(m.sync.version, code))
		m.sync = nil
	}
}

// removeMember takes m out of g, answering its waiting requests.
func (c *RawCoordinator) removeMember(g *Group, m *Member) {
	c.failWaiting(m, kerr.UnknownMemberID.Code)
	delete(g.members, m.id)
	delete(g.pendingSync, m.id)
	if m.instanceID != nil && g.static[*m.instanceID] == m.id {
		delete(g.static, *m.instanceID)
	}
	if g.leader == m.id {
		g.leader = ""
		if ms := g.sortedMembers(); len(ms) > 0 {
			g.leader = ms[0].id
		}
	}
}

// removeMemberAndUpdateGroup removes m and moves the group on: a stable
// group rebalances, a join phase may now be complete.
func (c *RawCoordinator) removeMemberAndUpdateGroup(now time.Time, g *Group, m *Member) {
	c.removeMember(g, m)
	switch g.state {
	case Stable, CompletingRebalance:
		c.maybePrepareRebalance(now, g)
	case PreparingRebalance:
		c.tryCompleteJoin(now, g)
	}
}

// nextDeadline is the earliest time at which expire has work for g.
func (g *Group) nextDeadline() time.Time {
	var at time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	for _, t := range g.pending {
		consider(t)
	}
	for _, m := range g.members {
		switch {
		case m.join != nil && m.isNew:
			consider(m.newJoinDeadline)
		case m.join != nil, m.sync != nil:
			// Waiting in the coordinator counts as alive.
		default:
			consider(m.heartbeatDeadline)
		}
	}
	if g.state == PreparingRebalance {
		consider(g.joinDeadline)
	}
	if g.state == CompletingRebalance || g.state == Stable {
		if len(g.pendingSync) > 0 {
			consider(g.syncDeadline)
		}
	}
	return at
}

// expire runs g's timers that are due at now.
func (c *RawCoordinator) expire(now time.Time, g *Group) {
	for id, t := range g.pending {
		if !now.Before(t) {
			delete(g.pending, id)
		}
	}
	for _, m := range g.sortedMembers() {
		switch {
		case m.join != nil && m.isNew:
			if !now.Before(m.newJoinDeadline) {
				c.removeMemberAndUpdateGroup(now, g, m)
			}
		case m.join != nil, m.sync != nil:
		default:
			if !now.Before(m.heartbeatDeadline) {
				c.removeMemberAndUpdateGroup(now, g, m)
			}
		}
	}
	if g.state == PreparingRebalance && !now.Before(g.joinDeadline) {
		if g.initialDelay && g.newMemberAdded && g.initialRemaining > 0 {
			g.newMemberAdded = false
			d := min(c.cfg.InitialRebalanceDelay, g.initialRemaining)
			g.initialRemaining = max(g.initialRemaining-d, 0)
			g.joinDeadline = now.Add(d)
		} else {
			c.completeJoin(now, g)
		}
	}
	if (g.state == CompletingRebalance || g.state == Stable) && len(g.pendingSync) > 0 && !now.Before(g.syncDeadline) {
		// Members that joined but never sent SyncGroup are gone.
		for _, m := range g.sortedMembers() {
			if _, ok := g.pendingSync[m.id]; ok {
				c.removeMember(g, m)
			}
		}
		clear(g.pendingSync)
		c.maybePrepareRebalance(now, g)
	}
	if g.state == PreparingRebalance {
		c.tryCompleteJoin(now, g)
	}
}
