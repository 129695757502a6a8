package quota

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func mustNew(t *testing.T, cfg Config) *Namespace {
	t.Helper()
	n, err := New(cfg, 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// client is a simulated producer or consumer. It wants to move rate bytes
// per second in requests of reqBytes bytes (eventBytes each), and honours
// throttles as a KIP-219 client does: it sends nothing until the throttle
// is over. The broker holds back a client that does not honour it in the
// same way, so both behave alike here.
type client struct {
	dir        Direction
	topic      string
	rate       float64 // offered bytes per second
	reqBytes   int64
	eventBytes int64
	next       time.Time

	sent, throttled int64
	requests        int64
}

func (c *client) step(n *Namespace, now time.Time) {
	if now.Before(c.next) {
		return
	}
	events := max(c.reqBytes/c.eventBytes, 1)
	th := n.Record(now, c.dir, c.topic, c.reqBytes, events)
	c.sent += c.reqBytes
	c.requests++
	gap := time.Duration(float64(c.reqBytes) / c.rate * float64(time.Second))
	if th > 0 {
		c.throttled++
	}
	c.next = now.Add(max(gap, th))
}

// run steps time from start for d in 1 ms ticks.
func run(n *Namespace, start time.Time, d time.Duration, clients ...*client) time.Time {
	now := start
	for end := start.Add(d); now.Before(end); now = now.Add(time.Millisecond) {
		for _, c := range clients {
			c.step(n, now)
		}
	}
	return now
}

func within(got, want, tol float64) bool { return math.Abs(got-want) <= tol*want }

func TestUnlimitedByDefault(t *testing.T) {
	n := mustNew(t, Config{})
	if n.Limited() {
		t.Fatal("zero config is limited")
	}
	c := &client{dir: Ingress, rate: 500 << 20, reqBytes: 1 << 20, eventBytes: 100}
	run(n, t0, 5*time.Second, c)
	if c.throttled != 0 {
		t.Fatalf("unlimited namespace throttled %d of %d requests", c.throttled, c.requests)
	}
	if c.sent < 2000<<20 {
		t.Fatalf("unlimited client sent only %d bytes in 5s at 500 MiB/s", c.sent)
	}
}

// TestSustainedOverloadSettlesToLimit offers 3x the quota and checks that
// what gets through settles to the TU limit within 10%, for bytes and for
// events, in and out, with one client and with several sharing the limit.
func TestSustainedOverloadSettlesToLimit(t *testing.T) {
	cases := []struct {
		name    string
		units   int
		dir     Direction
		clients int
		evBytes int64 // bytes per event; small events hit the events limit
		limit   float64
		perByte bool // limit in bytes (else events)
	}{
		{"ingress bytes 1TU", 1, Ingress, 1, 10 << 10, IngressBytesPerUnit, true},
		{"ingress bytes 4TU 3 clients", 4, Ingress, 3, 10 << 10, 4 * IngressBytesPerUnit, true},
		{"ingress events 2TU", 2, Ingress, 1, 100, 2 * IngressEventsPerUnit, false},
		{"egress bytes 1TU", 1, Egress, 2, 64 << 10, EgressBytesPerUnit, true},
		{"egress events 1TU", 1, Egress, 1, 64, EgressEventsPerUnit, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := mustNew(t, Config{ThroughputUnits: tc.units})
			var cs []*client
			offered := 3 * tc.limit // per second, in the limiting unit
			for range tc.clients {
				bytesRate := offered / float64(tc.clients)
				if !tc.perByte {
					bytesRate *= float64(tc.evBytes)
				}
				cs = append(cs, &client{dir: tc.dir, rate: bytesRate, reqBytes: 64 * tc.evBytes, eventBytes: tc.evBytes})
			}
			// Let the initial burst pass, then measure a minute.
			start := run(n, t0, 5*time.Second, cs...)
			var before, throttled int64
			for _, c := range cs {
				before += c.sent
				throttled += c.throttled
			}
			run(n, start, time.Minute, cs...)
			var after int64
			for _, c := range cs {
				after += c.sent
			}
			got := float64(after-before) / 60
			if !tc.perByte {
				got /= float64(tc.evBytes)
			}
			if !within(got, tc.limit, 0.10) {
				t.Errorf("3x offered load got through at %.0f/s, limit %.0f/s (%.1f%%)", got, tc.limit, 100*got/tc.limit)
			}
			if throttled == 0 {
				t.Error("no request was throttled at 3x the quota")
			}
		})
	}
}

func TestBurstWithinBucketPassesUnthrottled(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 1})
	// 900 KiB at once, in 9 requests, on a 1 MiB/s bucket that is full.
	for i := range 9 {
		if th := n.Record(t0.Add(time.Duration(i)*time.Millisecond), Ingress, "t", 100<<10, 10); th != 0 {
			t.Fatalf("request %d of a burst within the bucket throttled %v", i, th)
		}
	}
	// The bucket refills: after a second another such burst passes too.
	for i := range 9 {
		if th := n.Record(t0.Add(time.Second+time.Duration(i)*time.Millisecond), Ingress, "t", 100<<10, 10); th != 0 {
			t.Fatalf("request %d of the second burst throttled %v", i, th)
		}
	}
	// Going over the bucket throttles for the debt: 1 MiB over at 1 MiB/s.
	n.Record(t0.Add(time.Second+10*time.Millisecond), Ingress, "t", 100<<10, 10)
	th := n.Record(t0.Add(time.Second+10*time.Millisecond), Ingress, "t", 1<<20, 10)
	if th < 800*time.Millisecond || th > 1100*time.Millisecond {
		t.Fatalf("1 MiB over a 1 MiB/s bucket throttled %v, want about 1s", th)
	}
	// Egress is separate and twice as large: 1.9 MiB out passes.
	if th := n.Record(t0.Add(time.Second+10*time.Millisecond), Egress, "t", 1900<<10, 100); th != 0 {
		t.Fatalf("egress burst within its bucket throttled %v", th)
	}
}

