package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const tuSynopsis = `tu <show|set> [flags]   throughput units (TUs) of the broker

  weir tu show
  weir tu set UNITS                        broker-wide TUs (0 = unlimited)
  weir tu set --topic NAME UNITS           cap one topic (0 = no cap)
  weir tu set [UNITS] --auto-inflate-max-units N [--auto-inflate-window 10s]
              [--auto-inflate-scale-down] [--auto-inflate-quiet-period 10m]
  weir tu set --auto-inflate=false         turn auto-inflate off

1 TU allows 1 MiB/s or 1000 events/s in, and 2 MiB/s or 4096 events/s out.
Changes apply at once and are kept across broker restarts. They are the
broker's dynamic configs weir.throughput.units, weir.auto.inflate.* and
weir.topic.throughput.units.<topic>, so any Kafka admin tool can set them too.`

// tuSubcommands are the subcommands of tu.
var tuSubcommands = []subcommand{
	{"show", "", runTUShow},
	{"set", "", runTUSet},
}

// runTU dispatches the tu subcommands.
func runTU(ctx context.Context, e *env, args []string) error {
	return e.runSubcommand(ctx, "tu", tuSynopsis, tuSubcommands, args)
}

func runTUShow(ctx context.Context, e *env, args []string) error {
	return e.runAdmin(ctx, "tu show", "", args, func(ctx context.Context, adm *kadm.Client, _ string) error {
		return showTU(ctx, e, adm)
	})
}

// showTU prints the broker's throughput settings.
func showTU(ctx context.Context, e *env, adm *kadm.Client) error {
	rcs, err := adm.DescribeBrokerConfigs(ctx)
	if err == nil && len(rcs) > 0 && rcs[0].Err != nil {
		err = rcs[0].Err
	}
	if err != nil {
		return &BrokerError{Op: "show", Name: "throughput units", Err: err}
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "SETTING\tVALUE\tSOURCE")
	found := false
	for _, c := range rcs[0].Configs {
		if !strings.HasPrefix(c.Key, "weir.") || c.Value == nil {
			continue
		}
		found = true
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Key, *c.Value, configSourceName(c.Source))
	}
	if !found {
		return errors.New("weir: the broker has no throughput-unit settings (not a weir broker?)")
	}
	return tw.Flush()
}

func configSourceName(s kmsg.ConfigSource) string {
	switch s {
	case kmsg.ConfigSourceDynamicBrokerConfig:
		return "set at runtime"
	case kmsg.ConfigSourceStaticBrokerConfig:
		return "serve flag"
	}
	return "default"
}

func runTUSet(ctx context.Context, e *env, args []string) error {
	const cmd = "tu set"
	fs := e.newFlagSet(cmd, "tu set [UNITS] [--topic NAME] [--auto-inflate-max-units N] [flags]")
	cf := e.addClientFlags(fs)
	topic := fs.String("topic", "", "set the cap of this `topic` instead of the broker-wide TUs")
	autoInflate := fs.Bool("auto-inflate", false, "turn auto-inflate on or off (--auto-inflate-max-units turns it on)")
	maxUnits := fs.Int("auto-inflate-max-units", 0, "auto-inflate up to this many `units`")
	window := fs.Duration("auto-inflate-window", 0, "how long throttling must persist before auto-inflate adds a TU")
	scaleDown := fs.Bool("auto-inflate-scale-down", false, "let auto-inflate lower TUs after a quiet period")
	quiet := fs.Duration("auto-inflate-quiet-period", 0, "quiet period before a scale-down")
	pos, err := e.parseFlags(fs, cmd, args)
	if err != nil {
		return err
	}
	set := map[string]string{}
	// Visit goes in name order: an explicit --auto-inflate comes before
	// --auto-inflate-max-units, which implies true otherwise.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "auto-inflate":
			set["weir.auto.inflate.enabled"] = strconv.FormatBool(*autoInflate)
		case "auto-inflate-max-units":
			set["weir.auto.inflate.max.units"] = strconv.Itoa(*maxUnits)
			if _, ok := set["weir.auto.inflate.enabled"]; !ok {
				set["weir.auto.inflate.enabled"] = "true"
			}
		case "auto-inflate-window":
			set["weir.auto.inflate.window.ms"] = strconv.FormatInt(window.Milliseconds(), 10)
		case "auto-inflate-scale-down":
			set["weir.auto.inflate.scale.down.enabled"] = strconv.FormatBool(*scaleDown)
		case "auto-inflate-quiet-period":
			set["weir.auto.inflate.quiet.period.ms"] = strconv.FormatInt(quiet.Milliseconds(), 10)
		}
	})
	switch {
	case len(pos) > 1:
		return usagef(cmd, "want at most one UNITS argument, got %q", pos)
	case len(pos) == 1:
		// The broker validates the number, so that bad values get its message.
		key := "weir.throughput.units"
		if *topic != "" {
			key = "weir.topic.throughput.units." + *topic
		}
		set[key] = pos[0]
	case *topic != "":
		return usagef(cmd, "--topic needs the topic's UNITS")
	}
	if len(set) == 0 {
		return usagef(cmd, "nothing to set: give UNITS or an --auto-inflate flag (see 'weir tu -h')")
	}
	adm, ctx, done, err := openAdmin(ctx, cf)
	if err != nil {
		return err
	}
	defer done()
	var alters []kadm.AlterConfig
	for k, v := range set {
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
	}
	rs, err := adm.AlterBrokerConfigs(ctx, alters)
	if err == nil && len(rs) > 0 && rs[0].Err != nil {
		return &BrokerError{Op: "set", Name: "throughput units", Err: rs[0].Err, Message: rs[0].ErrMessage}
	}
	if err != nil {
		return &BrokerError{Op: "set", Name: "throughput units", Err: err}
	}
	return showTU(ctx, e, adm)
}
