package weir

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// CloseReason says why a partition was closed.
type CloseReason int

const (
	// Shutdown: Run's context ended. In-flight events were drained and the
	// partition checkpointed.
	Shutdown CloseReason = iota + 1
	// Rebalanced: the partition was handed off to another instance cleanly:
	// in-flight events drained, checkpoint committed, then released.
	Rebalanced
	// OwnershipLost: the partition was lost without a handoff (the session
	// expired, or the group fenced this instance's checkpoint). Nothing more
	// was committed. It is a normal event, logged at info level.
	OwnershipLost
)

func (r CloseReason) String() string {
	switch r {
	case Shutdown:
		return "shutdown"
	case Rebalanced:
		return "rebalanced"
	case OwnershipLost:
		return "ownership lost"
	}
	return "unknown"
}

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Handler processes the events of the partitions an instance owns. For each
// partition, OpenPartition is called once before its first event and
// ClosePartition once after its last. With Concurrency(1) (the default)
// ProcessEvent is called for one event of a partition at a time, in offset
// order; different partitions are processed in parallel.
//
// ProcessEvent's ctx is canceled when the partition must stop at once (drain
// timeout, lost ownership); a handler must return soon after. An event whose
// ProcessEvent returns nil is done and will be checkpointed. An error is
// retried (see HandlerRetries), then handled by the FailurePolicy.
//
// An OpenPartition error is fatal: Run returns it.
type Handler interface {
	OpenPartition(ctx context.Context, tp TopicPartition) error
	ProcessEvent(ctx context.Context, e *kgo.Record) error
	ClosePartition(ctx context.Context, tp TopicPartition, reason CloseReason)
}

// HandlerFunc is a Handler that only processes events.
type HandlerFunc func(ctx context.Context, e *kgo.Record) error

func (f HandlerFunc) OpenPartition(context.Context, TopicPartition) error { return nil }
func (f HandlerFunc) ProcessEvent(ctx context.Context, e *kgo.Record) error {
	return f(ctx, e)
}
func (f HandlerFunc) ClosePartition(context.Context, TopicPartition, CloseReason) {}

// Processor spreads a topic's partitions over the instances of a consumer
// group and calls a Handler for each event, checkpointing progress as the
// group's committed offsets. Create it with NewProcessor and start it with
// Run.
type Processor struct {
	cfg   processorConfig
	log   *slog.Logger
	ready chan struct{}

	started      atomic.Bool
	shuttingDown atomic.Bool
	readyOnce    sync.Once
	commitNow    chan struct{}
	queued       atomic.Int64  // records waiting in runners' queues
	queueWake    chan struct{} // queued fell below pollHigh (capacity 1)
	counters     processorCounters

	// commitMu serializes commits, so that a periodic commit never lands
	// after (and below) a handoff's final commit. Lock order: commitMu, then
	// mu, then a runner's mu.
	commitMu sync.Mutex

	mu struct {
		sync.Mutex
		cl       *kgo.Client
		handler  Handler
		runners  map[int32]*partitionRunner
		fenced   map[int32]bool // commit rejected; reopened if records still come
		fatalErr error
	}
	wg sync.WaitGroup // partition runners and the committer
}

// processorCounters are the processor-wide counters. Per-event counts live
// in each runner (uncontended) and are added here when the runner exits.
type processorCounters struct {
	failed, deadLettered, rebalances atomic.Int64
	// of closed runners:
	processed, redelivered atomic.Int64
	latency                latencyHist
}