func TestEventsLimitComesFirst(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 1})
	// 1500 tiny events: far under 1 MiB, over 1000 events.
	if th := n.Record(t0, Ingress, "t", 1500*20, 1500); th < 400*time.Millisecond {
		t.Fatalf("1500 events on a 1000 events/s bucket throttled %v, want about 0.5s", th)
	}
}

// TestThrottleCoversWholeDebt: one request far over the bucket is
// throttled for all of its debt, not for a capped part of it.
func TestThrottleCoversWholeDebt(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 1})
	// 100 MiB at 1 MiB/s, less the full 1 MiB bucket: 99 s.
	if th := n.Record(t0, Ingress, "t", 100<<20, 1); th != 99*time.Second {
		t.Fatalf("100 MiB at 1 MiB/s throttled %v, want the whole debt, 99s", th)
	}
	// Once the throttle is over, the debt is paid: the next request owes
	// only for itself (1 KiB at 1 MiB/s: ~1 ms).
	if th := n.Record(t0.Add(99*time.Second), Ingress, "t", 1<<10, 1); th > time.Millisecond {
		t.Fatalf("a 1 KiB request after the whole throttle was throttled %v", th)
	}
}

// TestLargeRequestsHeldToLimit: a client whose every request is far over
// the bucket (40 MiB produces on 1 TU) still gets the limit, not a multiple
// of it, over ten minutes.
func TestLargeRequestsHeldToLimit(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 1})
	c := &client{dir: Ingress, rate: 1 << 30, reqBytes: 40 << 20, eventBytes: 40 << 10}
	now := run(n, t0, 10*time.Minute, c)
	// What it sent, over the time until its last hold is over.
	got := float64(c.sent) / c.next.Sub(t0).Seconds()
	if !within(got, IngressBytesPerUnit, 0.10) {
		t.Errorf("40 MiB requests on 1 TU got through at %.2fx the limit", got/IngressBytesPerUnit)
	}
	newcomerAfter(t, n, latest(now, c.next))
}

