package main

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/testcert"
)

// weirEnv runs the CLI in-process with the environment vars.
func weirEnv(t *testing.T, ctx context.Context, vars map[string]string, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var stdout, stderr syncBuffer
	e := &env{stdin: stdin, stdout: &stdout, stderr: &stderr, getenv: func(k string) string { return vars[k] }}
	code := e.run(ctx, args)
	return stdout.String(), stderr.String(), code
}

// weir serve with TLS, a PLAIN user and a SAS key (from the environment);
// the client commands log in with --sasl-user, with --connection-string,
// and with $WEIR_CONNECTION_STRING.
func TestServeTLSSASL(t *testing.T) {
	certs := testcert.New(t)
	const key = "c2VydmUta2V5LWZvci10ZXN0cw=="
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr,
			getenv: func(k string) string { return map[string]string{"WEIR_SAS_KEY": "Root=" + key}[k] }}
		done <- e.run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
			"--tls-cert", certs.CertFile, "--tls-key", certs.KeyFile, "--sasl-plain-user", "alice=alice-pw"})
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d: %s", code, stderr.String())
		}
	}()
	addrRe := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)
	var addr string
	for addr == "" {
		select {
		case code := <-done:
			done <- code
			t.Fatalf("serve exited %d: %s", code, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if m := addrRe.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
	}
	if !strings.Contains(stderr.String(), "tls=true sasl=true") {
		t.Errorf("start log does not say TLS and SASL are on: %s", stderr.String())
	}

	run := func(vars map[string]string, stdin string, args ...string) string {
		t.Helper()
		out, errOut, code := weirEnv(t, ctx, vars, strings.NewReader(stdin), args...)
		if code != 0 {
			t.Fatalf("weir %s: exit %d\nstderr: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	ca := "--tls-ca=" + certs.CAFile
	connString := "Endpoint=sb://" + addr + "/;SharedAccessKeyName=Root;SharedAccessKey=" + key
	run(nil, "", "topic", "create", "secure", "--partitions", "1", "--brokers", addr, ca, "--sasl-user", "alice", "--sasl-password", "alice-pw")
	run(map[string]string{"WEIR_SASL_PASSWORD": "alice-pw"}, "k1=one\n", "produce", "secure", "--key-separator", "=", "--brokers", addr, ca, "--sasl-user", "alice")
	run(nil, "k2=two\n", "produce", "secure", "--key-separator", "=", ca, "--connection-string", connString)
	out := run(map[string]string{"WEIR_CONNECTION_STRING": connString}, "", "consume", "secure", "--from", "earliest", "--exit-at-end", "--format", "value", ca)
	if out != "one\ntwo\n" {
		t.Errorf("consumed %q, want one, two", out)
	}
	// weir bench measures an external broker that needs a login.
	bench := run(nil, "", "bench", "--skip-kfake", "--records", "2000", "--duration", "100ms", "--partitions", "2", ca, "--connection-string", connString)
	if m := regexp.MustCompile(`latency acked records\s+(\d+)`).FindStringSubmatch(bench); m == nil || m[1] == "0" {
		t.Errorf("bench over TLS with a connection-string login acked nothing:\n%s", bench)
	}

	_, errOut, code := weirEnv(t, ctx, nil, nil, "topic", "list", "--brokers", addr, ca, "--sasl-user", "alice", "--sasl-password", "wrong-pw-42")
	if code == 0 || !strings.Contains(errOut, "SASL_AUTHENTICATION_FAILED") || strings.Contains(errOut, "wrong-pw-42") {
		t.Errorf("wrong password: exit %d, stderr %q; want a failure naming SASL_AUTHENTICATION_FAILED, without the password", code, errOut)
	}
	_, errOut, code = weirEnv(t, ctx, nil, nil, "topic", "list", ca, "--connection-string", "Endpoint=sb://"+addr+"/;SharedAccessKey=secret-key-42")
	if code == 0 || !strings.Contains(errOut, "missing SharedAccessKeyName") || strings.Contains(errOut, "secret-key-42") {
		t.Errorf("bad connection string: exit %d, stderr %q", code, errOut)
	}
}

func TestServeAuthFlagErrors(t *testing.T) {
	certs := testcert.New(t)
	for _, tc := range []struct {
		args   []string
		want   string
		secret string
	}{
		{[]string{"--tls-cert", certs.CertFile}, "--tls-cert and --tls-key go together", ""},
		{[]string{"--tls-cert", certs.KeyFile, "--tls-key", certs.KeyFile}, "--tls-cert/--tls-key", ""},
		{[]string{"--sasl-plain-user", "only-a-secret-42"}, "want NAME=PASSWORD", "only-a-secret-42"},
		{[]string{"--sas-key", "=key-secret-42"}, "want NAME=KEY", "key-secret-42"},
		{[]string{"--sasl-plain-user", "$ConnectionString=pw-secret-42"}, "SASKeys", "pw-secret-42"},
	} {
		args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, tc.args...)
		_, errOut, code := weir(t, nil, args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("serve %v: exit %d, stderr %q; want an error with %q", tc.args, code, errOut, tc.want)
		}
		if tc.secret != "" && strings.Contains(errOut, tc.secret) {
			t.Errorf("serve %v: stderr echoes the secret: %q", tc.args, errOut)
		}
	}
}
