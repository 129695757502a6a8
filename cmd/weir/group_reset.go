package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrGroupActive is returned by reset-offsets for a group with members.
var ErrGroupActive = errors.New("weir: group has active members")

// runGroupCreate creates a group with an IncrementalAlterConfigs on the
// GROUP resource (type 32), which weir answers by creating the group
// durably.
func runGroupCreate(ctx context.Context, e *env, args []string) error {
	const cmd = "group create"
	fs := e.newFlagSet(cmd, "group create NAME [flags]")
	cf := e.addClientFlags(fs)
	name, err := e.parseName(fs, cmd, "group", args)
	if err != nil {
		return err
	}
	cl, err := cf.newClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = 32, name // GROUP
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return &BrokerError{Op: "create group", Name: name, Err: err}
	}
	if len(resp.Resources) != 1 {
		return &BrokerError{Op: "create group", Name: name, Err: errors.New("weir: malformed response")}
	}
	if r := resp.Resources[0]; r.ErrorCode != 0 {
		be := &BrokerError{Op: "create group", Name: name, Err: kerr.ErrorForCode(r.ErrorCode)}
		if r.ErrorMessage != nil {
			be.Message = *r.ErrorMessage
		}
		return be
	}
	fmt.Fprintf(e.stdout, "created group %s\n", name)
	return nil
}

// topicSpecFlag collects repeated --topic NAME or NAME:P,P,... flags.
type topicSpecFlag map[string][]int32

func (f topicSpecFlag) String() string { return fmt.Sprint(map[string][]int32(f)) }

func (f topicSpecFlag) Set(s string) error {
	name, parts, hasParts := strings.Cut(s, ":")
	if name == "" {
		return errors.New("empty topic name")
	}
	if !hasParts {
		f[name] = nil
		return nil
	}
	for _, p := range strings.Split(parts, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(p), 10, 32)
		if err != nil || n < 0 {
			return fmt.Errorf("bad partition %q in %q", p, s)
		}
		f[name] = append(f[name], int32(n))
	}
	return nil
}

// runGroupResetOffsets follows kafka-consumer-groups --reset-offsets: it
// prints the new offsets, and commits them only with --execute, and only
// while the group has no members.
func runGroupResetOffsets(ctx context.Context, e *env, args []string) error {
	const cmd = "group reset-offsets"
	fs := e.newFlagSet(cmd, "group reset-offsets NAME (--topic T[:P,...]... | --all-topics) (--to-earliest | --to-latest | --to-offset N | --to-datetime TIME) [--execute]")
	cf := e.addClientFlags(fs)
	topics := topicSpecFlag{}
	fs.Var(topics, "topic", "`topic` or topic:partition,partition to reset (repeatable)")
	allTopics := fs.Bool("all-topics", false, "reset every topic the group has committed offsets for")
	toEarliest := fs.Bool("to-earliest", false, "reset to the log start offset")
	toLatest := fs.Bool("to-latest", false, "reset to the log end offset")
	toOffset := fs.Int64("to-offset", -1, "reset to `offset` (clamped to the log's start and end)")
	toDatetime := fs.String("to-datetime", "", "reset to the first offset at or after `time` (RFC 3339, e.g. 2026-01-02T15:04:05Z)")
	execute := fs.Bool("execute", false, "commit the new offsets (without it, only print the plan)")
	name, err := e.parseName(fs, cmd, "group", args)
	if err != nil {
		return err
	}
	modes := 0
	for _, set := range []bool{*toEarliest, *toLatest, *toOffset >= 0, *toDatetime != ""} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return usagef(cmd, "want exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime")
	}
	if (len(topics) == 0) == !*allTopics {
		return usagef(cmd, "want --topic (repeatable) or --all-topics")
	}
	var at time.Time
	if *toDatetime != "" {
		if at, err = time.Parse(time.RFC3339, *toDatetime); err != nil {
			return usagef(cmd, "--to-datetime: %v", err)
		}
	}
	adm, ctx, done, err := openAdmin(ctx, cf)
	if err != nil {
		return err
	}
	defer done()

	described, err := adm.DescribeGroups(ctx, name)
	if err != nil {
		return &BrokerError{Op: "describe group", Name: name, Err: err}
	}
	if g, ok := described[name]; ok && g.Err == nil && len(g.Members) > 0 && *execute {
		return fmt.Errorf("%w: %s is %s with %d member(s); offsets can be reset only while it has none (stop its consumers first)",
			ErrGroupActive, name, g.State, len(g.Members))
	}
	current, err := adm.FetchOffsets(ctx, name)
	if err == nil {
		err = current.Error()
	}
	if err != nil {
		return &BrokerError{Op: "fetch offsets", Name: name, Err: err}
	}
	if *allTopics {
		current.Each(func(o kadm.OffsetResponse) {
			if _, ok := topics[o.Topic]; !ok {
				topics[o.Topic] = nil
			}
		})
		if len(topics) == 0 {
			return fmt.Errorf("weir: group %s has no committed offsets; name topics with --topic", name)
		}
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	slices.Sort(names)
	starts, err := adm.ListStartOffsets(ctx, names...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return &BrokerError{Op: "list offsets", Name: strings.Join(names, ","), Err: err}
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return &BrokerError{Op: "list offsets", Name: strings.Join(names, ","), Err: err}
	}
	var byTime kadm.ListedOffsets
	if !at.IsZero() {
		if byTime, err = adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), names...); err == nil {
			err = byTime.Error()
		}
		if err != nil {
			return &BrokerError{Op: "list offsets", Name: strings.Join(names, ","), Err: err}
		}
	}

	plan := kadm.Offsets{}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCURRENT\tNEW")
	for _, t := range names {
		parts := topics[t]
		if parts == nil {
			for p := range ends[t] {
				parts = append(parts, p)
			}
		}
		slices.Sort(parts)
		for _, p := range parts {
			start, okS := starts.Lookup(t, p)
			end, okE := ends.Lookup(t, p)
			if !okS || !okE {
				return &BrokerError{Op: "reset offsets", Name: fmt.Sprintf("%s/%d", t, p), Err: kerr.UnknownTopicOrPartition}
			}
			var target int64
			switch {
			case *toEarliest:
				target = start.Offset
			case *toLatest:
				target = end.Offset
			case *toOffset >= 0:
				target = min(max(*toOffset, start.Offset), end.Offset)
			default:
				target = end.Offset
				if o, ok := byTime.Lookup(t, p); ok && o.Offset >= 0 {
					target = o.Offset
				}
			}
			cur := "-"
			if o, ok := current.Lookup(t, p); ok && o.At >= 0 {
				cur = strconv.FormatInt(o.At, 10)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", t, p, cur, target)
			plan.Add(kadm.Offset{Topic: t, Partition: p, At: target, LeaderEpoch: -1})
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !*execute {
		fmt.Fprintln(e.stdout, "dry run: nothing committed; add --execute to apply")
		return nil
	}
	resp, err := adm.CommitOffsets(ctx, name, plan)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return &BrokerError{Op: "reset offsets", Name: name, Err: err}
	}
	fmt.Fprintf(e.stdout, "offsets of group %s reset\n", name)
	return nil
}
