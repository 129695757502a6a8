package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tsLayout is RFC 3339 with milliseconds, as consume prints timestamps.
const tsLayout = "2006-01-02T15:04:05.000Z07:00"

// recordFormat prints one record as one line.
type recordFormat func(w *bufio.Writer, r *kgo.Record)

var recordFormats = map[string]recordFormat{
	"text": func(w *bufio.Writer, r *kgo.Record) {
		fmt.Fprintf(w, "p=%d off=%d ts=%s key=%s value=%s\n",
			r.Partition, r.Offset, r.Timestamp.UTC().Format(tsLayout), r.Key, r.Value)
	},
	"value": func(w *bufio.Writer, r *kgo.Record) {
		w.Write(r.Value)
		w.WriteByte('\n')
	},
	"json": func(w *bufio.Writer, r *kgo.Record) {
		line := struct {
			Partition int32   `json:"partition"`
			Offset    int64   `json:"offset"`
			Timestamp string  `json:"timestamp"`
			Key       *string `json:"key"`
			Value     string  `json:"value"`
		}{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC().Format(tsLayout), Value: string(r.Value)}
		if r.Key != nil {
			k := string(r.Key)
			line.Key = &k
		}
		b, _ := json.Marshal(line) // cannot fail: strings and numbers only
		w.Write(b)
		w.WriteByte('\n')
	},
}

// runConsume prints the records of a topic, one line each.
func runConsume(ctx context.Context, e *env, args []string) error {
	const cmd = "consume"
	fs := e.newFlagSet(cmd, `consume TOPIC [flags]

Prints one line per record. --format text (default):
  p=0 off=12 ts=2026-11-21T10:00:00.123Z key=k value=v
--format value prints only the value; --format json one JSON object per line.
Stops after --count records, at the end of every partition with
--exit-at-end, or on SIGINT/SIGTERM.`)
	cf := e.addClientFlags(fs)
	from := fs.String("from", "latest", "where to start: earliest, latest or an `offset`")
	partition := fs.Int("partition", -1, "read only this `partition` (default: all)")
	count := fs.Int64("count", 0, "stop after `n` records (0: no limit)")
	format := fs.String("format", "text", "output `format`: text, value or json")
	exitAtEnd := fs.Bool("exit-at-end", false, "stop at the end of every partition (as of start)")
	group := fs.String("group", "", "consume as a member of consumer `group` NAME and commit what was printed; --from applies only where the group has no committed offset")
	topic, err := e.parseName(fs, cmd, "topic", args)
	if err != nil {
		return err
	}
	printRecord, ok := recordFormats[*format]
	if !ok {
		return usagef(cmd, "--format must be text, value or json, not %q", *format)
	}
	start, err := parseFrom(*from)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	if *count < 0 {
		return usagef(cmd, "--count must not be negative")
	}
	if *partition < -1 || *partition > 1<<20 {
		return usagef(cmd, "--partition must be a partition number")
	}
	if *group != "" && *partition >= 0 {
		return usagef(cmd, "--group and --partition exclude each other: the group assigns partitions")
	}

	// Look the topic up first: a consumer of an unknown topic would
	// otherwise wait forever.
	adm, err := newAdmin(cf)
	if err != nil {
		return err
	}
	defer adm.Close()
	firsts, ends, offsets, err := startPositions(ctx, adm, topic, int32(*partition), *group, start)
	if err != nil {
		return err
	}

	opts := []kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets})}
	if *group != "" {
		reset := kgo.NewOffset().At(start.offset)
		switch {
		case start.earliest:
			reset = kgo.NewOffset().AtStart()
		case start.latest:
			reset = kgo.NewOffset().AtEnd()
		}
		opts = []kgo.Opt{kgo.ConsumerGroup(*group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(reset), kgo.AutoCommitMarks()}
	}
	cl, err := cf.newClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	// remaining holds, with --exit-at-end, the partitions not yet read to
	// their end offset.
	remaining := map[int32]int64{}
	if *exitAtEnd {
		for p, end := range ends {
			if firsts[p] < end {
				remaining[p] = end
			}
		}
	}
	out := bufio.NewWriterSize(e.stdout, 64<<10)
	began := time.Now()
	var n, nbytes int64
	done := func() bool {
		return (*count > 0 && n >= *count) || (*exitAtEnd && len(remaining) == 0)
	}
	var pollErr error
	for !done() && ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		for _, fe := range fetches.Errors() {
			if ctx.Err() != nil || errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, kgo.ErrClientClosed) {
				continue
			}
			if fe.Topic == "" && *group != "" {
				// franz-go reports group errors (join, sync, commit) as a
				// fetch error without a topic.
				pollErr = &BrokerError{Op: "consume as group", Name: *group, Err: fe.Err}
				break
			}
			pollErr = &BrokerError{Op: fmt.Sprintf("fetch partition %d of", fe.Partition), Name: fe.Topic, Err: fe.Err}
			break
		}
		if pollErr != nil {
			break
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if done() {
				return
			}
			printRecord(out, r)
			if *group != "" {
				cl.MarkCommitRecords(r)
			}
			n++
			nbytes += int64(len(r.Key) + len(r.Value))
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
		if err := out.Flush(); err != nil {
			return fmt.Errorf("weir: write output: %w", err)
		}
	}
	if *group != "" {
		// Commit what was printed, also after a signal.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminTimeout)
		err := cl.CommitMarkedOffsets(cctx)
		cancel()
		if err != nil && pollErr == nil {
			pollErr = &BrokerError{Op: "commit offsets of group", Name: *group, Err: err}
		}
	}
	elapsed := time.Since(began)
	fmt.Fprintf(e.stderr, "consumed %d records (%s) in %s, %s\n",
		n, formatBytes(nbytes), elapsed.Round(time.Millisecond), rateText(n, nbytes, elapsed))
	return pollErr
}

