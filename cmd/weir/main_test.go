package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The test binary doubles as the weir binary for tests that need a real
	// process (signals).
	if os.Getenv("WEIR_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// weir runs the CLI in-process and returns stdout, stderr and the exit code.
func weir(t *testing.T, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	return weirCtx(t, context.Background(), stdin, args...)
}

func weirCtx(t *testing.T, ctx context.Context, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var stdout, stderr syncBuffer
	e := &env{stdin: stdin, stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	code := e.run(ctx, args)
	return stdout.String(), stderr.String(), code
}

// mustWeir runs the CLI and fails the test unless it exits 0.
func mustWeir(t *testing.T, stdin io.Reader, args ...string) string {
	t.Helper()
	out, errOut, code := weir(t, stdin, args...)
	if code != 0 {
		t.Fatalf("weir %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		inStderr string // substring of stderr, for failures
		inStdout string
	}{
		{args: nil, code: 2, inStderr: "Usage:"},
		{args: []string{"help"}, code: 0, inStdout: "produce"},
		{args: []string{"help", "consume"}, code: 0, inStdout: "--exit-at-end"},
		{args: []string{"help", "nope"}, code: 2, inStderr: `unknown command "nope"`},
		{args: []string{"frobnicate"}, code: 2, inStderr: `unknown command "frobnicate"`},
		{args: []string{"produce", "-h"}, code: 0, inStdout: "--key-separator"},
		{args: []string{"serve", "--help"}, code: 0, inStdout: "--fsync"},
		{args: []string{"topic", "-h"}, code: 0, inStdout: "describe"},
		{args: []string{"hub", "-h"}, code: 0, inStdout: "describe"},
		{args: []string{"topic"}, code: 2, inStderr: "missing subcommand"},
		{args: []string{"topic", "rename"}, code: 2, inStderr: `unknown subcommand "rename"`},
		{args: []string{"topic", "create"}, code: 2, inStderr: "missing topic name"},
		{args: []string{"topic", "create", "a", "b"}, code: 2, inStderr: "want one topic name"},
		{args: []string{"topic", "create", "a", "--partitions", "0"}, code: 2, inStderr: "--partitions"},
		{args: []string{"topic", "create", "a", "--partitions", "many"}, code: 2, inStderr: "invalid value"},
		{args: []string{"topic", "create", "a", "--config", "novalue"}, code: 2, inStderr: "key=value"},
		{args: []string{"produce"}, code: 2, inStderr: "missing topic name"},
		{args: []string{"produce", "t", "--bogus"}, code: 2, inStderr: "flag provided but not defined: -bogus"},
		{args: []string{"produce", "t", "--acks", "2"}, code: 2, inStderr: "--acks"},
		{args: []string{"consume", "t", "--from", "yesterday"}, code: 2, inStderr: "--from"},
		{args: []string{"consume", "t", "--format", "xml"}, code: 2, inStderr: "--format"},
		{args: []string{"consume", "t", "--count", "-1"}, code: 2, inStderr: "--count"},
		{args: []string{"serve", "--fsync", "sometimes"}, code: 2, inStderr: "--fsync"},
		{args: []string{"serve", "--log-level", "loud"}, code: 2, inStderr: "--log-level"},
		{args: []string{"serve", "extra"}, code: 2, inStderr: "unexpected argument"},
		{args: []string{"bench", "--records", "0"}, code: 2, inStderr: "--records"},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			out, errOut, code := weir(t, nil, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			if !strings.Contains(errOut, tc.inStderr) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.inStderr)
			}
			if strings.Count(out, "Usage:") > 1 {
				t.Errorf("usage printed %d times:\n%s", strings.Count(out, "Usage:"), out)
			}
			if code == 2 && out != "" {
				t.Errorf("usage error wrote to stdout: %q", out)
			}
			if !strings.Contains(out, tc.inStdout) {
				t.Errorf("stdout %q does not contain %q", out, tc.inStdout)
			}
			if code == 2 && !strings.HasPrefix(errOut, "weir") && !strings.HasPrefix(errOut, "weir is") {
				t.Errorf("usage error %q does not start with weir", errOut)
			}
		})
	}
}

func TestParseFlagsInterspersed(t *testing.T) {
	e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	fs := e.newFlagSet("x", "x")
	n := fs.Int("n", 0, "")
	pos, err := e.parseFlags(fs, "x", []string{"a", "-n", "3", "b", "--", "-c"})
	if err != nil {
		t.Fatal(err)
	}
	if *n != 3 || !slices.Equal(pos, []string{"a", "b", "-c"}) {
		t.Errorf("n=%d pos=%q, want 3 [a b -c]", *n, pos)
	}
}

