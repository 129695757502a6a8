package tests

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/weirtest"
)

// buildWeir builds the weir CLI into a temp dir and returns its path. The Go
// build cache makes a second build in the same run cheap.
func buildWeir(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "weir")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/weirhq/weir/cmd/weir")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build weir: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// server is a `weir serve` child process that can be killed and restarted on
// the same address and data directory.
type server struct {
	t       *testing.T
	bin     string
	addr    string
	dataDir string
	args    []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	starts int
	logs   []string // one file per start
}

func newServer(t *testing.T, bin string, args ...string) *server {
	s := &server{t: t, bin: bin, addr: freeAddr(t), dataDir: t.TempDir(), args: args}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			s.dumpLogs()
		}
	})
	return s
}

// startServer builds the weir CLI and starts `weir serve` with args, for
// tests of the real process; they are skipped with -short.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the weir binary; skipped with -short")
	}
	s := newServer(t, buildWeir(t), args...)
	s.start()
	return s
}

// start runs `weir serve` and waits until it accepts connections.
func (s *server) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	logPath := filepath.Join(s.dataDir+"-logs", "serve-"+strconv.Itoa(s.starts)+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		s.t.Fatal(err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close() // the child keeps its own descriptor
	s.starts++
	s.logs = append(s.logs, logPath)
	args := append([]string{"serve", "--addr", s.addr, "--data-dir", s.dataDir}, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start weir serve: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("weir serve did not accept connections on %s within 15s: %v", s.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill SIGKILLs the child, if running, and reaps it.
func (s *server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// stop sends SIGTERM and returns the exit error (nil for exit status 0).
func (s *server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		err = <-done
		s.t.Errorf("weir serve did not exit within 20s of SIGTERM")
	}
	s.cmd = nil
	return err
}

func (s *server) dumpLogs() {
	for _, p := range s.logs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		const max = 8 << 10
		if len(b) > max {
			b = append([]byte("...\n"), b[len(b)-max:]...)
		}
		s.t.Logf("---- %s ----\n%s", filepath.Base(p), b)
	}
}

// readAll consumes every partition of topic from the start to the end
// offsets the broker reports now.
func readAll(t *testing.T, addr, topic string) map[int32][]*kgo.Record {
	t.Helper()
	return weirtest.ReadAll(testContext(t, 30*time.Second), t, addr, topic)
}
