package weir_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir"
)

// Processor instances that the tests kill run as separate OS processes: the
// test binary re-executed with childEnv set to a JSON childConfig. The child
// runs one processor against the given brokers and appends every processed
// event to a file, one line "instance partition offset key", before the
// handler returns; SIGTERM stops it gracefully, SIGKILL does not.
const childEnv = "WEIR_PROCESSOR_TEST_CHILD"

type childConfig struct {
	Name        string
	Seeds       []string
	Topic       string
	Group       string
	Out         string
	Concurrency int
	CheckpointN int
	CheckpointT time.Duration
	Work        time.Duration // per event, so that a kill lands mid-stream
}

func runChildInstance() bool {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return false
	}
	var cfg childConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		os.Exit(2)
	}
	if err := runChild(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

func runChild(cfg childConfig) error {
	out, err := os.OpenFile(cfg.Out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	var mu sync.Mutex
	write := func(line string) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := out.WriteString(line) // one write(2): survives SIGKILL
		return err
	}
	p, err := weir.NewProcessor(weir.Brokers(cfg.Seeds...), weir.Topic(cfg.Topic), weir.Group(cfg.Group),
		weir.Logger(quietLogger()), fastGroup(), weir.Concurrency(cfg.Concurrency),
		weir.CheckpointEvery(cfg.CheckpointN, cfg.CheckpointT), childKgoLog(cfg.Name))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		select {
		case <-p.Ready():
			write("# ready\n")
		case <-ctx.Done():
		}
	}()
	return p.Run(ctx, weir.HandlerFunc(func(ctx context.Context, e *kgo.Record) error {
		if cfg.Work > 0 {
			time.Sleep(cfg.Work)
		}
		return write(fmt.Sprintf("%s %d %d %s\n", cfg.Name, e.Partition, e.Offset, e.Key))
	}))
}

type childProc struct {
	name string
	out  string
	cmd  *exec.Cmd
	done chan error
}

func startChild(t testing.TB, cfg childConfig) *childProc {
	t.Helper()
	if cfg.Out == "" {
		cfg.Out = filepath.Join(t.TempDir(), cfg.Name+".log")
	}
	spec, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childProc{name: cfg.Name, out: cfg.Out, cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
		c.done <- nil
	})
	return c
}

func (c *childProc) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, c.name+" ready", func() bool {
		b, _ := os.ReadFile(c.out)
		return strings.Contains(string(b), "# ready")
	})
}

func (c *childProc) kill(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-c.done
	c.done <- err
}

// term stops the child gracefully and checks that Run returned nil.
func (c *childProc) term(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			t.Errorf("%s exited with %v", c.name, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not stop 60s after SIGTERM", c.name)
	}
}

type processedLine struct {
	instance  string
	partition int32
	offset    int64
	key       string
}

// readProcessed parses children's files in write order.
func readProcessed(t testing.TB, files ...string) []processedLine {
	t.Helper()
	var out []processedLine
	for _, f := range files {
		fh, err := os.Open(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			fs := strings.Fields(line)
			if len(fs) < 3 {
				continue // a line torn by SIGKILL mid-write cannot happen with one write(2), but be safe
			}
			p, _ := strconv.Atoi(fs[1])
			o, _ := strconv.ParseInt(fs[2], 10, 64)
			pl := processedLine{instance: fs[0], partition: int32(p), offset: o}
			if len(fs) > 3 {
				pl.key = fs[3]
			}
			out = append(out, pl)
		}
		fh.Close()
	}
	return out
}

// loadProcessed replaces the ledger's processed events with the children's.
func (l *ledger) loadProcessed(lines []processedLine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.processed = map[eventID][]string{}
	for _, pl := range lines {
		id := eventID{pl.partition, pl.offset}
		l.processed[id] = append(l.processed[id], pl.instance)
	}
}