// TestManyConnectionsHeldToLimit: 32 connections sharing 1 TU, each with
// 1 MiB requests, together get the limit. Each is held back for the shared
// debt at the time of its request, as in KIP-219, so more connections do
// not mean more throughput.
func TestManyConnectionsHeldToLimit(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 1})
	var cs []*client
	for range 32 {
		cs = append(cs, &client{dir: Ingress, rate: 100 << 20, reqBytes: 1 << 20, eventBytes: 10 << 10})
	}
	start := run(n, t0, 30*time.Second, cs...)
	var before int64
	for _, c := range cs {
		before += c.sent
	}
	now := run(n, start, 5*time.Minute, cs...)
	var after int64
	var last time.Time
	for _, c := range cs {
		after += c.sent
		last = latest(last, c.next)
	}
	if got := float64(after-before) / now.Sub(start).Seconds(); !within(got, IngressBytesPerUnit, 0.10) {
		t.Errorf("32 connections on 1 TU got through at %.2fx the limit", got/IngressBytesPerUnit)
	}
	newcomerAfter(t, n, last)
}

// TestDebtDoesNotOutliveLoad: when 16 connections overloading 1 TU stop,
// a newcomer is throttled at most for the requests still being held back
// (16 x 1 MiB: 16 s), then not at all. No debt is left over from earlier
// requests, however long the load went on.
func TestDebtDoesNotOutliveLoad(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 1})
	var cs []*client
	for range 16 {
		cs = append(cs, &client{dir: Ingress, rate: 100 << 20, reqBytes: 1 << 20, eventBytes: 10 << 10})
	}
	stop := run(n, t0, 10*time.Minute, cs...)
	// The newcomer arrives the moment the others stop sending, sends
	// 1 KiB every 100 ms and waits out its throttles.
	nc := &client{dir: Ingress, rate: 10 << 10, reqBytes: 1 << 10, eventBytes: 1 << 10, next: stop}
	var heldUntil time.Time
	for now := stop; now.Before(stop.Add(time.Minute)); now = now.Add(time.Millisecond) {
		th := nc.throttled
		nc.step(n, now)
		if nc.throttled > th {
			heldUntil = nc.next
		}
	}
	if held := heldUntil.Sub(stop); held > 17*time.Second {
		t.Errorf("after the load stopped a newcomer was throttled for %v, want at most the 16 s still held", held)
	}
	if nc.requests < 400 {
		t.Errorf("the newcomer got %d requests through in a minute, want over 400", nc.requests)
	}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// newcomerAfter checks that once the connections of a load have been held
// back for what they took, a newcomer owes nothing of theirs: it is
// throttled at most for its own 1 KiB requests (~1 ms each).
func newcomerAfter(t *testing.T, n *Namespace, at time.Time) {
	t.Helper()
	for i := range 10 {
		if th := n.Record(at.Add(time.Duration(i)*100*time.Millisecond), Ingress, "t", 1<<10, 1); th > time.Millisecond {
			t.Fatalf("once the load's holds were over, a newcomer's request %d was throttled %v", i, th)
		}
	}
}

func TestTopicCap(t *testing.T) {
	n := mustNew(t, Config{TopicUnits: map[string]int{"capped": 1}})
	if !n.Limited() {
		t.Fatal("a topic cap does not make the namespace limited")
	}
	capped := &client{dir: Ingress, topic: "capped", rate: 3 << 20, reqBytes: 64 << 10, eventBytes: 1 << 10}
	free := &client{dir: Ingress, topic: "free", rate: 3 << 20, reqBytes: 64 << 10, eventBytes: 1 << 10}
	run(n, t0, 30*time.Second, capped, free)
	if got := float64(capped.sent) / 30; !within(got, IngressBytesPerUnit, 0.10) {
		t.Errorf("capped topic got %.0f B/s, cap %d B/s", got, IngressBytesPerUnit)
	}
	if free.throttled != 0 {
		t.Errorf("uncapped topic on an unlimited broker throttled %d times", free.throttled)
	}
}

