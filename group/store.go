package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/weirhq/weir/storage"
)

// RecordKind says what a Record changes.
type RecordKind uint8

const (
	RecordGroup         RecordKind = 1 // a group exists: generation, protocol type, created flag
	RecordGroupDeleted  RecordKind = 2 // the group and its offsets are gone
	RecordOffset        RecordKind = 3 // a committed offset
	RecordOffsetDeleted RecordKind = 4 // an offset was deleted or expired
)

// Record is one durable change to the coordinator's state. Only the fields
// of its Kind are encoded.
type Record struct {
	Kind  RecordKind
	Group string

	Generation   int32  // RecordGroup
	ProtocolType string // RecordGroup
	Created      bool   // RecordGroup
	EmptySince   int64  // RecordGroup: Unix milliseconds since the group has had no members, or 0

	Topic       string // RecordOffset, RecordOffsetDeleted
	Partition   int32  // RecordOffset, RecordOffsetDeleted
	Offset      int64  // RecordOffset
	LeaderEpoch int32  // RecordOffset
	Metadata    string // RecordOffset
	CommitTime  int64  // RecordOffset, Unix milliseconds
}

// The file is a sequence of frames: payload length (uint32), CRC32C of the
// payload (uint32), payload. A payload starts with a format version byte
// and the record kind.
const (
	frameHeader     = 8
	maxPayload      = 1 << 20
	recordVersion   = 0
	storeDirName    = "groups"
	storeFileName   = "groups.log"
	compactMinBytes = 16 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// AppendRecord appends r's frame to dst.
func AppendRecord(dst []byte, r Record) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeader)...)
	dst = append(dst, recordVersion, byte(r.Kind))
	dst = kbin.AppendString(dst, r.Group)
	switch r.Kind {
	case RecordGroup:
		dst = kbin.AppendInt32(dst, r.Generation)
		dst = kbin.AppendString(dst, r.ProtocolType)
		dst = kbin.AppendBool(dst, r.Created)
		dst = kbin.AppendInt64(dst, r.EmptySince)
	case RecordOffset:
		dst = kbin.AppendString(dst, r.Topic)
		dst = kbin.AppendInt32(dst, r.Partition)
		dst = kbin.AppendInt64(dst, r.Offset)
		dst = kbin.AppendInt32(dst, r.LeaderEpoch)
		dst = kbin.AppendString(dst, r.Metadata)
		dst = kbin.AppendInt64(dst, r.CommitTime)
	case RecordOffsetDeleted:
		dst = kbin.AppendString(dst, r.Topic)
		dst = kbin.AppendInt32(dst, r.Partition)
	}
	payload := dst[start+frameHeader:]
	binary.BigEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, crcTable))
	return dst
}

// DecodeRecord decodes the frame at the start of b and returns the record
// and the frame's length. It returns io.ErrUnexpectedEOF if b ends inside
// the frame, and an error wrapping ErrCorruptRecord for bad bytes.
func DecodeRecord(b []byte) (Record, int, error) {
	if len(b) < frameHeader {
		return Record{}, 0, io.ErrUnexpectedEOF
	}
	n := binary.BigEndian.Uint32(b)
	if n < 2 || n > maxPayload {
		return Record{}, 0, fmt.Errorf("%w: payload length %d", ErrCorruptRecord, n)
	}
	if uint64(len(b)) < frameHeader+uint64(n) {
		return Record{}, 0, io.ErrUnexpectedEOF
	}
	payload := b[frameHeader : frameHeader+n]
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(b[4:]) {
		return Record{}, 0, fmt.Errorf("%w: checksum mismatch", ErrCorruptRecord)
	}
	if payload[0] != recordVersion {
		return Record{}, 0, fmt.Errorf("%w: unknown version %d", ErrCorruptRecord, payload[0])
	}
	r := Record{Kind: RecordKind(payload[1])}
	kr := kbin.Reader{Src: payload[2:]}
	r.Group = kr.String()
	switch r.Kind {
	case RecordGroup:
		r.Generation = kr.Int32()
		r.ProtocolType = kr.String()
		r.Created = kr.Bool()
		r.EmptySince = kr.Int64()
	case RecordGroupDeleted:
	case RecordOffset:
		r.Topic = kr.String()
		r.Partition = kr.Int32()
		r.Offset = kr.Int64()
		r.LeaderEpoch = kr.Int32()
		r.Metadata = kr.String()
		r.CommitTime = kr.Int64()
	case RecordOffsetDeleted:
		r.Topic = kr.String()
		r.Partition = kr.Int32()
	default:
		return Record{}, 0, fmt.Errorf("%w: unknown kind %d", ErrCorruptRecord, r.Kind)
	}
	if !kr.Ok() || len(kr.Src) != 0 {
		return Record{}, 0, fmt.Errorf("%w: bad %d-byte payload", ErrCorruptRecord, n)
	}
	return r, frameHeader + int(n), nil
}

