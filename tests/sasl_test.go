package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/internal/testcert"
	"github.com/weirhq/weir/weirtest"
)

// Apps configured for Azure Event Hubs' Kafka endpoint (SASL_SSL, PLAIN,
// user $ConnectionString, the connection string as the password) work
// against weir by changing only the endpoint.

const (
	sasKeyName = "RootManageSharedAccessKey"
	sasKey     = "dGVzdC1uYW1lc3BhY2Uta2V5LWZvci13ZWly"
)

// startSASLBroker starts weir with TLS and SASL: the SAS key above, and the
// PLAIN user alice with password alice-pw.
func startSASLBroker(t *testing.T) (*broker.Broker, *testcert.Certs) {
	t.Helper()
	certs := testcert.New(t)
	b := weirtest.Start(t, func(c *broker.Config) {
		c.TLS = certs.Server
		c.SASL.SASKeys = map[string]string{sasKeyName: sasKey}
		c.SASL.PlainUsers = map[string]string{"alice": "alice-pw"}
	})
	return b, certs
}

func eventHubsConnString(key string) string {
	return "Endpoint=sb://weir-test.servicebus.windows.net/;SharedAccessKeyName=" + sasKeyName + ";SharedAccessKey=" + key
}

// kgoSASL are the franz-go options of an Event Hubs-style login.
func kgoSASL(certs *testcert.Certs, key string) []kgo.Opt {
	return []kgo.Opt{
		kgo.DialTLSConfig(certs.Client.Clone()),
		kgo.SASL(plain.Auth{User: "$ConnectionString", Pass: eventHubsConnString(key)}.AsMechanism()),
	}
}