// TestAutoInflateStepsToMax overloads 1 TU tenfold with auto-inflate up to
// 4: TUs go up one step per window and stop at 4.
func TestAutoInflateStepsToMax(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 1, AutoInflate: true, AutoInflateMaxUnits: 4, Window: 5 * time.Second})
	c := &client{dir: Ingress, rate: 10 << 20, reqBytes: 256 << 10, eventBytes: 1 << 10}
	now := t0
	var seen []int
	for range 20 { // 100 s
		now = run(n, now, 5*time.Second, c)
		seen = append(seen, n.Units())
	}
	changes := n.TakeChanges()
	if len(changes) != 3 {
		t.Fatalf("got %d changes %+v, want 3 (1->2->3->4)", len(changes), changes)
	}
	for i, ch := range changes {
		if ch.From != i+1 || ch.To != i+2 || ch.Reason != "auto-inflate" {
			t.Errorf("change %d is %+v, want %d->%d auto-inflate", i, ch, i+1, i+2)
		}
		if i > 0 && ch.At.Sub(changes[i-1].At) < 5*time.Second {
			t.Errorf("changes %d and %d closer than one window: %v", i-1, i, ch.At.Sub(changes[i-1].At))
		}
	}
	if u := n.Units(); u != 4 {
		t.Fatalf("units after 100s of 10x overload: %d, want the max 4 (history %v)", u, seen)
	}
	// Still throttled at the max: the client gets 4 MiB/s.
	before := c.sent
	run(n, now, 20*time.Second, c)
	if got := float64(c.sent-before) / 20; !within(got, 4*IngressBytesPerUnit, 0.10) {
		t.Errorf("at max 4 TU the client got %.0f B/s", got)
	}
}

// TestAutoInflateStopsWhenThrottlingStops offers 2.5 TU worth of load: TUs
// rise to 3 and stay there, well under the max.
func TestAutoInflateStopsWhenThrottlingStops(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 1, AutoInflate: true, AutoInflateMaxUnits: 10, Window: 5 * time.Second})
	c := &client{dir: Ingress, rate: 2.5 * (1 << 20), reqBytes: 64 << 10, eventBytes: 1 << 10}
	now := run(n, t0, 2*time.Minute, c)
	if u := n.Units(); u != 3 {
		t.Fatalf("units under 2.5 TU of load: %d, want 3", u)
	}
	// No throttling any more: the client gets what it offers.
	before, th := c.sent, c.throttled
	run(n, now, 20*time.Second, c)
	if got := float64(c.sent-before) / 20; !within(got, 2.5*(1<<20), 0.05) {
		t.Errorf("at 3 TU a 2.5 TU load got %.0f B/s", got)
	}
	if c.throttled != th {
		t.Errorf("%d requests throttled after inflating to 3 TU", c.throttled-th)
	}
}

func TestAutoInflateOffKeepsUnits(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 2})
	c := &client{dir: Ingress, rate: 20 << 20, reqBytes: 256 << 10, eventBytes: 1 << 10}
	run(n, t0, time.Minute, c)
	if u, ch := n.Units(), n.TakeChanges(); u != 2 || len(ch) != 0 {
		t.Fatalf("without auto-inflate units went to %d with changes %+v", u, ch)
	}
}

func TestScaleDown(t *testing.T) {
	cfg := Config{ThroughputUnits: 1, AutoInflate: true, AutoInflateMaxUnits: 3, Window: 5 * time.Second,
		ScaleDown: true, QuietPeriod: 30 * time.Second}
	n := mustNew(t, cfg)
	hot := &client{dir: Ingress, rate: 10 << 20, reqBytes: 256 << 10, eventBytes: 1 << 10}
	now := run(n, t0, time.Minute, hot)
	if n.Units() != 3 {
		t.Fatalf("units after overload: %d, want 3", n.Units())
	}
	n.TakeChanges()
	// A light load (0.5 MiB/s) fits in 1 TU at 80%: one step down per quiet period.
	light := &client{dir: Ingress, rate: 512 << 10, reqBytes: 16 << 10, eventBytes: 1 << 10, next: now}
	now = run(n, now, 40*time.Second, light)
	if n.Units() != 2 {
		t.Fatalf("units after 40s quiet: %d, want 2", n.Units())
	}
	now = run(n, now, 40*time.Second, light)
	if n.Units() != 1 {
		t.Fatalf("units after 80s quiet: %d, want 1", n.Units())
	}
	// Never below the configured units, even idle.
	n.Tick(now.Add(time.Hour))
	if n.Units() != 1 {
		t.Fatalf("units after an idle hour: %d, want the configured 1", n.Units())
	}
	ch := n.TakeChanges()
	if len(ch) != 2 || ch[0].Reason != "scale-down" || ch[0].From != 3 || ch[1].To != 1 {
		t.Fatalf("changes %+v, want 3->2->1 scale-down", ch)
	}
}

