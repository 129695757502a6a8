package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDurabilityKill9 is the "no acknowledged record is lost across kill -9"
// guarantee: a real `weir serve --fsync always` process is SIGKILLed at random
// moments while a producer (acks=all) writes continuously. After the last
// restart every acknowledged record must be readable at the offset its ack
// reported, and every partition must hold contiguous offsets from 0.
func TestDurabilityKill9(t *testing.T) { runKill9(t, false) }

// TestIdempotenceKill9 is the same with franz-go's idempotent producer:
// batches that the broker wrote but could not answer before it died are
// retried with the same sequence numbers, and the restarted broker, whose
// producer state is rebuilt from the log, answers them as duplicates. Not
// one record may be stored twice.
func TestIdempotenceKill9(t *testing.T) { runKill9(t, true) }

func runKill9(t *testing.T, idempotent bool) {
	srv := startServer(t, "--fsync", "always", "--auto-create-topics=false")

	const topic, partitions = "durable", 3
	ctx := testContext(t, 60*time.Second)
	opts := []kgo.Opt{
		kgo.SeedBrokers(srv.addr),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
		kgo.ProduceRequestTimeout(5 * time.Second),
	}
	if !idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, srv.addr, topic, partitions)

	type ack struct {
		partition int32
		offset    int64
	}
	var (
		mu        sync.Mutex
		acked     = map[string]ack{} // payload -> where the ack said it is
		failed    int
		firstFail error
	)
	stop := make(chan struct{})
	var producing sync.WaitGroup
	producing.Add(1)
	go func() {
		defer producing.Done()
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			payload := fmt.Appendf(nil, "payload-%08d-%s", seq, bytes.Repeat([]byte{'z'}, seq%200))
			cl.Produce(ctx, &kgo.Record{Value: payload}, func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					if firstFail == nil {
						firstFail = err
					}
					return
				}
				acked[string(r.Value)] = ack{r.Partition, r.Offset}
			})
			if seq%50 == 49 {
				time.Sleep(time.Millisecond) // let the producer form several batches between kills
			}
		}
	}()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	kills := 3 + rng.IntN(3)
	ackedAt := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for i := range kills {
		d := time.Duration(100+rng.IntN(701)) * time.Millisecond
		time.Sleep(d)
		before := ackedAt()
		srv.kill()
		t.Logf("kill %d/%d after %v: %d records acknowledged so far", i+1, kills, d, before)
		srv.start()
	}
	// Keep producing against the last incarnation until a few more acks
	// arrive, so the client is known to have reconnected.
	base := ackedAt()
	for ackedAt() < base+200 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	producing.Wait()
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush producer: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if failed > 0 {
		// With unlimited retries nothing should fail; a failure is not a
		// loss, but it means the test exercised less than intended.
		t.Errorf("%d records failed to produce, first: %v", failed, firstFail)
	}
	if len(acked) == 0 {
		t.Fatal("no record was acknowledged")
	}

	stored := readAll(t, srv.addr, topic)
	seen := map[string]int{}
	total := 0
	for p, rs := range stored {
		for i, r := range rs {
			if r.Offset != int64(i) {
				t.Fatalf("partition %d: record %d has offset %d; offsets must be contiguous from 0", p, i, r.Offset)
			}
			seen[string(r.Value)]++
			total++
		}
	}
	lost := 0
	for payload, a := range acked {
		rs := stored[a.partition]
		if a.offset < 0 || a.offset >= int64(len(rs)) || !bytes.Equal(rs[a.offset].Value, []byte(payload)) {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged record %.20q at %d/%d is missing or different after kill -9", payload, a.partition, a.offset)
			}
		}
	}
	dups := 0
	for _, n := range seen {
		if n > 1 {
			dups += n - 1
		}
	}
	t.Logf("%d kills, idempotent %v: %d records acknowledged, %d stored, %d lost, %d duplicates (without idempotence, re-sends of unacknowledged writes may duplicate)",
		kills, idempotent, len(acked), total, lost, dups)
	if lost > 0 {
		t.Errorf("%d acknowledged records lost", lost)
	}
	if idempotent && dups > 0 {
		t.Errorf("%d records stored twice by an idempotent producer", dups)
	}
	if err := srv.stop(); err != nil {
		t.Errorf("weir serve after SIGTERM: %v (want exit status 0)", err)
	}
}