func TestDefaultDataDir(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"WEIR_DATA_DIR": "/d", "XDG_DATA_HOME": "/x", "HOME": "/h"}, "/d"},
		{map[string]string{"XDG_DATA_HOME": "/x", "HOME": "/h"}, filepath.Join("/x", "weir")},
		{map[string]string{"HOME": "/h"}, filepath.Join("/h", ".local", "share", "weir")},
	} {
		got, err := defaultDataDir(func(k string) string { return tc.env[k] })
		if err != nil || got != tc.want {
			t.Errorf("defaultDataDir(%v) = %q, %v; want %q", tc.env, got, err, tc.want)
		}
	}
}

func TestTopicLifecycle(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr

	out := mustWeir(t, nil, "topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000", b)
	if !strings.Contains(out, "created topic orders with 3 partitions") {
		t.Errorf("create output %q", out)
	}
	mustWeir(t, nil, "hub", "create", b, "--partitions=1", "payments")

	out = mustWeir(t, nil, "topic", "list", b)
	if !regexp.MustCompile(`(?m)^orders\s+3$`).MatchString(out) || !regexp.MustCompile(`(?m)^payments\s+1$`).MatchString(out) {
		t.Errorf("list output does not show orders(3) and payments(1):\n%s", out)
	}

	out = mustWeir(t, nil, "topic", "describe", "orders", b)
	for _, want := range []string{"topic: orders", "partitions: 3", "retention.ms=3600000"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe output does not contain %q:\n%s", want, out)
		}
	}
	for p := 0; p < 3; p++ {
		if !regexp.MustCompile(`(?m)^` + string(rune('0'+p)) + `\s+0\s+0\s+0\s+-$`).MatchString(out) {
			t.Errorf("describe has no row for empty partition %d:\n%s", p, out)
		}
	}

	_, errOut, code := weir(t, nil, "topic", "create", "orders", "--partitions", "3", b)
	if code != 1 || !strings.Contains(errOut, "TOPIC_ALREADY_EXISTS") || !strings.HasPrefix(errOut, "weir: ") {
		t.Errorf("second create: exit %d, stderr %q; want 1 and TOPIC_ALREADY_EXISTS", code, errOut)
	}

	out = mustWeir(t, nil, "topic", "delete", "orders", b)
	if !strings.Contains(out, "deleted topic orders") {
		t.Errorf("delete output %q", out)
	}
	for _, args := range [][]string{
		{"topic", "describe", "orders", b},
		{"topic", "delete", "orders", b},
		{"consume", "orders", "--exit-at-end", b},
	} {
		_, errOut, code = weir(t, nil, args...)
		if code != 1 || !strings.Contains(errOut, "UNKNOWN_TOPIC_OR_PARTITION") {
			t.Errorf("weir %s after delete: exit %d, stderr %q; want 1 and UNKNOWN_TOPIC_OR_PARTITION", args[:2], code, errOut)
		}
	}
	out = mustWeir(t, nil, "topic", "list", b)
	if strings.Contains(out, "orders") {
		t.Errorf("deleted topic still listed:\n%s", out)
	}
}

var textLine = regexp.MustCompile(`^p=(\d+) off=(\d+) ts=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) key=(.*) value=(.*)$`)

