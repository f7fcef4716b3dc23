package aof

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// headerSize is a record's header: its length (4 bytes LE), the masked
// CRC-32C of its bytes (4 bytes LE) and the masked CRC-32C of those 8
// bytes (4 bytes LE). The header's own checksum lets recovery test any
// position for a record start in constant time (validAfter), without a
// checksum over a length read from garbage.
const headerSize = 12

// MaxRecord is the largest record accepted (and believed on replay).
const MaxRecord = 1 << 30

// keptBuf is the largest write buffer kept between writes; a burst's
// bigger one is dropped so memory follows load.
const keptBuf = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskCRC keeps a CRC of data that embeds CRCs from being a CRC itself
// (the commit log's rule too).
func maskCRC(c uint32) uint32 { return (c>>15 | c<<17) + 0xa282ead8 }

func segName(start uint64) string { return fmt.Sprintf("%020d.aof", start) }

// segments lists dir's segment start positions, ascending.
func segments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("aof: list %s: %w", dir, err)
	}
	var out []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".aof")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// File is an open append-only file: the segment being written and the
// buffer of records appended since the last write.
type File struct {
	dir      string
	syncEach bool

	mu  sync.Mutex // guards buf; end changes under it
	buf []byte
	end atomic.Uint64 // position after the last appended record

	wmu   sync.Mutex // guards f, start, spare; held for every file write
	f     *os.File
	start uint64 // the current segment's first position
	spare []byte

	written atomic.Uint64 // position up to which records are in the file
	synced  atomic.Uint64 // ... and fsynced
	failed  atomic.Pointer[error]
}

// Options configure Create.
type Options struct {
	// SyncEach makes Barrier fsync (the always policy); otherwise Barrier
	// writes and Sync fsyncs (the interval policy calls it on a timer).
	SyncEach bool
}

// Create opens a new segment at start (the end Replay returned) for
// appending. A segment already at start holds no record (Replay cut it
// there, or it is the empty one a rotation left), so it is replaced.
func Create(dir string, start uint64, o Options) (*File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("aof: %w", err)
	}
	f, err := createSegment(dir, start)
	if err != nil {
		return nil, err
	}
	a := &File{dir: dir, syncEach: o.SyncEach, f: f, start: start}
	a.end.Store(start)
	a.written.Store(start)
	a.synced.Store(start)
	return a, nil
}

func createSegment(dir string, start uint64) (*os.File, error) {
	path := filepath.Join(dir, segName(start))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("aof: create segment: %w", err)
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("aof: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("aof: sync dir %s: %w", dir, err)
	}
	return nil
}

// Err is the error that stopped the file, if one did.
func (a *File) Err() error {
	if p := a.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (a *File) fail(err error) error {
	err = fmt.Errorf("aof: %s: %w (writes are refused until the node restarts)", a.f.Name(), err)
	a.failed.CompareAndSwap(nil, &err)
	return a.Err()
}

// Append adds rec to the buffer and returns the position after it. It
// does not write: Barrier does. Call it in the order the changes were
// made (under the lock that ordered them).
func (a *File) Append(rec []byte) (uint64, error) {
	if len(rec) > MaxRecord {
		return 0, fmt.Errorf("aof: record of %d bytes, at most %d", len(rec), MaxRecord)
	}
	if err := a.Err(); err != nil {
		return 0, err
	}
	var h [headerSize]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(rec)))
	binary.LittleEndian.PutUint32(h[4:], maskCRC(crc32.Checksum(rec, castagnoli)))
	binary.LittleEndian.PutUint32(h[8:], maskCRC(crc32.Checksum(h[:8], castagnoli)))
	a.mu.Lock()
	a.buf = append(append(a.buf, h[:]...), rec...)
	end := a.end.Add(uint64(headerSize + len(rec)))
	a.mu.Unlock()
	return end, nil
}

// End is the position after the last appended record (lock-free: the
// ports ask after every read, most of which wrote nothing).
func (a *File) End() uint64 { return a.end.Load() }

// Durable reports whether every record before pos is past its barrier:
// written, and fsynced if the file syncs on each barrier.
func (a *File) Durable(pos uint64) bool {
	return a.written.Load() >= pos && (!a.syncEach || a.synced.Load() >= pos)
}

// Barrier returns once every record before pos is written to the file,
// and fsynced if the file syncs on each barrier. Callers acknowledge a
// change only after its barrier: then a killed process loses nothing
// acknowledged (and a power loss nothing, under SyncEach).
func (a *File) Barrier(pos uint64) error {
	if a.Durable(pos) {
		return a.Err()
	}
	a.wmu.Lock()
	defer a.wmu.Unlock()
	return a.flushLocked(pos, a.syncEach)
}

// Sync writes and fsyncs everything appended so far.
func (a *File) Sync() error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	return a.flushLocked(a.End(), true)
}

// flushLocked writes the buffer if pos is not written yet, and fsyncs if
// sync. Call with wmu held.
func (a *File) flushLocked(pos uint64, sync bool) error {
	if err := a.Err(); err != nil {
		return err
	}
	if a.written.Load() < pos {
		a.mu.Lock()
		b, end := a.buf, a.end.Load()
		a.buf = a.spare[:0]
		a.mu.Unlock()
		if _, err := a.f.Write(b); err != nil {
			return a.fail(err)
		}
		a.written.Store(end)
		if cap(b) <= keptBuf {
			a.spare = b[:0]
		} else {
			a.spare = nil
		}
	}
	if w := a.written.Load(); sync && a.synced.Load() < w {
		if err := a.f.Sync(); err != nil {
			return a.fail(err)
		}
		a.synced.Store(w)
	}
	return nil
}

// Rotate closes the current segment, fsynced, and starts the next one at
// the position where the records written to it end, which it returns:
// every record before it is in the older segments. With nothing appended
// since the current segment began, it keeps that segment and returns its
// start.
func (a *File) Rotate() (uint64, error) {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if a.End() == a.start {
		return a.start, a.Err()
	}
	if err := a.flushLocked(a.End(), true); err != nil {
		return 0, err
	}
	// What the write took (appends may have come in since End was read):
	// the next segment starts there, or replay would find a gap.
	end := a.written.Load()
	f, err := createSegment(a.dir, end)
	if err != nil {
		return 0, a.fail(err)
	}
	old := a.f
	a.f, a.start = f, end
	if err := old.Close(); err != nil {
		return 0, a.fail(err)
	}
	return end, nil
}

// Remove deletes the segments that end at or before pos (a position
// Rotate returned): their records are no longer needed.
func Remove(dir string, pos uint64) error {
	segs, err := segments(dir)
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s >= pos {
			break
		}
		if err := os.Remove(filepath.Join(dir, segName(s))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("aof: remove segment: %w", err)
		}
	}
	return nil
}

// Size is the number of bytes appended since pos.
func (a *File) Size(pos uint64) uint64 {
	if end := a.End(); end > pos {
		return end - pos
	}
	return 0
}

// Close writes and fsyncs what is buffered and closes the segment.
func (a *File) Close() error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	err := a.flushLocked(a.End(), true)
	if cerr := a.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("aof: close: %w", cerr)
	}
	return err
}

// CloseUnwritten closes the segment without writing the buffer: what a
// killed process leaves. For crash tests.
func (a *File) CloseUnwritten() {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	a.f.Close()
}
