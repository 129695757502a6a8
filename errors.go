package weir

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Sentinels. Every error the SDK returns for one of these conditions
// matches it with errors.Is; the original broker or client error stays
// reachable through errors.Is / errors.As too.
var (
	// ErrInvalidConfig is wrapped by every option or connection-string error.
	ErrInvalidConfig = errors.New("weir: invalid config")
	// ErrClosed is returned by calls on a closed Producer or Processor.
	ErrClosed = errors.New("weir: closed")
	// ErrUnknownTopic means the topic does not exist and the broker does not
	// create it.
	ErrUnknownTopic = errors.New("weir: unknown topic")
	// ErrAuthentication means the brokers refused the credentials or the TLS
	// handshake failed.
	ErrAuthentication = errors.New("weir: authentication failed")
	// ErrAuthorization means the credentials are valid but not allowed to
	// use the topic, group or cluster.
	ErrAuthorization = errors.New("weir: not authorized")
	// ErrEventTooLarge means an event can never be stored: it is larger than
	// the topic's max.message.bytes.
	ErrEventTooLarge = errors.New("weir: event too large")
	// ErrBufferFull means a non-blocking send found the producer's buffer
	// full (see NonBlocking). The event was not sent; try again later.
	ErrBufferFull = errors.New("weir: producer buffer full")
	// ErrDeliveryTimeout means an event was not acknowledged within the
	// producer's DeliveryTimeout, or ran out of MaxRetries. It may still have
	// been stored if its last try was answered too late.
	ErrDeliveryTimeout = errors.New("weir: delivery timed out")
	// ErrInvalidEvent means an event was rejected before it was sent: both
	// a key and a partition set, or a partition that does not exist.
	ErrInvalidEvent = errors.New("weir: invalid event")
)

// Error is a fatal error: retrying cannot help. Kind is one of the
// sentinels above; Err is the cause from the brokers or the client.
type Error struct {
	Kind  error
	Topic string
	Err   error
}

func (e *Error) Error() string {
	s := e.Kind.Error()
	if e.Topic != "" {
		s += " (topic " + e.Topic + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap lets errors.Is match both the weir sentinel and the cause.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// fatalKind returns the sentinel for an error that retrying cannot fix, or
// nil if err is not one of those.
func fatalKind(err error) error {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		switch ke {
		case kerr.UnknownTopicOrPartition, kerr.UnknownTopicID, kerr.InvalidTopicException:
			return ErrUnknownTopic
		case kerr.SaslAuthenticationFailed, kerr.IllegalSaslState, kerr.UnsupportedSaslMechanism:
			return ErrAuthentication
		case kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed,
			kerr.ClusterAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed:
			return ErrAuthorization
		case kerr.MessageTooLarge, kerr.RecordListTooLarge:
			return ErrEventTooLarge
		case kerr.InvalidSessionTimeout, kerr.InvalidGroupID, kerr.InconsistentGroupProtocol:
			// A group join the brokers refuse for its settings.
			return ErrInvalidConfig
		}
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		certInvalid      x509.CertificateInvalidError
		recordHeader     tls.RecordHeaderError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &certInvalid) || errors.As(err, &recordHeader) {
		return ErrAuthentication
	}
	if errors.Is(err, ErrInvalidConfig) {
		return ErrInvalidConfig
	}
	return nil
}

// fatal wraps err as an *Error if it is fatal, else returns nil.
func fatal(err error, topic string) error {
	var we *Error
	if errors.As(err, &we) {
		return we
	}
	if k := fatalKind(err); k != nil {
		return &Error{Kind: k, Topic: topic, Err: err}
	}
	return nil
}

// retryable is the one place that decides whether an error from the brokers
// or the network is worth another try. Leader moves, network errors, broker
// restarts, not-enough-replicas, coordinator moves and throttling are;
// misconfiguration (see fatalKind), a closed client and the caller's own
// context ending are not.
func retryable(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, kgo.ErrClientClosed),
		errors.Is(err, ErrClosed),
		fatalKind(err) != nil:
		return false
	}
	return true
}
