package broker

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestRoundTripCompression(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	codecs := map[string]kgo.CompressionCodec{
		"none":   kgo.NoCompression(),
		"gzip":   kgo.GzipCompression(),
		"snappy": kgo.SnappyCompression(),
		"lz4":    kgo.Lz4Compression(),
		"zstd":   kgo.ZstdCompression(),
	}
	const parts, n = 3, 300
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			topic := "rt-" + name
			createTopic(t, adm, topic, parts, nil)
			cl := newClient(t, b, kgo.ProducerBatchCompression(codec), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			var recs []*kgo.Record
			for i := range n {
				recs = append(recs, &kgo.Record{
					Topic:     topic,
					Partition: int32(i % parts),
					Key:       fmt.Appendf(nil, "key-%d", i),
					// Compressible but distinct values, some large.
					Value:   bytes.Repeat(fmt.Appendf(nil, "value-%d;", i), 1+i%50),
					Headers: []kgo.RecordHeader{{Key: "h", Value: fmt.Appendf(nil, "%d", i)}, {Key: "empty"}},
				})
			}
			if err := cl.ProduceSync(testCtx(t), recs...).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
			got := consume(t, b, topic, n)
			if len(got) != n {
				t.Fatalf("got %d records, want %d", len(got), n)
			}
			next := make(map[int32]int) // per partition: index of the next expected record
			for p := range int32(parts) {
				next[p] = int(p)
			}
			for _, r := range got {
				i := next[r.Partition]
				want := recs[i]
				if !bytes.Equal(r.Key, want.Key) || !bytes.Equal(r.Value, want.Value) {
					t.Fatalf("partition %d: got key %q, want record %d (key %q)", r.Partition, r.Key, i, want.Key)
				}
				if len(r.Headers) != 2 || r.Headers[0].Key != "h" || !bytes.Equal(r.Headers[0].Value, want.Headers[0].Value) || r.Headers[1].Key != "empty" {
					t.Fatalf("record %d: headers %v, want %v", i, r.Headers, want.Headers)
				}
				if r.Offset != int64(i/parts) {
					t.Fatalf("record %d: offset %d, want %d", i, r.Offset, i/parts)
				}
				next[r.Partition] = i + parts
			}
		})
	}
}

func TestAcks(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	for _, tc := range []struct {
		name string
		acks kgo.Acks
	}{{"none", kgo.NoAck()}, {"leader", kgo.LeaderAck()}, {"all", kgo.AllISRAcks()}} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "acks-" + tc.name
			createTopic(t, adm, topic, 1, nil)
			cl := newClient(t, b, kgo.RequiredAcks(tc.acks), kgo.DisableIdempotentWrite(), kgo.DefaultProduceTopic(topic))
			const n = 50
			for i := range n {
				if err := cl.ProduceSync(testCtx(t), kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
					t.Fatalf("produce %d: %v", i, err)
				}
			}
			got := consume(t, b, topic, n)
			for i, r := range got {
				if string(r.Value) != fmt.Sprint(i) {
					t.Fatalf("record %d: value %q", i, r.Value)
				}
			}
		})
	}
}

