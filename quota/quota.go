// Package quota enforces throughput units (TUs), as Event Hubs sells
// capacity: one TU allows 1 MiB/s or 1000 events/s in, and 2 MiB/s or 4096
// events/s out, whichever limit comes first.
//
// Namespace is a deterministic state machine, like etcd raft's RawNode: it
// has no goroutines, locks or clock. Callers pass the time into every call,
// so tests step it through minutes of load without sleeping. The broker
// wraps it with a mutex.
//
// Throttling follows Kafka's KIP-219: usage is always recorded in full (a
// request over quota is still served), and the answer is a throttle
// duration that the broker puts in throttle_time_ms and for which it holds
// back the connection's next reads. The throttle is the whole debt of the
// shared buckets at the time of the request, not capped: a connection is
// held until everything taken so far, its own request included, is paid
// for. So the limit holds whatever the request size or the number of
// connections, and debt cannot pile up: what is owed at any time is at most
// the requests whose holds are still running, one per held connection.
package quota

import (
	"errors"
	"fmt"
	"github.com/weirhq/weir/internal/topicname"
	"time"
)

// Per-unit limits.
const (
	IngressBytesPerUnit  = 1 << 20 // bytes per second in, per TU
	IngressEventsPerUnit = 1000    // events per second in, per TU
	EgressBytesPerUnit   = 2 << 20 // bytes per second out, per TU
	EgressEventsPerUnit  = 4096    // events per second out, per TU
)

// Burst is the capacity of every bucket, in seconds of its rate: a burst of
// up to this much traffic above the limit passes unthrottled.
const Burst = time.Second

// Defaults of Config's zero fields.
const (
	DefaultWindow      = 10 * time.Second
	DefaultStep        = 1
	DefaultQuietPeriod = 10 * time.Minute
)

// MaxUnits bounds every unit count: 1 TU is 1 MiB/s in, so this is ~1 TiB/s.
const MaxUnits = 1 << 20

// MaxTopicCaps bounds how many topics a Config can cap (TopicUnits keys).
const MaxTopicCaps = 10000

// ErrInvalidConfig is wrapped by every error of Config.Validate.
var ErrInvalidConfig = errors.New("weir: invalid quota config")

// Direction says which way traffic flows.
type Direction int

const (
	Ingress Direction = iota // produce
	Egress                   // fetch
)

func (d Direction) String() string {
	if d == Ingress {
		return "ingress"
	}
	return "egress"
}

