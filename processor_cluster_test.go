package weir_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
)

// TestProcessorSurvivesLeaderMoves moves partition leaders of a 3-broker
// kfake cluster every 200ms while two instances process under load: Run
// never returns and nothing is lost.
func TestProcessorSurvivesLeaderMoves(t *testing.T) {
	const partitions = 12
	c := kfakeCluster(t, kfake.NumBrokers(3), kfake.SeedTopics(partitions, "moving"))
	seeds := c.ListenAddrs()
	l := newLedger()
	prod := startProducer(t, seeds, "moving", l, 1000)
	defer prod.stop()

	opts := []weir.ProcessorOpt{weir.Brokers(seeds...), weir.Topic("moving"), weir.Group("moving"),
		weir.Logger(quietLogger()), fastGroup(), weir.CheckpointEvery(100, 200*time.Millisecond)}
	h := func(name string) weir.Handler {
		return weir.HandlerFunc(func(_ context.Context, e *kgo.Record) error {
			l.record(name, e.Partition, e.Offset)
			return nil
		})
	}
	a := startInstance(t, "a", h("a"), opts...)
	b := startInstance(t, "b", h("b"), opts...)
	waitBalanced(t, []*instance{a, b}, partitions, 30*time.Second)

	moves := 0
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for p := range int32(partitions) {
			if err := c.MoveTopicPartition("moving", p, int32((moves+int(p))%3)); err != nil {
				t.Fatal(err)
			}
		}
		moves++
		select {
		case <-a.done:
			t.Fatalf("instance a: Run returned %v during leader moves", a.err)
		case <-b.done:
			t.Fatalf("instance b: Run returned %v during leader moves", b.err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	prod.stop()
	l.waitAllProcessed(t, 60*time.Second)
	redelivered := a.p.Stats().Redelivered + b.p.Stats().Redelivered
	a.stop(t)
	b.stop(t)
	lost, twice, _ := l.result()
	t.Logf("%d rounds of leader moves; produced %d: lost %d, processed twice %d; records the client fetched twice and the processor skipped: %d",
		moves, len(l.produced), lost, twice, redelivered)
	if lost != 0 || twice != 0 {
		t.Fatalf("lost %d, processed twice %d; want 0, 0", lost, twice)
	}
}

// TestProcessorRejectedCheckpointClosesWithOwnershipLost makes the group
// reject two commits as coming from a stale generation (the first commit
// and a later one). Each rejected partition closes with OwnershipLost; as
// the group keeps it with this member after the rejoin, it is reopened
// from the checkpoint, and nothing is lost.
func TestProcessorRejectedCheckpointClosesWithOwnershipLost(t *testing.T) {
	c := kfakeCluster(t, kfake.SeedTopics(4, "fenced"))
	seeds := c.ListenAddrs()
	var (
		mu      sync.Mutex
		commits int
	)
	c.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		commits++
		n := commits
		mu.Unlock()
		if n != 1 && n != 4 {
			return nil, nil, false
		}
		req := kreq.(*kmsg.OffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.IllegalGeneration.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	l := newLedger()
	prod := startProducer(t, seeds, "fenced", l, 1000)
	defer prod.stop()
	h := &recordingHandler{HandlerFunc: l.handler("a")}
	in := startInstance(t, "a", h, weir.Brokers(seeds...), weir.Topic("fenced"), weir.Group("fenced"),
		weir.Logger(quietLogger()), fastGroup(), weir.CheckpointEvery(50, 100*time.Millisecond))
	// Each rejection makes the member rejoin; a rejoin that hits kfake's
	// rare JoinGroup stall waits out the 10s rebalance timeout, so three
	// joins can take 30s on a busy machine.
	waitFor(t, 60*time.Second, "two rejected commits", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return commits > 5
	})
	prod.stop()
	l.waitAllProcessed(t, 30*time.Second)
	waitFor(t, 10*time.Second, "every partition open and checkpointed to its end", func() bool {
		if err := in.p.Checkpoint(context.Background()); err != nil {
			return false
		}
		st := in.p.Stats()
		for _, ps := range st.Partitions {
			if ps.Committed != ps.HighWatermark {
				return false
			}
		}
		return len(st.Partitions) == 4
	})
	in.stop(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closes[weir.OwnershipLost] == 0 {
		t.Fatalf("no partition closed with OwnershipLost after rejected commits: closes %v", h.closes)
	}
	reopened := 0
	for _, n := range h.opens {
		reopened += n - 1
	}
	lost, twice, _ := l.result()
	t.Logf("closes %v, reopened %d times; lost %d, processed twice %d (after rejected checkpoints)", h.closes, reopened, lost, twice)
	if reopened == 0 {
		t.Fatal("no partition was reopened after its rejected commit")
	}
	if lost != 0 {
		t.Fatalf("lost %d events", lost)
	}
}

// TestProcessorSurvivesBrokerRestart stops the (kfake) broker mid-run and
// starts it again on the same port and data directory: Run never returns,
// processing resumes from the checkpoint, and nothing is lost.
func TestProcessorSurvivesBrokerRestart(t *testing.T) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(freeAddr(t).Port), kfake.DataDir(t.TempDir()), kfake.SeedTopics(4, "restart")}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	checkSurvivesBrokerRestart(t, c.ListenAddrs(), "stopped", c.Close, func() {
		c, err = kfake.NewCluster(opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
	})
}

// checkSurvivesBrokerRestart runs one instance on topic "restart" (4
// partitions, at seeds) under load, stops the broker with stop, and starts
// it again with start: Run must not return, events produced after the
// restart must be processed, and no acknowledged event may be lost.
func checkSurvivesBrokerRestart(t *testing.T, seeds []string, stopped string, stop, start func()) {
	t.Helper()
	l := newLedger()
	prod := startProducer(t, seeds, "restart", l, 500)
	defer prod.stop()
	in := startInstance(t, "a", l.handler("a"), weir.Brokers(seeds...), weir.Topic("restart"), weir.Group("restart"),
		weir.Logger(quietLogger()), fastGroup(), weir.CheckpointEvery(50, 100*time.Millisecond))
	<-in.p.Ready()
	time.Sleep(time.Second)
	stop()
	t.Logf("broker %s", stopped)
	select {
	case <-in.done:
		t.Fatalf("Run returned %v while the broker was down", in.err)
	case <-time.After(2 * time.Second):
	}
	start()
	t.Log("broker restarted")
	l.mu.Lock()
	before := len(l.produced)
	l.mu.Unlock()
	waitFor(t, 30*time.Second, "events produced after the restart", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.produced) > before+200
	})
	prod.stop()
	l.waitAllProcessed(t, 60*time.Second)
	select {
	case <-in.done:
		t.Fatalf("Run returned %v after the broker restart", in.err)
	default:
	}
	in.stop(t)
	lost, twice, _ := l.result()
	t.Logf("produced %d (acknowledged, %d before the broker %s): lost %d, processed twice %d", len(l.produced), before, stopped, lost, twice)
	if lost != 0 {
		t.Fatalf("lost %d events", lost)
	}
}
