package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

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
	RecordGroupMetadata RecordKind = 5 // a generation's members, written when the group becomes Stable or Empty
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

	// RecordGroupMetadata (also Generation and ProtocolType): the state of
	// a generation that reached Stable, with its members, as Kafka's
	// GroupMetadata record. A group that became Empty (or whose members
	// are too large to store) has no Members.
	Protocol string
	Leader   string
	Members  []MemberRecord
}

// MemberRecord is one member of a RecordGroupMetadata.
type MemberRecord struct {
	ID               string
	InstanceID       *string // group.instance.id of a static member
	ClientID         string
	ClientHost       string
	SessionTimeout   int32 // milliseconds
	RebalanceTimeout int32 // milliseconds
	Protocols        []MemberProtocol
	Assignment       []byte
}

// MemberProtocol is one protocol (assignor) a member offered, with its
// metadata (the subscription).
type MemberProtocol struct {
	Name     string
	Metadata []byte
}

// The smallest encodings of a member and of a protocol: a decoder checks
// a count against the bytes left before it allocates.
const (
	minMemberBytes   = 2 + 2 + 2 + 2 + 4 + 4 + 4 + 4
	minProtocolBytes = 2 + 4
)

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

// maxStringBytes is the longest string a record can hold: strings are
// encoded with an int16 length, as in Kafka's protocol.
const maxStringBytes = math.MaxInt16

// AppendRecord appends r's frame to dst. It refuses, with an error wrapping
// ErrUnstorableRecord and dst unchanged, a record whose frame could not be
// decoded again: a string over 32767 bytes or a payload over 1 MiB. The
// coordinator bounds what it accepts so that this never happens; the check
// is the last line of defence for the file, whose recovery would otherwise
// stop at such a frame.
func AppendRecord(dst []byte, r Record) ([]byte, error) {
	if err := checkStrings(r); err != nil {
		return dst, err
	}
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
	case RecordGroupDeleted:
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
	case RecordGroupMetadata:
		dst = kbin.AppendInt32(dst, r.Generation)
		dst = kbin.AppendString(dst, r.ProtocolType)
		dst = kbin.AppendString(dst, r.Protocol)
		dst = kbin.AppendString(dst, r.Leader)
		dst = kbin.AppendArrayLen(dst, len(r.Members))
		for _, m := range r.Members {
			dst = kbin.AppendString(dst, m.ID)
			dst = kbin.AppendNullableString(dst, m.InstanceID)
			dst = kbin.AppendString(dst, m.ClientID)
			dst = kbin.AppendString(dst, m.ClientHost)
			dst = kbin.AppendInt32(dst, m.SessionTimeout)
			dst = kbin.AppendInt32(dst, m.RebalanceTimeout)
			dst = kbin.AppendArrayLen(dst, len(m.Protocols))
			for _, p := range m.Protocols {
				dst = kbin.AppendString(dst, p.Name)
				dst = kbin.AppendBytes(dst, p.Metadata)
			}
			dst = kbin.AppendBytes(dst, m.Assignment)
		}
	default:
		return dst[:start], fmt.Errorf("%w: unknown kind %d", ErrUnstorableRecord, r.Kind)
	}
	payload := dst[start+frameHeader:]
	if len(payload) > maxPayload {
		return dst[:start], fmt.Errorf("%w: %d-byte payload (at most %d)", ErrUnstorableRecord, len(payload), maxPayload)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, crcTable))
	return dst, nil
}

// encodeRecords returns the frames of recs. A record AppendRecord refuses
// is left out, and the first refusal is returned with the frames of the
// others.
func encodeRecords(recs []Record) ([]byte, error) {
	var buf []byte
	var first error
	for _, r := range recs {
		var err error
		if buf, err = AppendRecord(buf, r); err != nil && first == nil {
			first = err
		}
	}
	return buf, first
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
	case RecordGroupMetadata:
		if err := decodeGroupMetadata(&kr, &r); err != nil {
			return Record{}, 0, err
		}
	default:
		return Record{}, 0, fmt.Errorf("%w: unknown kind %d", ErrCorruptRecord, r.Kind)
	}
	if !kr.Ok() || len(kr.Src) != 0 {
		return Record{}, 0, fmt.Errorf("%w: bad %d-byte payload", ErrCorruptRecord, n)
	}
	return r, frameHeader + int(n), nil
}

