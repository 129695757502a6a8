package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/storage"
	"github.com/weirhq/weir/storage/faultfs"
)

// TestPowerLossKeepsAcknowledgedRecords is "no acknowledged record is lost
// in a power loss" through the whole broker: an in-process broker on
// faultfs takes produces (acks=all, idempotent) from franz-go over TCP, and
// at a random moment faultfs.Crash drops every byte not yet fsynced,
// keeping a random torn prefix of each file's unsynced tail. A SIGKILL
// (TestDurabilityKill9) cannot show this: the page cache survives it, so
// it never needs the journal. A new broker on the same directory must
// serve every acknowledged record at the partition and offset of its ack,
// keep everything it served after the previous crash, store no value twice
// in a partition, and append new records at the offsets that follow.
//
// Several rounds crash the same directory, so each replays the journal
// over what earlier replays wrote. One round writes enough (more than
// twice the 4 MiB after which the journal switches files) that journal
// checkpoints happen and a journal file is written over before its crash.
// Records go to two topics: one with the default 1 GiB segments, which
// only checkpoints fsync (a checkpoint that freed a journal file without
// fsyncing them loses records here), and one with 1 MiB segments, which
// roll in every partition on the way.
//
// WEIR_TEST_SEED=<n> repeats a failed run's crash moments and torn tails.
func TestPowerLossKeepsAcknowledgedRecords(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WEIR_TEST_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("WEIR_TEST_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (WEIR_TEST_SEED=%d repeats it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	const (
		partitions = 4
		rounds     = 4
		bigRound   = 1 // its values are large enough to pass journal checkpoints
	)
	topics := [...]struct {
		name         string
		segmentBytes int
	}{{"powerloss", 1 << 30}, {"powerloss-rolled", 1 << 20}}
	dir := t.TempDir()
	ctx := testContext(t, time.Minute)

	start := func(fsys storage.FS) *broker.Broker {
		t.Helper()
		b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir, FS: fsys,
			DisableAutoCreateTopics: true, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("start broker: %v", err)
		}
		t.Cleanup(func() { b.Close() }) // if the test ends early; Close is idempotent
		return b
	}
	producer := func(addr string) *kgo.Client {
		t.Helper()
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(addr),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerBatchCompression(kgo.NoCompression()), // the big round's bytes reach the journal as they are
			kgo.MaxBufferedRecords(1000),
			kgo.ProducerBatchMaxBytes(64<<10), // the big round's records are acknowledged a few at a time
			kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }),
		)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}

	var (
		acked []powerLossAck // every acknowledged record, of all rounds
		// kept is what the last start served, and the probes since, by
		// topic, partition and offset.
		kept = map[string]map[int32][]string{}
	)
	check := func(addr string) {
		t.Helper()
		for _, tc := range topics {
			kept[tc.name] = checkPowerLoss(t, addr, tc.name, acked, kept[tc.name])
		}
	}
	// probe produces one record to each partition, which must land at the
	// partition's end.
	probe := func(cl *kgo.Client, what string) {
		t.Helper()
		for _, tc := range topics {
			if kept[tc.name] == nil {
				kept[tc.name] = map[int32][]string{}
			}
			for p := range int32(partitions) {
				r := &kgo.Record{Topic: tc.name, Partition: p, Value: fmt.Appendf(nil, "%s: probe %d", what, p)}
				if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatalf("%s: produce to %s/%d: %v", what, tc.name, p, err)
				}
				if want := int64(len(kept[tc.name][p])); r.Offset != want {
					t.Errorf("%s: a record produced to %s/%d got offset %d, want %d (the log end)", what, tc.name, p, r.Offset, want)
				}
				acked = append(acked, powerLossAck{string(r.Value), tc.name, p, r.Offset})
				kept[tc.name][p] = append(kept[tc.name][p], string(r.Value))
			}
		}
	}

	for round := range rounds {
		faults := faultfs.New(storage.OSFS{})
		b := start(faults)
		if round == 0 {
			for _, tc := range topics {
				createTopicWith(t, b.Addr(), tc.name, partitions,
					map[string]*string{"segment.bytes": kadm.StringPtr(strconv.Itoa(tc.segmentBytes))})
			}
		} else {
			check(b.Addr())
		}
		cl := producer(b.Addr())
		probe(cl, fmt.Sprintf("round %d", round))

		// Produce without pause until a random amount is acknowledged,
		// then pull the plug under whatever is in flight.
		valueSize, crashAt := 0, 20<<10+rng.IntN(300<<10)
		if round == bigRound {
			valueSize, crashAt = 8<<10, 12<<20+rng.IntN(4<<20)
		}
		var (
			mu         sync.Mutex
			roundAcks  []powerLossAck
			ackedBytes int
			failed     int
			reached    = make(chan struct{})
			promises   sync.WaitGroup
			producing  sync.WaitGroup
			stop       = make(chan struct{})
		)
		producing.Add(1)
		go func() {
			defer producing.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				value := fmt.Appendf(nil, "round %d record %d ", round, seq)
				value = append(value, bytes.Repeat([]byte{'v'}, valueSize+seq%200)...)
				promises.Add(1)
				tp := seq % (len(topics) * partitions)
				r := &kgo.Record{Topic: topics[tp/partitions].name, Partition: int32(tp % partitions), Value: value}
				cl.Produce(ctx, r, func(r *kgo.Record, err error) {
					defer promises.Done()
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						failed++
						return
					}
					roundAcks = append(roundAcks, powerLossAck{string(r.Value), r.Topic, r.Partition, r.Offset})
					if ackedBytes < crashAt && ackedBytes+len(r.Value) >= crashAt {
						close(reached)
					}
					ackedBytes += len(r.Value)
				})
			}
		}()
		select {
		case <-reached:
		case <-ctx.Done():
			t.Fatalf("round %d: %d bytes not acknowledged in time", round, crashAt)
		}
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond) // not always right after an acknowledgement
		journalFiles, _ := filepath.Glob(filepath.Join(dir, "journal", "*.wal"))
		mu.Lock()
		atCrash := len(roundAcks)
		mu.Unlock()
		if err := faults.Crash(rng); err != nil {
			t.Fatalf("round %d: crash: %v", round, err)
		}
		close(stop)
		cl.Close() // fails what is still buffered or in flight, and a Produce waiting for room
		producing.Wait()
		promises.Wait()
		berr := b.Close()

		// Acknowledgements that came after the crash count too: they
		// must be for what was fsynced before it.
		t.Logf("round %d: power lost after %d KiB acknowledged; %d records acknowledged at the crash, %d in all, %d failed; %d journal files; close after the crash failed: %v",
			round, crashAt>>10, atCrash, len(roundAcks), failed, len(journalFiles), berr != nil)
		acked = append(acked, roundAcks...)
		if round == bigRound && len(journalFiles) < 2 {
			t.Errorf("round %d: the journal never switched files, so no checkpoint ran before the crash", round)
		}
	}

	// After the last power loss, on the real file system: the replay, then
	// new records, then a clean close keeps all of them.
	b := start(nil)
	check(b.Addr())
	cl := producer(b.Addr())
	probe(cl, "after the last crash")
	cl.Close()
	if err := b.Close(); err != nil {
		t.Errorf("close broker: %v", err)
	}
	b = start(nil)
	check(b.Addr())
	if err := b.Close(); err != nil {
		t.Errorf("close broker: %v", err)
	}
}

