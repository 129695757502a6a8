package weir_test

import (
	"context"
	"testing"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

func benchProducer(b *testing.B, opts ...weir.ProducerOpt) *weir.Producer {
	b.Helper()
	br := weirtest.Start(b, func(c *broker.Config) { c.DefaultPartitions = 4 })
	p, err := weir.NewProducer(context.Background(),
		append([]weir.ProducerOpt{weir.Brokers(br.Addr()), weir.Topic("bench"), weir.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// BenchmarkProducerSend is the latency-bound case: one synchronous Send at
// a time, each waiting for its fsynced acknowledgement.
func BenchmarkProducerSend(b *testing.B) {
	p := benchProducer(b)
	ctx := context.Background()
	ev := weir.Event{Value: make([]byte, 100)}
	b.ReportAllocs()
	b.SetBytes(int64(len(ev.Value)))
	for b.Loop() {
		if _, err := p.Send(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkProducerSendAsync is the throughput case: SendAsync as fast as
// the buffer takes events, then Flush.
func BenchmarkProducerSendAsync(b *testing.B) {
	p := benchProducer(b)
	ctx := context.Background()
	ev := weir.Event{Value: make([]byte, 100)}
	b.ReportAllocs()
	b.SetBytes(int64(len(ev.Value)))
	b.ResetTimer()
	for range b.N {
		p.SendAsync(ctx, ev, nil)
	}
	if err := p.Flush(ctx); err != nil { // timed: events count once acknowledged
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if s := p.Stats(); s.Failed > 0 {
		b.Fatalf("%d events failed", s.Failed)
	}
}

// BenchmarkProducerSendBatch sends 100 events per call.
func BenchmarkProducerSendBatch(b *testing.B) {
	p := benchProducer(b)
	ctx := context.Background()
	batch := make([]weir.Event, 100)
	for i := range batch {
		batch[i] = weir.Event{Value: make([]byte, 100)}
	}
	b.ReportAllocs()
	b.SetBytes(100 * 100)
	for b.Loop() {
		if _, err := p.SendBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}
