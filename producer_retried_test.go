package weir_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
)

// TestProducerRetriedCountsFailedRequestsOnly pins down what Stats().Retried
// counts, as docs/SDK.md states it: a produce request that failed as a whole
// (here: the connection closed before the answer) counts; a partition that
// kgo retries on a retriable error code in an answered request does not,
// because kgo (v1.22) has no hook that reports it.
func TestProducerRetriedCountsFailedRequestsOnly(t *testing.T) {
	leakCheck(t)
	c := kfakeCluster(t, kfake.SeedTopics(1, "r"))
	ctx := testCtx(t, 30*time.Second)
	p := newProducer(t, ctx, weir.Brokers(c.ListenAddrs()...), weir.Topic("r"), weir.Logger(quietLogger()),
		weir.RetryBackoff(10*time.Millisecond, 100*time.Millisecond))

	// answer decides the fate of the next produce request: an error code for
	// every partition, a closed connection, or kfake's own answer.
	const (
		pass = iota
		errorCode
		closeConn
	)
	var answer atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		switch answer.Swap(pass) {
		case errorCode:
			req := kreq.(*kmsg.ProduceRequest)
			return produceErrorResponse(req, kerr.NotEnoughReplicas.Code), nil, true // retriable
		case closeConn:
			return nil, errors.New("connection lost"), true
		}
		return nil, nil, false
	})

	answer.Store(errorCode)
	if _, err := p.Send(ctx, weir.Event{Value: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	if answer.Load() != pass {
		t.Fatal("the produce request was not answered with the error code")
	}
	if s := p.Stats(); s.Acknowledged != 1 || s.Retried != 0 {
		t.Fatalf("after a partition error code: acknowledged %d, retried %d; want 1, 0 (not counted)", s.Acknowledged, s.Retried)
	}
	answer.Store(closeConn)
	if _, err := p.Send(ctx, weir.Event{Value: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if answer.Load() != pass {
		t.Fatal("the produce request's connection was not closed")
	}
	if s := p.Stats(); s.Acknowledged != 2 || s.Retried != 1 {
		t.Fatalf("after a lost connection: acknowledged %d, retried %d; want 2, 1", s.Acknowledged, s.Retried)
	}
}
