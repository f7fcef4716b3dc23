package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// A segment is one file of batches, named after its base offset
// (00000000000000000000.log), with a sparse index file beside it
// (.index) written when the segment is sealed.
type segment struct {
	path string
	f    File
	base uint64 // first offset the segment may hold
	next uint64 // offset after its last batch
	size int64
	// alloc is the file's size when it is preallocated past size (zeros
	// after the last batch); 0 otherwise. Writer goroutine only.
	alloc int64
	syncs int // fsyncs of this segment by the writer under SyncAlways
	maxTs int64
	// index has an entry for the first batch and then for the first batch
	// at or after every indexInterval bytes: a read by offset or time is a
	// binary search plus at most one interval of scanning.
	index []indexEntry
	holes []hole // corrupt ranges found by a scan, see recovery
	// checkpointed is the size the segment's index file describes; the
	// writer goroutine's only.
	checkpointed int64
	mu           sync.Mutex // guards holes

	// Guarded by the log's Handles (handles.go), like f once sealed is
	// set: a sealed segment's file may be closed while no pin holds it.
	refs             int  // pins: readers in flight
	doomed           bool // removed (retention, or the log closed); closed when refs reaches 0
	sealed           bool // written to no more
	listed           bool // in the Handles' list: sealed, open, unpinned
	lruPrev, lruNext *segment
}

type indexEntry struct {
	offset uint64 // base offset of the batch at pos
	pos    int64
	maxTs  int64 // largest timestamp in the segment up to and including this batch
}

// hole is a corrupt stretch of a sealed segment: bytes [pos, end) that did
// not verify, between valid batches, and the offsets it must have held.
type hole struct {
	pos, end   int64
	first, nxt uint64
}

func segmentName(base uint64) string { return fmt.Sprintf("%020d.log", base) }

func parseSegmentName(name string) (uint64, bool) {
	if !strings.HasSuffix(name, ".log") || len(name) != 24 {
		return 0, false
	}
	n, err := strconv.ParseUint(name[:20], 10, 64)
	return n, err == nil
}

func (s *segment) indexPath() string { return strings.TrimSuffix(s.path, ".log") + ".index" }

// addIndex records the batch at pos, if an interval has passed.
func (s *segment) addIndex(h *batchHeader, pos int64, interval int64) {
	if h.maxTs > s.maxTs {
		s.maxTs = h.maxTs
	}
	if n := len(s.index); n == 0 || pos-s.index[n-1].pos >= interval {
		s.index = append(s.index, indexEntry{offset: h.baseOffset, pos: pos, maxTs: s.maxTs})
	} else {
		s.index[n-1].maxTs = s.maxTs // the interval's entry covers this batch's times too
	}
}

// scanResult is what a scan of a segment file found.
type scanResult struct {
	validEnd int64 // end of the last valid batch
	holes    []hole
	torn     error // why the tail after validEnd was cut, or nil
	zeroTail bool  // nothing but zeros after validEnd: a preallocated file
}

// scan reads every batch of s from pos 0, verifying each checksum, and
// rebuilds the index. A bad batch followed only by bad bytes is a torn
// tail: validEnd stops before it. A bad batch followed by a valid one is
// corruption: it becomes a hole, and scanning resumes at the valid batch.
func (s *segment) scan(interval int64) scanResult {
	s.index, s.holes, s.next, s.maxTs = nil, nil, s.base, 0
	return s.scanFrom(0, interval)
}

