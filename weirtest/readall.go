package weirtest

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadAll reads every partition of topic, from the broker at addr, from
// the start up to the end offsets the broker reports when it is called,
// and returns each partition's records in offset order (none for a
// partition whose records were all deleted). It fails the test
// on a fetch error, or if ctx ends first.
//
// opts are more client options, such as kgo.DialTLSConfig and kgo.SASL
// for a broker that requires them.
//
// It is the way to check what a test stored:
//
//	recs := weirtest.ReadAll(ctx, t, b.Addr(), "orders")
//	if len(recs[0]) != 3 { ... }
func ReadAll(ctx context.Context, tb testing.TB, addr, topic string, opts ...kgo.Opt) map[int32][]*kgo.Record {
	tb.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		tb.Fatalf("weirtest: read %s: %v", topic, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		tb.Fatalf("weirtest: read %s: list end offsets: %v", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		tb.Fatalf("weirtest: read %s: list start offsets: %v", topic, err)
	}
	left := map[int32]int64{} // partition -> end offset not yet reached
	ends.Each(func(o kadm.ListedOffset) {
		// Nothing to read where retention or DeleteRecords removed
		// every record (the start offset is at the end).
		if start, ok := starts.Lookup(topic, o.Partition); o.Offset > 0 && (!ok || start.Offset < o.Offset) {
			left[o.Partition] = o.Offset
		}
	})
	out := map[int32][]*kgo.Record{}
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("weirtest: read %s: %v with end offsets %v left to reach", topic, ctx.Err(), left)
		}
		fs.EachError(func(_ string, p int32, err error) {
			tb.Fatalf("weirtest: read %s: fetch partition %d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end {
				return // past the end offset taken at the start
			}
			out[r.Partition] = append(out[r.Partition], r)
			if r.Offset >= end-1 {
				delete(left, r.Partition)
			}
		})
	}
	return out
}
