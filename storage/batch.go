package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// RecordBatch v2 header layout. All fields are big-endian.
const (
	offBaseOffset      = 0
	offBatchLength     = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offBaseTimestamp   = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offNumRecords      = 57

	// batchHeaderSize is the size of a RecordBatch v2 header, records excluded.
	batchHeaderSize = 61
	// logOverhead is baseOffset + batchLength: the bytes not counted by batchLength.
	logOverhead = 12

	// attrLogAppendTime is the timestamp-type attribute bit.
	attrLogAppendTime = 0x08
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batchHeader is the part of a batch header the log needs.
type batchHeader struct {
	baseOffset      int64
	size            int64 // whole batch including logOverhead
	lastOffsetDelta int32
	maxTimestamp    int64
}

func (h batchHeader) lastOffset() int64 { return h.baseOffset + int64(h.lastOffsetDelta) }
func (h batchHeader) nextOffset() int64 { return h.lastOffset() + 1 }

// batchSize is the whole size of the batch at the start of b (its length
// field plus logOverhead), as the header says; b must hold the length field.
func batchSize(b []byte) int64 {
	return int64(int32(binary.BigEndian.Uint32(b[offBatchLength:]))) + logOverhead
}

// parseHeader reads the fixed header of b, which must hold at least batchHeaderSize bytes.
func parseHeader(b []byte) batchHeader {
	return batchHeader{
		baseOffset:      int64(binary.BigEndian.Uint64(b[offBaseOffset:])),
		size:            batchSize(b),
		lastOffsetDelta: int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:])),
		maxTimestamp:    int64(binary.BigEndian.Uint64(b[offMaxTimestamp:])),
	}
}

// checkBatch validates the batch at the start of b and returns its size.
// maxMessageBytes <= 0 means no size limit.
func checkBatch(b []byte, maxMessageBytes int32) (int, error) {
	if len(b) < offMagic+1 {
		return 0, fmt.Errorf("%w: %d bytes left, shorter than a batch header", ErrCorruptBatch, len(b))
	}
	if magic := int8(b[offMagic]); magic != 2 {
		return 0, fmt.Errorf("%w: magic %d", ErrUnsupportedMagic, magic)
	}
	if len(b) < batchHeaderSize {
		return 0, fmt.Errorf("%w: %d bytes left, shorter than a batch header", ErrCorruptBatch, len(b))
	}
	size := batchSize(b)
	if size < batchHeaderSize || size > int64(len(b)) {
		return 0, fmt.Errorf("%w: batch length %d with %d bytes left", ErrCorruptBatch, size-logOverhead, len(b))
	}
	if maxMessageBytes > 0 && size > int64(maxMessageBytes) {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, size, maxMessageBytes)
	}
	want := binary.BigEndian.Uint32(b[offCRC:])
	if got := crc32.Checksum(b[offAttributes:size], castagnoli); got != want {
		return 0, fmt.Errorf("%w: crc %08x, header says %08x", ErrCorruptBatch, got, want)
	}
	n := int32(binary.BigEndian.Uint32(b[offNumRecords:]))
	delta := int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:]))
	if n <= 0 || delta < 0 || int64(n) != int64(delta)+1 {
		return 0, fmt.Errorf("%w: %d records, last offset delta %d", ErrInvalidBatch, n, delta)
	}
	return int(size), nil
}

// ValidateBatches checks every RecordBatch in records (one or more
// concatenated v2 batches, as in a Produce request): the length field against
// the buffer, magic == 2, the CRC32C, the record count against
// lastOffsetDelta, and the size against maxMessageBytes (<= 0: no limit).
// It returns the number of batches. Records are never decoded.
func ValidateBatches(records []byte, maxMessageBytes int32) (n int, err error) {
	if len(records) == 0 {
		return 0, fmt.Errorf("%w: no batches", ErrInvalidBatch)
	}
	for pos := 0; pos < len(records); n++ {
		size, err := checkBatch(records[pos:], maxMessageBytes)
		if err != nil {
			return n, fmt.Errorf("batch %d at byte %d: %w", n, pos, err)
		}
		pos += size
	}
	return n, nil
}

// CountRecords returns the number of records in a record set (fetched or
// produced batches) from each RecordBatch header's record count: nothing
// is decoded or checked. Anything that is not a whole v2 batch header
// counts as nothing.
func CountRecords(records []byte) int64 {
	var n int64
	for len(records) >= batchHeaderSize {
		size := batchSize(records)
		if records[offMagic] != 2 || size < batchHeaderSize {
			break
		}
		n += int64(max(int32(binary.BigEndian.Uint32(records[offNumRecords:])), 0))
		if size > int64(len(records)) {
			break
		}
		records = records[size:]
	}
	return n
}

// setBaseOffset rewrites the baseOffset of the batch at the start of b.
// baseOffset lies outside the CRC, so nothing else changes.
func setBaseOffset(b []byte, offset int64) {
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(offset))
}

// setLogAppendTime stamps the batch at the start of b (size bytes) with the
// broker's time, as Kafka does for LogAppendTime topics: maxTimestamp and the
// timestamp-type attribute bit change, and the CRC is recomputed.
func setLogAppendTime(b []byte, size int, ts int64) {
	attrs := binary.BigEndian.Uint16(b[offAttributes:])
	binary.BigEndian.PutUint16(b[offAttributes:], attrs|attrLogAppendTime)
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(ts))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:size], castagnoli))
}
