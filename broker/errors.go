package broker

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/weirhq/weir/group"
	"github.com/weirhq/weir/storage"
)

// Kafka error codes the broker decides itself (not mapped from storage).
var (
	errUnsupportedVersion = kerr.UnsupportedVersion.Code
	// errTransactionsUnsupported answers transactional requests: weir has
	// no transaction coordinator. Kafka answers
	// TRANSACTIONAL_ID_AUTHORIZATION_FAILED when a client may not use a
	// transactional id; it is fatal (not retried) in every client, so the
	// application learns at once that transactions are unavailable.
	errTransactionsUnsupported = kerr.TransactionalIDAuthorizationFailed.Code
)

// errorCode maps an error from storage (or a context) to the Kafka error
// code sent to clients. It is the only place that does so.
func errorCode(err error) int16 {
	var we *storage.WriteError
	var ke *kerr.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ke):
		return ke.Code
	case errors.As(err, &we):
		return kerr.KafkaStorageError.Code
	case errors.Is(err, storage.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, storage.ErrUnknownTopic),
		errors.Is(err, storage.ErrUnknownPartition),
		errors.Is(err, storage.ErrPartitionDeleted):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, storage.ErrInvalidTopic):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, storage.ErrInvalidPartitions):
		return kerr.InvalidPartitions.Code
	case errors.Is(err, storage.ErrInvalidConfig):
		return kerr.InvalidConfig.Code
	case errors.Is(err, storage.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, storage.ErrCorruptBatch):
		return kerr.CorruptMessage.Code
	case errors.Is(err, storage.ErrInvalidBatch):
		return kerr.InvalidRecord.Code
	case errors.Is(err, storage.ErrUnsupportedMagic):
		return kerr.UnsupportedForMessageFormat.Code
	case errors.Is(err, storage.ErrMessageTooLarge):
		return kerr.MessageTooLarge.Code
	case errors.Is(err, storage.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber.Code
	case errors.Is(err, storage.ErrInvalidProducerEpoch):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, storage.ErrClosed), errors.Is(err, ErrClosed):
		// The broker is shutting down: retriable, clients come back.
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, group.ErrClosed):
		return kerr.CoordinatorNotAvailable.Code
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return kerr.RequestTimedOut.Code
	default:
		return kerr.UnknownServerError.Code
	}
}

// errorMessage returns a message for the error fields of responses that
// have one, or nil.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