func TestScaleDownOffByDefault(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 1, AutoInflate: true, AutoInflateMaxUnits: 3, Window: 5 * time.Second})
	hot := &client{dir: Ingress, rate: 10 << 20, reqBytes: 256 << 10, eventBytes: 1 << 10}
	now := run(n, t0, time.Minute, hot)
	n.Tick(now.Add(24 * time.Hour))
	if n.Units() != 3 {
		t.Fatalf("units a day after the overload: %d, want 3 (no scale-down by default)", n.Units())
	}
}

func TestNoScaleDownWhileLoadNeedsUnits(t *testing.T) {
	cfg := Config{ThroughputUnits: 1, AutoInflate: true, AutoInflateMaxUnits: 3, Window: 5 * time.Second,
		ScaleDown: true, QuietPeriod: 20 * time.Second}
	n := mustNew(t, cfg)
	c := &client{dir: Ingress, rate: 2.5 * (1 << 20), reqBytes: 64 << 10, eventBytes: 1 << 10}
	run(n, t0, 3*time.Minute, c)
	if n.Units() != 3 {
		t.Fatalf("units under a steady 2.5 TU load with scale-down on: %d, want 3 (no flapping)", n.Units())
	}
	if ch := n.TakeChanges(); len(ch) != 2 {
		t.Fatalf("changes %+v, want exactly two steps up", ch)
	}
}