// NewProcessor validates the options and returns a Processor. It does not
// connect: Run does.
func NewProcessor(opts ...ProcessorOpt) (*Processor, error) {
	cfg := defaultProcessorConfig()
	for _, o := range opts {
		o.applyProcessor(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Processor{
		cfg:       cfg,
		log:       cfg.client.logger.With("group", cfg.group, "topic", cfg.client.topic),
		ready:     make(chan struct{}),
		commitNow: make(chan struct{}, 1),
		queueWake: make(chan struct{}, 1),
	}
	p.mu.runners = make(map[int32]*partitionRunner)
	p.mu.fenced = make(map[int32]bool)
	return p, nil
}

// Ready is closed once the instance has joined the group and received its
// first assignment (which may be empty when there are more instances than
// partitions). Use it as a readiness probe.
func (p *Processor) Ready() <-chan struct{} { return p.ready }

// Run joins the group and processes events with h until ctx ends or a fatal
// error occurs. A Processor runs once; a second Run returns ErrClosed.
//
// When ctx ends, Run stops fetching, drains in-flight events (bounded by
// DrainTimeout), checkpoints, closes every partition with Shutdown, leaves
// the group and returns nil.
//
// Transient faults (broker restarts, leader moves, coordinator changes,
// network errors) never make Run return: the client reconnects and resumes
// from the checkpoint. Misconfiguration does: an unknown topic, refused
// credentials, a group or topic the brokers refuse, or group settings they
// refuse return an *Error whose Kind is ErrUnknownTopic, ErrAuthentication,
// ErrAuthorization or ErrInvalidConfig, with every goroutine and connection
// released. An OpenPartition error is returned as a *PartitionError.
func (p *Processor) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return &configError{"Run", "nil handler"}
	}
	if !p.started.CompareAndSwap(false, true) {
		return ErrClosed
	}
	// The handler must be in place before the client exists: the group
	// may assign partitions as soon as it does.
	p.mu.Lock()
	p.mu.handler = h
	p.mu.Unlock()
	cl, err := kgo.NewClient(p.kgoOpts()...)
	if err != nil {
		return &Error{Kind: ErrInvalidConfig, Topic: p.cfg.client.topic, Err: err}
	}
	p.mu.Lock()
	p.mu.cl = cl
	p.mu.Unlock()

	commitCtx, stopCommitter := context.WithCancel(ctx)
	p.wg.Add(1)
	go p.commitLoop(commitCtx, cl)

	err = p.pollLoop(ctx, cl)

	p.shuttingDown.Store(true)
	stopCommitter()
	// Close leaves the group; kgo calls OnPartitionsRevoked with everything
	// we own first, which drains, checkpoints and closes each partition.
	cl.Close()
	p.closeNow(p.detachAll(), Shutdown) // anything kgo did not revoke
	p.wg.Wait()
	p.mu.Lock()
	p.mu.cl = nil
	p.mu.Unlock()
	if err != nil {
		p.log.Error("processor stopped", "err", err)
	}
	return err
}

