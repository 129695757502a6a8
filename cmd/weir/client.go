package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Errors of the client commands.
var (
	ErrUnknownTopic  = errors.New("weir: unknown topic")
	ErrRecordsFailed = errors.New("weir: records failed")
)

// defaultBrokers is the broker list when neither --brokers nor $WEIR_BROKERS is set.
const defaultBrokers = "127.0.0.1:9092"

// clientFlags are the flags every client command shares.
type clientFlags struct {
	brokers string
}

func (e *env) addClientFlags(fs *flag.FlagSet) *clientFlags {
	cf := &clientFlags{}
	def := e.getenv("WEIR_BROKERS")
	if def == "" {
		def = defaultBrokers
	}
	fs.StringVar(&cf.brokers, "brokers", def, "comma-separated `host:port` list of brokers (env WEIR_BROKERS)")
	return cf
}

func (cf *clientFlags) seeds() []string {
	var out []string
	for _, s := range strings.Split(cf.brokers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (cf *clientFlags) newClient(opts ...kgo.Opt) (*kgo.Client, error) {
	seeds := cf.seeds()
	if len(seeds) == 0 {
		return nil, fmt.Errorf("weir: --brokers is empty")
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("weir: kafka client: %w", err)
	}
	return cl, nil
}

// BrokerError is an error the broker answered for one operation on one topic
// or group, shown with its Kafka error name and the broker's message.
type BrokerError struct {
	Op      string // "create topic", "delete group", ...
	Name    string // the topic or group
	Err     error  // usually a *kerr.Error
	Message string // the broker's error message, if any
}

func (e *BrokerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "weir: %s %q: ", e.Op, e.Name)
	var ke *kerr.Error
	if errors.As(e.Err, &ke) {
		fmt.Fprintf(&b, "%s: %s", ke.Message, ke.Description)
	} else {
		b.WriteString(e.Err.Error())
	}
	if e.Message != "" {
		fmt.Fprintf(&b, " (broker: %s)", e.Message)
	}
	if errors.Is(e.Err, kerr.GroupAuthorizationFailed) {
		b.WriteString(" (if the broker runs with --require-group-create, create the group first: weir group create NAME)")
	}
	return b.String()
}

// Unwrap returns the Kafka error and, for UNKNOWN_TOPIC_OR_PARTITION, also
// ErrUnknownTopic.
func (e *BrokerError) Unwrap() []error {
	if errors.Is(e.Err, kerr.UnknownTopicOrPartition) {
		return []error{e.Err, ErrUnknownTopic}
	}
	return []error{e.Err}
}
