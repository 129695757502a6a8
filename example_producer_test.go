package weir_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
)

// startExampleBroker starts an embedded weir broker on a random port, as
// weirtest.Start does in a test. It returns the address and a stop func.
func startExampleBroker() (string, func()) {
	dir, err := os.MkdirTemp("", "weir-example-")
	if err != nil {
		panic(err)
	}
	b, err := broker.Start(broker.Config{
		Addr: "127.0.0.1:0", DataDir: dir, DefaultPartitions: 3,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	return b.Addr(), func() { b.Close(); os.RemoveAll(dir) }
}

func ExampleNewProducer() {
	addr, stop := startExampleBroker()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p, err := weir.NewProducer(ctx,
		weir.Brokers(addr), // or weir.ConnectionString(os.Getenv("EVENTHUB_CONNECTION_STRING"))
		weir.Topic("orders"),
		weir.AllowAutoTopicCreation(),
	)
	if err != nil {
		fmt.Println(err) // e.g. weir.ErrUnknownTopic, weir.ErrAuthentication
		return
	}
	defer p.Close(context.Background())

	r, err := p.Send(ctx, weir.Event{
		Key:     []byte("customer-42"), // same key, same partition, in order
		Value:   []byte(`{"order":1}`),
		Headers: []weir.Header{{Key: "content-type", Value: []byte("application/json")}},
	})
	if err != nil {
		fmt.Println("not sent:", err)
		return
	}
	fmt.Println("stored at offset", r.Offset)
	// Output: stored at offset 0
}

func ExampleProducer_SendAsync() {
	addr, stop := startExampleBroker()
	defer stop()
	ctx := context.Background()
	p, err := weir.NewProducer(ctx, weir.Brokers(addr), weir.Topic("clicks"), weir.AllowAutoTopicCreation())
	if err != nil {
		fmt.Println(err)
		return
	}
	results := make(chan weir.Result, 100)
	for i := range 100 {
		p.SendAsync(ctx, weir.Event{Value: fmt.Appendf(nil, "click %d", i)}, func(r weir.Result) {
			results <- r // quick and non-blocking: the channel has room
		})
	}
	// Close delivers what is buffered; every callback has run when it
	// returns.
	if err := p.Close(ctx); err != nil {
		fmt.Println(err)
	}
	close(results)
	acked := 0
	for r := range results {
		if r.Err == nil {
			acked++
		}
	}
	fmt.Println(acked, "acknowledged;", p.Stats().Failed, "returned")
	// Output: 100 acknowledged; 0 returned
}

func ExampleProducer_SendBatch() {
	addr, stop := startExampleBroker()
	defer stop()
	ctx := context.Background()
	p, err := weir.NewProducer(ctx, weir.Brokers(addr), weir.Topic("readings"), weir.AllowAutoTopicCreation())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close(ctx)
	rs, err := p.SendBatch(ctx, []weir.Event{
		{Value: []byte("21.5"), Partition: weir.AtPartition(1)},
		{Value: []byte("21.7"), Partition: weir.AtPartition(1)},
		{Key: []byte("k"), Value: []byte("x"), Partition: weir.AtPartition(1)}, // both set: rejected
	})
	for _, r := range rs {
		if r.Err != nil {
			fmt.Println("rejected:", errors.Is(r.Err, weir.ErrInvalidEvent))
			continue
		}
		fmt.Printf("partition %d offset %d\n", r.Partition, r.Offset)
	}
	fmt.Println("batch error:", err != nil)
	// Output:
	// partition 1 offset 0
	// partition 1 offset 1
	// rejected: true
	// batch error: true
}

func ExampleProducer_Collector() {
	addr, stop := startExampleBroker()
	defer stop()
	ctx := context.Background()
	p, err := weir.NewProducer(ctx, weir.Brokers(addr), weir.Topic("metrics"), weir.AllowAutoTopicCreation())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close(ctx)
	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
	reg.MustRegister(p.Collector())

	p.Send(ctx, weir.Event{Value: []byte("one")})
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "weir_producer_events_acknowledged_total" {
			fmt.Println(mf.GetName(), mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	// Output: weir_producer_events_acknowledged_total 1
}

func ExampleParseConnectionString() {
	c, err := weir.ParseConnectionString("Endpoint=sb://myns.servicebus.windows.net/;" +
		"SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0;EntityPath=orders")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Broker, c.EntityPath)

	_, err = weir.ParseConnectionString("Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKey=c2VjcmV0")
	fmt.Println(err)
	// Output:
	// myns.servicebus.windows.net:9093 orders
	// weir: bad connection string: missing SharedAccessKeyName
}
