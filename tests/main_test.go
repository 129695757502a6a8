// Package tests runs real Kafka clients (franz-go, Sarama, kafka-go,
// confluent-kafka-go, kcat) over real TCP against weir, and checks that a
// SIGKILLed `weir serve` keeps every acknowledged record.
package tests

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Sarama records metrics with rcrowley/go-metrics, whose meters are
		// ticked by one package-level goroutine started on first use and
		// never stopped.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}