func TestSASLFranzGo(t *testing.T) {
	b, certs := startSASLBroker(t)
	ctx := testContext(t, time.Minute)
	const topic = "sasl-franz"
	cl, err := kgo.NewClient(append(kgoSASL(certs, sasKey), kgo.SeedBrokers(b.Addr()),
		kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 20 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "v%d", i)}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	recs := weirtest.ReadAll(ctx, t, b.Addr(), topic, kgoSASL(certs, sasKey)...)
	if len(recs[0]) != 20 || string(recs[0][19].Value) != "v19" {
		t.Fatalf("read back %d records, want 20 ending in v19", len(recs[0]))
	}

	bad, err := kgo.NewClient(append(kgoSASL(certs, "d3Jvbmc="), kgo.SeedBrokers(b.Addr()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Ping(ctx); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("wrong key: %v, want SASL_AUTHENTICATION_FAILED", err)
	}
}

// TestSASLKcat is the shell user's check: kcat (librdkafka) with exactly the
// settings Event Hubs documents, plus the CA of the test certificate.
func TestSASLKcat(t *testing.T) {
	kcat := kcatPath(t)
	b, certs := startSASLBroker(t)
	ctx := testContext(t, time.Minute)
	const topic = "sasl-kcat"
	login := func(key string) []string {
		return []string{"-b", b.Addr(),
			"-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=PLAIN",
			"-X", "sasl.username=$ConnectionString", "-X", "sasl.password=" + eventHubsConnString(key),
			"-X", "ssl.ca.location=" + certs.CAFile}
	}
	in := "one\ntwo\nthree\n"
	runKcat(t, ctx, kcat, []byte(in), append(login(sasKey), "-P", "-t", topic)...)
	meta := runKcat(t, ctx, kcat, nil, append(login(sasKey), "-L")...)
	if !bytes.Contains(meta, []byte(`topic "`+topic+`" with 1 partitions`)) {
		t.Errorf("kcat -L does not list %q:\n%s", topic, meta)
	}
	out := runKcat(t, ctx, kcat, nil, append(login(sasKey), "-C", "-t", topic, "-e", "-o", "beginning", "-q")...)
	if string(out) != in {
		t.Errorf("kcat read back %q, want %q", out, in)
	}

	// A wrong key: kcat gives up on the metadata request.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, kcat, append(login("d3Jvbmc="), "-L", "-m", "3")...)
	combined, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("kcat -L with a wrong key succeeded:\n%s", combined)
	}
	if !strings.Contains(strings.ToLower(string(combined)), "authentication") {
		t.Errorf("kcat with a wrong key does not say why:\n%s", combined)
	}
}

func TestSASLSarama(t *testing.T) {
	b, certs := startSASLBroker(t)
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Net.TLS.Enable = true
	cfg.Net.TLS.Config = certs.Client.Clone()
	cfg.Net.SASL.Enable = true
	cfg.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	cfg.Net.SASL.User = "$ConnectionString"
	cfg.Net.SASL.Password = eventHubsConnString(sasKey)
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	addrs := []string{b.Addr()}
	const topic = "sasl-sarama"

	producer, err := sarama.NewSyncProducer(addrs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	recs := makeRecords(7, 50, false)
	for i := range recs {
		p, off, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic,
			Key: sarama.ByteEncoder(recs[i].Key), Value: sarama.ByteEncoder(recs[i].Value)})
		if err != nil {
			producer.Close()
			t.Fatalf("SendMessage %d: %v", i, err)
		}
		recs[i].Partition, recs[i].Offset = p, off
	}
	if err := producer.Close(); err != nil {
		t.Fatal(err)
	}
	consumer, err := sarama.NewConsumer(addrs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	checkRecords(t, recs, consumeSaramaPartition(t, consumer, topic, 0, len(recs)), false)
}

func TestSASLConfluentKafkaGo(t *testing.T) {
	b, certs := startSASLBroker(t)
	ctx := testContext(t, time.Minute)
	const topic = "sasl-confluent"
	logs := make(chan kafka.LogEvent, 10000)
	conf := func(more kafka.ConfigMap) *kafka.ConfigMap {
		m := kafka.ConfigMap{
			"bootstrap.servers":      b.Addr(),
			"security.protocol":      "SASL_SSL",
			"sasl.mechanisms":        "PLAIN",
			"sasl.username":          "$ConnectionString",
			"sasl.password":          eventHubsConnString(sasKey),
			"ssl.ca.location":        certs.CAFile,
			"go.logs.channel.enable": true,
			"go.logs.channel":        logs,
		}
		for k, v := range more {
			m[k] = v
		}
		return &m
	}
	defer checkLibrdkafkaLogs(t, logs)

	p, err := kafka.NewProducer(conf(kafka.ConfigMap{"acks": "all", "enable.idempotence": true}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	recs := makeRecords(11, 40, false)
	deliveries := make(chan kafka.Event, len(recs))
	for i, r := range recs {
		tp := kafka.TopicPartition{Topic: ptr(topic), Partition: kafka.PartitionAny}
		if err := p.Produce(&kafka.Message{TopicPartition: tp, Key: r.Key, Value: r.Value, Opaque: i}, deliveries); err != nil {
			t.Fatalf("Produce %d: %v", i, err)
		}
	}
	for range recs {
		select {
		case ev := <-deliveries:
			m, ok := ev.(*kafka.Message)
			if !ok || m.TopicPartition.Error != nil {
				t.Fatalf("delivery: %v", ev)
			}
			i := m.Opaque.(int)
			recs[i].Partition, recs[i].Offset = m.TopicPartition.Partition, int64(m.TopicPartition.Offset)
		case <-ctx.Done():
			t.Fatal("timed out waiting for delivery reports")
		}
	}

	c, err := kafka.NewConsumer(conf(kafka.ConfigMap{"group.id": "sasl-confluent", "auto.offset.reset": "earliest"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	var got []record
	for len(got) < len(recs) && ctx.Err() == nil {
		m, err := c.ReadMessage(500 * time.Millisecond)
		var ke kafka.Error
		if errors.As(err, &ke) && ke.IsTimeout() {
			continue
		}
		if err != nil {
			t.Fatalf("ReadMessage: %v", err)
		}
		got = append(got, record{Key: m.Key, Value: m.Value, Partition: m.TopicPartition.Partition, Offset: int64(m.TopicPartition.Offset)})
	}
	checkRecords(t, recs, got, false)
}

func ptr[T any](v T) *T { return &v }