func TestSetConfig(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 1, AutoInflate: true, AutoInflateMaxUnits: 5})
	if err := n.SetConfig(Config{ThroughputUnits: 3, AutoInflate: true, AutoInflateMaxUnits: 5}, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n.Units() != 3 {
		t.Fatalf("units after set 3: %d", n.Units())
	}
	// Lowering the max clamps the count.
	if err := n.SetConfig(Config{ThroughputUnits: 2, AutoInflate: true, AutoInflateMaxUnits: 2}, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n.Units() != 2 {
		t.Fatalf("units after set 2 max 2: %d", n.Units())
	}
	// Back to unlimited.
	if err := n.SetConfig(Config{}, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n.Limited() || n.Record(t0.Add(3*time.Second), Ingress, "t", 1<<30, 1e6) != 0 {
		t.Fatal("still limited after setting 0 TUs")
	}
	ch := n.TakeChanges()
	if len(ch) != 3 || ch[2].To != 0 || ch[0].Reason != "set" {
		t.Fatalf("changes %+v", ch)
	}
	// A bad config changes nothing.
	if err := n.SetConfig(Config{ThroughputUnits: -1}, t0.Add(4*time.Second)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative units: err %v, want ErrInvalidConfig", err)
	}
}

func TestResetUnits(t *testing.T) {
	n := mustNew(t, Config{ThroughputUnits: 1, AutoInflate: true, AutoInflateMaxUnits: 4, Window: 5 * time.Second})
	now := run(n, t0, time.Minute, &client{dir: Ingress, rate: 10 << 20, reqBytes: 256 << 10, eventBytes: 1 << 10})
	if n.Units() != 4 {
		t.Fatalf("units after overload: %d, want 4", n.Units())
	}
	n.TakeChanges()
	n.ResetUnits(now)
	if ch := n.TakeChanges(); n.Units() != 1 || len(ch) != 1 || ch[0].Reason != "set" {
		t.Fatalf("after ResetUnits: units %d, changes %+v; want 1 and one set", n.Units(), ch)
	}
}

// TestUnitsAfter: the count UnitsAfter predicts is the one SetConfig (and
// ResetUnits) puts in force, so the broker can persist it first.
func TestUnitsAfter(t *testing.T) {
	inflated := Config{ThroughputUnits: 1, AutoInflate: true, AutoInflateMaxUnits: 4}
	for _, tc := range []struct {
		name  string
		cfg   Config
		reset bool
	}{
		{"same", inflated, false},
		{"reset", inflated, true},
		{"new units", Config{ThroughputUnits: 2, AutoInflate: true, AutoInflateMaxUnits: 4}, false},
		{"lower max", Config{ThroughputUnits: 1, AutoInflate: true, AutoInflateMaxUnits: 2}, false},
		{"auto-inflate off", Config{ThroughputUnits: 1}, false},
		{"unlimited", Config{}, false},
	} {
		n, err := New(inflated, 3, t0) // inflated to 3
		if err != nil {
			t.Fatal(err)
		}
		want := n.UnitsAfter(tc.cfg, tc.reset)
		if err := n.SetConfig(tc.cfg, t0); err != nil {
			t.Fatal(err)
		}
		if tc.reset {
			n.ResetUnits(t0)
		}
		if n.Units() != want {
			t.Errorf("%s: UnitsAfter said %d, SetConfig put %d in force", tc.name, want, n.Units())
		}
	}
}

func TestRestoredUnitsAreClamped(t *testing.T) {
	cfg := Config{ThroughputUnits: 2, AutoInflate: true, AutoInflateMaxUnits: 6}
	for _, tc := range []struct{ restored, want int }{{0, 2}, {1, 2}, {4, 4}, {9, 6}} {
		n, err := New(cfg, tc.restored, t0)
		if err != nil {
			t.Fatal(err)
		}
		if n.Units() != tc.want {
			t.Errorf("restored %d: units %d, want %d", tc.restored, n.Units(), tc.want)
		}
	}
	n, _ := New(Config{ThroughputUnits: 2}, 5, t0)
	if n.Units() != 2 {
		t.Errorf("restored 5 without auto-inflate: units %d, want 2", n.Units())
	}
}

func TestValidate(t *testing.T) {
	bad := []Config{
		{ThroughputUnits: -1},
		{ThroughputUnits: MaxUnits + 1},
		{AutoInflate: true, AutoInflateMaxUnits: 4},
		{ThroughputUnits: 4, AutoInflate: true, AutoInflateMaxUnits: 2},
		{ThroughputUnits: 1, Window: -time.Second},
		{ThroughputUnits: 1, Step: -1},
		{ThroughputUnits: 1, QuietPeriod: -1},
		{TopicUnits: map[string]int{"t": -2}},
		{AutoInflateMaxUnits: -3},
		{TopicUnits: map[string]int{"no spaces": 1}},
		{TopicUnits: map[string]int{"": 1}},
		{TopicUnits: map[string]int{"..": 1}},
		{TopicUnits: manyTopics(MaxTopicCaps + 1)},
	}
	for _, c := range bad {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", c, err)
		}
		if _, err := New(c, 0, t0); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
	good := []Config{{}, {ThroughputUnits: 1}, {ThroughputUnits: 1, AutoInflate: true, AutoInflateMaxUnits: 1},
		{AutoInflateMaxUnits: 5}, {TopicUnits: map[string]int{"t": 0}}, {TopicUnits: manyTopics(MaxTopicCaps)}}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
}

func manyTopics(n int) map[string]int {
	m := make(map[string]int, n)
	for i := range n {
		m[fmt.Sprintf("topic-%d", i)] = 1
	}
	return m
}

func BenchmarkRecord(b *testing.B) {
	n, _ := New(Config{ThroughputUnits: 1 << 19, TopicUnits: map[string]int{"t": 1 << 19}}, 0, t0)
	b.ReportAllocs()
	now := t0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		n.Record(now, Ingress, "t", 1<<10, 10)
	}
}
