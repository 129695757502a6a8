package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTU sets and shows throughput units with the CLI against an embedded
// broker, and checks that bad values are refused with the broker's reason.
func TestTU(t *testing.T) {
	b := "--brokers=" + startBroker(t)
	row := func(out, key, value, source string) bool {
		return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `\s+` + regexp.QuoteMeta(value) + `\s+` + source + `$`).MatchString(out)
	}
	out := mustWeir(t, nil, "tu", "show", b)
	if !row(out, "weir.throughput.units", "0", "default") || !row(out, "weir.auto.inflate.enabled", "false", "default") {
		t.Fatalf("tu show on a fresh broker:\n%s", out)
	}
	out = mustWeir(t, nil, "tu", "set", "2", "--auto-inflate-max-units", "5", b)
	for _, want := range [][3]string{
		{"weir.throughput.units", "2", "set at runtime"},
		{"weir.throughput.units.current", "2", "default"},
		{"weir.auto.inflate.enabled", "true", "set at runtime"},
		{"weir.auto.inflate.max.units", "5", "set at runtime"},
	} {
		if !row(out, want[0], want[1], want[2]) {
			t.Errorf("tu set does not show %v:\n%s", want, out)
		}
	}
	out = mustWeir(t, nil, "tu", "set", "--topic", "orders", "1", b)
	if !row(out, "weir.topic.throughput.units.orders", "1", "set at runtime") {
		t.Errorf("tu set --topic does not show the cap:\n%s", out)
	}
	out = mustWeir(t, nil, "tu", "set", "--auto-inflate=false", b)
	if !row(out, "weir.auto.inflate.enabled", "false", "set at runtime") || !row(out, "weir.auto.inflate.max.units", "5", "set at runtime") {
		t.Errorf("tu set --auto-inflate=false:\n%s", out)
	}

	for _, tc := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"tu", "set", b, "--", "-1"}, 1, "INVALID_CONFIG"},
		{[]string{"tu", "set", "many", b}, 1, `weir.throughput.units="many"`},
		{[]string{"tu", "set", "3", "--auto-inflate-max-units", "2", b}, 1, "must be >= throughput units"},
		{[]string{"tu", "set", b}, 2, "nothing to set"},
		{[]string{"tu", "set", "1", "2", b}, 2, "at most one"},
		{[]string{"tu", "set", "--topic", "orders", b}, 2, "needs the topic's UNITS"},
		{[]string{"tu"}, 2, "missing subcommand"},
		{[]string{"tu", "grow"}, 2, `unknown subcommand "grow"`},
		{[]string{"serve", "--throughput-units", "-1"}, 2, "throughput units must be between"},
		{[]string{"serve", "--auto-inflate-max-units", "3"}, 2, "needs --throughput-units"},
		{[]string{"serve", "--topic-throughput-units", "orders"}, 2, "topic=units"},
	} {
		_, errOut, code := weir(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.inStderr) {
			t.Errorf("weir %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.inStderr)
		}
	}
	// Refused changes changed nothing.
	out = mustWeir(t, nil, "tu", "show", b)
	if !row(out, "weir.throughput.units", "2", "set at runtime") {
		t.Errorf("after refused changes:\n%s", out)
	}
	if out := mustWeir(t, nil, "tu", "-h"); !strings.Contains(out, "1 MiB/s or 1000 events/s") {
		t.Errorf("tu -h:\n%s", out)
	}
}

// TestServeMetricsAndTU runs serve with 1 TU and --metrics-addr, produces
// with the CLI, and scrapes /metrics; the TU setting survives a restart.
func TestServeMetricsAndTU(t *testing.T) {
	dir := t.TempDir()
	addrRe := regexp.MustCompile(`msg="weir listening" addr=(127\.0\.0\.1:\d+)`)
	urlRe := regexp.MustCompile(`url=(http://\S+/metrics)`)
	serve := func() (addr, url string, stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		var stderr syncBuffer
		done := make(chan int, 1)
		go func() {
			e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr, getenv: func(string) string { return "" }}
			done <- e.run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir,
				"--throughput-units", "1", "--metrics-addr", "127.0.0.1:0"})
		}()
		for deadline := time.Now().Add(10 * time.Second); addr == "" || url == ""; {
			select {
			case code := <-done:
				cancel()
				t.Fatalf("serve exited %d: %s", code, stderr.String())
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				cancel()
				<-done
				t.Fatalf("serve did not log its addresses: %s", stderr.String())
			}
			if m := addrRe.FindStringSubmatch(stderr.String()); m != nil {
				addr = m[1]
			}
			if m := urlRe.FindStringSubmatch(stderr.String()); m != nil {
				url = m[1]
			}
		}
		return addr, url, func() {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("serve exited %d: %s", code, stderr.String())
			}
		}
	}
	addr, url, stop := serve()
	b := "--brokers=" + addr
	mustWeir(t, nil, "topic", "create", "scraped", b)
	mustWeir(t, strings.NewReader("a\nb\nc\n"), "produce", "scraped", b)
	page := get(t, url)
	for _, want := range []string{
		`weir_topic_incoming_messages_total{topic="scraped"} 3`,
		`weir_partition_log_end_offset{partition="0",topic="scraped"} 3`,
		"weir_throughput_units 1",
		"go_goroutines ",
		"process_open_fds ",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	mustWeir(t, nil, "tu", "set", "4", b)
	stop()

	addr, url, stop = serve()
	defer stop()
	out := mustWeir(t, nil, "tu", "show", "--brokers="+addr)
	if !regexp.MustCompile(`(?m)^weir.throughput.units\s+4\s+set at runtime$`).MatchString(out) {
		t.Errorf("after restart, tu show:\n%s", out)
	}
	if page := get(t, url); !strings.Contains(page, "weir_throughput_units 4") {
		t.Error("after restart /metrics does not show 4 TUs")
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %s", url, err, resp.Status)
	}
	return string(body)
}
