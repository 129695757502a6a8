package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// weirCmd runs a weir client command against addr and returns its stdout.
func weirCmd(t *testing.T, bin, addr string, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--brokers", addr)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("weir %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

type cliRecord struct {
	Partition int32   `json:"partition"`
	Offset    int64   `json:"offset"`
	Key       *string `json:"key"`
	Value     string  `json:"value"`
}

// TestCLINewUser does what the README tells a new user to do, with real
// processes: serve, create a topic, produce keyed lines, consume them; then
// stop the server with SIGTERM, start it again on the same data directory,
// and find the same records.
func TestCLINewUser(t *testing.T) {
	srv := startServer(t, "--fsync", "always")

	weirCmd(t, srv.bin, srv.addr, nil, "topic", "create", "orders", "--partitions", "4")
	list := weirCmd(t, srv.bin, srv.addr, nil, "topic", "list")
	if !bytes.Contains(list, []byte("orders")) {
		t.Errorf("weir topic list does not show orders:\n%s", list)
	}

	var in bytes.Buffer
	want := map[string]string{}
	for i := range 100 {
		k, v := fmt.Sprintf("customer-%d", i%10), fmt.Sprintf("order %d: %d items", i, i%7)
		fmt.Fprintf(&in, "%s=%s\n", k, v)
		want[v] = k
	}
	weirCmd(t, srv.bin, srv.addr, in.Bytes(), "produce", "orders", "--key-separator", "=")

	check := func(out []byte) {
		t.Helper()
		sc := bufio.NewScanner(bytes.NewReader(out))
		next := map[int32]int64{}
		keyPartition := map[string]int32{}
		lastOrder := map[string]int{} // per key, the order number must increase
		n := 0
		for sc.Scan() {
			var r cliRecord
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("weir consume --format json printed %q: %v", sc.Text(), err)
			}
			n++
			if r.Offset != next[r.Partition] {
				t.Errorf("partition %d: offset %d, want %d (contiguous from 0)", r.Partition, r.Offset, next[r.Partition])
			}
			next[r.Partition] = r.Offset + 1
			k, ok := want[r.Value]
			if !ok || r.Key == nil || *r.Key != k {
				t.Errorf("unexpected record %+v", r)
				continue
			}
			if p, seen := keyPartition[k]; seen && p != r.Partition {
				t.Errorf("key %s in partitions %d and %d", k, p, r.Partition)
			}
			keyPartition[k] = r.Partition
			var num int
			fmt.Sscanf(r.Value, "order %d:", &num)
			if last, seen := lastOrder[k]; seen && num <= last {
				t.Errorf("key %s: order %d after %d; per-partition order lost", k, num, last)
			}
			lastOrder[k] = num
		}
		if n != len(want) {
			t.Errorf("weir consume printed %d records, produced %d", n, len(want))
		}
		if len(next) < 2 {
			t.Errorf("records landed in %d partition(s) of 4", len(next))
		}
	}
	consumeArgs := []string{"consume", "orders", "--from", "earliest", "--exit-at-end", "--format", "json"}
	check(weirCmd(t, srv.bin, srv.addr, nil, consumeArgs...))

	if err := srv.stop(); err != nil {
		t.Fatalf("weir serve after SIGTERM: %v (want exit status 0)", err)
	}
	srv.start()
	check(weirCmd(t, srv.bin, srv.addr, nil, consumeArgs...))
}