func TestIdempotentProducerDefault(t *testing.T) {
	// franz-go's default producer is idempotent: InitProducerID must work.
	b := startBroker(t, nil)
	createTopic(t, newAdmin(t, b), "idem", 1, nil)
	cl := newClient(t, b, kgo.DefaultProduceTopic("idem"))
	for i := range 10 {
		if err := cl.ProduceSync(testCtx(t), kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	if got := consume(t, b, "idem", 10); string(got[9].Value) != "9" {
		t.Fatalf("last value %q", got[9].Value)
	}
}

func TestLogAppendTime(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	createTopic(t, adm, "lat", 1, map[string]*string{"message.timestamp.type": ptrTo("LogAppendTime")})
	cl := newClient(t, b, kgo.DefaultProduceTopic("lat"))
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	before := time.Now().Add(-time.Second)
	res := cl.ProduceSync(testCtx(t), &kgo.Record{Value: []byte("v"), Timestamp: old})
	if err := res.FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := consume(t, b, "lat", 1)[0]
	if got.Timestamp.Before(before) || got.Timestamp.After(time.Now().Add(time.Minute)) {
		t.Fatalf("timestamp %v: want the broker's append time (after %v)", got.Timestamp, before)
	}
	if got.Attrs.TimestampType() != 1 {
		t.Fatalf("timestamp type %d, want 1 (LogAppendTime)", got.Attrs.TimestampType())
	}
}

func TestListOffsets(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	createTopic(t, adm, "lo", 1, nil)
	cl := newClient(t, b, kgo.DefaultProduceTopic("lo"), kgo.ProducerLinger(0))
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 10 {
		r := &kgo.Record{Value: []byte("v"), Timestamp: base.Add(time.Duration(i) * time.Second)}
		if err := cl.ProduceSync(testCtx(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ctx := testCtx(t)
	check := func(what string, l kadm.ListedOffsets, err error, wantOff int64) {
		t.Helper()
		if err == nil {
			err = l.Error()
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		o, _ := l.Lookup("lo", 0)
		if o.Offset != wantOff {
			t.Fatalf("%s: offset %d, want %d", what, o.Offset, wantOff)
		}
	}
	l, err := adm.ListStartOffsets(ctx, "lo")
	check("earliest", l, err, 0)
	l, err = adm.ListEndOffsets(ctx, "lo")
	check("latest", l, err, 10)
	l, err = adm.ListOffsetsAfterMilli(ctx, base.Add(4500*time.Millisecond).UnixMilli(), "lo")
	check("after 4.5s", l, err, 5)
	l, err = adm.ListOffsetsAfterMilli(ctx, base.Add(time.Hour*2).UnixMilli(), "lo")
	check("after the end", l, err, 10)
	l, err = adm.ListMaxTimestampOffsets(ctx, "lo")
	check("max timestamp", l, err, 9)
}

func TestConfigs(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	createTopic(t, adm, "cfg", 1, map[string]*string{"retention.ms": ptrTo("1000")})

	value := func(key string) (string, kmsg.ConfigSource) {
		t.Helper()
		rcs, err := adm.DescribeTopicConfigs(ctx, "cfg")
		if err != nil {
			t.Fatal(err)
		}
		rc, err := rcs.On("cfg", nil)
		if err != nil || rc.Err != nil {
			t.Fatalf("describe: %v %v", err, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key == key {
				return c.MaybeValue(), c.Source
			}
		}
		t.Fatalf("config %s not described", key)
		return "", 0
	}
	if v, src := value("retention.ms"); v != "1000" || src != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("retention.ms = %q (source %v), want 1000 (dynamic topic config)", v, src)
	}
	if v, src := value("cleanup.policy"); v != "delete" || src != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("cleanup.policy = %q (source %v), want delete (default)", v, src)
	}

	// Incremental: set one, delete another.
	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "segment.ms", Value: ptrTo("60000")},
		{Op: kadm.DeleteConfig, Name: "retention.ms"},
	}, "cfg")
	if err == nil {
		err = firstAlterErr(rs)
	}
	if err != nil {
		t.Fatalf("incremental alter: %v", err)
	}
	if v, _ := value("segment.ms"); v != "60000" {
		t.Fatalf("segment.ms = %q after set", v)
	}
	if v, src := value("retention.ms"); v == "1000" || src != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("retention.ms = %q (source %v) after delete, want the default", v, src)
	}

	// APPEND on a non-list key is INVALID_REQUEST; unknown keys INVALID_CONFIG.
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.AppendConfig, Name: "segment.ms", Value: ptrTo("1")}}, "cfg")
	if err == nil {
		err = firstAlterErr(rs)
	}
	if !errors.Is(err, kerr.InvalidRequest) {
		t.Fatalf("append to segment.ms: %v, want INVALID_REQUEST", err)
	}
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "no.such.key", Value: ptrTo("1")}}, "cfg")
	if err == nil {
		err = firstAlterErr(rs)
	}
	if !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("unknown key: %v, want INVALID_CONFIG", err)
	}
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: ptrTo("soon")}}, "cfg")
	if err == nil {
		err = firstAlterErr(rs)
	}
	if !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("bad value: %v, want INVALID_CONFIG", err)
	}

	// Non-incremental: replaces every override.
	rs, err = adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.bytes", Value: ptrTo("12345")}}, "cfg")
	if err == nil {
		err = firstAlterErr(rs)
	}
	if err != nil {
		t.Fatalf("alter configs: %v", err)
	}
	if v, _ := value("retention.bytes"); v != "12345" {
		t.Fatalf("retention.bytes = %q", v)
	}
	if _, src := value("segment.ms"); src != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("segment.ms still overridden after a replacing AlterConfigs")
	}

	// Broker configs are described, read-only.
	brs, err := adm.DescribeBrokerConfigs(ctx)
	if err != nil || len(brs) != 1 || len(brs[0].Configs) == 0 {
		t.Fatalf("describe broker configs: %v %v", brs, err)
	}
}

