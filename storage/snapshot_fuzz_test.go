package storage

import (
	"bytes"
	"testing"
)

// FuzzProducerSnapshot: a damaged producer state snapshot is refused with
// errBadSnapshot (open then falls back to an older one or a replay), never a
// panic; what decodes re-encodes to the same bytes.
func FuzzProducerSnapshot(f *testing.F) {
	e := &producerEntry{epoch: 3, lastSeen: 1234}
	e.push(producerBatch{firstSeq: 0, lastSeq: 4, baseOffset: 10, lastOffset: 14, timestamp: 99})
	e.push(producerBatch{firstSeq: 5, lastSeq: 5, baseOffset: 20, lastOffset: 20, timestamp: 100})
	f.Add(encodeSnapshot(42, map[int64]*producerEntry{7: e, 9: e}))
	f.Add(encodeSnapshot(0, nil))
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		off, m, err := decodeSnapshot(b)
		if err != nil {
			if err != errBadSnapshot {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		if again := encodeSnapshot(off, m); !bytes.Equal(again, b) {
			t.Fatalf("decoded snapshot re-encodes differently")
		}
	})
}
