package tests

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCLIProduceFlushesOnSIGTERM runs `weir produce` as a process fed an
// endless stdin, sends it SIGTERM mid-stream, and checks that it exits 0
// having stored every record it says it produced, in order.
func TestCLIProduceFlushesOnSIGTERM(t *testing.T) {
	srv := startServer(t)
	weirCmd(t, srv.bin, srv.addr, nil, "topic", "create", "sigterm")

	cmd := exec.Command(srv.bin, "produce", "sigterm", "--brokers", srv.addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var writing sync.WaitGroup
	writing.Add(1)
	go func() { // writes until the process is gone
		defer writing.Done()
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(stdin, "line-%08d\n", i); err != nil {
				return
			}
		}
	}()

	// Until it is well under way.
	waitFor(t, time.Minute, "1000 records stored", func() bool {
		var n int64
		for _, end := range endOffsets(t, srv.addr, "sigterm") {
			n += end
		}
		return n >= 1000
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	stdin.Close()
	writing.Wait()
	if err != nil {
		t.Fatalf("weir produce after SIGTERM: %v\n%s", err, stderr.String())
	}
	m := regexp.MustCompile(`produced (\d+) records .*; (\d+) failed`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no summary on stderr:\n%s", stderr.String())
	}
	produced, _ := strconv.ParseInt(m[1], 10, 64)
	if m[2] != "0" {
		t.Errorf("%s records failed", m[2])
	}
	recs := readAll(t, srv.addr, "sigterm")[0]
	if int64(len(recs)) != produced {
		t.Errorf("weir produce says %d produced; the topic holds %d", produced, len(recs))
	}
	for i, r := range recs {
		if want := fmt.Sprintf("line-%08d", i); string(r.Value) != want {
			t.Fatalf("record %d is %q, want %q", i, r.Value, want)
		}
	}
	t.Logf("SIGTERM after %d stored: %d produced and stored, exit 0", 1000, produced)
}