func firstAlterErr(rs kadm.AlterConfigsResponses) error {
	for _, r := range rs {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

func TestCreatePartitionsDeleteTopicsDeleteRecords(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	createTopic(t, adm, "grow", 2, nil)
	if _, err := adm.UpdatePartitions(ctx, 5, "grow"); err != nil {
		t.Fatalf("grow to 5: %v", err)
	}
	rs, err := adm.UpdatePartitions(ctx, 3, "grow")
	if err == nil {
		var r kadm.CreatePartitionsResponse
		r, err = rs.On("grow", nil)
		if err == nil {
			err = r.Err
		}
	}
	if !errors.Is(err, kerr.InvalidPartitions) {
		t.Fatalf("shrink: %v, want INVALID_PARTITIONS", err)
	}
	md, err := adm.Metadata(ctx, "grow")
	if err != nil || len(md.Topics["grow"].Partitions) != 5 {
		t.Fatalf("metadata after grow: %v, %d partitions", err, len(md.Topics["grow"].Partitions))
	}

	// DeleteRecords, then earliest offset moves; beyond the HW is rejected.
	cl := newClient(t, b, kgo.DefaultProduceTopic("grow"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x"), Partition: 4}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: "grow", Partition: 4, At: 6})
	drs, err := adm.DeleteRecords(ctx, os)
	if err != nil || drs.Error() != nil {
		t.Fatalf("delete records: %v %v", err, drs.Error())
	}
	starts, err := adm.ListStartOffsets(ctx, "grow")
	if o, _ := starts.Lookup("grow", 4); err != nil || o.Offset != 6 {
		t.Fatalf("start offset after delete records: %d (%v), want 6", o.Offset, err)
	}
	os = kadm.Offsets{}
	os.Add(kadm.Offset{Topic: "grow", Partition: 4, At: 11})
	drs, err = adm.DeleteRecords(ctx, os)
	if err == nil {
		err = drs.Error()
	}
	if !errors.Is(err, kerr.OffsetOutOfRange) {
		t.Fatalf("delete beyond HW: %v, want OFFSET_OUT_OF_RANGE", err)
	}

	// DeleteTopics.
	if _, err := adm.DeleteTopic(ctx, "grow"); err != nil {
		t.Fatalf("delete topic: %v", err)
	}
	if _, ok := b.Log().Topic("grow"); ok {
		t.Fatalf("topic still exists after DeleteTopics")
	}
	if _, err := adm.DeleteTopic(ctx, "grow"); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete missing topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
}

func TestReplicationFactor(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	r, err := adm.CreateTopic(ctx, 2, 3, nil, "rf3")
	if err != nil {
		t.Fatalf("rf 3: %v", err)
	}
	if r.ReplicationFactor != 1 || r.NumPartitions != 2 {
		t.Fatalf("rf 3 created as partitions %d rf %d, want 2 and 1", r.NumPartitions, r.ReplicationFactor)
	}
	if _, err := adm.CreateTopic(ctx, 2, 3, nil, "rf3"); !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("again: %v, want TOPIC_ALREADY_EXISTS", err)
	}

	strict := startBroker(t, func(c *Config) { c.StrictReplicationFactor = true })
	sadm := newAdmin(t, strict)
	if _, err := sadm.CreateTopic(ctx, 1, 3, nil, "rf3"); !errors.Is(err, kerr.InvalidReplicationFactor) {
		t.Fatalf("strict rf 3: %v, want INVALID_REPLICATION_FACTOR", err)
	}
	if _, ok := strict.Log().Topic("rf3"); ok {
		t.Fatalf("strict broker created the topic anyway")
	}
	if _, err := sadm.CreateTopic(ctx, 1, -1, nil, "rfdefault"); err != nil {
		t.Fatalf("strict rf -1: %v", err)
	}
	if _, err := sadm.CreateTopic(ctx, 1, 1, map[string]*string{"bogus": ptrTo("1")}, "badcfg"); !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("unknown config: %v, want INVALID_CONFIG", err)
	}
	if _, err := sadm.CreateTopic(ctx, 1, 1, nil, "bad/name"); !errors.Is(err, kerr.InvalidTopicException) {
		t.Fatalf("bad name: %v, want INVALID_TOPIC_EXCEPTION", err)
	}
}

func TestCreateTopicsValidateOnlyAndAssignment(t *testing.T) {
	b := startBroker(t, nil)
	cl := newClient(t, b)
	adm := kadm.NewClient(cl)
	ctx := testCtx(t)
	if _, err := adm.ValidateCreateTopics(ctx, 3, 1, map[string]*string{"retention.ms": ptrTo("5000")}, "vo"); err != nil {
		t.Fatalf("validate only: %v", err)
	}
	if _, ok := b.Log().Topic("vo"); ok {
		t.Fatalf("validate-only request created the topic")
	}
	create := func(name string, replicas ...[]int32) int16 {
		t.Helper()
		req := kmsg.NewPtrCreateTopicsRequest()
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, -1, -1
		for i, r := range replicas {
			rt.ReplicaAssignment = append(rt.ReplicaAssignment, kmsg.CreateTopicsRequestTopicReplicaAssignment{Partition: int32(i), Replicas: r})
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].ErrorCode
	}
	if code := create("assigned", []int32{0}, []int32{0}); code != 0 {
		t.Fatalf("assignment [[0] [0]]: %v", kerr.ErrorForCode(code))
	}
	if tp, ok := b.Log().Topic("assigned"); !ok || tp.NumPartitions() != 2 {
		t.Fatalf("assigned topic missing or wrong partition count")
	}
	if code := create("assigned2", []int32{0, 1}); code != kerr.InvalidReplicaAssignment.Code {
		t.Fatalf("assignment [[0 1]]: %v, want INVALID_REPLICA_ASSIGNMENT", kerr.ErrorForCode(code))
	}
}

func TestAutoCreate(t *testing.T) {
	ctx := testCtx(t)
	on := startBroker(t, nil)
	cl := newClient(t, on, kgo.DefaultProduceTopic("auto"), kgo.AllowAutoTopicCreation())
	if err := cl.ProduceSync(ctx, kgo.StringRecord("x")).FirstErr(); err != nil {
		t.Fatalf("produce with auto-create: %v", err)
	}
	if _, ok := on.Log().Topic("auto"); !ok {
		t.Fatalf("topic not auto-created")
	}

	off := startBroker(t, func(c *Config) { c.DisableAutoCreateTopics = true })
	adm := kadm.NewClient(newClient(t, off, kgo.AllowAutoTopicCreation()))
	md, err := adm.Metadata(ctx, "auto")
	if err != nil {
		t.Fatal(err)
	}
	if err := md.Topics["auto"].Err; !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("metadata for unknown topic with auto-create off: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	if _, ok := off.Log().Topic("auto"); ok {
		t.Fatalf("topic created although auto-create is off")
	}
}

func TestClusterIDPersists(t *testing.T) {
	dir := t.TempDir()
	b1 := startBroker(t, func(c *Config) { c.DataDir = dir })
	id := b1.ClusterID()
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := startBroker(t, func(c *Config) { c.DataDir = dir })
	if b2.ClusterID() != id || id == "" {
		t.Fatalf("cluster id %q after restart, want %q", b2.ClusterID(), id)
	}
}

func TestProducerIDsNeverReused(t *testing.T) {
	dir := t.TempDir()
	initID := func(b *Broker) int64 {
		t.Helper()
		req := kmsg.NewPtrInitProducerIDRequest()
		resp, err := req.RequestWith(testCtx(t), newClient(t, b))
		if err != nil || resp.ErrorCode != 0 {
			t.Fatalf("InitProducerID: %v %v", err, kerr.ErrorForCode(resp.ErrorCode))
		}
		if resp.ProducerEpoch != 0 {
			t.Fatalf("epoch %d, want 0", resp.ProducerEpoch)
		}
		return resp.ProducerID
	}
	b1 := startBroker(t, func(c *Config) { c.DataDir = dir })
	first, second := initID(b1), initID(b1)
	if second <= first {
		t.Fatalf("ids %d then %d", first, second)
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := startBroker(t, func(c *Config) { c.DataDir = dir })
	if third := initID(b2); third <= second {
		t.Fatalf("after restart id %d, not above %d", third, second)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{},
		{DataDir: "x", Addr: "no-port"},
		{DataDir: "x", NodeID: -1},
		{DataDir: "x", DefaultPartitions: -3},
		{DataDir: "x", MaxRequestBytes: -1},
		{DataDir: "x", Sync: 9},
	} {
		err := c.Validate()
		var ce *ConfigError
		if !errors.Is(err, ErrInvalidConfig) || !errors.As(err, &ce) {
			t.Errorf("Validate(%+v) = %v, want a *ConfigError", c, err)
		}
		if _, err := Start(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Start(%+v) = %v, want ErrInvalidConfig", c, err)
		}
	}
	if err := (&Config{DataDir: "x"}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
}