// scanFrom scans from pos, which must be the end of a valid batch already
// in the index (or 0), keeping what the index holds before it.
func (s *segment) scanFrom(pos int64, interval int64) scanResult {
	res := scanResult{validEnd: pos}
	hb := make([]byte, batchHeaderSize)
	var buf []byte
	for pos < s.size {
		h, _, err := readBatchAt(s.f, pos, s.size, hb, &buf)
		if err == nil && h.baseOffset < s.next {
			err = fmt.Errorf("%w: offset %d goes backwards (expected %d)", ErrCorrupt, h.baseOffset, s.next)
		}
		if err != nil {
			if s.zeroFrom(pos) {
				res.zeroTail = true
				break
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = ErrTorn
			}
			npos, nh, ok := s.resync(pos+1, hb, &buf)
			if !ok {
				res.torn = fmt.Errorf("%s at byte %d: %w", s.path, pos, err)
				break
			}
			res.holes = append(res.holes, hole{pos: pos, end: npos, first: s.next, nxt: nh.baseOffset})
			pos = npos
			continue
		}
		s.addIndex(&h, pos, interval)
		s.next = h.nextOffset()
		pos += h.size()
		res.validEnd = pos
	}
	s.holes = res.holes
	return res
}

// resync looks for the next position at or after from where a whole valid
// batch starts. It reads the file a chunk at a time and parses a header
// only where a batch's magic byte is: after corruption, and over the
// zeros a torn write into a preallocated segment leaves before its end.
func (s *segment) resync(from int64, hb []byte, buf *[]byte) (int64, batchHeader, bool) {
	chunk := make([]byte, min(64<<10, max(s.size-from, 1)))
	for start := from; start+batchHeaderSize <= s.size; start += int64(len(chunk)) {
		n, err := s.f.ReadAt(chunk[:min(int64(len(chunk)), s.size-start)], start)
		if n == 0 && err != nil {
			return 0, batchHeader{}, false
		}
		for i := 0; i < n; i++ {
			if chunk[i] != batchMagic {
				continue
			}
			pos := start + int64(i)
			h, _, err := readBatchAt(s.f, pos, s.size, hb, buf)
			if err == nil && h.baseOffset >= s.next {
				return pos, h, true
			}
		}
	}
	return 0, batchHeader{}, false
}

// zeroFrom reports whether the segment holds only zero bytes from pos to
// its end.
func (s *segment) zeroFrom(pos int64) bool {
	chunk := make([]byte, min(64<<10, max(s.size-pos, 1)))
	for pos < s.size {
		n, err := s.f.ReadAt(chunk[:min(int64(len(chunk)), s.size-pos)], pos)
		for _, b := range chunk[:n] {
			if b != 0 {
				return false
			}
		}
		if n == 0 && err != nil {
			return false
		}
		pos += int64(n)
	}
	return true
}

// readBatchAt reads and verifies the batch at pos. buf is reused.
func readBatchAt(f io.ReaderAt, pos, size int64, hb []byte, buf *[]byte) (batchHeader, []byte, error) {
	if size-pos < batchHeaderSize {
		return batchHeader{}, nil, ErrTorn
	}
	if _, err := f.ReadAt(hb, pos); err != nil {
		return batchHeader{}, nil, err
	}
	h, err := decodeHeader(hb)
	if err != nil {
		return h, nil, err
	}
	if pos+h.size() > size {
		return h, nil, ErrTorn
	}
	if int64(cap(*buf)) < h.size() {
		*buf = make([]byte, h.size())
	}
	b := (*buf)[:h.size()]
	if _, err := f.ReadAt(b, pos); err != nil {
		return h, nil, err
	}
	if err := checkCRC(&h, b); err != nil {
		return h, nil, err
	}
	return h, b, nil
}

// Index file layout (part of the on-disk format):
//
//	magic "FMIX" | version 1B | segment size 8B | next offset 8B | count 4B |
//	count × (offset 8B | pos 8B | maxTs 8B) | crc32c 4B (masked, of all before)
//
// It is only trusted if its recorded segment size equals the file's size;
// otherwise (stale or missing) the segment is scanned and it is rewritten.
const indexVersion = 1

