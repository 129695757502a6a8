package weir

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Checkpoint commits every owned partition's contiguous completed prefix
// now. It returns ErrClosed when Run is not running. Periodic checkpoints
// (CheckpointEvery) and handoffs commit on their own; Checkpoint is for a
// caller that wants one at a point of its choosing.
func (p *Processor) Checkpoint(ctx context.Context) error {
	p.mu.Lock()
	cl := p.mu.cl
	p.mu.Unlock()
	if cl == nil {
		return ErrClosed
	}
	return p.commitOwned(ctx, cl)
}

// commitLoop checkpoints every CheckpointEvery interval, and sooner when a
// partition completed n events since its last checkpoint.
func (p *Processor) commitLoop(ctx context.Context, cl *kgo.Client) {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.checkpointT)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.commitNow:
		}
		if err := p.commitOwned(ctx, cl); err != nil && ctx.Err() == nil {
			p.log.Warn("checkpoint failed; the next one retries", "err", err)
		}
	}
}

// requestCommit asks the commit loop for a checkpoint soon.
func (p *Processor) requestCommit() {
	select {
	case p.commitNow <- struct{}{}:
	default:
	}
}

// commitOwned commits the partitions owned now. A partition whose commit
// the group rejects as coming from a stale member is closed with
// OwnershipLost and commits nothing more.
func (p *Processor) commitOwned(ctx context.Context, cl *kgo.Client) error {
	p.commitMu.Lock()
	p.mu.Lock()
	runners := make([]*partitionRunner, 0, len(p.mu.runners))
	for _, r := range p.mu.runners {
		runners = append(runners, r)
	}
	p.mu.Unlock()
	rejected, err := p.commitRunnersLocked(ctx, cl, runners)
	p.commitMu.Unlock()

	if len(rejected) == 0 {
		return err
	}
	var fenced []*partitionRunner
	p.mu.Lock()
	for part := range rejected {
		if r := p.mu.runners[part]; r != nil {
			delete(p.mu.runners, part)
			p.mu.fenced[part] = true
			fenced = append(fenced, r)
		}
	}
	p.mu.Unlock()
	if len(fenced) > 0 {
		p.log.Info("checkpoint rejected by the group: another member owns these partitions now; closing them",
			"partitions", partitionsOf(fenced), "reason", firstErr(rejected))
		p.closeNow(fenced, OwnershipLost)
	}
	return err
}

// commitRunners is commitRunnersLocked for a handoff: it takes commitMu
// itself and returns the partitions the group rejected.
func (p *Processor) commitRunners(ctx context.Context, cl *kgo.Client, runners []*partitionRunner) map[int32]error {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	rejected, err := p.commitRunnersLocked(ctx, cl, runners)
	if err != nil {
		p.log.Warn("handoff checkpoint failed; the next owner may process some events again",
			"partitions", partitionsOf(runners), "err", err)
	}
	return rejected
}

// commitRunnersLocked commits the runners' checkpoints that moved since
// their last commit, synchronously and fenced by the group generation that
// kgo holds. It returns the partitions rejected as fenced and any other
// error. commitMu must be held.
func (p *Processor) commitRunnersLocked(ctx context.Context, cl *kgo.Client, runners []*partitionRunner) (map[int32]error, error) {
	offsets := make(map[int32]kgo.EpochOffset, len(runners))
	for _, r := range runners {
		if eo, ok := r.uncommitted(); ok {
			offsets[r.tp.Partition] = eo
		}
	}
	if len(offsets) == 0 {
		return nil, nil
	}
	topic := p.cfg.client.topic
	var (
		rejected map[int32]error
		rerr     error
	)
	cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				rerr = err
				return
			}
			for _, t := range resp.Topics {
				if t.Topic != topic && t.Topic != "" { // "" when a broker answers by topic ID only
					continue
				}
				for _, rp := range t.Partitions {
					err := kerr.ErrorForCode(rp.ErrorCode)
					switch {
					case err == nil:
						continue
					case fencedCommit(err):
						if rejected == nil {
							rejected = make(map[int32]error)
						}
						rejected[rp.Partition] = err
					default:
						rerr = err
					}
					delete(offsets, rp.Partition)
				}
			}
		})
	if rerr != nil {
		if f := fatal(rerr, topic); f != nil {
			p.setFatal(f)
		}
		return rejected, rerr
	}
	for _, r := range runners {
		if eo, ok := offsets[r.tp.Partition]; ok {
			r.committed(eo.Offset)
		}
	}
	return rejected, nil
}

// fencedCommit reports whether a commit error means the group no longer
// accepts this member's checkpoints for the partition.
func fencedCommit(err error) bool {
	return errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.UnknownMemberID) ||
		errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.FencedInstanceID) ||
		errors.Is(err, kerr.StaleMemberEpoch)
}

func firstErr(m map[int32]error) error {
	for _, err := range m {
		return err
	}
	return nil
}
