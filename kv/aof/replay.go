package aof

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// ErrCorrupt marks a damaged record that is not a torn write: valid
// records follow it, so cutting the file there would lose acknowledged
// changes.
var ErrCorrupt = errors.New("aof: corrupt record")

// Replay calls fn with every record of the segments at or after from, in
// order, and returns the position after the last one. Segments before
// from are left alone (Remove deletes them).
//
// The recovery rule is the commit log's: a bad record (short, or its CRC
// wrong) with no valid record after it in the last segment is a torn
// write: the segment is cut there, and what was torn was never
// acknowledged. A bad record followed by a valid one, or one in any other
// segment, is corruption: Replay stops with ErrCorrupt, naming the file
// and byte, and cuts nothing.
func Replay(dir string, from uint64, fn func(rec []byte) error) (uint64, error) {
	segs, err := segments(dir)
	if err != nil {
		return 0, err
	}
	end := from
	for i, s := range segs {
		if s.start < from {
			continue
		}
		if s.start != end {
			return 0, fmt.Errorf("%w: segment %s starts at %d, but the records before end at %d",
				ErrCorrupt, s.name(), s.start, end)
		}
		path := filepath.Join(dir, s.name())
		data, err := os.ReadFile(path)
		if err != nil {
			return 0, fmt.Errorf("aof: replay: %w", err)
		}
		n, err := checkSegment(data, s, i == len(segs)-1, fn)
		if err != nil {
			return 0, fmt.Errorf("aof: replay %s: %w", path, err)
		}
		if n < len(data) {
			if err := os.Truncate(path, int64(n)); err != nil {
				return 0, fmt.Errorf("aof: cut torn write: %w", err)
			}
		}
		end = s.start + uint64(n)
	}
	return end, nil
}

// checkSegment calls fn for each record of segment s's data and returns
// how much of it to keep: all of it, or (last segment only) the part
// before a torn write. Anything else bad is ErrCorrupt. The bytes after a
// recycled segment's records are its old records, which do not verify at
// their new positions: to this rule they are a torn write.
func checkSegment(data []byte, s segment, last bool, fn func(rec []byte) error) (int, error) {
	n, err := scan(data, s, fn)
	if err != nil {
		return 0, err
	}
	if n < len(data) && (!last || validAfter(data, s, n)) {
		return 0, fmt.Errorf("%w at byte %d of %d", ErrCorrupt, n, len(data))
	}
	return n, nil
}

// scan calls fn for each whole, valid record of data and returns where
// the valid records end; bad is fn's error, which stops it.
func scan(data []byte, s segment, fn func(rec []byte) error) (n int, bad error) {
	for n < len(data) {
		rec, ok := recordAt(data, s, n)
		if !ok {
			return n, nil
		}
		if err := fn(rec); err != nil {
			return n, err
		}
		n += headerSize + len(rec)
	}
	return n, nil
}

// recordAt returns the record at data[off:] of segment s if it is whole
// and both its checksums hold. The header's is tested before the data's:
// at a position that is not a record start it fails, and the data's
// checksum is never computed.
func recordAt(data []byte, s segment, off int) ([]byte, bool) {
	if len(data)-off < headerSize {
		return nil, false
	}
	h := data[off : off+headerSize]
	// The length's bounds first: they reject most positions that are not
	// a record start for less than the checksum costs (validAfter runs
	// this at every byte of a tail).
	l := binary.LittleEndian.Uint32(h)
	if l > MaxRecord || uint64(l) > uint64(len(data)-off-headerSize) {
		return nil, false
	}
	if headerCRC(h, s.start+uint64(off), s.v2) != binary.LittleEndian.Uint32(h[8:]) {
		return nil, false
	}
	rec := data[off+headerSize : off+headerSize+int(l)]
	if maskCRC(crc32.Checksum(rec, castagnoli)) != binary.LittleEndian.Uint32(data[off+4:]) {
		return nil, false
	}
	return rec, true
}

// validAfter reports whether a valid record starts anywhere after the
// bad one at off: a header checksum per byte, linear in the tail.
func validAfter(data []byte, s segment, off int) bool {
	for o := off + 1; o+headerSize <= len(data); o++ {
		if rec, ok := recordAt(data, s, o); ok && len(rec) > 0 {
			return true
		}
	}
	return false
}
