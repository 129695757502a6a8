package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestGroup runs consume --group and the group commands against weir.
func TestGroup(t *testing.T) {
	b := "--brokers=" + startBroker(t)
	mustWeir(t, nil, "topic", "create", "g-topic", "--partitions", "2", b)
	mustWeir(t, strings.NewReader("a\nb\nc\nd\n"), "produce", "g-topic", "--partition", "0", b)

	out := mustWeir(t, nil, "consume", "g-topic", "--group", "readers", "--from", "earliest", "--count", "3", "--format", "value", b)
	if out != "a\nb\nc\n" {
		t.Fatalf("first group consume printed %q, want a b c", out)
	}
	out = mustWeir(t, nil, "group", "describe", "readers", b)
	if !regexp.MustCompile(`(?m)^g-topic\s+0\s+3\s+4\s+1\s`).MatchString(out) || !strings.Contains(out, "total lag: 1") {
		t.Errorf("describe does not show committed 3, end 4, lag 1 on partition 0:\n%s", out)
	}
	out = mustWeir(t, nil, "group", "list", b)
	if !regexp.MustCompile(`(?m)^readers\s`).MatchString(out) {
		t.Errorf("group list does not show readers:\n%s", out)
	}
	// The group resumes after its commit: only d is left.
	out = mustWeir(t, nil, "consume", "g-topic", "--group", "readers", "--exit-at-end", "--format", "value", b)
	if out != "d\n" {
		t.Errorf("resumed group consume printed %q, want d", out)
	}
	mustWeir(t, nil, "group", "delete", "readers", b)
	_, errOut, code := weir(t, nil, "group", "describe", "readers", b)
	if code != 1 || !strings.Contains(errOut, "GROUP_ID_NOT_FOUND") {
		t.Errorf("describe of a deleted group: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = weir(t, nil, "consume", "g-topic", "--group", "x", "--partition", "0", b)
	if code != 2 || !strings.Contains(errOut, "--group and --partition") {
		t.Errorf("--group with --partition: exit %d, stderr %q", code, errOut)
	}
}
