package tests

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir"
)

// TestSDKProducerBrokerKill9 sends with the weir SDK producer (idempotent
// by default) while a real `weir serve` process is SIGKILLed and restarted
// three times. Every event must end acknowledged or returned; no
// acknowledged event may be missing, and no event may be stored twice.
func TestSDKProducerBrokerKill9(t *testing.T) {
	srv := startServer(t, "--fsync", "always", "--auto-create-topics=false")

	const topic, partitions = "sdk-restart", 3
	ctx := testContext(t, 90*time.Second)
	createTopic(t, srv.addr, topic, partitions)

	p, err := weir.NewProducer(ctx, weir.Brokers(srv.addr), weir.Topic(topic),
		weir.RetryBackoff(20*time.Millisecond, 200*time.Millisecond), weir.TryTimeout(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		acked    = map[string]weir.Result{}
		returned = map[string]error{}
		twice    int
	)
	stop := make(chan struct{})
	var sending sync.WaitGroup
	sending.Add(1)
	go func() {
		defer sending.Done()
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			v := fmt.Sprintf("event-%08d-%s", seq, bytes.Repeat([]byte{'x'}, seq%100))
			p.SendAsync(ctx, weir.Event{Value: []byte(v)}, func(r weir.Result) {
				mu.Lock()
				defer mu.Unlock()
				_, a := acked[v]
				_, f := returned[v]
				if a || f {
					twice++
				}
				if r.Err != nil {
					returned[v] = r.Err
				} else {
					acked[v] = r
				}
			})
			if seq%100 == 99 {
				time.Sleep(time.Millisecond) // several batches between kills
			}
		}
	}()
	ackedNow := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for i := range 3 {
		time.Sleep(time.Duration(200+150*i) * time.Millisecond)
		before := ackedNow()
		srv.kill()
		t.Logf("kill %d: %d events acknowledged so far", i+1, before)
		srv.start()
	}
	for base := ackedNow(); ackedNow() < base+500 && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond) // until the producer is back
	}
	close(stop)
	sending.Wait()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := p.Stats()

	mu.Lock()
	defer mu.Unlock()
	if twice > 0 || int64(len(acked)+len(returned)) != st.Sent {
		t.Errorf("%d sent, %d acknowledged + %d returned, %d events with two outcomes", st.Sent, len(acked), len(returned), twice)
	}
	for v, err := range returned {
		// Nothing should be returned: the broker is back well within the
		// delivery timeout. A returned event is not a loss, but say so.
		t.Errorf("%d events returned, e.g. %.20s: %v", len(returned), v, err)
		break
	}
	stored := readAll(t, srv.addr, topic)
	seen := map[string]int{}
	dups := 0
	for _, rs := range stored {
		for _, r := range rs {
			if seen[string(r.Value)]++; seen[string(r.Value)] > 1 {
				dups++
			}
		}
	}
	lost := 0
	for v, r := range acked {
		rs := stored[r.Partition]
		if r.Offset >= int64(len(rs)) || string(rs[r.Offset].Value) != v {
			if lost++; lost <= 3 {
				t.Errorf("acknowledged %.20s at %d/%d is missing after kill -9", v, r.Partition, r.Offset)
			}
		}
	}
	t.Logf("3 kills: %d sent, %d acknowledged, %d returned, %d lost, %d duplicates; %d produce requests retried",
		st.Sent, len(acked), len(returned), lost, dups, st.Retried)
	if lost > 0 || dups > 0 {
		t.Errorf("%d acknowledged events lost, %d stored twice", lost, dups)
	}
	if err := srv.stop(); err != nil {
		t.Errorf("weir serve after SIGTERM: %v", err)
	}

}
