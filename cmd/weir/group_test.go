package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/broker"
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

// TestGroupMembersResetCreate checks what describe shows of a live member,
// reset-offsets (plan by default, --execute only for a group without
// members) and create.
func TestGroupMembersResetCreate(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr
	mustWeir(t, nil, "topic", "create", "r-topic", "--partitions", "2", b)
	mustWeir(t, strings.NewReader("a\nb\nc\nd\n"), "produce", "r-topic", "--partition", "0", b)
	mustWeir(t, nil, "consume", "r-topic", "--group", "resetters", "--from", "earliest", "--count", "3", "--format", "value", b)

	// A live member, with both partitions.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("resetters"), kgo.ConsumeTopics("r-topic"),
		kgo.ClientID("live-member"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out string
	deadline := time.Now().Add(20 * time.Second)
	for {
		out = mustWeir(t, nil, "group", "describe", "resetters", b)
		if strings.Contains(out, "r-topic:0,1") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !regexp.MustCompile(`(?m)^\S+\s+live-member\s+/127\.0\.0\.1\s+r-topic:0,1$`).MatchString(out) {
		t.Fatalf("describe does not show the member with client id, host and partitions:\n%s", out)
	}
	plan := mustWeir(t, nil, "group", "reset-offsets", "resetters", "--topic", "r-topic", "--to-earliest", b)
	if !regexp.MustCompile(`(?m)^r-topic\s+0\s+3\s+0$`).MatchString(plan) || !strings.Contains(plan, "dry run") {
		t.Errorf("reset plan:\n%s", plan)
	}
	_, errOut, code := weir(t, nil, "group", "reset-offsets", "resetters", "--topic", "r-topic", "--to-earliest", "--execute", b)
	if code != 1 || !strings.Contains(errOut, "active members") {
		t.Errorf("reset of an active group: exit %d, stderr %q", code, errOut)
	}
	cl.Close()

	mustWeir(t, nil, "group", "reset-offsets", "resetters", "--topic", "r-topic:0", "--to-offset", "1", "--execute", b)
	out = mustWeir(t, nil, "group", "describe", "resetters", b)
	if !regexp.MustCompile(`(?m)^r-topic\s+0\s+1\s+4\s+3\s`).MatchString(out) {
		t.Errorf("after reset to 1, describe:\n%s", out)
	}
	mustWeir(t, nil, "group", "reset-offsets", "resetters", "--all-topics", "--to-latest", "--execute", b)
	out = mustWeir(t, nil, "consume", "r-topic", "--group", "resetters", "--exit-at-end", "--format", "value", b)
	if out != "" {
		t.Errorf("after reset to latest the group read %q", out)
	}
	before := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	mustWeir(t, nil, "group", "reset-offsets", "resetters", "--topic", "r-topic", "--to-datetime", before, "--execute", b)
	out = mustWeir(t, nil, "consume", "r-topic", "--group", "resetters", "--exit-at-end", "--format", "value", b)
	if out != "a\nb\nc\nd\n" {
		t.Errorf("after reset to an hour ago the group read %q, want everything", out)
	}

	if out := mustWeir(t, nil, "group", "create", "made", b); !strings.Contains(out, "created group made") {
		t.Errorf("create printed %q", out)
	}
	if out := mustWeir(t, nil, "group", "list", b); !regexp.MustCompile(`(?m)^made\s+Empty\s`).MatchString(out) {
		t.Errorf("group list after create:\n%s", out)
	}
}

// TestGroupRequireCreate: with --require-group-create, consuming as a group
// that was not created fails at once with a message naming the fix.
func TestGroupRequireCreate(t *testing.T) {
	b := "--brokers=" + startBrokerWith(t, func(c *broker.Config) { c.RequireGroupCreate = true })
	mustWeir(t, nil, "topic", "create", "guarded", b)
	mustWeir(t, strings.NewReader("a\n"), "produce", "guarded", b)
	_, errOut, code := weir(t, nil, "consume", "guarded", "--group", "typo", "--from", "earliest", "--count", "1", b)
	if code != 1 || !strings.Contains(errOut, `consume as group "typo"`) || !strings.Contains(errOut, "GROUP_AUTHORIZATION_FAILED") ||
		!strings.Contains(errOut, "weir group create") {
		t.Errorf("consume with an uncreated group: exit %d, stderr %q", code, errOut)
	}
	mustWeir(t, nil, "group", "create", "typo", b)
	if out := mustWeir(t, nil, "consume", "guarded", "--group", "typo", "--from", "earliest", "--count", "1", "--format", "value", b); out != "a\n" {
		t.Errorf("consume after create printed %q", out)
	}
}
