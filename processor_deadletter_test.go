package weir_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
)

// controlDeadLetterProduce runs fn for every produce request to topic and
// lets kfake answer the others as usual. Recent produce requests name
// topics by id.
func controlDeadLetterProduce(t *testing.T, c *kfake.Cluster, topic string, fn func(*kmsg.ProduceRequest) (kmsg.Response, error, bool)) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err == nil {
		err = details.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	id := details[topic].ID
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		for _, rt := range req.Topics {
			if rt.Topic == topic || rt.TopicID == id {
				return fn(req)
			}
		}
		return nil, nil, false
	})
}

// TestProcessorDeadLetterErrorKgoDoesNotRetryStopsPartition: a dead-letter
// produce that kgo gives up on (an error code it does not retry) is not
// produced again on top of kgo: the partition stops there (never skipped),
// after one produce of the event.
func TestProcessorDeadLetterErrorKgoDoesNotRetryStopsPartition(t *testing.T) {
	c := kfakeCluster(t, kfake.SeedTopics(1, "in", "in.dlq"))
	seeds := c.ListenAddrs()
	produceTo(t, seeds, "in", 0, nil, "poison", "after")
	var tries atomic.Int32
	controlDeadLetterProduce(t, c, "in.dlq", func(req *kmsg.ProduceRequest) (kmsg.Response, error, bool) {
		tries.Add(1)
		return produceErrorResponse(req, kerr.InvalidRecord.Code), nil, true // not retriable, and not one of weir's fatal kinds
	})
	var after atomic.Bool
	h := poisonThen(&after)
	in := startInstance(t, "a", h, weir.Brokers(seeds...), weir.Topic("in"), weir.Group("g"),
		weir.Logger(quietLogger()), fastGroup(), weir.HandlerRetries(1, time.Millisecond, time.Millisecond),
		weir.DeadLetterTopic("in.dlq"))
	defer in.stop(t)
	waitFor(t, 30*time.Second, "the partition stopped at the event", func() bool {
		ps := in.p.Stats().Partitions
		return len(ps) == 1 && ps[0].Stopped
	})
	st := in.p.Stats()
	if st.DeadLettered != 0 || after.Load() || st.Partitions[0].Checkpoint > 0 {
		t.Fatalf("dead-lettered %d, later event processed %v, checkpoint %d; want 0, false, <= 0",
			st.DeadLettered, after.Load(), st.Partitions[0].Checkpoint)
	}
	if n := tries.Load(); n != 1 {
		t.Fatalf("%d dead-letter produce requests, want 1 (kgo does not retry INVALID_RECORD; weir must not either)", n)
	}
}

// TestProcessorDeadLetterWaitEndsWithDrainTimeout: a dead-letter produce
// whose answer never comes (the broker holds it) does not hold up the
// shutdown past DrainTimeout: Run returns, and the event is not counted
// dead-lettered nor checkpointed past.
func TestProcessorDeadLetterWaitEndsWithDrainTimeout(t *testing.T) {
	c := kfakeCluster(t, kfake.SeedTopics(1, "in", "in.dlq"))
	seeds := c.ListenAddrs()
	produceTo(t, seeds, "in", 0, nil, "poison")
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before kfake closes
	controlDeadLetterProduce(t, c, "in.dlq", func(*kmsg.ProduceRequest) (kmsg.Response, error, bool) {
		select {
		case held <- struct{}{}:
		default:
		}
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	h := weir.HandlerFunc(func(context.Context, *kgo.Record) error { return errPoison })
	in := startInstance(t, "a", h, weir.Brokers(seeds...), weir.Topic("in"), weir.Group("g"),
		weir.Logger(quietLogger()), fastGroup(), weir.HandlerRetries(1, time.Millisecond, time.Millisecond),
		weir.DeadLetterTopic("in.dlq"), weir.DrainTimeout(300*time.Millisecond))
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("no dead-letter produce within 30s")
	}
	in.cancel()
	select {
	case <-in.done:
		if in.err != nil {
			t.Fatalf("Run: %v", in.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run still waiting for the held dead-letter produce 15s after its context ended (DrainTimeout 300ms)")
	}
	if st := in.p.Stats(); st.DeadLettered != 0 {
		t.Fatalf("dead-lettered %d, want 0", st.DeadLettered)
	}
}

// TestProcessorDeadLetterTransientErrorsRetriedByKgo: dead-letter produces
// answered with a retriable error are retried (by kgo, not on top of it)
// until one is stored; the event is dead-lettered once.
func TestProcessorDeadLetterTransientErrorsRetriedByKgo(t *testing.T) {
	c := kfakeCluster(t, kfake.SeedTopics(1, "in", "in.dlq"))
	seeds := c.ListenAddrs()
	produceTo(t, seeds, "in", 0, nil, "poison", "after")
	var tries atomic.Int32
	controlDeadLetterProduce(t, c, "in.dlq", func(req *kmsg.ProduceRequest) (kmsg.Response, error, bool) {
		if tries.Add(1) > 3 {
			return nil, nil, false // the fourth try is stored
		}
		return produceErrorResponse(req, kerr.NotEnoughReplicas.Code), nil, true // retriable
	})
	var after atomic.Bool
	h := poisonThen(&after)
	in := startInstance(t, "a", h, weir.Brokers(seeds...), weir.Topic("in"), weir.Group("g"),
		weir.Logger(quietLogger()), fastGroup(), weir.HandlerRetries(1, time.Millisecond, time.Millisecond),
		weir.DeadLetterTopic("in.dlq"),
		// kgo holds a partition that got a retriable error until its next
		// metadata refresh, at most every MetadataMinAge (default 5s).
		weir.KgoOpts(kgo.MetadataMinAge(250*time.Millisecond)))
	defer in.stop(t)
	waitFor(t, 30*time.Second, "the event dead-lettered and the next one processed", func() bool {
		return in.p.Stats().DeadLettered == 1 && after.Load()
	})
	if n := tries.Load(); n != 4 {
		t.Fatalf("%d dead-letter produce requests, want 4 (3 answered NOT_ENOUGH_REPLICAS, then stored)", n)
	}
	for _, ps := range in.p.Stats().Partitions {
		if ps.Stopped {
			t.Fatal("partition stopped; want it to go on after the dead-letter produce was stored")
		}
	}
}

// poisonThen fails the event "poison" and sets after once it handles any
// other event.
func poisonThen(after *atomic.Bool) weir.Handler {
	return weir.HandlerFunc(func(_ context.Context, e *kgo.Record) error {
		if string(e.Value) == "poison" {
			return errPoison
		}
		after.Store(true)
		return nil
	})
}