func (p *Processor) kgoOpts() []kgo.Opt {
	c := &p.cfg
	// Defaults that KgoOpts may replace: the balancer, and kgo's logs
	// through the processor's slog logger (as the producer's).
	opts := []kgo.Opt{
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.WithLogger(kgoLogger{l: p.log, calm: true}),
	}
	opts = append(opts, c.client.kgoClientOpts()...)
	opts = append(opts,
		kgo.ConsumerGroup(c.group),
		kgo.ConsumeTopics(c.client.topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(c.start.offset),
		kgo.OnPartitionsAssigned(p.onAssigned),
		kgo.OnPartitionsRevoked(p.onRevoked),
		kgo.OnPartitionsLost(p.onLost),
	)
	if c.instanceID != "" {
		opts = append(opts, kgo.InstanceID(c.instanceID))
	}
	if len(c.startOffsets) > 0 {
		opts = append(opts, kgo.AdjustFetchOffsetsFn(p.adjustStartOffsets))
	}
	return opts
}

// adjustStartOffsets replaces the reset offset of partitions that have no
// checkpoint with StartOffsets' explicit ones. kgo hands those partitions
// the configured reset offset itself (ConsumeResetOffset), which no
// committed offset equals.
func (p *Processor) adjustStartOffsets(_ context.Context, m map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for part, o := range m[p.cfg.client.topic] {
		if at, ok := p.cfg.startOffsets[part]; ok && o == p.cfg.start.offset {
			m[p.cfg.client.topic][part] = kgo.NewOffset().At(at)
		}
	}
	return m, nil
}

// pollLoop fetches and hands records to partition runners until ctx ends
// (nil) or a fatal error (returned).
func (p *Processor) pollLoop(ctx context.Context, cl *kgo.Client) error {
	if err := p.checkTopic(ctx, cl); err != nil {
		return err
	}
	var (
		fails   int // polls in a row with a transient error
		lastLog time.Time
		topic   = p.cfg.client.topic
		wait    = backoff(pollBackoffFirst, pollBackoffMax)
	)
	for {
		fs := cl.PollRecords(ctx, maxPoll)
		if ctx.Err() != nil || fs.IsClientClosed() {
			cl.AllowRebalance()
			return nil
		}
		var fatalErr, transient error
		topicChecked := false // asked the brokers about the topic in this poll
		fs.EachError(func(_ string, _ int32, err error) {
			if fatalErr != nil || errors.Is(err, context.Canceled) {
				return
			}
			var dl *kgo.ErrDataLoss
			if errors.As(err, &dl) {
				// The broker's log lost records we may have processed (an
				// unclean leader election); the client reset its position.
				// Offsets this owner already took are not processed again.
				p.log.Error("broker reported data loss", "partition", dl.Partition,
					"consumed_to", dl.ConsumedTo, "reset_to", dl.ResetTo)
				return
			}
			f := fatal(err, topic)
			if f != nil && errors.Is(f, ErrUnknownTopic) {
				// A leader move can answer UNKNOWN_TOPIC_OR_PARTITION for a
				// moment; only a metadata answer without the topic is final.
				// One answer serves every partition's error of this poll.
				if !topicChecked {
					topicChecked = true
					_, mdErr := topicPartitions(ctx, cl, topic, false)
					if mf := fatal(mdErr, topic); mf != nil {
						fatalErr = mf
						if errors.Is(mf, ErrUnknownTopic) {
							fatalErr = f // the fetch's own error, confirmed
						}
						return
					}
				}
				transient = err
				return
			}
			if f != nil {
				fatalErr = f
				return
			}
			transient = err
		})
		if fatalErr != nil {
			cl.AllowRebalance()
			return fatalErr
		}
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if fp.Topic != topic || len(fp.Records) == 0 {
				return
			}
			p.dispatch(ctx, cl, fp)
		})
		cl.AllowRebalance()
		if err := p.takeFatal(); err != nil {
			return err
		}
		if !p.waitQueues(ctx) {
			return nil
		}
		if transient == nil {
			fails = 0
			continue
		}
		// kgo retries and reconnects by itself; we only slow the loop and
		// the log down so that an outage does not spin.
		fails++
		if time.Since(lastLog) >= fetchErrorLog {
			lastLog = time.Now()
			p.log.Warn("transient fetch error, retrying", "err", transient, "retryable", retryable(transient))
		}
		if !sleepCtx(ctx, wait(fails)) {
			return nil
		}
	}
}

// dispatch hands one partition's fetched records to its runner. It never
// blocks: a runner that falls behind pauses its partition's fetching.
func (p *Processor) dispatch(ctx context.Context, cl *kgo.Client, fp kgo.FetchTopicPartition) {
	p.mu.Lock()
	r := p.mu.runners[fp.Partition]
	fenced := p.mu.fenced[fp.Partition]
	p.mu.Unlock()
	if r == nil {
		if fenced {
			p.reopenFenced(ctx, cl, fp.Partition)
		}
		return // not ours (any more); the records are fetched again by the owner
	}
	r.setHighWatermark(fp.HighWatermark)
	r.enqueue(fp.Records)
}

// waitQueues holds the next poll while the runners are behind, outside
// the poll so that rebalances are not blocked. It returns false if ctx
// ended.
func (p *Processor) waitQueues(ctx context.Context) bool {
	for p.queued.Load() > pollHigh {
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-p.queueWake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
		t.Stop()
	}
	return true
}

