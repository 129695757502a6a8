package tests

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/weirhq/weir/weirtest"
)

// TestKafkaGo creates a topic with kafka-go's Client, writes keyed records
// with headers through a Writer (Hash balancer, RequiredAcks all, lz4) and
// reads each partition back with a partition Reader.
func TestKafkaGo(t *testing.T) {
	b := weirtest.Start(t)
	const topic, partitions = "kafka-go", 3
	ctx := testContext(t, 60*time.Second)
	addr, err := net.ResolveTCPAddr("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}

	transport := &kafka.Transport{}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: addr, Transport: transport}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Errors[topic]; err != nil {
		t.Fatalf("create topic: %v", err)
	}

	recs := makeRecords(200, 300, true)
	var mu sync.Mutex
	byKey := map[string]int{} // makeRecords keys are unique
	for i, r := range recs {
		byKey[string(r.Key)] = i
	}
	var completionErr error
	w := &kafka.Writer{
		Addr:         addr,
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		Compression:  kafka.Lz4,
		BatchTimeout: 10 * time.Millisecond,
		Transport:    transport,
		Completion: func(msgs []kafka.Message, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				completionErr = err
				return
			}
			for _, m := range msgs {
				i := byKey[string(m.Key)]
				recs[i].Partition, recs[i].Offset = int32(m.Partition), m.Offset
			}
		},
	}
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = kafka.Message{Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			msgs[i].Headers = append(msgs[i].Headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		w.Close()
		t.Fatalf("WriteMessages: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if completionErr != nil {
		t.Fatalf("Completion reported: %v", completionErr)
	}

	perPartition := map[int32]int{}
	for _, r := range recs {
		perPartition[r.Partition]++
	}
	if len(perPartition) < 2 {
		t.Fatalf("records went to %d partition(s); the test wants several", len(perPartition))
	}
	var got []record
	for p := range int32(partitions) {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:   []string{b.Addr()},
			Topic:     topic,
			Partition: int(p),
			MinBytes:  1,
			MaxBytes:  10 << 20,
			MaxWait:   100 * time.Millisecond,
		})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			t.Fatal(err)
		}
		for range perPartition[p] {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("partition %d: ReadMessage: %v", p, err)
			}
			rec := record{Key: m.Key, Value: m.Value, Partition: int32(m.Partition), Offset: m.Offset}
			for _, h := range m.Headers {
				rec.Headers = append(rec.Headers, header{Key: h.Key, Value: h.Value})
			}
			got = append(got, rec)
		}
		if err := r.Close(); err != nil {
			t.Errorf("close reader: %v", err)
		}
	}
	checkRecords(t, recs, got, true)
}