// waitChildrenProcessed waits until the children have processed every
// produced event. Some must have been.
func (l *ledger) waitChildrenProcessed(t testing.TB, timeout time.Duration, files ...string) {
	t.Helper()
	l.checkProduced(t)
	deadline := time.Now().Add(timeout)
	for {
		l.loadProcessed(readProcessed(t, files...))
		lost, _, _ := l.result()
		if lost == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d produced events not processed after %v", lost, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestProcessorCrashLosesNothing SIGKILLs one of three processor processes
// under load: nothing is lost, and the events processed twice per partition
// stay within the checkpoint interval.
func TestProcessorCrashLosesNothing(t *testing.T) { forEachBackend(t, testCrashLosesNothing) }

func testCrashLosesNothing(t *testing.T, b backend) {
	const checkpointN = 100
	seeds := b.start(t, 8, "crash")
	l := newLedger()
	prod := startProducer(t, seeds, "crash", l, 1000)
	defer prod.stop()
	var kids []*childProc
	var files []string
	for i := range 3 {
		c := startChild(t, childConfig{Name: fmt.Sprintf("c%d", i), Seeds: seeds, Topic: "crash", Group: "crash",
			Concurrency: 1, CheckpointN: checkpointN, CheckpointT: 200 * time.Millisecond, Work: 100 * time.Microsecond})
		kids = append(kids, c)
		files = append(files, c.out)
	}
	for _, c := range kids {
		c.waitReady(t, 30*time.Second)
	}
	time.Sleep(2 * time.Second)
	kids[1].kill(t)
	t.Logf("SIGKILLed %s", kids[1].name)
	time.Sleep(2 * time.Second)
	prod.stop()
	l.waitChildrenProcessed(t, 60*time.Second, files...)
	kids[0].term(t)
	kids[2].term(t)
	l.loadProcessed(readProcessed(t, files...))
	lost, twice, perPartition := l.result()
	worst := 0
	for _, n := range perPartition {
		worst = max(worst, n)
	}
	t.Logf("produced %d: lost %d, processed twice %d in all, at most %d in one partition (checkpoint every %d events or 200ms)",
		len(l.produced), lost, twice, worst, checkpointN)
	if lost != 0 {
		t.Fatalf("lost %d events", lost)
	}
	if worst > checkpointN {
		t.Fatalf("%d events processed twice in one partition, more than the checkpoint interval %d", worst, checkpointN)
	}
}

// TestProcessorPerKeyConcurrencyCrash runs two 16-worker processes, kills
// one mid-stream, and checks that nothing is lost and that within each
// process, events of a key were processed in offset order.
func TestProcessorPerKeyConcurrencyCrash(t *testing.T) { forEachBackend(t, testPerKeyConcurrencyCrash) }

func testPerKeyConcurrencyCrash(t *testing.T, be backend) {
	seeds := be.start(t, 4, "keyed-crash")
	l := newLedger()
	produceN(t, seeds, "keyed-crash", l, 6000, func(i int) string { return fmt.Sprintf("key-%d", i%40) })
	a := startChild(t, childConfig{Name: "a", Seeds: seeds, Topic: "keyed-crash", Group: "kc", Concurrency: 16,
		CheckpointN: 100, CheckpointT: 200 * time.Millisecond, Work: time.Millisecond})
	a.waitReady(t, 30*time.Second)
	b := startChild(t, childConfig{Name: "b", Seeds: seeds, Topic: "keyed-crash", Group: "kc", Concurrency: 16,
		CheckpointN: 100, CheckpointT: 200 * time.Millisecond, Work: time.Millisecond})
	b.waitReady(t, 30*time.Second)
	waitFor(t, 30*time.Second, "a third of the events processed", func() bool {
		return len(readProcessed(t, a.out, b.out)) > 2000
	})
	a.kill(t)
	l.waitChildrenProcessed(t, 60*time.Second, a.out, b.out)
	b.term(t)

	lines := readProcessed(t, a.out, b.out)
	l.loadProcessed(lines)
	lost, twice, _ := l.result()
	last := map[string]int64{}
	for _, pl := range lines {
		k := fmt.Sprintf("%s/%d/%s", pl.instance, pl.partition, pl.key)
		if prev, ok := last[k]; ok && prev >= pl.offset {
			t.Fatalf("instance %s partition %d key %s: offset %d processed after %d", pl.instance, pl.partition, pl.key, pl.offset, prev)
		}
		last[k] = pl.offset
	}
	t.Logf("processed %d lines: lost %d, processed twice %d (after the crash)", len(lines), lost, twice)
	if lost != 0 {
		t.Fatalf("lost %d events", lost)
	}
}

func childKgoLog(name string) weir.ClientOpt {
	if os.Getenv("WEIR_TEST_LOG") != "kgo" {
		return weir.KgoOpts()
	}
	return weir.KgoOpts(kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, func() string { return name + " " + time.Now().Format("15:04:05.000") + " " })))
}