// dequeued accounts for n records leaving the runners' queues.
func (p *Processor) dequeued(n int) {
	if n == 0 {
		return
	}
	if left := p.queued.Add(-int64(n)); left <= pollHigh && left+int64(n) > pollHigh {
		select {
		case p.queueWake <- struct{}{}:
		default:
		}
	}
}

// reopenFenced handles records arriving for a partition whose checkpoint
// the group rejected but which kgo still holds in a valid session (the
// group kept it with us across the rejoin): rewind to the group's committed
// offset (or the start position if nothing was committed) and open the
// partition again. Called from the poll loop while rebalances are blocked,
// as SetOffsets requires.
func (p *Processor) reopenFenced(ctx context.Context, cl *kgo.Client, part int32) {
	topic := p.cfg.client.topic
	at, ok := cl.CommittedOffsets()[topic][part]
	if !ok || at.Offset < 0 {
		var err error
		if at, err = p.startOffset(ctx, cl, part); err != nil {
			p.log.Warn("resolving the start offset of a fenced partition failed; retrying on the next fetch",
				"partition", part, "err", err)
			return
		}
	}
	cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{topic: {part: at}})
	p.log.Info("partition still ours after a fenced checkpoint; resuming from the checkpoint",
		"partition", part, "offset", at.Offset)
	p.openPartitions(cl, []int32{part})
}

// startOffset resolves where a partition without a checkpoint starts.
func (p *Processor) startOffset(ctx context.Context, cl *kgo.Client, part int32) (kgo.EpochOffset, error) {
	if o, ok := p.cfg.startOffsets[part]; ok {
		return kgo.EpochOffset{Epoch: -1, Offset: o}, nil
	}
	topic := p.cfg.client.topic
	adm := kadm.NewClient(cl)
	var (
		listed kadm.ListedOffsets
		err    error
	)
	switch p.cfg.start.what {
	case "latest":
		listed, err = adm.ListEndOffsets(ctx, topic)
	case "time":
		listed, err = adm.ListOffsetsAfterMilli(ctx, p.cfg.start.millis, topic)
	default:
		listed, err = adm.ListStartOffsets(ctx, topic)
	}
	if err != nil {
		return kgo.EpochOffset{}, err
	}
	lo, ok := listed.Lookup(topic, part)
	if !ok {
		return kgo.EpochOffset{}, kerr.UnknownTopicOrPartition
	}
	if lo.Err != nil {
		return kgo.EpochOffset{}, lo.Err
	}
	return kgo.EpochOffset{Epoch: -1, Offset: lo.Offset}, nil
}

// checkTopic asks the brokers whether the topic exists before anything
// else, so that a typo fails Run at once instead of idling in the group.
// Transient errors are retried with backoff until ctx ends.
func (p *Processor) checkTopic(ctx context.Context, cl *kgo.Client) error {
	topic := p.cfg.client.topic
	wait := backoff(topicCheckBackoffFirst, topicCheckBackoffMax)
	for tries := 1; ; tries++ {
		_, err := topicPartitions(ctx, cl, topic, false)
		if err == nil {
			return nil
		}
		if f := fatal(err, topic); f != nil { // ErrUnknownTopic for a topic that does not exist
			return f
		}
		if ctx.Err() != nil {
			return nil
		}
		d := wait(tries)
		p.log.Warn("checking the topic failed, retrying", "err", err, "backoff", d)
		if !sleepCtx(ctx, d) {
			return nil
		}
	}
}

// onAssigned opens a runner per newly assigned partition.
func (p *Processor) onAssigned(_ context.Context, cl *kgo.Client, m map[string][]int32) {
	p.counters.rebalances.Add(1)
	parts := m[p.cfg.client.topic]
	if len(parts) > 0 {
		p.log.Info("partitions assigned", "partitions", parts)
		p.openPartitions(cl, parts)
	}
	p.readyOnce.Do(func() { close(p.ready) })
}

