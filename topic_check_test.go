package weir

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// TestTopicPartitionsAnswers checks the one topic check the producer and
// the processor share, against weir's broker: a topic's partition count,
// an unknown topic as kerr.UnknownTopicOrPartition (fatal: ErrUnknownTopic)
// whether or not creation is asked for where the broker does not create.
func TestTopicPartitionsAnswers(t *testing.T) {
	b := weirtest.Start(t, func(c *broker.Config) {
		c.DisableAutoCreateTopics = true
		c.DefaultPartitions = 3
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, "there"); err != nil {
		t.Fatal(err)
	}

	if n, err := topicPartitions(ctx, cl, "there", false); err != nil || n != 3 {
		t.Fatalf("existing topic: %d partitions, err %v; want 3, nil", n, err)
	}
	for _, autoCreate := range []bool{false, true} {
		_, err := topicPartitions(ctx, cl, "nope", autoCreate)
		if !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("unknown topic (autoCreate %v): err %v, want UNKNOWN_TOPIC_OR_PARTITION", autoCreate, err)
		}
		if f := fatal(err, "nope"); !errors.Is(f, ErrUnknownTopic) {
			t.Fatalf("unknown topic: fatal(err) = %v, want ErrUnknownTopic", f)
		}
	}
}
