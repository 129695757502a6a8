package weir_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir"
	"github.com/weirhq/weir/broker"
	"github.com/weirhq/weir/weirtest"
)

// TestProcessorWeirRefusesUncreatedGroup runs against a weir broker that
// requires groups to be created first (`weir group create`): Run fails fast
// with ErrAuthorization, 1000 times without leaking, and works once the
// group exists.
func TestProcessorWeirRefusesUncreatedGroup(t *testing.T) {
	b := weirtest.Start(t, func(c *broker.Config) {
		c.RequireGroupCreate = true
		c.GroupInitialRebalanceDelay = -1
	})
	seeds := []string{b.Addr()}
	createTopics(t, seeds, 2, "orders")
	opts := []weir.ProcessorOpt{weir.Brokers(seeds...), weir.Topic("orders"), weir.Group("billing"),
		weir.Logger(quietLogger()), fastGroup()}
	repeats := 1000
	if testing.Short() {
		repeats = 50
	}
	checkFailsFastWithoutLeaks(t, opts, weir.ErrAuthorization, repeats)

	createGroup(t, seeds, "billing")
	l := newLedger()
	produceN(t, seeds, "orders", l, 100, func(i int) string { return string(rune('a' + i%5)) })
	in := startInstance(t, "a", l.handler("a"), opts...)
	l.waitAllProcessed(t, 30*time.Second)
	in.stop(t)
}

// createGroup is what `weir group create` sends: an IncrementalAlterConfigs
// on the GROUP resource.
func createGroup(t testing.TB, seeds []string, group string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	r := kmsg.NewIncrementalAlterConfigsRequestResource()
	r.ResourceType, r.ResourceName = 32, group // Kafka 4's GROUP resource
	req.Resources = append(req.Resources, r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.Resources[0].ErrorCode)
	}
	if err != nil {
		t.Fatalf("create group: %v", err)
	}
}

// TestProcessorSurvivesWeirBrokerKill SIGKILLs a `weir serve` process
// mid-run and restarts it on the same address and data directory: Run
// never returns, processing resumes, and no acknowledged event is lost.
func TestProcessorSurvivesWeirBrokerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the weir binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "weir")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/weirhq/weir/cmd/weir").CombinedOutput(); err != nil {
		t.Fatalf("go build weir: %v\n%s", err, out)
	}
	addr := freeAddr(t).String()
	dir := t.TempDir()
	var cmd *exec.Cmd
	serve := func() {
		cmd = exec.Command(bin, "serve", "--addr", addr, "--data-dir", dir, "--log-level", "error")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "weir serve accepting connections", func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	kill := func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	serve()
	defer func() { kill() }()
	seeds := []string{addr}
	createTopics(t, seeds, 4, "restart")
	checkSurvivesBrokerRestart(t, seeds, "SIGKILLed", kill, serve)
}

// checkFailsFastWithoutLeaks checks that Run fails with want in under 5s,
// then repeats it and checks goroutines and heap against a baseline.
func checkFailsFastWithoutLeaks(t *testing.T, opts []weir.ProcessorOpt, want error, repeats int) {
	t.Helper()
	err, took := runOnce(t, opts)
	var we *weir.Error
	if !errors.Is(err, want) || !errors.As(err, &we) {
		t.Fatalf("Run = %v, want a *weir.Error matching %v", err, want)
	}
	if took > 5*time.Second {
		t.Fatalf("Run took %v to fail, want < 5s", took)
	}
	// Warm up pools and lazily started package goroutines, then take the
	// baseline.
	for range 5 {
		runOnce(t, opts)
	}
	baseline := goleakBaseline()
	heap0 := heapInUse()
	var slowest time.Duration
	for i := range repeats {
		err, took := runOnce(t, opts)
		if !errors.Is(err, want) {
			t.Fatalf("run %d: Run = %v, want %v", i, err, want)
		}
		slowest = max(slowest, took)
	}
	if slowest > 5*time.Second {
		t.Fatalf("slowest of %d runs took %v, want < 5s", repeats, slowest)
	}
	if err := goleakFind(baseline); err != nil {
		t.Fatalf("goroutines left after %d runs: %v", repeats, err)
	}
	heap1 := heapInUse()
	t.Logf("%d runs: slowest %v; heap in use %d KiB -> %d KiB", repeats, slowest.Round(time.Millisecond), heap0>>10, heap1>>10)
	// The fake broker, if any, shares this heap: kfake's control function
	// (answerSASLFailures) remembers every connection it saw, about 1 KiB
	// per run; the bound leaves room for that.
	if heap1 > heap0+8<<20 {
		t.Fatalf("heap grew from %d to %d bytes over %d runs", heap0, heap1, repeats)
	}
}
