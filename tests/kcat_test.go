package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/weirtest"
)

// kcatPath returns the kcat binary, or skips the test when it is missing
// (fails instead when CI is set: CI must run every client).
func kcatPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("kcat not in PATH and CI is set: install it (apt-get install kcat): %v", err)
		}
		t.Skipf("kcat not in PATH (apt-get install kcat, or run ./scripts/test.sh): %v", err)
	}
	return path
}

func runKcat(t *testing.T, ctx context.Context, kcat string, stdin []byte, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\nstdout: %d bytes, %d lines\nstderr:\n%s",
			strings.Join(args, " "), err, stdout.Len(), bytes.Count(stdout.Bytes(), []byte("\n")), stderr.String())
	}
	return stdout.Bytes()
}

// TestKcat lists the broker's topics, produces keyed lines and reads them
// back with kcat (librdkafka) as a shell user would.
func TestKcat(t *testing.T) {
	kcat := kcatPath(t)
	b := weirtest.Start(t)
	const topic = "kcat-lines"
	createTopic(t, b.Addr(), topic, 1)
	ctx := testContext(t, 60*time.Second)

	meta := runKcat(t, ctx, kcat, nil, "-b", b.Addr(), "-L")
	if !bytes.Contains(meta, []byte(`topic "`+topic+`" with 1 partitions`)) {
		t.Errorf("kcat -L does not list %q with 1 partition:\n%s", topic, meta)
	}

	var in bytes.Buffer
	for i := range 200 {
		fmt.Fprintf(&in, "key-%03d:value %d with spaces and = signs\t%s\n", i, i, strings.Repeat("x", i))
	}
	runKcat(t, ctx, kcat, in.Bytes(), "-P", "-b", b.Addr(), "-t", topic, "-K:")

	out := runKcat(t, ctx, kcat, nil, "-C", "-b", b.Addr(), "-t", topic, "-e", "-o", "beginning", "-q", "-f", `%k=%s\n`)
	want := bytes.ReplaceAll(in.Bytes(), []byte(":value"), []byte("=value"))
	if !bytes.Equal(out, want) {
		gotLines, wantLines := strings.Split(string(out), "\n"), strings.Split(string(want), "\n")
		t.Errorf("kcat read back %d lines, produced %d", len(gotLines)-1, len(wantLines)-1)
		for i := range min(len(gotLines), len(wantLines)) {
			if gotLines[i] != wantLines[i] {
				t.Fatalf("first difference at line %d:\n got  %q\n want %q", i, gotLines[i], wantLines[i])
			}
		}
	}
}
