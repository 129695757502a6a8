package weir_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir"
)

// A processor in a few lines: every instance started with the same group
// gets a share of the topic's partitions.
func ExampleNewProcessor() {
	p, err := weir.NewProcessor(
		weir.Brokers("localhost:9092"),
		weir.Topic("orders"),
		weir.Group("billing"),
		weir.InstanceIDFromEnv("POD_NAME"), // static membership: rolling restarts keep partitions
		weir.CheckpointEvery(1000, 5*time.Second),
		weir.DeadLetterTopic("orders.dlq"), // after retries, not skipped silently
	)
	if err != nil {
		fmt.Println(err) // e.g. POD_NAME unset
		return
	}
	_ = p // p.Run(ctx, handler) blocks until ctx ends
}

// billing is a Handler with per-partition setup and teardown.
type billing struct{}

func (billing) OpenPartition(ctx context.Context, tp weir.TopicPartition) error {
	fmt.Println("open", tp.Partition)
	return nil
}

func (billing) ProcessEvent(ctx context.Context, e *kgo.Record) error {
	fmt.Printf("event %d: %s\n", e.Offset, e.Value)
	return nil
}

func (billing) ClosePartition(ctx context.Context, tp weir.TopicPartition, reason weir.CloseReason) {
	fmt.Println("close", tp.Partition, reason)
}

func ExampleProcessor_Run() {
	// A fake cluster stands in for weir or Kafka.
	c, _ := kfake.NewCluster(kfake.SeedTopics(1, "orders"))
	defer c.Close()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("orders"))
	cl.ProduceSync(context.Background(), kgo.StringRecord("a"), kgo.StringRecord("b"), kgo.StringRecord("c"))
	cl.Close()

	p, err := weir.NewProcessor(weir.Brokers(c.ListenAddrs()...), weir.Topic("orders"), weir.Group("billing"),
		weir.Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for p.Stats().Processed < 3 {
			time.Sleep(10 * time.Millisecond)
		}
		cancel() // Run drains, checkpoints, closes the partitions and returns nil
	}()
	if err := p.Run(ctx, billing{}); err != nil {
		var we *weir.Error
		if errors.As(err, &we) {
			fmt.Println("misconfigured:", we.Kind)
		}
	}
	// Output:
	// open 0
	// event 0: a
	// event 1: b
	// event 2: c
	// close 0 shutdown
}
