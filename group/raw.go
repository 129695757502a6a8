package group

import (
	"container/heap"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Client describes the connection a request came from.
type Client struct {
	ID   string // the request header's client id
	Host string // the peer address, as DescribeGroups reports it
}

// Reply is a response waiting to be delivered to its request's callback.
type Reply struct {
	Done func(kmsg.Response)
	Resp kmsg.Response
}

// Ready is the output of one or more steps: records to persist, then
// replies to deliver. A reply must not be delivered before the records
// of the same Ready are durable (a commit is answered only when it is on
// disk). RawCoordinator.Deliver delivers them once the outcome is known.
type Ready struct {
	Records []Record
	Replies []Reply

	// undo rolls back, in memory, the changes of the requests Deliver
	// refuses if Records could not be persisted (commits, OffsetDelete,
	// DeleteGroups, CreateGroup), newest first.
	undo []func()
	// groupDeleted: a DeleteGroups of these steps removed a group. Any
	// later request may make a new group of that name, and a rollback
	// could then not bring the deleted one (and its offsets) back.
	groupDeleted bool
}

// RawCoordinator holds every group and its committed offsets. It is not safe
// for concurrent use: one owner (Coordinator, or a test) calls it.
type RawCoordinator struct {
	cfg    Config
	groups map[string]*Group
	timers timerHeap

	warned map[string]struct{} // groups refuseUncreated logged

	nextID        uint64
	idPrefix      string
	nextRetention time.Time
	nextSweep     time.Time // makeRoom found nothing to drop; do not look again before

	out Ready
}

// NewRawCoordinator returns an empty coordinator. Restore loads persisted
// records into it before first use.
func NewRawCoordinator(cfg Config) (*RawCoordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &RawCoordinator{cfg: cfg, groups: make(map[string]*Group), warned: make(map[string]struct{})}
	c.idPrefix = cfg.MemberIDPrefix
	if c.idPrefix == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		c.idPrefix = hex.EncodeToString(b[:])
	}
	return c, nil
}

// Handle runs one group request at time now. done is called with the
// response, through Ready: at once for most requests, later for a
// JoinGroup or SyncGroup that waits for the rest of the group.
func (c *RawCoordinator) Handle(now time.Time, cl Client, req kmsg.Request, done func(kmsg.Response)) {
	switch r := req.(type) {
	case *kmsg.JoinGroupRequest:
		c.join(now, cl, r, done)
	case *kmsg.SyncGroupRequest:
		c.sync(now, r, done)
	case *kmsg.HeartbeatRequest:
		c.heartbeat(now, r, done)
	case *kmsg.LeaveGroupRequest:
		c.leave(now, r, done)
	case *kmsg.OffsetCommitRequest:
		c.commit(now, r, done)
	case *kmsg.OffsetFetchRequest:
		c.fetch(r, done)
	case *kmsg.OffsetDeleteRequest:
		c.offsetDelete(r, done)
	case *kmsg.DescribeGroupsRequest:
		c.describe(r, done)
	case *kmsg.ListGroupsRequest:
		c.list(r, done)
	case *kmsg.DeleteGroupsRequest:
		c.deleteGroups(r, done)
	default:
		panic(fmt.Sprintf("group: request key %d is not a group request", req.Key()))
	}
}

// CreateGroup creates an empty group explicitly (durably), as
// `weir group create` does. Creating an existing group marks it created
// and is not an error.
func (c *RawCoordinator) CreateGroup(now time.Time, name string, done func(error)) {
	if !ValidGroupID(name) {
		done(kerr.InvalidGroupID)
		return
	}
	g := c.groups[name]
	if g == nil {
		if !c.makeRoom(now) {
			done(kerr.CoordinatorNotAvailable)
			return
		}
		g = c.newGroup(now, name)
	}
	if !g.created {
		g.created = true
		c.persistGroup(g)
		c.onRefused(func() {
			g.created = false
			c.forgetIfUnused(g)
		})
	}
	c.replyDurable(done)
}

// DeleteTopics deletes every group's committed offsets of topics, durably,
// as Kafka does when topics are deleted: a topic created again under the
// same name starts with no committed offsets. done gets the outcome once
// the deletions are on disk.
func (c *RawCoordinator) DeleteTopics(topics []string, done func(error)) {
	gone := make(map[string]bool, len(topics))
	for _, t := range topics {
		gone[t] = true
	}
	// Not rolled back if the write fails: the topics are gone either way,
	// and a topic created again under the same name must not get these
	// offsets (Open deletes those left on disk at the next start).
	c.deleteOffsetsIf(func(tp topicPartition) bool { return gone[tp.topic] })
	c.replyDurable(done)
}

