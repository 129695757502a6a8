// Command weir is the weir event hub: `weir serve` runs the broker; the other
// subcommands are Kafka-protocol clients for it (or for any Kafka cluster).
//
//	weir serve    run the broker
//	weir topic    create, list, describe and delete topics ("hub" is an alias)
//	weir produce  write lines from stdin as records
//	weir consume  print records
//	weir tu       show or set throughput units (TUs) and auto-inflate
//	weir bench    measure weir against an in-memory kfake cluster
//
// Exit codes: 0 success, 1 error ("weir: ..." on stderr), 2 bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
)

// errUsage marks command-line mistakes; run answers them with exit code 2.
var errUsage = errors.New("weir: bad usage")

// usageError is a command-line mistake in one command.
type usageError struct {
	Cmd string // "topic create", "" for the top level
	Msg string
}

func (e *usageError) Error() string {
	if e.Cmd == "" {
		return "weir: " + e.Msg
	}
	return "weir " + e.Cmd + ": " + e.Msg
}
func (e *usageError) Unwrap() error { return errUsage }

func usagef(cmd, format string, args ...any) error {
	return &usageError{Cmd: cmd, Msg: fmt.Sprintf(format, args...)}
}

// env carries a command's process surroundings so commands run in tests.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	usages map[*flag.FlagSet]func() // -h output of each FlagSet
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the broker", runServe},
		{"topic", "create, list, describe or delete topics (alias: hub)", runTopic},
		{"produce", "write lines from stdin to a topic", runProduce},
		{"consume", "print records of a topic", runConsume},
		{"group", "list, describe, create, delete or reset consumer groups", runGroup},
		{"tu", "show or set throughput units and auto-inflate", runTU},
		{"bench", "benchmark weir against an in-memory kfake cluster", runBench},
	}
}

// subcommand is one subcommand of a command that has them (topic, group, tu).
type subcommand struct {
	name  string
	alias string // "ls", "rm"; "" for none
	run   func(ctx context.Context, e *env, args []string) error
}

// runSubcommand runs the subcommand of cmd that args[0] names; -h prints
// "Usage: weir " and synopsis.
func (e *env) runSubcommand(ctx context.Context, cmd, synopsis string, subs []subcommand, args []string) error {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.name
	}
	want := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	if len(args) == 0 {
		return usagef(cmd, "missing subcommand: %s", want)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(e.stdout, "Usage: weir %s\n", synopsis)
		return nil
	}
	for _, s := range subs {
		if args[0] == s.name || (s.alias != "" && args[0] == s.alias) {
			return s.run(ctx, e, args[1:])
		}
	}
	return usagef(cmd, "unknown subcommand %q: want %s", args[0], want)
}

func lookupCommand(name string) (command, bool) {
	if name == "hub" {
		name = "topic"
	}
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func main() {
	ctx, stop := withSignals(context.Background(), os.Stderr)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// withSignals cancels ctx on the first SIGINT/SIGTERM, so commands shut down
// gracefully; a second signal exits at once.
func withSignals(parent context.Context, stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-sig:
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sig:
			fmt.Fprintf(stderr, "weir: second signal (%v), exiting now\n", s)
			os.Exit(1)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sig)
		close(done)
		<-exited
		cancel()
	}
}

// run runs the command line args (without the program name) and returns
// the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	return e.run(ctx, args)
}

func (e *env) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		printUsage(e.stderr)
		return 2
	}
	name := args[0]
	var err error
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			c, ok := lookupCommand(args[1])
			if !ok {
				err = usagef("", "unknown command %q (see 'weir help')", args[1])
				break
			}
			err = c.run(ctx, e, []string{"-h"})
			break
		}
		printUsage(e.stdout)
		return 0
	default:
		c, ok := lookupCommand(name)
		if !ok {
			err = usagef("", "unknown command %q (see 'weir help')", name)
			break
		}
		err = c.run(ctx, e, args[1:])
	}
	return e.exitCode(err)
}

func (e *env) exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(e.stderr, err)
		return 2
	default:
		msg := err.Error()
		if !strings.HasPrefix(msg, "weir") {
			msg = "weir: " + msg
		}
		fmt.Fprintln(e.stderr, msg)
		return 1
	}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `weir is a self-hostable event hub that speaks the Kafka protocol.

Usage:
  weir <command> [arguments]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'weir help <command>' or 'weir <command> -h' for a command's flags.
Client commands take --brokers (default $WEIR_BROKERS, else 127.0.0.1:9092).
`)
}

// newFlagSet returns a FlagSet for cmd that reports errors as values; its
// usage goes to stdout when asked for with -h.
func (e *env) newFlagSet(cmd, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("weir "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // parse errors are reported once, by parseFlags
	if e.usages == nil {
		e.usages = map[*flag.FlagSet]func(){}
	}
	e.usages[fs] = func() {
		fmt.Fprintf(e.stdout, "Usage: weir %s\n\nFlags:\n", synopsis)
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseFlags parses args with flags and positional arguments in any order
// ("topic create NAME --partitions 3" and "--partitions 3 NAME" both work).
// Everything after "--" is positional.
func (e *env) parseFlags(fs *flag.FlagSet, cmd string, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				if usage := e.usages[fs]; usage != nil {
					usage()
				}
				return nil, err
			}
			return nil, usagef(cmd, "%v (see 'weir %s -h')", err, cmd)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at "--" and drops it; if the token before the rest was
		// "--", everything left is positional.
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseName parses args like parseFlags and returns the one NAME of kind
// ("topic", "group") they must hold.
func (e *env) parseName(fs *flag.FlagSet, cmd, kind string, args []string) (string, error) {
	pos, err := e.parseFlags(fs, cmd, args)
	if err != nil {
		return "", err
	}
	return oneName(cmd, kind, pos)
}

// oneName checks that pos is exactly one name of kind ("topic", "group").
func oneName(cmd, kind string, pos []string) (string, error) {
	switch {
	case len(pos) == 0:
		return "", usagef(cmd, "missing %s name", kind)
	case len(pos) > 1:
		return "", usagef(cmd, "want one %s name, got %d arguments", kind, len(pos))
	case strings.TrimSpace(pos[0]) == "":
		return "", usagef(cmd, "empty %s name", kind)
	}
	return pos[0], nil
}

// noArgs rejects positional arguments for a command that takes none.
func noArgs(cmd string, pos []string) error {
	if len(pos) > 0 {
		return usagef(cmd, "unexpected argument %q", pos[0])
	}
	return nil
}

// newTable returns a writer that lines up the tab-separated columns of a
// table the CLI prints to w; Flush writes it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}
