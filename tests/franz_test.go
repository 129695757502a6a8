package tests

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/weirtest"
)

// TestFranzGoCodecs produces keyed records with headers to a 4-partition
// topic with each compression codec and reads them back byte-identical.
func TestFranzGoCodecs(t *testing.T) {
	b := weirtest.Start(t)
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()},
		{"gzip", kgo.GzipCompression()},
		{"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"zstd", kgo.ZstdCompression()},
	}
	for i, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			topic := "franz-" + c.name
			createTopic(t, b.Addr(), topic, 4)
			cl, err := kgo.NewClient(
				kgo.SeedBrokers(b.Addr()),
				kgo.DefaultProduceTopic(topic),
				kgo.ProducerBatchCompression(c.codec),
				kgo.ProducerLinger(5*time.Millisecond), // several records per batch
				kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
			)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()

			recs := makeRecords(uint64(i), 400, true)
			ctx := testContext(t, 30*time.Second)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var produceErrs []error
			for j := range recs {
				kr := &kgo.Record{Key: recs[j].Key, Value: recs[j].Value}
				for _, h := range recs[j].Headers {
					kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
				}
				wg.Add(1)
				cl.Produce(ctx, kr, func(r *kgo.Record, err error) {
					defer wg.Done()
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						produceErrs = append(produceErrs, err)
						return
					}
					recs[j].Partition, recs[j].Offset = r.Partition, r.Offset
				})
			}
			wg.Wait()
			if len(produceErrs) > 0 {
				t.Fatalf("%d produce errors, first: %v", len(produceErrs), produceErrs[0])
			}
			used := map[int32]bool{}
			for _, r := range recs {
				used[r.Partition] = true
			}
			if len(used) < 2 {
				t.Fatalf("records went to %d partition(s); the test wants several", len(used))
			}
			checkRecords(t, recs, consumeKgo(t, b.Addr(), topic, len(recs)), true)
		})
	}
}

// TestFranzGoAutoCreateAndNullKey produces to a topic that does not exist
// yet (auto-created) with null keys and checks the records and the null key
// come back.
func TestFranzGoAutoCreateAndNullKey(t *testing.T) {
	b := weirtest.Start(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testContext(t, 30*time.Second)
	var recs []record
	for i := range 20 {
		v := fmt.Appendf(nil, "v%d", i)
		kr := &kgo.Record{Topic: "auto-created", Value: v}
		res := cl.ProduceSync(ctx, kr)
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, record{Value: v, Partition: kr.Partition, Offset: kr.Offset})
	}
	got := consumeKgo(t, b.Addr(), "auto-created", len(recs))
	checkRecords(t, recs, got, false)
	if got[0].Key != nil {
		t.Errorf("null key came back as %q", got[0].Key)
	}
}
