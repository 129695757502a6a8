package tests

import (
	"errors"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirhq/weir/weirtest"
)

// TestConfluentKafkaGo creates a topic with the librdkafka admin client,
// produces keyed records with headers (zstd, acks=all) and waits for every
// delivery report, then reads all partitions back with a consumer that is
// assigned explicit partitions and offsets (no group subscription).
func TestConfluentKafkaGo(t *testing.T) {
	b := weirtest.Start(t)
	topic, partitions := "confluent", 3
	ctx := testContext(t, 60*time.Second)

	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": b.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}})
	admin.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("CreateTopics: %v", res)
	}

	// librdkafka reports protocol trouble (a response it cannot parse, for
	// one) only in its log, and carries on; a user sees those lines, so the
	// test collects them and fails on errors.
	logs := make(chan kafka.LogEvent, 10000)
	defer checkLibrdkafkaLogs(t, logs)

	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":      b.Addr(),
		"go.logs.channel.enable": true,
		"go.logs.channel":        logs,
		"acks":                   "all",
		"enable.idempotence":     true, // InitProducerId and sequence-checked batches
		"compression.type":       "zstd",
		"linger.ms":              5,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	recs := makeRecords(300, 300, true)
	deliveries := make(chan kafka.Event, len(recs))
	for i, r := range recs {
		msg := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            r.Key,
			Value:          r.Value,
			Opaque:         i,
		}
		for _, h := range r.Headers {
			msg.Headers = append(msg.Headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
		if err := p.Produce(msg, deliveries); err != nil {
			t.Fatalf("Produce %d: %v", i, err)
		}
	}
	for range recs {
		select {
		case ev := <-deliveries:
			m, ok := ev.(*kafka.Message)
			if !ok {
				t.Fatalf("unexpected delivery event %T: %v", ev, ev)
			}
			if m.TopicPartition.Error != nil {
				t.Fatalf("delivery failed: %v", m.TopicPartition.Error)
			}
			i := m.Opaque.(int)
			recs[i].Partition, recs[i].Offset = m.TopicPartition.Partition, int64(m.TopicPartition.Offset)
		case <-ctx.Done():
			t.Fatal("timed out waiting for delivery reports")
		}
	}

	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":      b.Addr(),
		"go.logs.channel.enable": true,
		"go.logs.channel":        logs,
		// librdkafka requires a group.id for a consumer; this one never
		// subscribes, joins or commits.
		"group.id":                 "weir-test-unused",
		"enable.auto.commit":       false,
		"enable.auto.offset.store": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var assign []kafka.TopicPartition
	for i := range int32(partitions) {
		assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: i, Offset: kafka.OffsetBeginning})
	}
	if err := c.Assign(assign); err != nil {
		t.Fatal(err)
	}
	var got []record
	for len(got) < len(recs) && ctx.Err() == nil {
		m, err := c.ReadMessage(500 * time.Millisecond)
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.IsTimeout() {
			continue
		}
		if err != nil {
			t.Fatalf("ReadMessage: %v", err)
		}
		r := record{Key: m.Key, Value: m.Value, Partition: m.TopicPartition.Partition, Offset: int64(m.TopicPartition.Offset)}
		for _, h := range m.Headers {
			r.Headers = append(r.Headers, header{Key: h.Key, Value: h.Value})
		}
		got = append(got, r)
	}
	checkRecords(t, recs, got, true)
}

// checkLibrdkafkaLogs fails the test for every error-level (syslog level 3
// or lower) librdkafka log line in logs, and logs warnings. Call it after
// the clients writing to logs are closed.
func checkLibrdkafkaLogs(t *testing.T, logs chan kafka.LogEvent) {
	t.Helper()
	for {
		select {
		case ev := <-logs:
			switch {
			case ev.Level <= 3:
				t.Errorf("librdkafka error log: %s", ev)
			case ev.Level == 4:
				t.Logf("librdkafka warning: %s", ev)
			}
		default:
			return
		}
	}
}
