package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

const groupSynopsis = `group <list|describe|create|delete|reset-offsets> [flags]

  weir group list
  weir group describe NAME    members (client id, host, owned partitions), and per partition
                              the committed offset, end offset and lag
  weir group create NAME      create a group ahead of use (needed when the broker runs with
                              --require-group-create)
  weir group delete NAME      only an empty group (no members) can be deleted
  weir group reset-offsets NAME (--topic T[:P,...]... | --all-topics)
        (--to-earliest | --to-latest | --to-offset N | --to-datetime 2006-01-02T15:04:05Z)
        [--execute]           prints the plan; --execute commits it. The group must have no
                              members, as with kafka-consumer-groups.

Consume as a group member with 'weir consume TOPIC --group NAME'.`

// groupSubcommands are the subcommands of group, in the order usage names them.
var groupSubcommands = []subcommand{
	{"list", "ls", runGroupList},
	{"describe", "", runGroupDescribe},
	{"create", "", runGroupCreate},
	{"delete", "rm", runGroupDelete},
	{"reset-offsets", "", runGroupResetOffsets},
}

// runGroup dispatches the consumer group subcommands.
func runGroup(ctx context.Context, e *env, args []string) error {
	return e.runSubcommand(ctx, "group", groupSynopsis, groupSubcommands, args)
}

func runGroupList(ctx context.Context, e *env, args []string) error {
	return e.runAdmin(ctx, "group list", "", args, func(ctx context.Context, adm *kadm.Client, _ string) error {
		groups, err := adm.ListGroups(ctx)
		if err != nil {
			return fmt.Errorf("weir: list groups: %w", err)
		}
		tw := newTable(e.stdout)
		fmt.Fprintln(tw, "GROUP\tSTATE\tPROTOCOL-TYPE")
		for _, g := range groups.Sorted() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Group, dash(g.State), dash(g.ProtocolType))
		}
		return tw.Flush()
	})
}

func runGroupDescribe(ctx context.Context, e *env, args []string) error {
	return e.runAdmin(ctx, "group describe", "group", args, func(ctx context.Context, adm *kadm.Client, name string) error {
		lags, err := adm.Lag(ctx, name)
		if err != nil {
			return &BrokerError{Op: "describe group", Name: name, Err: err}
		}
		l, ok := lags[name]
		if !ok {
			return &BrokerError{Op: "describe group", Name: name, Err: kerr.GroupIDNotFound}
		}
		if err := l.Error(); err != nil {
			return &BrokerError{Op: "describe group", Name: name, Err: err}
		}
		if l.State == "Dead" {
			return &BrokerError{Op: "describe group", Name: name, Err: kerr.GroupIDNotFound}
		}
		fmt.Fprintf(e.stdout, "group: %s\nstate: %s\nprotocol: %s\nmembers: %d\n", name, dash(l.State), dash(l.Protocol), len(l.Members))
		tw := newTable(e.stdout)
		if len(l.Members) > 0 {
			fmt.Fprintln(tw, "MEMBER\tCLIENT-ID\tHOST\tPARTITIONS")
			for _, m := range l.Members {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.MemberID, dash(m.ClientID), dash(m.ClientHost), ownedPartitions(m))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER")
		for _, p := range l.Lag.Sorted() {
			member := "-"
			if p.Member != nil {
				member = p.Member.MemberID
			}
			lag := fmt.Sprint(p.Lag)
			if p.Err != nil {
				lag = errText(p.Err)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", p.Topic, p.Partition, p.Commit.At, p.End.Offset, lag, member)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "total lag: %d\n", l.Lag.Total())
		return nil
	})
}

func runGroupDelete(ctx context.Context, e *env, args []string) error {
	return e.runAdmin(ctx, "group delete", "group", args, func(ctx context.Context, adm *kadm.Client, name string) error {
		if _, err := adm.DeleteGroup(ctx, name); err != nil {
			return &BrokerError{Op: "delete group", Name: name, Err: err}
		}
		fmt.Fprintf(e.stdout, "deleted group %s\n", name)
		return nil
	})
}

// ownedPartitions formats a member's assignment as "topic:0,1 other:3",
// or "-" when it has none (or is not a consumer protocol member).
func ownedPartitions(m kadm.DescribedGroupMember) string {
	a, ok := m.Assigned.AsConsumer()
	if !ok || a == nil {
		return "-"
	}
	var parts []string
	for _, t := range a.Topics {
		ps := slices.Clone(t.Partitions)
		slices.Sort(ps)
		strs := make([]string, len(ps))
		for i, p := range ps {
			strs[i] = strconv.Itoa(int(p))
		}
		parts = append(parts, t.Topic+":"+strings.Join(strs, ","))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