// Config is what an operator sets. Zero values mean unlimited, auto-inflate
// off, and the defaults above.
type Config struct {
	// ThroughputUnits is the broker-wide TU count; 0 is unlimited.
	ThroughputUnits int
	// TopicUnits caps single topics, in TUs, on top of the broker-wide
	// limit. Absent or 0: no cap.
	TopicUnits map[string]int

	// AutoInflate raises the broker-wide TUs in Steps, up to AutoInflateMaxUnits,
	// while throttling persists for a Window. It needs ThroughputUnits > 0.
	AutoInflate bool
	// AutoInflateMaxUnits is the highest count auto-inflate goes to. It must
	// be >= ThroughputUnits when AutoInflate is set.
	AutoInflateMaxUnits int
	// Window is how long throttling must persist before a step up: the
	// broker-wide limit must have been exceeded for at least half of it.
	// Default 10s.
	Window time.Duration
	// Step is how many TUs one change adds or removes. Default 1.
	Step int
	// ScaleDown lets auto-inflate come back down, one Step per QuietPeriod
	// without throttling and with usage that fits in the lower count at 80%,
	// but never below ThroughputUnits. Off by default, as in Event Hubs,
	// where inflated TUs stay until an operator lowers them.
	ScaleDown bool
	// QuietPeriod before a step down. Default 10m.
	QuietPeriod time.Duration
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// Validate reports the first bad field of c.
func (c Config) Validate() error {
	switch {
	case c.ThroughputUnits < 0 || c.ThroughputUnits > MaxUnits:
		return invalid("throughput units must be between 0 (unlimited) and %d, not %d", MaxUnits, c.ThroughputUnits)
	case c.AutoInflateMaxUnits < 0 || c.AutoInflateMaxUnits > MaxUnits:
		return invalid("auto-inflate max units must be between 0 and %d, not %d", MaxUnits, c.AutoInflateMaxUnits)
	case c.AutoInflate && c.ThroughputUnits == 0:
		return invalid("auto-inflate needs a throughput unit count > 0 to start from")
	case c.AutoInflate && c.AutoInflateMaxUnits < c.ThroughputUnits:
		return invalid("auto-inflate max units (%d) must be >= throughput units (%d)", c.AutoInflateMaxUnits, c.ThroughputUnits)
	case c.Window < 0:
		return invalid("auto-inflate window must be >= 0, not %v", c.Window)
	case c.Step < 0 || c.Step > MaxUnits:
		return invalid("auto-inflate step must be between 0 (default) and %d, not %d", MaxUnits, c.Step)
	case c.QuietPeriod < 0:
		return invalid("scale-down quiet period must be >= 0, not %v", c.QuietPeriod)
	}
	if len(c.TopicUnits) > MaxTopicCaps {
		return invalid("at most %d topics can have a throughput-unit cap, not %d", MaxTopicCaps, len(c.TopicUnits))
	}
	for topic, u := range c.TopicUnits {
		if !topicname.Valid(topic) {
			return invalid("throughput-unit cap for %q: not a valid topic name", topic)
		}
		if u < 0 || u > MaxUnits {
			return invalid("throughput units of topic %q must be between 0 (no cap) and %d, not %d", topic, MaxUnits, u)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Step == 0 {
		c.Step = DefaultStep
	}
	if c.QuietPeriod == 0 {
		c.QuietPeriod = DefaultQuietPeriod
	}
	return c
}

// Change is one change of the broker-wide TU count.
type Change struct {
	At       time.Time
	From, To int
	Reason   string // "auto-inflate", "scale-down", "set"
}

// perUnit returns the per-TU byte and event rates of d.
func perUnit(d Direction) (bytes, events float64) {
	if d == Ingress {
		return IngressBytesPerUnit, IngressEventsPerUnit
	}
	return EgressBytesPerUnit, EgressEventsPerUnit
}

// meter limits one direction of traffic with two buckets: bytes and events.
type meter struct {
	bytes, events Bucket
}

func newMeter(d Direction, units int, now time.Time) meter {
	br, er := perUnit(d)
	return meter{
		bytes:  NewBucket(br*float64(units), Burst, now),
		events: NewBucket(er*float64(units), Burst, now),
	}
}

func (m *meter) setUnits(d Direction, units int) {
	br, er := perUnit(d)
	m.bytes.SetRate(br*float64(units), Burst)
	m.events.SetRate(er*float64(units), Burst)
}

func (m *meter) advance(now time.Time) time.Duration {
	return max(m.bytes.Advance(now), m.events.Advance(now))
}

func (m *meter) take(bytes, events int64) time.Duration {
	m.bytes.Take(float64(bytes))
	m.events.Take(float64(events))
	return max(m.bytes.Throttle(), m.events.Throttle())
}

// topicMeter is a capped topic's pair of meters.
type topicMeter struct {
	units int
	dirs  [2]meter
}

// usage is what one window saw, per direction.
type usage struct {
	bytes, events int64
}

// Namespace is the quota state of one broker: broker-wide buckets, capped
// topics' buckets, and auto-inflate. It is not safe for concurrent use.
type Namespace struct {
	cfg    Config // with defaults
	units  int    // the broker-wide TU count in force; 0 = unlimited
	dirs   [2]meter
	topics map[string]*topicMeter

	// The auto-inflate window being observed.
	winStart time.Time
	winDebt  time.Duration // time the broker-wide buckets were in debt
	winUse   [2]usage
	quietFor time.Duration // consecutive quiet windows, for scale-down

	changes []Change
}

// New returns a namespace with cfg in force from now. units is the TU count
// to start from, for one restored after a restart (auto-inflated); it is
// clamped to what cfg allows, and 0 means cfg.ThroughputUnits.
func New(cfg Config, units int, now time.Time) (*Namespace, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Namespace{topics: make(map[string]*topicMeter), winStart: now}
	n.cfg = cfg.withDefaults()
	n.units = n.cfg.clampUnits(units)
	for d := range n.dirs {
		n.dirs[d] = newMeter(Direction(d), n.units, now)
	}
	n.setTopics(now)
	return n, nil
}

// clampUnits returns the TU count c allows for a wanted one.
func (c Config) clampUnits(u int) int {
	if !c.AutoInflate || u <= 0 {
		return c.ThroughputUnits
	}
	return min(max(u, c.ThroughputUnits), c.AutoInflateMaxUnits)
}

// setTopics builds the capped topics' meters from the config, keeping the
// state of those whose cap did not change.
func (n *Namespace) setTopics(now time.Time) {
	for name, tm := range n.topics {
		if u := n.cfg.TopicUnits[name]; u == 0 {
			delete(n.topics, name)
		} else if u != tm.units {
			tm.units = u
			for d := range tm.dirs {
				tm.dirs[d].setUnits(Direction(d), u)
			}
		}
	}
	for name, u := range n.cfg.TopicUnits {
		if _, ok := n.topics[name]; ok || u == 0 {
			continue
		}
		n.topics[name] = &topicMeter{units: u, dirs: [2]meter{newMeter(Ingress, u, now), newMeter(Egress, u, now)}}
	}
}

// Config returns the config in force, with defaults filled in.
func (n *Namespace) Config() Config { return n.cfg }

// Units returns the broker-wide TU count in force (0 = unlimited).
func (n *Namespace) Units() int { return n.units }

// Limited reports whether any limit is set; when it is false, Record always
// returns 0 and callers may skip it.
func (n *Namespace) Limited() bool { return n.units > 0 || len(n.topics) > 0 }

// SetConfig puts cfg in force from now, keeping the buckets' state. A new
// ThroughputUnits becomes the count in force; otherwise the current count
// is kept within the new auto-inflate bounds.
func (n *Namespace) SetConfig(cfg Config, now time.Time) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	n.advance(now)
	old := n.cfg
	n.cfg = cfg.withDefaults()
	want := n.units
	if cfg.ThroughputUnits != old.ThroughputUnits {
		want = cfg.ThroughputUnits
	}
	n.setUnits(now, n.cfg.clampUnits(want), "set")
	n.setTopics(now)
	return nil
}

// UnitsAfter returns the TU count that SetConfig(cfg) would put in force,
// followed by ResetUnits if reset, without changing anything: what to
// persist before the change is made.
func (n *Namespace) UnitsAfter(cfg Config, reset bool) int {
	if reset || cfg.ThroughputUnits != n.cfg.ThroughputUnits {
		return cfg.ThroughputUnits
	}
	return cfg.withDefaults().clampUnits(n.units)
}

// ResetUnits puts the configured ThroughputUnits back in force, undoing
// auto-inflate's raises (an operator setting the count explicitly).
func (n *Namespace) ResetUnits(now time.Time) {
	n.advance(n.maxTime(now))
	n.setUnits(now, n.cfg.ThroughputUnits, "set")
}

func (n *Namespace) setUnits(now time.Time, u int, reason string) {
	if u == n.units {
		return
	}
	n.changes = append(n.changes, Change{At: now, From: n.units, To: u, Reason: reason})
	if n.units == 0 {
		// From unlimited: start with full buckets.
		for d := range n.dirs {
			n.dirs[d] = newMeter(Direction(d), u, now)
		}
	} else {
		for d := range n.dirs {
			n.dirs[d].setUnits(Direction(d), u)
		}
	}
	n.units = u
	n.quietFor = 0
}

// TakeChanges returns the TU changes since the last call, oldest first.
func (n *Namespace) TakeChanges() []Change {
	c := n.changes
	n.changes = nil
	return c
}

// Record records usage in direction d on topic at now, and returns how long
// the client must be held back: zero while every limit it touches has
// tokens left, else the time for the largest debt among them to be paid
// off. Call it once per topic of a request and hold the client back for the
// largest answer, in full: a shorter hold lets the client take more than
// its limit, and leaves the debt to whoever comes next.
func (n *Namespace) Record(now time.Time, d Direction, topic string, bytes, events int64) time.Duration {
	n.advance(n.maxTime(now))
	var throttle time.Duration
	if n.units > 0 {
		n.winUse[d].bytes += bytes
		n.winUse[d].events += events
		throttle = n.dirs[d].take(bytes, events)
	}
	if tm := n.topics[topic]; tm != nil {
		m := &tm.dirs[d]
		m.advance(now)
		throttle = max(throttle, m.take(bytes, events))
	}
	return throttle
}

// maxTime keeps time from going backwards across callers that read the
// clock before taking the lock.
func (n *Namespace) maxTime(now time.Time) time.Time {
	if last := n.dirs[Ingress].bytes.last; now.Before(last) {
		return last
	}
	return now
}

// Tick advances time without usage: it lets a quiet broker scale down.
func (n *Namespace) Tick(now time.Time) { n.advance(n.maxTime(now)) }

// advance refills the broker-wide buckets and, at the end of each window,
// decides on auto-inflate.
func (n *Namespace) advance(now time.Time) {
	if n.units == 0 {
		n.winStart = now
		return
	}
	n.winDebt += max(n.dirs[Ingress].advance(now), n.dirs[Egress].advance(now))
	el := now.Sub(n.winStart)
	if el < n.cfg.Window {
		return
	}
	if n.cfg.AutoInflate {
		n.decide(now, el)
	}
	n.winStart, n.winDebt, n.winUse = now, 0, [2]usage{}
}

// decide ends an auto-inflate window of length el.
func (n *Namespace) decide(now time.Time, el time.Duration) {
	c := n.cfg
	if 2*n.winDebt >= el {
		n.quietFor = 0
		if n.units < c.AutoInflateMaxUnits {
			n.setUnits(now, min(n.units+c.Step, c.AutoInflateMaxUnits), "auto-inflate")
		}
		return
	}
	if !c.ScaleDown || n.units <= c.ThroughputUnits {
		return
	}
	lower := max(n.units-c.Step, c.ThroughputUnits)
	if n.winDebt > 0 || !n.fits(lower, el) {
		n.quietFor = 0
		return
	}
	n.quietFor += el
	if n.quietFor >= c.QuietPeriod {
		n.setUnits(now, lower, "scale-down")
	}
}

// fits reports whether the window's usage stays within 80% of what units
// TUs allow.
func (n *Namespace) fits(units int, el time.Duration) bool {
	for d, u := range n.winUse {
		br, er := perUnit(Direction(d))
		s := el.Seconds()
		if float64(u.bytes)/s > 0.8*br*float64(units) || float64(u.events)/s > 0.8*er*float64(units) {
			return false
		}
	}
	return true
}
