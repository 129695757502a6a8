package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const topicSynopsis = `topic <create|list|describe|delete> [flags]   ("hub" is an alias of "topic")

  weir topic create NAME --partitions N [--config key=value]... [--replication-factor N]
  weir topic list
  weir topic describe NAME
  weir topic delete NAME`

// topicSubcommands are the subcommands of topic, in the order usage names them.
var topicSubcommands = []subcommand{
	{"create", "", runTopicCreate},
	{"list", "ls", runTopicList},
	{"describe", "", runTopicDescribe},
	{"delete", "rm", runTopicDelete},
}

// runTopic dispatches the topic subcommands.
func runTopic(ctx context.Context, e *env, args []string) error {
	return e.runSubcommand(ctx, "topic", topicSynopsis, topicSubcommands, args)
}

// configFlag collects repeated --config key=value flags.
type configFlag map[string]*string

func (c configFlag) String() string {
	keys := make([]string, 0, len(c))
	for k, v := range c {
		keys = append(keys, k+"="+*v)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

func (c configFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	c[k] = &v
	return nil
}

func runTopicCreate(ctx context.Context, e *env, args []string) error {
	const cmd = "topic create"
	fs := e.newFlagSet(cmd, "topic create NAME --partitions N [--config key=value]... [--replication-factor N]")
	cf := e.addClientFlags(fs)
	partitions := fs.Int("partitions", 1, "number of `partitions`")
	rf := fs.Int("replication-factor", 1, "replication `factor` (weir keeps one copy; >1 is accepted as 1 unless the broker is strict)")
	configs := configFlag{}
	fs.Var(configs, "config", "topic config `key=value` (repeatable), e.g. retention.ms=3600000")
	name, err := e.parseName(fs, cmd, "topic", args)
	if err != nil {
		return err
	}
	if *partitions < 1 || *partitions > 1<<20 {
		return usagef(cmd, "--partitions must be between 1 and %d", 1<<20)
	}
	if *rf < 1 || *rf > 1<<15-1 {
		return usagef(cmd, "--replication-factor must be between 1 and %d", 1<<15-1)
	}
	adm, ctx, done, err := openAdmin(ctx, cf)
	if err != nil {
		return err
	}
	defer done()
	resp, err := adm.CreateTopic(ctx, int32(*partitions), int16(*rf), configs, name)
	if err != nil {
		return &BrokerError{Op: "create topic", Name: name, Err: err, Message: resp.ErrMessage}
	}
	fmt.Fprintf(e.stdout, "created topic %s with %d partitions\n", name, *partitions)
	return nil
}

func runTopicList(ctx context.Context, e *env, args []string) error {
	return e.runAdmin(ctx, "topic list", "", args, func(ctx context.Context, adm *kadm.Client, _ string) error {
		topics, err := adm.ListTopics(ctx)
		if err != nil {
			return fmt.Errorf("weir: list topics: %w", err)
		}
		tw := newTable(e.stdout)
		fmt.Fprintln(tw, "TOPIC\tPARTITIONS")
		for _, t := range topics.Sorted() {
			fmt.Fprintf(tw, "%s\t%d\n", t.Topic, len(t.Partitions))
		}
		return tw.Flush()
	})
}

func runTopicDescribe(ctx context.Context, e *env, args []string) error {
	return e.runAdmin(ctx, "topic describe", "topic", args, func(ctx context.Context, adm *kadm.Client, name string) error {
		detail, err := describeTopic(ctx, adm, name)
		if err != nil {
			return err
		}
		starts, err := adm.ListStartOffsets(ctx, name)
		if err != nil {
			return &BrokerError{Op: "list start offsets of", Name: name, Err: err}
		}
		ends, err := adm.ListEndOffsets(ctx, name)
		if err != nil {
			return &BrokerError{Op: "list end offsets of", Name: name, Err: err}
		}
		var overrides []kadm.Config
		rcs, err := adm.DescribeTopicConfigs(ctx, name)
		if err == nil {
			var rc kadm.ResourceConfig
			if rc, err = rcs.On(name, nil); err == nil {
				err = rc.Err
				for _, c := range rc.Configs {
					if c.Source == kmsg.ConfigSourceDynamicTopicConfig {
						overrides = append(overrides, c)
					}
				}
			}
		}
		if err != nil {
			return &BrokerError{Op: "describe configs of", Name: name, Err: err}
		}

		fmt.Fprintf(e.stdout, "topic: %s\npartitions: %d\n", name, len(detail.Partitions))
		if detail.ID != (kadm.TopicID{}) {
			fmt.Fprintf(e.stdout, "id: %s\n", detail.ID)
		}
		tw := newTable(e.stdout)
		fmt.Fprintln(tw, "PARTITION\tLEADER\tEARLIEST\tLATEST\tERROR")
		for _, p := range detail.Partitions.Sorted() {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", p.Partition, p.Leader,
				offsetText(starts, name, p.Partition), offsetText(ends, name, p.Partition), errText(p.Err))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		slices.SortFunc(overrides, func(a, b kadm.Config) int { return strings.Compare(a.Key, b.Key) })
		if len(overrides) == 0 {
			fmt.Fprintln(e.stdout, "configs: (all defaults)")
			return nil
		}
		fmt.Fprintln(e.stdout, "configs:")
		for _, c := range overrides {
			v := c.MaybeValue()
			if c.Sensitive {
				v = "(sensitive)"
			}
			fmt.Fprintf(e.stdout, "  %s=%s\n", c.Key, v)
		}
		return nil
	})
}

// describeTopic returns the metadata of one topic, or a *BrokerError
// wrapping ErrUnknownTopic.
func describeTopic(ctx context.Context, adm *kadm.Client, name string) (kadm.TopicDetail, error) {
	topics, err := adm.ListTopics(ctx, name)
	if err != nil {
		return kadm.TopicDetail{}, &BrokerError{Op: "describe topic", Name: name, Err: err}
	}
	detail, ok := topics[name]
	if !ok {
		return kadm.TopicDetail{}, &BrokerError{Op: "describe topic", Name: name, Err: kerr.UnknownTopicOrPartition}
	}
	if detail.Err != nil {
		return kadm.TopicDetail{}, &BrokerError{Op: "describe topic", Name: name, Err: detail.Err}
	}
	return detail, nil
}

func offsetText(l kadm.ListedOffsets, topic string, p int32) string {
	o, ok := l.Lookup(topic, p)
	switch {
	case !ok:
		return "?"
	case o.Err != nil:
		return "error"
	}
	return fmt.Sprint(o.Offset)
}

func errText(err error) string {
	if err == nil {
		return "-"
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Message
	}
	return err.Error()
}

func runTopicDelete(ctx context.Context, e *env, args []string) error {
	return e.runAdmin(ctx, "topic delete", "topic", args, func(ctx context.Context, adm *kadm.Client, name string) error {
		resp, err := adm.DeleteTopic(ctx, name)
		if err != nil {
			return &BrokerError{Op: "delete topic", Name: name, Err: err, Message: resp.ErrMessage}
		}
		fmt.Fprintf(e.stdout, "deleted topic %s\n", name)
		return nil
	})
}