// checkStrings refuses a record with a string its int16 length cannot hold.
func checkStrings(r Record) error {
	check := func(name, v string) error {
		if len(v) > maxStringBytes {
			return fmt.Errorf("%w: %d-byte %s (at most %d)", ErrUnstorableRecord, len(v), name, maxStringBytes)
		}
		return nil
	}
	errs := []error{
		check("group id", r.Group), check("protocol type", r.ProtocolType), check("topic", r.Topic),
		check("metadata", r.Metadata), check("protocol", r.Protocol), check("leader", r.Leader),
	}
	for _, m := range r.Members {
		errs = append(errs, check("member id", m.ID), check("client id", m.ClientID), check("client host", m.ClientHost))
		if m.InstanceID != nil {
			errs = append(errs, check("group instance id", *m.InstanceID))
		}
		for _, p := range m.Protocols {
			errs = append(errs, check("protocol name", p.Name))
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeGroupMetadata reads the fields of a RecordGroupMetadata after its
// group id. Counts are checked against the bytes left before anything is
// allocated for them.
func decodeGroupMetadata(kr *kbin.Reader, r *Record) error {
	r.Generation = kr.Int32()
	r.ProtocolType = kr.String()
	r.Protocol = kr.String()
	r.Leader = kr.String()
	n := kr.ArrayLen()
	if n < 0 || int(n) > len(kr.Src)/minMemberBytes {
		return fmt.Errorf("%w: %d members in %d bytes", ErrCorruptRecord, n, len(kr.Src))
	}
	if n > 0 {
		r.Members = make([]MemberRecord, 0, n)
	}
	for range n {
		m := MemberRecord{
			ID:               kr.String(),
			InstanceID:       kr.NullableString(),
			ClientID:         kr.String(),
			ClientHost:       kr.String(),
			SessionTimeout:   kr.Int32(),
			RebalanceTimeout: kr.Int32(),
		}
		np := kr.ArrayLen()
		if np < 0 || int(np) > len(kr.Src)/minProtocolBytes {
			return fmt.Errorf("%w: %d protocols in %d bytes", ErrCorruptRecord, np, len(kr.Src))
		}
		if np > 0 {
			m.Protocols = make([]MemberProtocol, 0, np)
		}
		for range np {
			m.Protocols = append(m.Protocols, MemberProtocol{Name: kr.String(), Metadata: slices.Clone(kr.Bytes())})
		}
		m.Assignment = slices.Clone(kr.Bytes())
		if !kr.Ok() {
			return fmt.Errorf("%w: bad group metadata", ErrCorruptRecord)
		}
		r.Members = append(r.Members, m)
	}
	return nil
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

	retryRewriteAt int64 // after a failed Rewrite: the size at which NeedsRewrite may report true again

	recovery Recovery
}

// Recovery is what OpenStore found wrong with the file, and did about it.
type Recovery struct {
	// TailBytes were cut off the end of the file: a torn or corrupt frame
	// with no whole record after it (a write cut short by a crash, never
	// acknowledged).
	TailBytes int64
	// Skipped are bad regions with whole records after them: corruption,
	// not a torn write. Their records are lost; the records after them
	// are kept.
	Skipped []Region
	// Preserved is the copy of the file as it was found, written before
	// the file was rewritten without the Skipped regions ("" if none).
	Preserved string
}

// Region is a byte range of the file.
type Region struct {
	Offset, Bytes int64
}

// OpenStore opens (creating if needed) the store in dataDir and returns the
// records it holds, in order. logger (nil: none) gets an Error for anything
// recovery drops.
//
// A torn or corrupt frame at the end of the file (nothing decodes after it)
// is a write that a crash cut short: it was never acknowledged, and it is
// truncated. A bad frame followed by whole records is corruption: the file
// as found is copied to groups.log.corrupt-TIME, the bad region is skipped,
// and the file is rewritten with every record that still decodes. The
// broker starts, with every record that could be read, and the copy keeps
// the rest for an operator.
func OpenStore(fsys storage.FS, dataDir string, logger *slog.Logger) (*Store, []Record, error) {
	if fsys == nil {
		fsys = storage.OSFS{}
	}
	dir := filepath.Join(dataDir, storeDirName)
	name := filepath.Join(dir, storeFileName)
	_, err := fsys.Stat(dir)
	newDir := errors.Is(err, fs.ErrNotExist)
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("weir: group store: %w", err)
	}
	_ = fsys.Remove(name + ".tmp") // a rewrite that did not finish
	_, err = fsys.Stat(name)
	newFile := errors.Is(err, fs.ErrNotExist)
	f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("weir: group store: %w", err)
	}
	// A new file's name, and a new directory's, must be durable before
	// anything written to the file is acknowledged: an fsync of the file
	// does not make its directory entry durable.
	if newFile {
		if err := fsys.SyncDir(dir); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("weir: group store: %w", err)
		}
	}
	if newDir {
		if err := fsys.SyncDir(dataDir); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("weir: group store: %w", err)
		}
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
	recs, end, skipped := readRecords(data)
	s := &Store{fs: fsys, dir: dir, f: f, size: end, live: end}
	s.recovery = Recovery{TailBytes: int64(len(data)) - end, Skipped: skipped}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(skipped) > 0 {
		var bad int64
		for _, r := range skipped {
			bad += r.Bytes
		}
		copyName := fmt.Sprintf("%s.corrupt-%d", name, time.Now().UnixNano())
		if err := writeCopy(fsys, dir, copyName, data); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("weir: group store: corrupt records at offset %d; keeping a copy of the file failed: %w", skipped[0].Offset, err)
		}
		s.recovery.Preserved = copyName
		logger.Error("weir: group store is corrupt: skipped bad records that have good records after them; "+
			"the records in the bad regions are lost, every other record is kept; the file as found is kept for inspection",
			"file", name, "skipped_bytes", bad, "regions", len(skipped), "first_offset", skipped[0].Offset,
			"dropped_tail_bytes", s.recovery.TailBytes, "copy", copyName)
		if err := s.Rewrite(recs); err != nil {
			s.Close()
			return nil, nil, err
		}
		return s, recs, nil
	}
	if end < int64(len(data)) {
		logger.Error("weir: group store: dropped a torn or corrupt tail at recovery (a write cut short by a crash is never acknowledged)",
			"file", name, "dropped_bytes", s.recovery.TailBytes, "offset", end)
		if err := f.Truncate(end); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("weir: group store: truncate torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("weir: group store: %w", err)
		}
	}
	return s, recs, nil
}