// replyDurable delivers nil to done once the records of this step are on
// disk, or the store's error if they could not be written.
func (c *RawCoordinator) replyDurable(done func(error)) {
	c.reply(func(r kmsg.Response) { done(r.(*durableResult).err) }, &durableResult{})
}

// durableResult carries the outcome of CreateGroup or DeleteTopics through
// Ready, so that a failed fsync fails them too. It is never encoded.
type durableResult struct {
	kmsg.Response // nil: only Deliver and CreateGroup's callback see it
	err           error
}

// refusesUncreated reports whether RequireCreate refuses group name (g, or
// nil if it does not exist), and logs why if so.
func (c *RawCoordinator) refusesUncreated(g *Group, name string) bool {
	if !c.cfg.RequireCreate || g != nil && g.created {
		return false
	}
	c.refuseUncreated(name)
	return true
}

// refuseUncreated logs, at most once per group for a while, why a group
// that was never created is refused: Kafka's responses to JoinGroup,
// SyncGroup and OffsetCommit carry no error message.
func (c *RawCoordinator) refuseUncreated(name string) {
	if c.cfg.Logger == nil {
		return
	}
	if _, ok := c.warned[name]; ok {
		return
	}
	if len(c.warned) >= 1000 {
		clear(c.warned)
	}
	c.warned[name] = struct{}{}
	c.cfg.Logger.Warn("weir: refusing a consumer group that was never created (GROUP_AUTHORIZATION_FAILED); "+
		"the broker requires groups to be created first: weir group create NAME", "group", name)
}

// Ready returns the output collected since the last call and clears it.
func (c *RawCoordinator) Ready() Ready {
	r := c.out
	c.out = Ready{}
	return r
}

// Deliver completes rd, the last output of Ready: persistErr is the
// outcome of persisting rd.Records. Then it calls every reply of rd.
//
// If the records could not be persisted, the requests whose effect must
// be durable are refused and rolled back in memory, so that nothing the
// disk does not hold is served: commits, OffsetDelete and DeleteGroups
// are answered COORDINATOR_NOT_AVAILABLE (retriable: clients look the
// coordinator up again and retry), CreateGroup and DeleteTopics get it as
// their error. A generation that became Stable, or a static member's
// takeover in a Stable group, whose metadata record was refused is not
// rolled back: its SyncGroup (or JoinGroup) answers get
// COORDINATOR_NOT_AVAILABLE and the group rebalances (refuseStable).
// Group generations and DeleteTopics' and retention's offset deletions
// stay in memory. (A write error of the Store is sticky: every
// later batch is refused too, until a restart.)
//
// The owner calls Deliver for each Ready before it steps c again.
func (c *RawCoordinator) Deliver(rd Ready, persistErr error) {
	if persistErr != nil {
		for i := len(rd.undo) - 1; i >= 0; i-- {
			rd.undo[i]()
		}
	}
	for _, r := range rd.Replies {
		if persistErr != nil {
			failDurable(r.Resp)
		}
		r.Done(r.Resp)
	}
}

// MustPersistFirst reports whether the output of the steps since the last
// Ready must be persisted (Ready, store, Deliver) before req is handled:
// req reads state that a request handled since then changed and that
// Deliver would roll back if the write failed. Answering it first could
// serve an offset that never becomes durable. The reads that wait are
// OffsetFetch, DescribeGroups and ListGroups; nil stands for EachOffset
// and for the admin operations (CreateGroup, DeleteTopics). After a
// DeleteGroups every request waits: a JoinGroup or a commit would make a
// new group of the deleted name, and a refused deletion could not be undone.
func (c *RawCoordinator) MustPersistFirst(req kmsg.Request) bool {
	if len(c.out.undo) == 0 {
		return false
	}
	if c.out.groupDeleted {
		return true
	}
	switch req.(type) {
	case nil, *kmsg.OffsetFetchRequest, *kmsg.DescribeGroupsRequest, *kmsg.ListGroupsRequest:
		return true
	}
	return false
}

// onRefused registers how to roll back a change of the current step if
// its records cannot be persisted. undo runs in Deliver, newest first,
// and must leave alone what later steps changed since.
func (c *RawCoordinator) onRefused(undo func()) { c.out.undo = append(c.out.undo, undo) }

