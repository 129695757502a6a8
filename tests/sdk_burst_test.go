package tests

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/quota"
	"github.com/weirhq/weir/weirtest"
)

// TestSDKBurstOverQuota sends a burst at 5x the quota of a 1-TU broker with
// the SDK producer, with auto-inflate off and on. Throttling slows the
// producer but fails nothing: every event is acknowledged, and a consumer
// reads back exactly the acknowledged set. With auto-inflate on, the TU
// count rises and the burst drains faster than 1 TU could carry it.
func TestSDKBurstOverQuota(t *testing.T) {
	for _, inflate := range []bool{false, true} {
		t.Run(fmt.Sprintf("auto-inflate=%v", inflate), func(t *testing.T) {
			t.Parallel()
			sdkBurst(t, inflate)
		})
	}
}

func sdkBurst(t *testing.T, inflate bool) {
	const (
		burstRate = 5 * quota.IngressEventsPerUnit // events/s: 5x one TU
		burstFor  = 2 * time.Second
		events    = int(burstRate * burstFor / time.Second)
		maxUnits  = 5
	)
	b := oneTU(t, func(c *broker.Config) {
		if inflate {
			c.Quota.AutoInflate = true
			c.Quota.AutoInflateMaxUnits = maxUnits
			c.Quota.Window = time.Second
		}
	})
	topic := fmt.Sprintf("sdk-burst-%v", inflate)
	createTopic(t, b.Addr(), topic, 4)

	ctx := testContext(t, 2*time.Minute)
	p, err := weir.NewProducer(ctx, weir.Brokers(b.Addr()), weir.Topic(topic))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		acked  = map[string]bool{}
		failed []error
		wg     sync.WaitGroup
	)
	start := time.Now()
	// Paced at burstRate: 50 events every 10 ms.
	const step = 10 * time.Millisecond
	perStep := int(burstRate * step / time.Second)
	for i := 0; i < events; i++ {
		if i%perStep == 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i/perStep) * step)))
		}
		v := fmt.Sprintf("burst-%06d", i)
		wg.Add(1)
		p.SendAsync(ctx, weir.Event{Value: []byte(v)}, func(r weir.Result) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if r.Err != nil {
				failed = append(failed, r.Err)
				return
			}
			acked[v] = true
		})
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	wg.Wait()
	elapsed := time.Since(start)
	st := p.Stats()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	t.Logf("%d events acknowledged in %v (1 TU carries %d events/s); producer saw %d throttles (%v)",
		len(acked), elapsed.Round(time.Millisecond), quota.IngressEventsPerUnit, st.Throttled, st.ThrottleTime)
	if len(failed) > 0 {
		t.Fatalf("%d events returned with errors (throttling must fail none), first: %v", len(failed), failed[0])
	}
	if len(acked) != events || st.Acknowledged != int64(events) {
		t.Fatalf("acknowledged %d (stats %d) of %d events", len(acked), st.Acknowledged, events)
	}
	if st.Throttled == 0 {
		t.Errorf("the producer saw no throttle at 5x the quota")
	}
	consumeExactly(t, b, topic, acked)

	m := weirtest.Metrics(t, b)
	units := currentUnits(t, b)
	changes, found := m[`weir_throughput_unit_changes_total{reason="auto-inflate"}`]
	if !found {
		t.Fatal(`metric weir_throughput_unit_changes_total{reason="auto-inflate"} missing`)
	}
	t.Logf("TUs at the end: %d; auto-inflate changes: %v", units, changes)
	if !inflate {
		if units != 1 || changes != 0 {
			t.Errorf("auto-inflate off: TUs %d, %v auto-inflate changes; want 1 and 0", units, changes)
		}
		return
	}
	if units < 2 || changes < 1 {
		t.Errorf("auto-inflate on: TUs %d after %v of throttling, %v changes; want them raised", units, elapsed, changes)
	}
	// At 1 TU the burst needs at least (events - one second's bucket) /
	// 1000 events/s to drain. Draining clearly faster shows the throughput
	// followed the raised TUs.
	oneTU := time.Duration(events-quota.IngressEventsPerUnit) * time.Second / quota.IngressEventsPerUnit
	if elapsed > oneTU*70/100 {
		t.Errorf("auto-inflate on: the burst took %v; 1 TU alone needs %v", elapsed, oneTU)
	}
}
