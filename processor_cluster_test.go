package weir_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

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
		case err := <-a.done:
			t.Fatalf("instance a: Run returned %v during leader moves", err)
		case err := <-b.done:
			t.Fatalf("instance b: Run returned %v during leader moves", err)
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
