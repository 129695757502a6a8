package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
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

// adminTimeout bounds one admin command against the broker.
const adminTimeout = 30 * time.Second

// newAdmin connects an admin client for cf; the caller bounds its calls.
func newAdmin(cf *clientFlags) (*kadm.Client, error) {
	cl, err := cf.newClient()
	if err != nil {
		return nil, err
	}
	return kadm.NewClient(cl), nil
}

// openAdmin connects an admin client for cf and bounds ctx by adminTimeout;
// done closes both.
func openAdmin(ctx context.Context, cf *clientFlags) (*kadm.Client, context.Context, func(), error) {
	adm, err := newAdmin(cf)
	if err != nil {
		return nil, ctx, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	return adm, ctx, func() { cancel(); adm.Close() }, nil
}

// runAdmin is the frame of an admin subcommand that takes only the client
// flags and, when kind is not "", one NAME of that kind ("topic", "group"):
// it parses args, opens an admin client and runs body with it.
func (e *env) runAdmin(ctx context.Context, cmd, kind string, args []string, body func(ctx context.Context, adm *kadm.Client, name string) error) error {
	synopsis := cmd + " [flags]"
	if kind != "" {
		synopsis = cmd + " NAME [flags]"
	}
	fs := e.newFlagSet(cmd, synopsis)
	cf := e.addClientFlags(fs)
	pos, err := e.parseFlags(fs, cmd, args)
	if err != nil {
		return err
	}
	var name string
	if kind == "" {
		err = noArgs(cmd, pos)
	} else {
		name, err = oneName(cmd, kind, pos)
	}
	if err != nil {
		return err
	}
	adm, ctx, done, err := openAdmin(ctx, cf)
	if err != nil {
		return err
	}
	defer done()
	return body(ctx, adm, name)
}