// readRecords decodes every record of data. It returns the records, the
// end of the last one, and the bad regions that have a record after them.
// After a bad frame it looks for the next whole frame: first where the bad
// frame's own length says it ends (its header is usually intact), then at
// every later byte.
func readRecords(data []byte) ([]Record, int64, []Region) {
	var recs []Record
	var skipped []Region
	off, end := 0, 0
	for off < len(data) {
		r, n, err := DecodeRecord(data[off:])
		if err == nil {
			recs = append(recs, r)
			off += n
			end = off
			continue
		}
		next := nextFrame(data, off)
		if next < 0 {
			break // a torn or corrupt tail
		}
		skipped = append(skipped, Region{Offset: int64(off), Bytes: int64(next - off)})
		off = next
	}
	return recs, int64(end), skipped
}

// nextFrame returns the offset of the first whole frame after the bad one
// at off, or -1.
func nextFrame(data []byte, off int) int {
	if len(data)-off >= frameHeader {
		n := binary.BigEndian.Uint32(data[off:])
		if n <= maxPayload {
			if p := off + frameHeader + int(n); p < len(data) {
				if _, _, err := DecodeRecord(data[p:]); err == nil {
					return p
				}
			}
		}
	}
	for p := off + 1; p+frameHeader <= len(data); p++ {
		if _, _, err := DecodeRecord(data[p:]); err == nil {
			return p
		}
	}
	return -1
}

// writeCopy writes data to a new file name, durably.
func writeCopy(fsys storage.FS, dir, name string, data []byte) error {
	f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.WriteAt(data, 0)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return err
	}
	return fsys.SyncDir(dir)
}

// Recovery returns what OpenStore found wrong with the file.
func (s *Store) Recovery() Recovery { return s.recovery }

// Size is the file's size.
func (s *Store) Size() int64 { return s.size }

// Append writes recs and fsyncs. After a failed write or fsync every later
// Append fails with the same error. The failed batch is refused, so Append
// also cuts the file back to where the batch began (best effort: if the
// truncation fails, or a crash loses it, a record of the refused batch can
// come back at the next start). A record AppendRecord refuses fails the
// call (ErrUnstorableRecord) with nothing written, and is not sticky.
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
	buf, err := encodeRecords(recs)
	if err != nil {
		return err // nothing written; not sticky
	}
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		s.werr = fmt.Errorf("weir: group store: write: %w", err)
		_ = s.f.Truncate(s.size)
		return s.werr
	}
	if err := s.f.Sync(); err != nil {
		s.werr = fmt.Errorf("weir: group store: fsync: %w", err)
		_ = s.f.Truncate(s.size)
		return s.werr
	}
	s.size += int64(len(buf))
	return nil
}

// NeedsRewrite reports whether the file has grown well past its live
// content and should be rewritten with Rewrite. After a failed Rewrite it
// reports false until the file has grown by half again, so that a rewrite
// that keeps failing (a full disk) is not retried, at the cost of encoding
// every group's state, after every batch.
func (s *Store) NeedsRewrite() bool {
	return s.werr == nil && s.size > compactMinBytes && s.size > 4*s.live && s.size >= s.retryRewriteAt
}

// Rewrite replaces the file with recs (the live state): temporary file,
// fsync, rename, directory fsync.
func (s *Store) Rewrite(recs []Record) error {
	if s.werr != nil {
		return s.werr
	}
	buf, err := encodeRecords(recs)
	if err == nil { // else nothing written; not sticky
		err = s.rewrite(buf)
	}
	if err != nil && s.werr == nil {
		s.retryRewriteAt = s.size + s.size/2
	}
	return err
}

// rewrite is Rewrite for records already encoded (encodeRecords, with no
// error). The caller has checked werr.
func (s *Store) rewrite(buf []byte) error {
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
