package weir

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// loginWatch notices when the brokers refuse the producer's login.
//
// kgo treats a connection that cannot log in like any broken connection:
// it retries the produce, for as long as DeliveryTimeout. Refused
// credentials are fatal, so the producer returns its buffered events with
// ErrAuthentication at once instead, and keeps doing so for new events
// while logins are refused. A login that succeeds again ends that.
//
// Brokers refuse a login with SASL_AUTHENTICATION_FAILED (Kafka) or by
// closing the connection during SASL (kfake, some proxies). The first is
// taken at once; a closed connection counts only the second time in a row,
// since a broker going down mid-login closes it too.
type loginWatch struct {
	signal chan struct{} // capacity 1: a refusal to act on

	mu struct {
		sync.Mutex
		probe   context.CancelCauseFunc // while NewProducer checks the topic
		closes  int                     // connections closed during SASL in a row
		refused error                   // set while logins are refused
		last    error                   // the latest refusal, kept
	}
}

// closesBeforeRefusal is how many logins in a row must end with a closed
// connection before that counts as a refusal, once the producer is running.
const closesBeforeRefusal = 2

func (w *loginWatch) setProbe(cancel context.CancelCauseFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.probe = cancel
}

// refusedBy records a failed login; definite is true for an explicit
// refusal rather than a closed connection.
func (w *loginWatch) refusedBy(err error, definite bool, topic string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !definite && w.mu.probe == nil {
		if w.mu.closes++; w.mu.closes < closesBeforeRefusal {
			return
		}
	}
	how := "refused the SASL login"
	if !definite {
		how = "closed the connection during the SASL login"
	}
	refusal := &Error{Kind: ErrAuthentication, Topic: topic, Err: fmt.Errorf("the broker %s: %w", how, err)}
	if w.mu.probe != nil {
		w.mu.probe(refusal)
		return
	}
	w.mu.refused, w.mu.last = refusal, refusal
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// loggedIn records a connection that logged in (or needed no login).
func (w *loginWatch) loggedIn() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.closes, w.mu.refused = 0, nil
}

func (w *loginWatch) refused() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.refused
}

func (w *loginWatch) lastRefusal() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.last
}

// OnBrokerConnect sees every connection attempt, login included.
func (h *producerHooks) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	switch {
	case err == nil:
		h.p.login.loggedIn()
	case errors.Is(fatalKind(err), ErrAuthentication):
		h.p.login.refusedBy(err, true, h.p.topic)
	}
}

// watchLogins returns buffered events while logins are refused. It is the
// producer's one long-lived goroutine; Close stops it.
func (p *Producer) watchLogins(ctx context.Context) {
	defer close(p.watchDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.login.signal:
		}
		refusal := p.login.refused()
		if refusal == nil {
			continue
		}
		p.logger.Error("weir: the brokers refuse the producer's login; returning buffered events",
			"topic", p.topic, "err", refusal)
		actx, cancel := context.WithTimeout(ctx, p.cfg.tryTimeout)
		_ = p.cl.AbortBufferedRecords(actx) // fails what is buffered with kgo.ErrAborting
		cancel()
	}
}
