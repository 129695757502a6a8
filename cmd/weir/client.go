package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/weirhq/weir/internal/connstr"
)

// Errors of the client commands.
var (
	ErrUnknownTopic  = errors.New("weir: unknown topic")
	ErrRecordsFailed = errors.New("weir: records failed")
)

// defaultBrokers is the broker list when neither --brokers nor $WEIR_BROKERS is set.
const defaultBrokers = "127.0.0.1:9092"

// clientFlags are the flags every client command shares: where the brokers
// are, and how to log in (TLS, SASL PLAIN, or an Event Hubs connection
// string, which means both).
type clientFlags struct {
	fs         *flag.FlagSet // to tell an explicit --brokers from its default
	brokers    string
	tls        bool
	tlsCA      string
	saslUser   string
	saslPass   string
	connString string
	// The environment's password and connection string, used when the
	// flags are not given: not flag defaults, which -h would print.
	envPass, envConnString string
}

func (e *env) addClientFlags(fs *flag.FlagSet) *clientFlags {
	cf := &clientFlags{fs: fs, envPass: e.getenv("WEIR_SASL_PASSWORD"), envConnString: e.getenv("WEIR_CONNECTION_STRING")}
	def := e.getenv("WEIR_BROKERS")
	if def == "" {
		def = defaultBrokers
	}
	fs.StringVar(&cf.brokers, "brokers", def, "comma-separated `host:port` list of brokers (env WEIR_BROKERS)")
	fs.BoolVar(&cf.tls, "tls", false, "connect with TLS (implied by --tls-ca and --connection-string)")
	fs.StringVar(&cf.tlsCA, "tls-ca", "", "trust the CA certificates in this PEM `file` (default: the system's)")
	fs.StringVar(&cf.saslUser, "sasl-user", "", "log in with SASL PLAIN as `NAME`")
	fs.StringVar(&cf.saslPass, "sasl-password", "", "SASL PLAIN `password` (env WEIR_SASL_PASSWORD, which keeps it out of ps)")
	fs.StringVar(&cf.connString, "connection-string", "",
		"Event Hubs connection `string` (env WEIR_CONNECTION_STRING): TLS and SASL PLAIN as $ConnectionString; its Endpoint is the broker unless --brokers is given")
	return cf
}

// brokersSet reports whether --brokers was given on the command line.
func (cf *clientFlags) brokersSet() bool {
	set := false
	if cf.fs != nil {
		cf.fs.Visit(func(f *flag.Flag) { set = set || f.Name == "brokers" })
	}
	return set
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

// kgoOpts returns the seed brokers and the login options of the flags.
func (cf *clientFlags) kgoOpts() ([]kgo.Opt, error) {
	seeds := cf.seeds()
	user, pass := cf.saslUser, cmp.Or(cf.saslPass, cf.envPass)
	useTLS := cf.tls || cf.tlsCA != ""
	connString := cmp.Or(cf.connString, cf.envConnString)
	if user == "" && cf.saslPass == "" {
		pass = "" // $WEIR_SASL_PASSWORD alone is not a login
	}
	if connString != "" {
		p, err := connstr.Parse(connString)
		if err != nil {
			return nil, fmt.Errorf("weir: --connection-string: %w", err) // never holds the key
		}
		if user != "" {
			return nil, errors.New("weir: --connection-string logs in as $ConnectionString: drop --sasl-user")
		}
		user, pass, useTLS = "$ConnectionString", strings.TrimSpace(connString), true
		if !cf.brokersSet() {
			seeds = []string{p.Broker()}
		}
	}
	if len(seeds) == 0 {
		return nil, fmt.Errorf("weir: --brokers is empty")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...)}
	if (user == "") != (pass == "") {
		return nil, errors.New("weir: --sasl-user and --sasl-password (or $WEIR_SASL_PASSWORD) go together")
	}
	if useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if cf.tlsCA != "" {
			pem, err := os.ReadFile(cf.tlsCA)
			if err != nil {
				return nil, fmt.Errorf("weir: --tls-ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("weir: --tls-ca: no PEM certificate in %s", cf.tlsCA)
			}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if user != "" {
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	}
	return opts, nil
}

func (cf *clientFlags) newClient(opts ...kgo.Opt) (*kgo.Client, error) {
	base, err := cf.kgoOpts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
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
