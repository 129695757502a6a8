package tests

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// hookedMember is a franz-go group consumer that counts the partitions it
// is assigned, has revoked and loses, as a user's hooks would see them.
type hookedMember struct {
	cl       *kgo.Client
	cancel   context.CancelFunc
	done     chan struct{}
	consumed atomic.Int64
	assigned atomic.Int64 // OnPartitionsAssigned calls with partitions
	revoked  atomic.Int64 // OnPartitionsRevoked calls with partitions
	lost     atomic.Int64 // OnPartitionsLost calls with partitions
}

func (m *hookedMember) changes() int64 { return m.assigned.Load() + m.revoked.Load() + m.lost.Load() }

func startHookedMember(t *testing.T, name, addr, group, topic string, seen *seenSet) *hookedMember {
	t.Helper()
	m := &hookedMember{done: make(chan struct{})}
	count := func(n *atomic.Int64) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			for _, p := range ps {
				if len(p) > 0 {
					n.Add(1)
					return
				}
			}
		}
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.HeartbeatInterval(200*time.Millisecond),
		kgo.SessionTimeout(6*time.Second),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.AutoCommitInterval(200*time.Millisecond),
		kgo.OnPartitionsAssigned(count(&m.assigned)),
		kgo.OnPartitionsRevoked(count(&m.revoked)),
		kgo.OnPartitionsLost(count(&m.lost)),
	)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			// Fetch errors while the broker restarts are expected; the
			// client retries them.
			fs.EachRecord(func(r *kgo.Record) {
				seen.add(r)
				m.consumed.Add(1)
			})
		}
	}()
	t.Cleanup(func() {
		m.cancel()
		<-m.done
		m.cl.Close()
	})
	return m
}

// describeGroup returns the group's state, how many of its members own
// partitions, and the member ids in order.
func describeGroup(t *testing.T, addr, group string) (string, int, []string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ds, err := kadm.NewClient(cl).DescribeGroups(testContext(t, 20*time.Second), group)
	if err != nil {
		return "", 0, nil
	}
	d := ds[group]
	if d.Err != nil {
		return "", 0, nil
	}
	owning := 0
	var ids []string
	for _, m := range d.Members {
		ids = append(ids, m.MemberID)
		if ca, ok := m.Assigned.AsConsumer(); ok && len(ca.Topics) > 0 && len(ca.Topics[0].Partitions) > 0 {
			owning++
		}
	}
	slices.Sort(ids)
	return d.State, owning, ids
}

// TestGroupMembersSurviveRestart: a two-member cooperative-sticky group
// consumes, the broker restarts (SIGTERM, and SIGKILL) on the same address
// and data, and the members carry on in their generation: no partition is
// assigned, revoked or lost, the same members own the partitions, and
// consumption resumes at the committed offsets (nothing consumed twice,
// nothing missed).
func TestGroupMembersSurviveRestart(t *testing.T) {
	s := startServer(t)
	for _, kill := range []bool{false, true} {
		name := "sigterm"
		if kill {
			name = "sigkill"
		}
		t.Run(name, func(t *testing.T) {
			topic, group := "restart-"+name, "stay-"+name
			createTopic(t, s.addr, topic, 4)
			produceN(t, s.addr, topic, 200, "before")
			seen := newSeenSet()
			m1 := startHookedMember(t, "m1", s.addr, group, topic, seen)
			m2 := startHookedMember(t, "m2", s.addr, group, topic, seen)
			ends := endOffsets(t, s.addr, topic)
			waitConsumedAndCommitted(t, s.addr, group, seen, ends)
			var ids []string
			waitFor(t, 30*time.Second, "a stable group whose two members own partitions", func() bool {
				state, owning, members := describeGroup(t, s.addr, group)
				ids = members
				return state == "Stable" && owning == 2
			})
			before1, before2 := m1.changes(), m2.changes()

			if kill {
				s.kill()
			} else if err := s.stop(); err != nil {
				t.Fatalf("weir serve exit after SIGTERM: %v", err)
			}
			s.start()

			produceN(t, s.addr, topic, 200, "after")
			ends = endOffsets(t, s.addr, topic)
			waitConsumedAndCommitted(t, s.addr, group, seen, ends)
			state, owning, after := describeGroup(t, s.addr, group)
			if state != "Stable" || owning != 2 || fmt.Sprint(after) != fmt.Sprint(ids) {
				t.Errorf("after the restart: %s, %d members owning partitions, members %v; want Stable, 2, %v", state, owning, after, ids)
			}
			if c1, c2 := m1.changes()-before1, m2.changes()-before2; c1 != 0 || c2 != 0 {
				t.Errorf("after the restart the members saw %d and %d partition assignments/revocations/losses, want 0 (m1: +%d -%d lost %d; m2: +%d -%d lost %d)",
					c1, c2, m1.assigned.Load(), m1.revoked.Load(), m1.lost.Load(), m2.assigned.Load(), m2.revoked.Load(), m2.lost.Load())
			}
			seen.mu.Lock()
			defer seen.mu.Unlock()
			for p, offs := range seen.m {
				for o, n := range offs {
					if n != 1 {
						t.Errorf("partition %d offset %d consumed %d times", p, o, n)
					}
				}
			}
		})
	}
}
