package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/weirtest"
)

// BenchmarkRebalanceCooperativeSticky measures the time from a new
// member's start (its JoinGroup follows at once) to a Stable group in
// which all 8 members own 4 of the 32 partitions each, under franz-go's
// cooperative-sticky balancer (two rebalances: one revokes, one assigns).
// The heartbeat interval is how soon the old members hear of a rebalance,
// so it bounds the figure from below: it runs with 100 ms heartbeats and
// with franz-go's default of 3 s.
func BenchmarkRebalanceCooperativeSticky(b *testing.B) {
	for _, hb := range []time.Duration{100 * time.Millisecond, 3 * time.Second} {
		b.Run("heartbeat="+hb.String(), func(b *testing.B) { benchRebalance(b, hb) })
	}
}

func benchRebalance(b *testing.B, heartbeat time.Duration) {
	const topic, group, partitions, members = "bench-rebalance", "bench", 32, 8
	br := weirtest.Start(b)
	admCl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()))
	if err != nil {
		b.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	createTopic(b, br.Addr(), topic, partitions)
	newMember := func(i int) *kgo.Client {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(br.Addr()),
			kgo.ClientID(fmt.Sprintf("member-%d", i)),
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.Balancers(kgo.CooperativeStickyBalancer()),
			kgo.HeartbeatInterval(heartbeat),
			kgo.SessionTimeout(6*time.Second),
		)
		if err != nil {
			b.Fatal(err)
		}
		return cl
	}
	// balanced reports whether the group is Stable with n members owning
	// partitions/n partitions each (rounded down or up).
	balanced := func(n int) bool {
		dg, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return false
		}
		g := dg[group]
		if g.State != "Stable" || len(g.Members) != n {
			return false
		}
		for _, m := range g.Members {
			a, ok := m.Assigned.AsConsumer()
			if !ok {
				return false
			}
			owned := 0
			for _, t := range a.Topics {
				owned += len(t.Partitions)
			}
			if owned != partitions/n && owned != (partitions+n-1)/n {
				return false
			}
		}
		return true
	}
	wait := func(n int) {
		for !balanced(n) {
			if ctx.Err() != nil {
				b.Fatalf("group did not balance over %d members", n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var fleet []*kgo.Client
	for i := range members - 1 {
		fleet = append(fleet, newMember(i))
	}
	defer func() {
		for _, cl := range fleet {
			cl.Close()
		}
	}()
	wait(members - 1)

	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		cl := newMember(100 + i)
		wait(members)
		total += time.Since(start)
		b.StopTimer()
		cl.Close() // leaves the group
		wait(members - 1)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/rebalance")
}