// powerLossAck is where an acknowledgement said a value is.
type powerLossAck struct {
	value     string
	topic     string
	partition int32
	offset    int64
}

// checkPowerLoss reads topic from the broker at addr and checks it against
// every acknowledgement and against kept, what the previous start served
// (it was fsynced then, so no later crash may take it back). It returns
// what it read, as the next kept.
func checkPowerLoss(t *testing.T, addr, topic string, acked []powerLossAck, kept map[int32][]string) map[int32][]string {
	t.Helper()
	stored := map[int32][]string{}
	total := 0
	for p, rs := range readAll(t, addr, topic) {
		seen := map[string]int64{}
		for i, r := range rs {
			if r.Offset != int64(i) {
				t.Fatalf("%s/%d: record %d has offset %d; offsets must run from 0 without gaps", topic, p, i, r.Offset)
			}
			if at, dup := seen[string(r.Value)]; dup {
				t.Errorf("%s/%d: value %.30q is stored at offsets %d and %d", topic, p, r.Value, at, r.Offset)
			}
			seen[string(r.Value)] = r.Offset
			stored[p] = append(stored[p], string(r.Value))
		}
		total += len(rs)
	}
	for p, vs := range kept {
		for off, v := range vs {
			if off >= len(stored[p]) || stored[p][off] != v {
				t.Fatalf("%s/%d: offset %d, served before the last crash, is gone or changed (%d records left)", topic, p, off, len(stored[p]))
			}
		}
	}
	lost, want := 0, 0
	for _, a := range acked {
		if a.topic != topic {
			continue
		}
		want++
		if rs := stored[a.partition]; a.offset >= int64(len(rs)) || rs[a.offset] != a.value {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged record %.30q at %s/%d offset %d is missing or different after the power loss (the partition has %d records)",
					a.value, topic, a.partition, a.offset, len(rs))
			}
		}
	}
	t.Logf("%s after restart: %d records stored, %d acknowledged so far, %d of them lost", topic, total, want, lost)
	if lost > 0 {
		t.Fatalf("%s: %d acknowledged records lost", topic, lost)
	}
	return stored
}