func TestProduceConsume(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr
	mustWeir(t, nil, "topic", "create", "events", "--partitions", "1", b)

	before := time.Now().Add(-time.Second)
	_, errOut, code := weir(t, strings.NewReader("k1=hello\nk2=wor=ld\nnokey\n\n"), "produce", "events", "--key-separator", "=", b)
	if code != 0 || !strings.Contains(errOut, "produced 4 records") {
		t.Fatalf("produce: exit %d, stderr %q", code, errOut)
	}

	out, errOut, code := weir(t, nil, "consume", "events", "--from", "earliest", "--exit-at-end", b)
	if code != 0 || !strings.Contains(errOut, "consumed 4 records") {
		t.Fatalf("consume: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := [][2]string{{"k1", "hello"}, {"k2", "wor=ld"}, {"", "nokey"}, {"", ""}}
	if len(lines) != len(want) {
		t.Fatalf("consumed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, line := range lines {
		m := textLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %q does not match the text format", line)
		}
		if m[1] != "0" || m[2] != string(rune('0'+i)) || m[4] != want[i][0] || m[5] != want[i][1] {
			t.Errorf("line %d = %q, want p=0 off=%d key=%s value=%s", i, line, i, want[i][0], want[i][1])
		}
		ts, err := time.Parse(time.RFC3339, m[3])
		if err != nil || ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
			t.Errorf("line %d timestamp %s is not the produce time", i, m[3])
		}
	}

	out = mustWeir(t, nil, "consume", "events", "--from", "earliest", "--count", "2", "--format", "value", b)
	if out != "hello\nwor=ld\n" {
		t.Errorf("--count 2 --format value printed %q", out)
	}
	out = mustWeir(t, nil, "consume", "events", "--partition", "0", "--from", "2", "--exit-at-end", "--format", "json", b)
	if out != `{"partition":0,"offset":2,"timestamp":"`+textLine.FindStringSubmatch(lines[2])[3]+`","key":null,"value":"nokey"}`+"\n"+
		`{"partition":0,"offset":3,"timestamp":"`+textLine.FindStringSubmatch(lines[3])[3]+`","key":null,"value":""}`+"\n" {
		t.Errorf("--from 2 --format json printed %q", out)
	}
	out = mustWeir(t, nil, "consume", "events", "--exit-at-end", b) // latest: nothing
	if out != "" {
		t.Errorf("--from latest --exit-at-end printed %q, want nothing", out)
	}
	// Without a separator the whole line is the value.
	mustWeir(t, strings.NewReader("a=b\n"), "produce", "events", b)
	out = mustWeir(t, nil, "consume", "events", "--from", "4", "--exit-at-end", b)
	if m := textLine.FindStringSubmatch(strings.TrimSpace(out)); m == nil || m[4] != "" || m[5] != "a=b" {
		t.Errorf("produce without --key-separator stored %q, want value a=b and no key", out)
	}

	_, errOut, code = weir(t, nil, "consume", "events", "--partition", "7", b)
	if code != 1 || !strings.Contains(errOut, "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("consume of a missing partition: exit %d, stderr %q", code, errOut)
	}
}

func TestProduceConsumePartitions(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr
	mustWeir(t, nil, "topic", "create", "spread", "--partitions", "4", b)
	var in strings.Builder
	var want []string
	for i := range 200 {
		line := "key" + string(rune('a'+i%26)) + "|v" + strings.Repeat("x", i%7) + string(rune('A'+i%26))
		in.WriteString(line + "\n")
		want = append(want, line[strings.Index(line, "|")+1:])
	}
	// acks=1 is answered before the fsync makes the records visible, so
	// wait for all 200 with --count rather than --exit-at-end.
	mustWeir(t, strings.NewReader(in.String()), "produce", "spread", "--key-separator", "|", "--acks", "1", b)
	out := mustWeir(t, nil, "consume", "spread", "--from", "earliest", "--count", "200", "--format", "value", b)
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("consumed %d values, want the %d produced", len(got), len(want))
	}
	desc := mustWeir(t, nil, "topic", "describe", "spread", b)
	used := 0
	for p := 0; p < 4; p++ {
		m := regexp.MustCompile(`(?m)^` + string(rune('0'+p)) + `\s+\d+\s+0\s+(\d+)`).FindStringSubmatch(desc)
		if m == nil {
			t.Fatalf("describe has no row for partition %d:\n%s", p, desc)
		}
		if m[1] != "0" {
			used++
		}
	}
	if used < 2 {
		t.Errorf("26 keys landed in %d partitions, want them spread:\n%s", used, desc)
	}

	// --partition writes everything to one partition.
	mustWeir(t, strings.NewReader("x\ny\n"), "produce", "spread", "--partition", "3", b)
	out = mustWeir(t, nil, "consume", "spread", "--partition", "3", "--from", "earliest", "--exit-at-end", "--format", "value", b)
	if !strings.HasSuffix(out, "x\ny\n") {
		t.Errorf("partition 3 ends with %q, want x y", out)
	}
}

func TestProduceFlushesOnSignal(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr
	mustWeir(t, nil, "topic", "create", "sig", b)

	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		errOut string
		code   int
	}
	done := make(chan result, 1)
	go func() {
		_, errOut, code := weirCtx(t, ctx, pr, "produce", "sig", b)
		done <- result{errOut, code}
	}()
	if _, err := io.WriteString(pw, "one\ntwo\nthree\n"); err != nil {
		t.Fatal(err)
	}
	// This second write returns only once the three lines above were
	// handed over, so they are "read from stdin" before the signal.
	if _, err := io.WriteString(pw, "partial"); err != nil {
		t.Fatal(err)
	}
	cancel() // SIGINT
	r := <-done
	pw.Close()
	if r.code != 0 || !strings.Contains(r.errOut, "produced 3 records") {
		t.Fatalf("interrupted produce: exit %d, stderr %q", r.code, r.errOut)
	}
	out := mustWeir(t, nil, "consume", "sig", "--from", "earliest", "--exit-at-end", "--format", "value", b)
	if out != "one\ntwo\nthree\n" {
		t.Errorf("after interrupted produce the topic holds %q", out)
	}
}

func TestServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	addrRe := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)
	serve := func() (addr string, stop func() string) {
		ctx, cancel := context.WithCancel(context.Background())
		var stderr syncBuffer
		done := make(chan int, 1)
		go func() {
			e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr, getenv: func(string) string { return "" }}
			done <- e.run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--auto-create-topics=false"})
		}()
		for addr == "" {
			select {
			case code := <-done:
				cancel()
				t.Fatalf("serve exited %d: %s", code, stderr.String())
			case <-time.After(10 * time.Millisecond):
			}
			if m := addrRe.FindStringSubmatch(stderr.String()); m != nil {
				addr = m[1]
			}
		}
		if !strings.Contains(stderr.String(), "data_dir="+dir) {
			t.Errorf("start log does not name the data dir: %s", stderr.String())
		}
		return addr, func() string {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("serve exited %d after SIGINT: %s", code, stderr.String())
			}
			return stderr.String()
		}
	}

	addr, stop := serve()
	b := "--brokers=" + addr
	mustWeir(t, nil, "topic", "create", "kept", "--partitions", "2", b)
	mustWeir(t, strings.NewReader("durable\n"), "produce", "kept", "--partition", "1", b)
	_, errOut, code := weir(t, strings.NewReader("x\n"), "produce", "not-there", b)
	if code != 1 || !strings.Contains(errOut, "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("produce to an unknown topic with auto-create off: exit %d, stderr %q", code, errOut)
	}
	if log := stop(); !strings.Contains(log, "stopped") {
		t.Errorf("serve did not log a clean stop: %s", log)
	}

	addr, stop = serve()
	defer stop()
	out := mustWeir(t, nil, "consume", "kept", "--from", "earliest", "--exit-at-end", "--brokers", addr)
	if m := textLine.FindStringSubmatch(strings.TrimSpace(out)); m == nil || m[1] != "1" || m[2] != "0" || m[5] != "durable" {
		t.Errorf("after restart consume printed %q, want the record produced before", out)
	}
}

// TestBench runs the bench as users do: weir serve and kfake each in a
// child process (this test binary, acting as weir).
func TestBench(t *testing.T) {
	t.Setenv("WEIR_TEST_AS_MAIN", "1") // for the children started from os.Executable()
	out := mustWeir(t, nil, "bench", "--records", "20000", "--duration", "300ms", "--partitions", "4")
	for _, want := range []string{"produce records/s", "consume MB/s", "latency p99 ms", "weir/kfake", "targets:", "broker CPU s"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench output does not contain %q:\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`latency acked records\s+(\d+)\s+(\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" || m[2] == "0" {
		t.Errorf("latency phase acked no records:\n%s", out)
	}
}

// TestBenchInProcess runs both brokers inside the bench process.
func TestBenchInProcess(t *testing.T) {
	out := mustWeir(t, nil, "bench", "--in-process", "--records", "20000", "--duration", "300ms", "--partitions", "4")
	m := regexp.MustCompile(`latency acked records\s+(\d+)\s+(\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" || m[2] == "0" {
		t.Errorf("latency phase acked no records:\n%s", out)
	}
	if strings.Contains(out, "broker CPU s") {
		t.Errorf("in-process bench printed a broker process's CPU time:\n%s", out)
	}
}

// TestServeSIGTERM runs weir serve as a real process: SIGTERM closes it
// gracefully with exit code 0.
func TestServeSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-format", "json")
	cmd.Env = append(os.Environ(), "WEIR_TEST_AS_MAIN=1")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrRe := regexp.MustCompile(`"addr":"(127\.0\.0\.1:\d+)"`)
	deadline := time.Now().Add(30 * time.Second)
	var addr string
	for addr == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		if m := addrRe.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("serve did not log its address: %s", stderr.String())
	}
	mustWeir(t, nil, "topic", "create", "t", "--brokers", addr)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Errorf("serve did not log a clean stop: %s", stderr.String())
	}
}

// TestUnreachableBroker: every client command fails with exit 1 and a
// "weir: " message, quickly, when nothing listens at --brokers.
func TestUnreachableBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := "--brokers=" + ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{
		{"topic", "list", b},
		{"topic", "create", "x", b},
		{"produce", "x", b},
		{"consume", "x", b},
	} {
		_, errOut, code := weir(t, strings.NewReader("line\n"), args...)
		if code != 1 || !strings.HasPrefix(errOut, "weir: ") || !strings.Contains(errOut, "connection refused") {
			t.Errorf("weir %s with no broker: exit %d, stderr %q", args[:2], code, errOut)
		}
	}
}