// forgetIfUnused drops g, created by a step that was rolled back, if it
// holds nothing (no record names it).
func (c *RawCoordinator) forgetIfUnused(g *Group) {
	if c.groups[g.name] == g && g.droppable() && g.generation == 0 {
		delete(c.groups, g.name)
		g.state = Dead
	}
}

func failDurable(resp kmsg.Response) {
	code := kerr.CoordinatorNotAvailable.Code
	switch r := resp.(type) {
	case *kmsg.OffsetCommitResponse:
		for i := range r.Topics {
			for j := range r.Topics[i].Partitions {
				if r.Topics[i].Partitions[j].ErrorCode == 0 {
					r.Topics[i].Partitions[j].ErrorCode = code
				}
			}
		}
	case *kmsg.DeleteGroupsResponse:
		for i := range r.Groups {
			if r.Groups[i].ErrorCode == 0 {
				r.Groups[i].ErrorCode = code
			}
		}
	case *kmsg.OffsetDeleteResponse:
		if r.ErrorCode == 0 {
			r.ErrorCode = code
		}
	case *durableResult:
		r.err = kerr.CoordinatorNotAvailable
	}
}

// NextDeadline returns when Tick next has work to do.
func (c *RawCoordinator) NextDeadline() (time.Time, bool) {
	next := c.nextRetention
	if len(c.timers) > 0 && (next.IsZero() || c.timers[0].at.Before(next)) {
		next = c.timers[0].at
	}
	return next, !next.IsZero()
}

// Tick fires every timer due at now: session, join, sync and new-member
// timeouts, the initial rebalance delay, and offset retention.
func (c *RawCoordinator) Tick(now time.Time) {
	if c.nextRetention.IsZero() {
		c.nextRetention = now.Add(c.cfg.RetentionCheckInterval)
	} else if !now.Before(c.nextRetention) {
		c.expireOffsets(now)
		c.nextRetention = now.Add(c.cfg.RetentionCheckInterval)
	}
	for len(c.timers) > 0 && !c.timers[0].at.After(now) {
		t := heap.Pop(&c.timers).(timer)
		g := c.groups[t.group]
		if g == nil || !g.wake.Equal(t.at) {
			continue // stale
		}
		g.wake = time.Time{}
		c.expire(now, g)
		c.schedule(g)
	}
}

// NumGroups returns the number of groups held.
func (c *RawCoordinator) NumGroups() int { return len(c.groups) }

func (c *RawCoordinator) reply(done func(kmsg.Response), resp kmsg.Response) {
	if done == nil {
		return
	}
	c.out.Replies = append(c.out.Replies, Reply{Done: done, Resp: resp})
}

func (c *RawCoordinator) persist(r Record) { c.out.Records = append(c.out.Records, r) }

// newMemberID returns an id no member of g has. With a fixed
// MemberIDPrefix the counter starts again after a restart, while restored
// members keep their ids.
func (c *RawCoordinator) newMemberID(g *Group, clientID string) string {
	for {
		c.nextID++
		id := clientID + "-" + c.idPrefix + "-" + strconv.FormatUint(c.nextID, 10)
		if _, ok := g.members[id]; ok {
			continue
		}
		if _, ok := g.pending[id]; ok {
			continue
		}
		return id
	}
}

// schedule recomputes g's next deadline and arms a timer for it.
func (c *RawCoordinator) schedule(g *Group) {
	at := g.nextDeadline()
	if at.Equal(g.wake) {
		return
	}
	g.wake = at
	if !at.IsZero() {
		heap.Push(&c.timers, timer{at: at, group: g.name})
	}
	if len(c.timers) > 1024 && len(c.timers) > 4*len(c.groups) {
		c.rebuildTimers()
	}
}

// rebuildTimers drops stale timer entries (every heartbeat can leave one
// behind until its time comes).
func (c *RawCoordinator) rebuildTimers() {
	c.timers = c.timers[:0]
	for _, name := range c.sortedGroupNames() {
		if g := c.groups[name]; !g.wake.IsZero() {
			c.timers = append(c.timers, timer{at: g.wake, group: name})
		}
	}
	heap.Init(&c.timers)
}

type timer struct {
	at    time.Time
	group string
}

// timerHeap is a min-heap of group deadlines. Entries whose group's wake
// time has moved are stale and skipped when popped.
type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}
