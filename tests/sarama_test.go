package tests

import (
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/weirhq/weir/weirtest"
)

// TestSarama creates a topic with Sarama's ClusterAdmin (replication factor
// 2, which weir accepts as 1), produces with a SyncProducer and reads every
// partition back with a partition Consumer, speaking Kafka 2.8 and 3.6.
func TestSarama(t *testing.T) {
	b := weirtest.Start(t)
	versions := []struct {
		name    string
		version sarama.KafkaVersion
		codec   sarama.CompressionCodec
	}{
		{"2.8", sarama.V2_8_0_0, sarama.CompressionNone},
		{"3.6", sarama.V3_6_0_0, sarama.CompressionSnappy},
	}
	for i, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			topic := "sarama-" + v.name
			cfg := sarama.NewConfig()
			cfg.Version = v.version
			cfg.ClientID = "weir-test"
			cfg.Producer.RequiredAcks = sarama.WaitForAll
			cfg.Producer.Return.Successes = true
			cfg.Producer.Compression = v.codec
			cfg.Consumer.Return.Errors = true
			cfg.Metadata.AllowAutoTopicCreation = false
			addrs := []string{b.Addr()}

			admin, err := sarama.NewClusterAdmin(addrs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 2}, false); err != nil {
				t.Fatalf("CreateTopic with ReplicationFactor 2: %v", err)
			}
			err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false)
			if !errors.Is(err, sarama.ErrTopicAlreadyExists) {
				t.Errorf("creating %q again: got %v, want ErrTopicAlreadyExists", topic, err)
			}
			meta, err := admin.DescribeTopics([]string{topic})
			if err != nil {
				t.Fatal(err)
			}
			if len(meta) != 1 || len(meta[0].Partitions) != 3 {
				t.Fatalf("DescribeTopics(%q) = %+v, want 3 partitions", topic, meta)
			}

			producer, err := sarama.NewSyncProducer(addrs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			recs := makeRecords(uint64(100+i), 150, true)
			for j := range recs {
				msg := &sarama.ProducerMessage{
					Topic: topic,
					Key:   sarama.ByteEncoder(recs[j].Key),
					Value: sarama.ByteEncoder(recs[j].Value),
				}
				for _, h := range recs[j].Headers {
					msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
				}
				p, off, err := producer.SendMessage(msg)
				if err != nil {
					producer.Close()
					t.Fatalf("SendMessage %d: %v", j, err)
				}
				recs[j].Partition, recs[j].Offset = p, off
			}
			if err := producer.Close(); err != nil {
				t.Fatal(err)
			}

			perPartition := map[int32]int{}
			for _, r := range recs {
				perPartition[r.Partition]++
			}
			if len(perPartition) < 2 {
				t.Fatalf("records went to %d partition(s); the test wants several", len(perPartition))
			}
			consumer, err := sarama.NewConsumer(addrs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer consumer.Close()
			var got []record
			for p := range int32(3) {
				got = append(got, consumeSaramaPartition(t, consumer, topic, p, perPartition[p])...)
			}
			checkRecords(t, recs, got, true)
		})
	}
}

func consumeSaramaPartition(t *testing.T, consumer sarama.Consumer, topic string, p int32, n int) []record {
	t.Helper()
	pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("ConsumePartition %d: %v", p, err)
	}
	defer pc.Close()
	timeout := time.After(30 * time.Second)
	var out []record
	for len(out) < n {
		select {
		case m := <-pc.Messages():
			r := record{Key: m.Key, Value: m.Value, Partition: m.Partition, Offset: m.Offset}
			for _, h := range m.Headers {
				r.Headers = append(r.Headers, header{Key: string(h.Key), Value: h.Value})
			}
			out = append(out, r)
		case err := <-pc.Errors():
			t.Fatalf("partition %d: %v", p, err)
		case <-timeout:
			t.Fatalf("partition %d: consumed %d of %d records before timeout", p, len(out), n)
		}
	}
	// Nothing beyond what was produced.
	select {
	case m := <-pc.Messages():
		t.Errorf("partition %d: unexpected extra record at offset %d", p, m.Offset)
	case <-time.After(200 * time.Millisecond):
	}
	return out
}
