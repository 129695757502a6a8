package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// benchProcessStartTimeout bounds how long a bench broker process may take
// to say where it listens.
const benchProcessStartTimeout = 30 * time.Second

// benchProcess is a broker the bench runs as a child process of its own
// executable, so that it does not share a Go runtime (heap, GC, scheduler)
// with the bench's clients: `weir serve`, or kfake via `weir bench
// --serve-kfake`.
type benchProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	done  chan struct{} // closed when the output reader has stopped
}

// startBenchProcess runs this executable with args and waits for the line
// that gives the broker's address, which find picks out of the child's
// stdout (kfake) or stderr (weir serve's JSON log). Every later line that
// keep accepts is copied to log.
func startBenchProcess(ctx context.Context, log io.Writer, args []string, fromStderr bool, find func(line string) (addr string, ok bool), keep func(line string) bool) (*benchProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("weir: bench: own executable: %w", err)
	}
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = childAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("weir: bench: %w", err)
	}
	var out io.ReadCloser
	if fromStderr {
		out, err = cmd.StderrPipe()
		cmd.Stdout = log
	} else {
		out, err = cmd.StdoutPipe()
		cmd.Stderr = log
	}
	if err != nil {
		return nil, fmt.Errorf("weir: bench: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("weir: bench: start %s: %w", args[0], err)
	}
	p := &benchProcess{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if !sent {
				if addr, ok := find(line); ok {
					found <- addr
					sent = true
					continue
				}
			}
			if keep(line) {
				fmt.Fprintln(log, line)
			}
		}
		io.Copy(io.Discard, out) // a line over 1 MiB stopped the scanner; keep the child unblocked
	}()
	timer := time.NewTimer(benchProcessStartTimeout)
	defer timer.Stop()
	select {
	case p.addr = <-found:
		return p, nil
	case <-p.done:
		p.stop()
		return nil, fmt.Errorf("weir: bench: %s exited before it listened", strings.Join(args, " "))
	case <-timer.C:
		p.stop()
		return nil, fmt.Errorf("%w: %s did not listen within %s", ErrBenchStalled, strings.Join(args, " "), benchProcessStartTimeout)
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// stop asks the child to exit (stdin closed, SIGTERM), kills it if it has
// not within 10 s, and returns the CPU time it used in all.
func (p *benchProcess) stop() (cpu time.Duration, err error) {
	p.stdin.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { <-p.done; exited <- p.cmd.Wait() }()
	select {
	case err = <-exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		err = <-exited
	}
	if st := p.cmd.ProcessState; st != nil {
		cpu = st.UserTime() + st.SystemTime()
	}
	return cpu, err
}

// startWeirProcess runs `weir serve` on a free loopback port with its data
// under dir.
func startWeirProcess(ctx context.Context, log io.Writer, dir, fsync string) (*benchProcess, error) {
	// The listening line is logged at info; keep only warnings and errors
	// after it, so that the bench's output stays its own.
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--fsync", fsync, "--log-format", "json"}
	var rec struct {
		Msg   string `json:"msg"`
		Addr  string `json:"addr"`
		Level string `json:"level"`
	}
	find := func(line string) (string, bool) {
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "weir listening" || rec.Addr == "" {
			return "", false
		}
		return rec.Addr, true
	}
	keep := func(line string) bool {
		rec.Level = ""
		return json.Unmarshal([]byte(line), &rec) != nil || (rec.Level != "INFO" && rec.Level != "DEBUG")
	}
	return startBenchProcess(ctx, log, args, true, find, keep)
}

// startKfakeProcess runs kfake in a child process (`weir bench
// --serve-kfake`).
func startKfakeProcess(ctx context.Context, log io.Writer) (*benchProcess, error) {
	find := func(line string) (string, bool) {
		addr, ok := strings.CutPrefix(line, kfakeListening)
		return addr, ok
	}
	return startBenchProcess(ctx, log, []string{"bench", "--serve-kfake"}, false, find, func(string) bool { return true })
}

// kfakeListening starts the line on which `weir bench --serve-kfake` gives
// its address.
const kfakeListening = "kfake listening at "

// serveKfake runs a one-broker kfake cluster on a free loopback port until
// stdin reaches EOF or ctx is done: the bench's reference broker in a
// process of its own.
func serveKfake(ctx context.Context, e *env) error {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return fmt.Errorf("weir: start kfake: %w", err)
	}
	defer c.Close()
	fmt.Fprintln(e.stdout, kfakeListening+c.ListenAddrs()[0])
	eof := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, e.stdin)
		eof <- err
	}()
	select {
	case err := <-eof:
		if err != nil && !errors.Is(err, os.ErrClosed) {
			return fmt.Errorf("weir: bench --serve-kfake: stdin: %w", err)
		}
	case <-ctx.Done():
	}
	return nil
}