// startAt is where consume starts: earliest, latest, or an exact offset.
type startAt struct {
	earliest, latest bool
	offset           int64
}

func parseFrom(s string) (startAt, error) {
	switch s {
	case "earliest", "beginning", "start":
		return startAt{earliest: true}, nil
	case "latest", "end":
		return startAt{latest: true}, nil
	}
	off, err := strconv.ParseInt(s, 10, 64)
	if err != nil || off < 0 {
		return startAt{}, fmt.Errorf("--from must be earliest, latest or an offset >= 0, not %q", s)
	}
	return startAt{offset: off}, nil
}

// startPositions returns, for the partitions to read, the first offset to
// read (a group's committed offset if it has one) and the end offset as of
// now, and the kgo offsets to start from (unused with a group).
func startPositions(ctx context.Context, adm *kadm.Client, topic string, only int32, group string, start startAt) (firsts, ends map[int32]int64, offsets map[int32]kgo.Offset, err error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	detail, err := describeTopic(ctx, adm, topic)
	if err != nil {
		return nil, nil, nil, err
	}
	if only >= 0 {
		if _, ok := detail.Partitions[only]; !ok {
			return nil, nil, nil, &BrokerError{Op: fmt.Sprintf("read partition %d of", only), Name: topic, Err: kerr.UnknownTopicOrPartition}
		}
	}
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, nil, nil, &BrokerError{Op: "list end offsets of", Name: topic, Err: err}
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, nil, nil, &BrokerError{Op: "list start offsets of", Name: topic, Err: err}
	}
	var committed kadm.OffsetResponses
	if group != "" {
		// A group that does not exist yet has no commits.
		if committed, err = adm.FetchOffsets(ctx, group); err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			return nil, nil, nil, &BrokerError{Op: "fetch committed offsets of group", Name: group, Err: err}
		}
	}
	firsts = map[int32]int64{}
	ends = map[int32]int64{}
	offsets = map[int32]kgo.Offset{}
	for p := range detail.Partitions {
		if only >= 0 && p != only {
			continue
		}
		o, ok := listed.Lookup(topic, p)
		if !ok || o.Err != nil {
			var err error = kerr.UnknownTopicOrPartition
			if ok {
				err = o.Err
			}
			return nil, nil, nil, &BrokerError{Op: fmt.Sprintf("list end offset of partition %d of", p), Name: topic, Err: err}
		}
		ends[p] = o.Offset
		first := o.Offset // latest: the end offset as listed, so records produced from now on are printed
		switch {
		case start.earliest:
			first = 0
			if so, ok := starts.Lookup(topic, p); ok && so.Err == nil {
				first = so.Offset
			}
		case !start.latest:
			first = start.offset
		}
		if c, ok := committed.Lookup(topic, p); ok && c.Err == nil && c.At >= 0 {
			first = c.At
		}
		firsts[p] = first
		if start.earliest {
			offsets[p] = kgo.NewOffset().AtStart()
		} else {
			offsets[p] = kgo.NewOffset().At(first)
		}
	}
	return firsts, ends, offsets, nil
}