// Store is the durable log of group records: one append-only file under
// DataDir/groups, fsynced on every Append. Open truncates a torn or
// corrupt tail and rewrites the file when it holds mostly dead records.
// It is used by one goroutine (the Coordinator's).
type Store struct {
	fs   storage.FS
	dir  string
	f    storage.File
	size int64
	live int64 // bytes of the records last written by open or Rewrite
	werr error // sticky write error
}

// OpenStore opens (creating if needed) the store in dataDir and returns the
// records it holds, in order.
func OpenStore(fsys storage.FS, dataDir string) (*Store, []Record, error) {
	if fsys == nil {
		fsys = storage.OSFS{}
	}
	dir := filepath.Join(dataDir, storeDirName)
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("weir: group store: %w", err)
	}
	name := filepath.Join(dir, storeFileName)
	_ = fsys.Remove(name + ".tmp") // a rewrite that did not finish
	f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("weir: group store: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("weir: group store: %w", err)
	}
	data := make([]byte, st.Size())
	if n, err := f.ReadAt(data, 0); err != nil && !(errors.Is(err, io.EOF) && n == len(data)) {
		f.Close()
		return nil, nil, fmt.Errorf("weir: group store: read: %w", err)
	}
	var recs []Record
	off := 0
	for off < len(data) {
		r, n, err := DecodeRecord(data[off:])
		if err != nil {
			break // torn or corrupt tail: everything after is dropped
		}
		recs = append(recs, r)
		off += n
	}
	if off < len(data) {
		if err := f.Truncate(int64(off)); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("weir: group store: truncate torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("weir: group store: %w", err)
		}
	}
	s := &Store{fs: fsys, dir: dir, f: f, size: int64(off), live: int64(off)}
	return s, recs, nil
}

// TruncatedBytes is how the tests see that recovery dropped a tail; it is
// the file size now.
func (s *Store) Size() int64 { return s.size }

// Append writes recs and fsyncs. After a failure every later Append fails
// with the same error.
func (s *Store) Append(recs []Record) error {
	if s.werr != nil {
		return s.werr
	}
	if s.f == nil {
		return ErrClosed
	}
	if len(recs) == 0 {
		return nil
	}
	var buf []byte
	for _, r := range recs {
		buf = AppendRecord(buf, r)
	}
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		s.werr = fmt.Errorf("weir: group store: write: %w", err)
		return s.werr
	}
	if err := s.f.Sync(); err != nil {
		s.werr = fmt.Errorf("weir: group store: fsync: %w", err)
		return s.werr
	}
	s.size += int64(len(buf))
	return nil
}

// NeedsRewrite reports whether the file has grown well past its live
// content and should be rewritten with Rewrite.
func (s *Store) NeedsRewrite() bool {
	return s.werr == nil && s.size > compactMinBytes && s.size > 4*s.live
}

// Rewrite replaces the file with recs (the live state): temporary file,
// fsync, rename, directory fsync.
func (s *Store) Rewrite(recs []Record) error {
	if s.werr != nil {
		return s.werr
	}
	var buf []byte
	for _, r := range recs {
		buf = AppendRecord(buf, r)
	}
	name := filepath.Join(s.dir, storeFileName)
	tmp := name + ".tmp"
	f, err := s.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("weir: group store: rewrite: %w", err)
	}
	if _, err := f.WriteAt(buf, 0); err != nil {
		f.Close()
		return fmt.Errorf("weir: group store: rewrite: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("weir: group store: rewrite: %w", err)
	}
	if err := s.fs.Rename(tmp, name); err != nil {
		f.Close()
		return fmt.Errorf("weir: group store: rewrite: %w", err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		// The rename may or may not be durable; either file is complete.
		f.Close()
		s.werr = fmt.Errorf("weir: group store: rewrite: %w", err)
		return s.werr
	}
	s.f.Close()
	s.f, s.size, s.live = f, int64(len(buf)), int64(len(buf))
	return nil
}

// Close closes the file.
func (s *Store) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
