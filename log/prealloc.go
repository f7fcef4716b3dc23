package log

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Preallocated segments, for logs under SyncAlways.
//
// An fsync after appending to a file also commits the file's new size and
// blocks to the file system's journal; an fsync after writing into blocks
// that are already allocated and written does not. On this project's disk
// (ext4, virtio) 28 KiB written and fdatasync'ed took 390-684 µs on average
// appending and 251-275 µs into a file zero-filled beforehand, with the
// next such file being zero-filled beside it (docs/benchmarks.md). Under
// SyncAlways every acknowledgement waits for one of those fsyncs, so the
// log writes into preallocated segments when it can:
//
//   - A background goroutine zero-fills the spare, the next segment's file:
//     spare.tmp, written a MiB at a time and pushed to the disk as it goes
//     (sync_file_range), paced so that it does not crowd out the writer;
//     fsynced, then renamed spare.zero, so a spare.zero is always whole.
//     It starts once the active segment holds preallocAfterBytes or has
//     been fsynced preallocAfterSyncs times (a log that writes little
//     never gets one) or, for a preallocated segment, is half full.
//   - A roll renames the spare to the new segment's name and writes into
//     it at the logical end (pwrite); the segment rolls when it is full. A
//     segment that was not preallocated rolls early once a spare is ready.
//   - A sealed segment is truncated to its last batch (its index must
//     describe the whole file); the active one keeps its zeros, and
//     recovery reads zeros after the last batch as room, not as a torn
//     write (segment.zeroFrom).
//
// The cost: every byte written twice (zeros, then data), and up to two
// files of PreallocateBytes on disk ahead of the data, for SyncAlways logs
// only. A spare that cannot be made (a full disk) is given up until the
// next roll; the log appends meanwhile.

const (
	spareName    = "spare.zero"
	spareTmpName = "spare.tmp"
	// A segment that is not preallocated gets the log a spare once it
	// holds preallocAfterBytes (a quarter of PreallocateBytes if that is
	// less) or has been fsynced preallocAfterSyncs times: small compressed
	// events under SyncAlways pay the journal commit on every fsync
	// without ever filling megabytes.
	preallocAfterBytes = 4 << 20
	preallocAfterSyncs = 1000
	spareChunk         = 1 << 20
	// sparePause follows each zero-filled chunk: at most ~250 MB/s of
	// zeros, leaving the disk to the writer's fsyncs.
	sparePause = 4 * time.Millisecond
)

const (
	spareNone    int32 = iota
	spareFilling       // a goroutine is writing spare.tmp
	spareReady         // spare.zero is whole
	spareFailed        // the last try failed; again after the next roll
)

type spare struct {
	state atomic.Int32
	stop  chan struct{} // closed by Close
	wg    sync.WaitGroup
}

func (l *Log) preallocAfter() int64 { return min(preallocAfterBytes, l.opts.PreallocateBytes/4) }

func (l *Log) preallocating() bool {
	return l.opts.PreallocateBytes > 0 && l.Policy() == SyncAlways
}

// recoverSpare keeps a whole spare from the last run and removes a partial
// one, or any when the log no longer preallocates. names is the
// directory's listing.
func (l *Log) recoverSpare(names []string) {
	for _, name := range names {
		switch name {
		case spareTmpName:
			_ = l.opts.FS.Remove(filepath.Join(l.dir, name))
		case spareName:
			path := filepath.Join(l.dir, name)
			if f, err := l.opts.FS.OpenFile(path, os.O_RDONLY, 0); err == nil {
				st, err := f.Stat()
				f.Close()
				if err == nil && st.Size() == l.opts.PreallocateBytes && l.preallocating() {
					l.spare.state.Store(spareReady)
					continue
				}
			}
			_ = l.opts.FS.Remove(path)
		}
	}
}

// maybeFillSpare starts zero-filling the next segment's file when s is
// far enough along. Writer goroutine.
func (l *Log) maybeFillSpare(s *segment) {
	if !l.preallocating() || l.spare.state.Load() != spareNone {
		return
	}
	if s.alloc == 0 && s.size < l.preallocAfter() && s.syncs < preallocAfterSyncs || s.alloc > 0 && s.size < s.alloc/2 {
		return
	}
	l.spare.state.Store(spareFilling)
	l.spare.wg.Add(1)
	go l.fillSpare(l.opts.PreallocateBytes)
}

func (l *Log) fillSpare(size int64) {
	defer l.spare.wg.Done()
	tmp := filepath.Join(l.dir, spareTmpName)
	err := l.zeroFill(tmp, size)
	if err == nil {
		err = l.opts.FS.Rename(tmp, filepath.Join(l.dir, spareName))
	}
	if err != nil {
		_ = l.opts.FS.Remove(tmp)
		select {
		case <-l.spare.stop:
		default:
			l.opts.Logger.Warn("log: no preallocated segment; appending instead", "dir", l.dir, "err", err)
		}
		l.spare.state.Store(spareFailed)
		return
	}
	l.spare.state.Store(spareReady)
}

// errStopped ends a fill cut short by Close.
var errStopped = errors.New("log: closed while preallocating")

func (l *Log) zeroFill(path string, size int64) error {
	f, err := l.opts.FS.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fd, hasFd := f.(interface{ Fd() uintptr })
	zero := make([]byte, spareChunk)
	for off := int64(0); off < size; off += spareChunk {
		select {
		case <-l.spare.stop:
			return errStopped
		default:
		}
		n := min(int64(spareChunk), size-off)
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			return err
		}
		if hasFd {
			// Out to the disk now, a chunk at a time, so that the writer's
			// fsyncs never meet a pile of dirty zeros.
			_ = unix.SyncFileRange(int(fd.Fd()), off, n,
				unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		}
		time.Sleep(sparePause)
	}
	return f.Sync()
}

// rollToSpare reports whether the active segment s, which is not
// preallocated, should roll now into a ready spare. Writer goroutine.
func (l *Log) rollToSpare(s *segment) bool {
	return s.alloc == 0 && s.size > 0 && l.preallocating() && l.spare.state.Load() == spareReady
}

// takeSpare makes the ready spare segment s's file. Called by newSegment
// with l.mu held, on the writer goroutine (or in recovery).
func (l *Log) takeSpare(s *segment) bool {
	switch l.spare.state.Load() {
	case spareFailed:
		l.spare.state.Store(spareNone) // try again for the segment after
		return false
	case spareReady:
	default:
		return false
	}
	if !l.preallocating() {
		return false
	}
	fs := l.opts.FS
	if err := fs.Rename(filepath.Join(l.dir, spareName), s.path); err != nil {
		l.opts.Logger.Warn("log: preallocated segment not used", "file", s.path, "err", err)
		l.spare.state.Store(spareNone)
		return false
	}
	l.spare.state.Store(spareNone)
	f, err := fs.OpenFile(s.path, os.O_RDWR, 0o644)
	if err == nil {
		err = fs.SyncDir(l.dir)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		// The name is taken by a file of zeros: recovery would read it as
		// an empty preallocated segment, so it is removed.
		_ = fs.Remove(s.path)
		l.opts.Logger.Warn("log: preallocated segment not used", "file", s.path, "err", err)
		return false
	}
	s.f, s.alloc = f, l.opts.PreallocateBytes
	return true
}

// stopSpare ends a fill in progress. Close, after the writer stopped.
func (l *Log) stopSpare() {
	close(l.spare.stop)
	l.spare.wg.Wait()
}