func (s *segment) writeIndex(fs FS) error {
	b := make([]byte, 0, 25+len(s.index)*24+4)
	b = append(b, "FMIX"...)
	b = append(b, indexVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.size))
	b = binary.LittleEndian.AppendUint64(b, s.next)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.index)))
	for _, e := range s.index {
		b = binary.LittleEndian.AppendUint64(b, e.offset)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.pos))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.maxTs))
	}
	b = binary.LittleEndian.AppendUint32(b, maskCRC(crc32.Checksum(b, castagnoli)))
	tmp := s.indexPath() + ".tmp"
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return fs.Rename(tmp, s.indexPath())
}

// loadIndex reads the index file; ok is false if it is missing, stale or
// damaged, and the caller scans instead. With prefix, an index of a
// shorter file is accepted (the active segment's checkpoint): covered
// returns the size it describes, and the caller scans the rest.
func (s *segment) loadIndex(fs FS) bool {
	covered, ok := s.loadIndexPrefix(fs, false)
	return ok && covered == s.size
}

func (s *segment) loadIndexPrefix(fs FS, prefix bool) (covered int64, ok bool) {
	f, err := fs.OpenFile(s.indexPath(), os.O_RDONLY, 0)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < 29 || st.Size() > 1<<30 {
		return 0, false
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return 0, false
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if string(body[:4]) != "FMIX" || body[4] != indexVersion || maskCRC(crc32.Checksum(body, castagnoli)) != sum {
		return 0, false
	}
	size := int64(binary.LittleEndian.Uint64(body[5:]))
	next := binary.LittleEndian.Uint64(body[13:])
	n := int(binary.LittleEndian.Uint32(body[21:]))
	if len(body) != 25+n*24 || size > s.size || size < s.size && !prefix {
		return 0, false // stale: the segment changed after the index was written
	}
	s.index = make([]indexEntry, n)
	for i := range s.index {
		e := body[25+i*24:]
		s.index[i] = indexEntry{offset: binary.LittleEndian.Uint64(e), pos: int64(binary.LittleEndian.Uint64(e[8:])),
			maxTs: int64(binary.LittleEndian.Uint64(e[16:]))}
	}
	s.next = next
	if n > 0 {
		s.maxTs = s.index[n-1].maxTs
	}
	return size, true
}

// locate returns the position to start scanning from for offset.
func (s *segment) locate(offset uint64) int64 {
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].offset > offset })
	if i == 0 {
		return 0
	}
	return s.index[i-1].pos
}

// locateTime returns the position to start scanning from for the first
// record with timestamp >= ts.
func (s *segment) locateTime(ts int64) int64 {
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].maxTs >= ts })
	if i == 0 || i >= len(s.index) {
		if i >= len(s.index) && len(s.index) > 0 {
			return s.index[len(s.index)-1].pos
		}
		return 0
	}
	return s.index[i-1].pos
}

// markHole records the corrupt stretch starting at pos, up to the next
// valid batch (or the end of the file).
func (s *segment) markHole(pos int64, hb []byte, buf *[]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.holes {
		if h.pos == pos {
			return
		}
	}
	first := uint64(0)
	if i := sort.Search(len(s.index), func(i int) bool { return s.index[i].pos > pos }); i > 0 {
		first = s.index[i-1].offset
	}
	end, nh, ok := s.resync(pos+1, hb, buf)
	if !ok {
		end, nh.baseOffset = s.size, s.next
	}
	s.holes = append(s.holes, hole{pos: pos, end: end, first: first, nxt: nh.baseOffset})
}

// holeAt returns the hole covering pos, if any.
func (s *segment) holeAt(pos int64) (hole, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.holes {
		if pos >= h.pos && pos < h.end {
			return h, true
		}
	}
	return hole{}, false
}

// removeFiles deletes the segment's files (the handle is the Handles'
// to close).
func (s *segment) removeFiles(fs FS) error {
	err := fs.Remove(s.path)
	if ierr := fs.Remove(s.indexPath()); ierr != nil && !errors.Is(ierr, os.ErrNotExist) && err == nil {
		err = ierr
	}
	return err
}

func segmentPath(dir string, base uint64) string { return filepath.Join(dir, segmentName(base)) }
