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
// disk).
type Ready struct {
	Records []Record
	Replies []Reply
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
		c.offsetDelete(now, r, done)
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
	for _, name := range c.sortedGroupNames() {
		g := c.groups[name]
		for _, tp := range g.sortedOffsets() {
			if gone[tp.topic] {
				delete(g.offsets, tp)
				c.persist(Record{Kind: RecordOffsetDeleted, Group: g.name, Topic: tp.topic, Partition: tp.partition})
			}
		}
	}
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

// Deliver calls every reply of rd. persistErr is the result of persisting
// rd.Records: if it failed, commits are answered with
// COORDINATOR_NOT_AVAILABLE instead (the store's error is sticky, so the
// commit is not durable and will not become so).
func Deliver(rd Ready, persistErr error) {
	for _, r := range rd.Replies {
		if persistErr != nil {
			failDurable(r.Resp)
		}
		r.Done(r.Resp)
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

func (c *RawCoordinator) newMemberID(clientID string) string {
	c.nextID++
	return clientID + "-" + c.idPrefix + "-" + strconv.FormatUint(c.nextID, 10)
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