func (p *Processor) openPartitions(cl *kgo.Client, parts []int32) {
	topic := p.cfg.client.topic
	// A partition stopped by the StopPartition policy was paused; a new
	// assignment starts it afresh.
	cl.ResumeFetchPartitions(map[string][]int32{topic: parts})
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range parts {
		if p.mu.runners[part] != nil {
			continue
		}
		delete(p.mu.fenced, part)
		r := newPartitionRunner(p, cl, p.mu.handler, TopicPartition{topic, part})
		p.mu.runners[part] = r
		p.wg.Add(1)
		go r.run()
	}
}

// onRevoked hands partitions off: stop taking their events, drain what is
// in flight (bounded by DrainTimeout), commit, close; only then return so
// that the rebalance completes and the next owner starts exactly after the
// last processed event.
func (p *Processor) onRevoked(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	runners := p.detach(m[p.cfg.client.topic])
	if len(runners) == 0 {
		return
	}
	reason := Rebalanced
	if p.shuttingDown.Load() {
		reason = Shutdown
	}
	for _, r := range runners {
		r.requestStop()
	}
	timer := time.NewTimer(p.cfg.drainTimeout)
	defer timer.Stop()
	expired := false
	for _, r := range runners {
		if !expired {
			select {
			case <-r.drained:
				continue
			case <-timer.C:
				expired = true
				p.log.Warn("drain timeout: canceling in-flight events; the next owner processes them again",
					"timeout", p.cfg.drainTimeout)
			}
		}
		r.cancel()
		<-r.drained
	}
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	rejected := p.commitRunners(commitCtx, cl, runners)
	for _, r := range runners {
		why := reason
		if rejected[r.tp.Partition] != nil {
			why = OwnershipLost
		}
		r.finish(why)
	}
	for _, r := range runners {
		<-r.exited
	}
	if reason == Rebalanced {
		p.log.Info("partitions handed off", "partitions", partitionsOf(runners))
	}
}

// onLost closes partitions lost without a handoff: cancel in-flight events
// and commit nothing, since another instance may own them already.
func (p *Processor) onLost(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	runners := p.detach(m[p.cfg.client.topic])
	if len(runners) == 0 {
		return
	}
	p.log.Info("partitions lost without a handoff (session expired or fenced); the group reassigns them",
		"partitions", partitionsOf(runners))
	p.closeNow(runners, OwnershipLost)
}

// closeNow closes detached runners without a drain or a commit: it cancels
// their in-flight events, closes each with reason, and waits until every
// one has exited.
func (p *Processor) closeNow(runners []*partitionRunner, reason CloseReason) {
	for _, r := range runners {
		r.requestStop()
		r.cancel()
	}
	for _, r := range runners {
		<-r.drained
		r.finish(reason)
	}
	for _, r := range runners {
		<-r.exited
	}
}

func (p *Processor) detach(parts []int32) []*partitionRunner {
	p.mu.Lock()
	defer p.mu.Unlock()
	var rs []*partitionRunner
	for _, part := range parts {
		if r := p.mu.runners[part]; r != nil {
			rs = append(rs, r)
			delete(p.mu.runners, part)
		}
	}
	return rs
}

func (p *Processor) detachAll() []*partitionRunner {
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := make([]*partitionRunner, 0, len(p.mu.runners))
	for part, r := range p.mu.runners {
		rs = append(rs, r)
		delete(p.mu.runners, part)
	}
	return rs
}

func partitionsOf(rs []*partitionRunner) []int32 {
	out := make([]int32, len(rs))
	for i, r := range rs {
		out[i] = r.tp.Partition
	}
	return out
}

func (p *Processor) setFatal(err error) {
	p.mu.Lock()
	if p.mu.fatalErr == nil {
		p.mu.fatalErr = err
	}
	p.mu.Unlock()
}

func (p *Processor) takeFatal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.fatalErr
}

// sleepCtx sleeps for d, or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
