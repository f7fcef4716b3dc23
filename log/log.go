package log

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flowmesh/flowmesh/internal/fdlimit"
)

// SyncPolicy says when appended data is fsynced, and so what a crash of the
// machine (not just the process) can lose.
type SyncPolicy uint8

const (
	// SyncInterval fsyncs every Options.SyncInterval (default 10ms). An
	// append is acknowledged once written to the file: a process crash
	// loses nothing, a machine crash loses at most the last interval.
	SyncInterval SyncPolicy = iota
	// SyncAlways acknowledges an append only after its batch is fsynced.
	// Appends waiting together share one fsync (group commit). A machine
	// crash loses nothing acknowledged.
	SyncAlways
	// SyncNone leaves flushing to the OS (typically within 30 s). A
	// process crash loses nothing; a machine crash can lose what the OS
	// had not written.
	SyncNone
)

func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncNone:
		return "none"
	}
	return "interval"
}

// ParseSyncPolicy reads "always", "interval" or "none".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "interval", "":
		return SyncInterval, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("log: unknown fsync policy %q (want always, interval or none)", s)
}

// Options configure a Log. Zero values take the defaults noted.
type Options struct {
	FS            FS            // default OSFS
	Codec         Codec         // default CodecS2 (the zero value is CodecNone: set it)
	Sync          SyncPolicy    // default SyncInterval
	SyncInterval  time.Duration // default 10ms
	SegmentBytes  int64         // roll after this size; default 256 MiB
	SegmentAge    time.Duration // roll after this age; default 7 days
	IndexInterval int64         // bytes between sparse index entries; default 4 KiB
	MaxBatchBytes int           // largest records block one batch carries; default 1 MiB
	// Retention: whole sealed segments are deleted once the log is over
	// RetentionBytes (0: no size limit), once their newest record is older
	// than RetentionAge (0: no age limit), or once they lie wholly below
	// the low-water mark.
	RetentionBytes int64
	RetentionAge   time.Duration
	Logger         *slog.Logger
	Now            func() time.Time // default time.Now; tests pass a fake clock
	// OnPublish, if set, runs on the writer goroutine each time new records
	// become readable (after HighWater moved), before their appends'
	// callbacks. It must not block. A topic uses it to wake all its
	// consumers with one signal instead of one channel per partition.
	OnPublish func()
	// PreallocateBytes > 0 makes the log, while its policy is SyncAlways,
	// write into segment files of this size zero-filled ahead of time by
	// a background goroutine (see prealloc.go); 0 turns it off.
	PreallocateBytes int64
	// SyncGroup, if set, takes over the interval fsyncs (syncgroup.go):
	// with many logs written at once, one syncfs per round serves them
	// all. Only a log on OSFS joins; any other keeps its own syncer.
	SyncGroup *SyncGroup
	// Handles bounds the open files of sealed segments (handles.go),
	// shared by the logs given the same one; nil: one shared by every log
	// of the process opened without one.
	Handles *Handles
	// Meta keeps the log's small state (its low-water mark) across
	// restarts; the node passes its Pebble store (kv/store.Namespace). Nil:
	// the low-water mark restarts at the first retained offset.
	Meta Meta
}

// Meta is the small key/value store a log keeps its state in. The log
// defines it and the node provides it, so this package does not depend on
// Pebble.
type Meta interface {
	Get(key string) (value []byte, ok bool, err error)
	Set(key string, value []byte) error
}

const metaLowWater = "low_water" // 8 bytes, little-endian

func (o *Options) fill() {
	if o.FS == nil {
		o.FS = OSFS{}
	}
	if o.Handles == nil {
		o.Handles = defaultHandles
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = 10 * time.Millisecond
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 256 << 20
	}
	if o.SegmentAge <= 0 {
		o.SegmentAge = 7 * 24 * time.Hour
	}
	if o.IndexInterval <= 0 {
		o.IndexInterval = 4 << 10
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Log is an append-only log of records in segment files. Append is safe
// from any goroutine and never blocks on the disk: one writer goroutine
// builds, writes and fsyncs batches and completes appends through their
// callbacks. Reads are safe from any goroutine.
type Log struct {
	dir  string
	opts Options
	lock io.Closer

	mu       sync.Mutex
	pending  *pendingBatch   // the batch appends go into
	full     []*pendingBatch // batches closed at MaxBatchBytes, waiting for the writer
	free     []*pendingBatch // recycled batches
	segs     []*segment      // by base offset; the last one is active
	lowWater uint64
	closed   bool
	failed   error // sticky: set when an fsync fails (what reached the disk is unknown)
	tail     chan struct{}

	committed  atomic.Uint64 // offsets below it are readable
	policy     atomic.Uint32 // SyncPolicy in force (Tune changes it)
	codec      atomic.Uint32 // Codec of new batches (Tune changes it)
	unsynced   atomic.Bool   // written since the last interval fsync
	unsyncedAt atomic.Int64  // when unsynced was set, as time.Since(epoch)
	syncMu     sync.Mutex    // serialises fsyncs of the writer and the interval syncer
	group      *SyncGroup    // does the interval fsyncs if set (then no syncLoop runs)
	dev        uint64        // the file system the log is on, for group
	left       bool          // Close took it out of group; guarded by group.mu
	kick       chan struct{}
	syncKick   chan struct{} // the writer left data unsynced (or Tune chose interval)
	done       chan struct{} // closed when the writer has finished
	syncDone   chan struct{} // closed when the interval syncer has finished
	activeAt   time.Time     // when the active segment got its first batch
	batchBuf   []byte        // the batch being written; writer goroutine only
	spare      spare         // the next preallocated segment file (prealloc.go)
	stats      stats
}

type pendingBatch struct {
	b       builder
	waiters []waiter
	now     int64 // timestamp for records given none; 0 until the first append
}

type waiter struct {
	n  uint32
	cb func(first uint64, err error)
}

type stats struct {
	appends, records, batches, bytes, fsyncs, fsyncNanos, failures atomic.Uint64
	wakeups                                                        atomic.Uint64 // of the writer and the syncer (tests)
	fsyncBuckets                                                   [len(FsyncBounds) + 1]atomic.Uint64
}

// FsyncBounds are the upper bounds of the fsync-latency histogram's
// buckets (Stats.FsyncBuckets; the last bucket has no bound).
var FsyncBounds = [...]time.Duration{100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, time.Second}

// Stats is a snapshot of a log's counters.
type Stats struct {
	Appends, Records, Batches, BytesWritten, Fsyncs, FsyncNanos, Failures uint64
	FsyncBuckets                                                          [len(FsyncBounds) + 1]uint64 // per bucket, not cumulative
	Segments                                                              int
	SizeBytes                                                             int64
	LowWater, HighWater                                                   uint64
	Policy                                                                string
}

// Open opens or creates the log in dir, recovering it: every sealed segment
// gets its index (loaded, or rebuilt by a scan if missing or stale), and the
// last segment is scanned batch by batch and cut at the first torn or
// corrupt batch. A second Open of the same dir, from any process, fails
// with ErrLocked until the first is closed.
func Open(dir string, opts Options) (*Log, error) {
	opts.fill()
	fs := opts.FS
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	lock, err := fs.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil, err
	}
	if err := checkFileLimit(lock, "open "+dir); err != nil {
		lock.Close()
		return nil, err
	}
	l := &Log{dir: dir, opts: opts, lock: lock, pending: nil,
		tail: make(chan struct{}), kick: make(chan struct{}, 1), syncKick: make(chan struct{}, 1), done: make(chan struct{}), syncDone: make(chan struct{}),
		spare: spare{stop: make(chan struct{})}}
	l.pending = l.takeFree()
	l.policy.Store(uint32(opts.Sync))
	l.codec.Store(uint32(opts.Codec))
	if err := l.recover(); err != nil {
		l.closeFiles()
		lock.Close()
		return nil, err
	}
	if g := opts.SyncGroup; g != nil {
		if _, ok := fs.(OSFS); ok {
			dev, err := g.join(dir)
			if err != nil {
				l.closeFiles()
				lock.Close()
				return nil, err
			}
			l.group, l.dev = g, dev
		}
	}
	go l.writeLoop()
	if l.group != nil {
		close(l.syncDone)
	} else {
		go l.syncLoop() // idle unless the policy is interval; Tune can switch to it
	}
	return l, nil
}

// Tuning is the part of a log's configuration that can change while it is
// open. A change applies to batches written after it; batches already on
// disk keep the codec they were written with (it is in their header).
type Tuning struct {
	Sync           SyncPolicy
	Codec          Codec
	RetentionBytes int64
	RetentionAge   time.Duration
}

// Tune changes the sync policy, codec and retention of an open log.
// Appends made after Tune returns follow the new sync promise.
func (l *Log) Tune(t Tuning) {
	l.mu.Lock()
	l.opts.RetentionBytes, l.opts.RetentionAge = t.RetentionBytes, t.RetentionAge
	l.mu.Unlock()
	l.codec.Store(uint32(t.Codec))
	// Under SyncAlways the next write's fsync also covers what the old
	// policy left unsynced (sealed segments were fsynced when they rolled);
	// under SyncInterval the syncer covers it.
	l.policy.Store(uint32(t.Sync))
	if t.Sync == SyncInterval && l.unsynced.Load() {
		l.kickSyncer()
	}
	select { // the writer applies the new retention
	case l.kick <- struct{}{}:
	default:
	}
}

// Policy is the sync policy in force.
func (l *Log) Policy() SyncPolicy { return SyncPolicy(l.policy.Load()) }

func (l *Log) recover() error {
	fs := l.opts.FS
	names, err := fs.List(l.dir)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	l.recoverSpare(names)
	for _, name := range names {
		base, ok := parseSegmentName(name)
		if !ok {
			continue
		}
		s := &segment{path: filepath.Join(l.dir, name), base: base, next: base}
		f, err := fs.OpenFile(s.path, os.O_RDWR, 0o644)
		if err != nil {
			return fmt.Errorf("log: open %s: %w", s.path, err)
		}
		st, err := f.Stat()
		f.Close()
		if err != nil {
			return fmt.Errorf("log: %w", err)
		}
		s.size = st.Size()
		l.segs = append(l.segs, s)
	}
	// One file open at a time but the active segment's: a sealed segment
	// with a valid index is not opened at all, and one that must be
	// scanned goes to the Handles once done, which close what is over
	// their limit.
	for i, s := range l.segs {
		last := i == len(l.segs)-1
		if !last && s.loadIndex(fs) {
			s.sealed = true // its file opens at the first read
			continue
		}
		if s.f, err = fs.OpenFile(s.path, os.O_RDWR, 0o644); err != nil {
			return fmt.Errorf("log: open %s: %w", s.path, err)
		}
		if err := checkFileLimit(s.f, "open segment "+s.path); err != nil {
			return err
		}
		var res scanResult
		if covered, ok := l.checkpointOf(s, last); ok {
			// The active segment's checkpoint: trust the part it covers
			// (written and fsynced before the checkpoint), scan the tail.
			res = s.scanFrom(covered, l.opts.IndexInterval)
			s.checkpointed = covered
		} else {
			res = s.scan(l.opts.IndexInterval)
		}
		for _, h := range res.holes {
			l.opts.Logger.Error("log: corrupt batches skipped", "file", s.path, "from_byte", h.pos, "to_byte", h.end,
				"lost_offsets_from", h.first, "lost_offsets_to", h.nxt)
		}
		if last && res.zeroTail {
			// A preallocated segment: zeros after the last batch are room
			// to write into, not a torn write.
			s.alloc, s.size = s.size, res.validEnd
		} else if res.validEnd < s.size {
			if !last && res.torn != nil {
				l.opts.Logger.Error("log: sealed segment ends in a bad batch", "file", s.path, "err", res.torn)
			}
			l.opts.Logger.Warn("log: truncating torn tail", "file", s.path, "at_byte", res.validEnd,
				"cut_bytes", s.size-res.validEnd, "reason", res.torn)
			if err := s.f.Truncate(res.validEnd); err != nil {
				return fmt.Errorf("log: truncate %s: %w", s.path, err)
			}
			if err := s.f.Sync(); err != nil {
				return fmt.Errorf("log: sync %s: %w", s.path, err)
			}
			s.size = res.validEnd
		}
		if !last {
			if err := s.writeIndex(fs); err != nil {
				l.opts.Logger.Warn("log: rewriting index", "file", s.path, "err", err)
			}
			l.opts.Handles.seal(s)
		}
	}
	for i := 1; i < len(l.segs); i++ {
		if l.segs[i].base < l.segs[i-1].next {
			return fmt.Errorf("%w: segment %s starts at %d, before the end %d of the one before",
				ErrCorrupt, l.segs[i].path, l.segs[i].base, l.segs[i-1].next)
		}
	}
	if len(l.segs) == 0 {
		if err := l.newSegment(0); err != nil {
			return err
		}
	}
	l.lowWater = l.segs[0].base
	l.committed.Store(l.active().next)
	if l.opts.Meta != nil {
		v, ok, err := l.opts.Meta.Get(metaLowWater)
		if err != nil {
			return fmt.Errorf("log: read metadata: %w", err)
		}
		if ok && len(v) == 8 {
			if lw := binary.LittleEndian.Uint64(v); lw > l.lowWater {
				l.lowWater = min(lw, l.committed.Load())
			}
		}
	}
	l.activeAt = l.opts.Now()
	return nil
}

// checkpointOf loads the index checkpoint of the active segment; sealed
// segments have had their full index tried already.
func (l *Log) checkpointOf(s *segment, last bool) (int64, bool) {
	if !last {
		return 0, false
	}
	return s.loadIndexPrefix(l.opts.FS, true)
}

func (l *Log) active() *segment { return l.segs[len(l.segs)-1] }

// fileHeadroom is how many descriptors opening a log or a segment must
// leave free (internal/fdlimit). Partitions that filled the open-file
// limit would leave none for gnet's acceptor, which stops the whole port
// when accept(2) fails; connections stop at a larger headroom.
const fileHeadroom = 64

// checkFileLimit fails with EMFILE when f took one of the last
// descriptors (f without an Fd method, such as a test file system's, is
// not checked).
func checkFileLimit(f any, what string) error {
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok || fdlimit.Free(int(fd.Fd())) >= fileHeadroom {
		return nil
	}
	return fmt.Errorf("log: %s: %w (the open-file limit, %d, is nearly reached: raise it, ulimit -n or LimitNOFILE)",
		what, syscall.EMFILE, fdlimit.Limit())
}

func (l *Log) newSegment(base uint64) error {
	s := &segment{path: segmentPath(l.dir, base), base: base, next: base}
	if l.takeSpare(s) {
		l.segs = append(l.segs, s)
		return nil
	}
	f, err := l.opts.FS.OpenFile(s.path, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("log: create segment: %w", err)
	}
	if err := checkFileLimit(f, "create segment "+s.path); err != nil {
		f.Close()
		l.opts.FS.Remove(s.path)
		return err
	}
	s.f = f
	if err := l.opts.FS.SyncDir(l.dir); err != nil {
		return fmt.Errorf("log: sync dir: %w", err)
	}
	l.segs = append(l.segs, s)
	return nil
}

// Append adds records as one unit and calls cb from the writer goroutine
// with the offset of the first record once they are durable per the sync
// policy, or with an error, in which case none of them was stored. Record
// bytes are copied before Append returns; cb must not block.
func (l *Log) Append(recs []Record, cb func(first uint64, err error)) {
	if len(recs) == 0 {
		cb(l.committed.Load(), nil)
		return
	}
	l.mu.Lock()
	if l.closed || l.failed != nil {
		err := l.failed
		if l.closed {
			err = ErrClosed
		}
		l.mu.Unlock()
		cb(0, err)
		return
	}
	size := 0
	for i := range recs {
		size += len(recs[i].Key) + len(recs[i].Headers) + len(recs[i].Value) + 3*binary.MaxVarintLen32
	}
	if size > maxAppendBytes {
		l.mu.Unlock()
		cb(0, fmt.Errorf("log: append of %d bytes is over the %d-byte limit of one batch", size, maxAppendBytes))
		return
	}
	p := l.pending
	if len(p.b.raw) > 0 && len(p.b.raw)+size > l.opts.MaxBatchBytes {
		// Close this batch: a batch stays small enough to decode (the
		// reader's 64 MiB bound) and to compress in one go.
		l.full = append(l.full, p)
		p = l.takeFree()
		l.pending = p
	}
	if p.now == 0 {
		// One clock read per batch, not per append: records stamped by the
		// log share the time their batch started gathering (well under the
		// sync interval), and time.Now was an eighth of the append cost.
		p.now = l.opts.Now().UnixNano()
	}
	for i := range recs {
		r := recs[i]
		if r.Timestamp == 0 {
			r.Timestamp = p.now
		}
		p.b.add(&r)
	}
	p.waiters = append(p.waiters, waiter{n: uint32(len(recs)), cb: cb})
	l.mu.Unlock()
	l.stats.appends.Add(1)
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// maxFreeBatches bounds the recycled batches a log keeps (each holds a
// buffer as large as the largest batch it carried, at most MaxBatchBytes).
// A log keeps as many as it had in flight at once: one or two but for
// bursts. Trimming them whenever the writer found nothing more to do
// (measured 2026-12-03) re-grew buffers under the interval policy and cost
// ~5% of pipelined writes.
const maxFreeBatches = 8

// maxAppendBytes bounds one Append: its records always go in one batch,
// which must stay under the reader's decode bound.
const maxAppendBytes = maxBatchData / 2

func (l *Log) takeFree() *pendingBatch {
	if n := len(l.free); n > 0 {
		p := l.free[n-1]
		l.free = l.free[:n-1]
		return p
	}
	// Small at first, grown by append and kept when recycled: a busy log
	// soon holds buffers of its batch size and copies no more, while an
	// idle one (most of them, on a node with thousands of partitions)
	// holds a few KiB. Sized for a full batch up front, as before
	// 2026-12-03, 1000 partitions and 1000 queues reserved 1.45 GB of heap.
	return &pendingBatch{b: builder{raw: make([]byte, 0, min(initialBatchBytes, l.opts.MaxBatchBytes))}}
}

// initialBatchBytes is the first capacity of a batch's buffer.
const initialBatchBytes = 4 << 10

// AppendWait appends and waits for the outcome.
func (l *Log) AppendWait(ctx context.Context, recs ...Record) (uint64, error) {
	type res struct {
		off uint64
		err error
	}
	ch := make(chan res, 1)
	l.Append(recs, func(off uint64, err error) { ch <- res{off, err} })
	select {
	case r := <-ch:
		return r.off, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// writeLoop is the one goroutine that writes segment files. Appends that
// arrive while it writes or fsyncs gather in the next pending batch: that is
// the group commit.
func (l *Log) writeLoop() {
	defer close(l.done)
	// The writer has no ticker: an idle log sleeps until an append, a
	// low-water change, a Tune or its age limit is due. A 10 ms ticker per
	// log (and one in the syncer) cost a node with 1000 idle partitions
	// 73% of a core.
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	l.retain(expiry)
	dirty := false
	for {
		select {
		case <-l.kick:
		case <-expiry.C:
			l.stats.wakeups.Add(1)
			l.retain(expiry)
			continue
		}
		l.stats.wakeups.Add(1)
		l.mu.Lock()
		batches := l.full
		if len(l.pending.waiters) > 0 {
			batches = append(batches, l.pending)
			l.pending = l.takeFree()
		}
		l.full = nil
		if len(batches) == 0 {
			closed := l.closed
			l.mu.Unlock()
			if closed {
				if dirty && l.Policy() != SyncNone {
					l.fsync()
				}
				l.checkpoint(true)
				return
			}
			l.retain(expiry) // a kick without appends: SetLowWater or Tune
			continue
		}
		l.mu.Unlock()
		segs := len(l.segs) // only this goroutine changes l.segs
		if l.writeBatches(batches) {
			dirty = true
			if !l.unsynced.Swap(true) {
				l.unsyncedAt.Store(int64(time.Since(epoch)))
				l.kickSyncer()
			}
		}
		l.checkpoint(false)
		l.mu.Lock()
		// A roll changes the oldest segment or adds one; a size limit can
		// be passed by any write.
		retain := len(l.segs) != segs || l.opts.RetentionBytes > 0
		for _, p := range batches {
			p.b.reset()
			p.waiters = p.waiters[:0]
			p.now = 0
			if len(l.free) < maxFreeBatches {
				l.free = append(l.free, p)
			}
		}
		if len(l.pending.waiters) > 0 || len(l.full) > 0 || l.closed {
			select {
			case l.kick <- struct{}{}:
			default:
			}
		}
		l.mu.Unlock()
		if retain {
			l.retain(expiry)
		}
	}
}

// retain applies retention and sets expiry to when the oldest sealed
// segment passes the age limit, capped at maxExpiryWait so that a clock
// change cannot put it off for long. Writer goroutine only.
func (l *Log) retain(expiry *time.Timer) {
	l.mu.Lock()
	l.enforceRetention()
	var wait time.Duration
	if age := l.opts.RetentionAge; age > 0 && len(l.segs) > 1 && l.segs[0].maxTs > 0 {
		wait = time.Duration(l.segs[0].maxTs + int64(age) - l.opts.Now().UnixNano())
		if wait <= 0 {
			// Still due after enforceRetention: its delete failed (and
			// was logged); try again later, not in a loop.
			wait = retryExpiryWait
		}
		wait = min(wait, maxExpiryWait)
	}
	l.mu.Unlock()
	expiry.Stop()
	if wait > 0 {
		expiry.Reset(wait)
	}
}

// epoch is the origin of the monotonic times kept in atomics.
var epoch = time.Now()

// retryExpiryWait and maxExpiryWait bound the wait for the age limit.
const (
	retryExpiryWait = time.Second
	maxExpiryWait   = time.Minute
)

func (l *Log) kickSyncer() {
	if l.group != nil {
		l.group.add(l)
		return
	}
	select {
	case l.syncKick <- struct{}{}:
	default:
	}
}

// syncLoop fsyncs the active segment at most SyncInterval after the write
// that left it unsynced. It runs beside the writer rather than in it, so
// the writer keeps writing while the disk flushes: with the fsync in the
// writer, every interval stalled the appends behind it and the log reached
// about 60% of the disk's sequential speed instead of near all of it. It
// sleeps while nothing is unsynced (the writer kicks it).
func (l *Log) syncLoop() {
	defer close(l.syncDone)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-l.syncKick:
		case <-l.done:
			return
		}
		l.stats.wakeups.Add(1)
		// The interval counts from the write (the kick may have waited
		// for the last fsync to finish).
		if wait := l.opts.SyncInterval - (time.Since(epoch) - time.Duration(l.unsyncedAt.Load())); wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
		}
		// Under none the flag stays set (no kicks meanwhile); Tune kicks
		// this loop when it switches to interval.
		if l.Policy() == SyncInterval && l.unsynced.Swap(false) {
			l.fsync()
		}
	}
}

// writeBatches writes the batches, in order, with one write call, applies
// the sync policy once for all of them, and completes their waiters. It
// reports whether unsynced data was written.
func (l *Log) writeBatches(ps []*pendingBatch) bool {
	s := l.active()
	limit := l.opts.SegmentBytes
	if s.alloc > 0 {
		limit = min(limit, s.alloc)
	}
	if s.size >= limit || s.size > 0 && l.opts.Now().Sub(l.activeAt) >= l.opts.SegmentAge || l.rollToSpare(s) {
		if err := l.roll(); err != nil {
			l.fail(ps, fmt.Errorf("log: roll segment: %w", err))
			return false
		}
		s = l.active()
	}
	base := s.next
	l.batchBuf = l.batchBuf[:0]
	next := base
	for _, p := range ps {
		l.batchBuf = p.b.seal(l.batchBuf, Codec(l.codec.Load()), next)
		next += uint64(p.b.count)
	}
	n, err := s.f.WriteAt(l.batchBuf, s.size)
	if err != nil || n != len(l.batchBuf) {
		// A partial write (disk full) must not stay: cut the file back so
		// the next batch starts where this one did (and a scan after a
		// crash finds no stray bytes there). A preallocated segment loses
		// its room; it appends from here on.
		s.alloc = 0
		if terr := s.f.Truncate(s.size); terr != nil {
			l.opts.Logger.Error("log: cannot cut a failed write; later batches would follow garbage",
				"file", s.path, "err", terr)
			l.setFailed(fmt.Errorf("log: write failed and could not be undone: %w", terr))
		}
		if err == nil {
			err = io.ErrShortWrite
		}
		l.fail(ps, fmt.Errorf("log: append to %s: %w", s.path, err))
		return false
	}
	l.mu.Lock()
	if s.size == 0 {
		l.activeAt = l.opts.Now()
	}
	for pos := 0; pos < len(l.batchBuf); {
		h, _ := decodeHeader(l.batchBuf[pos:])
		s.addIndex(&h, s.size, l.opts.IndexInterval)
		s.size += h.size()
		s.next = h.nextOffset()
		pos += int(h.size())
		l.stats.batches.Add(1)
		l.stats.records.Add(uint64(h.count))
	}
	l.mu.Unlock()
	l.stats.bytes.Add(uint64(n))
	dirty := true
	if l.Policy() == SyncAlways {
		if err := l.fsync(); err != nil {
			l.fail(ps, err)
			return false
		}
		s.syncs++
		dirty = false
	}
	l.publish(s.next)
	if l.opts.OnPublish != nil {
		l.opts.OnPublish()
	}
	l.maybeFillSpare(s)
	off := base
	for _, p := range ps {
		for _, w := range p.waiters {
			w.cb(off, nil)
			off += uint64(w.n)
		}
	}
	return dirty
}

// checkpointBytes is how much the active segment grows between index
// checkpoints; recovery scans at most this much (plus what a crash cut).
const checkpointBytes = 32 << 20

// checkpoint writes the active segment's index once it has grown by
// checkpointBytes (or always, on close), after an fsync, so the index never
// covers data that is not on disk. Writer goroutine only.
func (l *Log) checkpoint(force bool) {
	s := l.active()
	if s.size == s.checkpointed || !force && s.size-s.checkpointed < checkpointBytes {
		return
	}
	l.mu.Lock()
	failed := l.failed != nil
	l.mu.Unlock()
	if failed || s.f.Sync() != nil {
		return
	}
	l.mu.Lock()
	snap := &segment{path: s.path, size: s.size, next: s.next, index: append([]indexEntry(nil), s.index...)}
	l.mu.Unlock()
	if err := snap.writeIndex(l.opts.FS); err != nil {
		l.opts.Logger.Warn("log: index checkpoint not written", "file", s.path, "err", err)
		return
	}
	s.checkpointed = snap.size
}

func (l *Log) fsync() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	s := l.segs[len(l.segs)-1]
	// Pinned: the writer may roll meanwhile, and a sealed segment's
	// file may be closed when nothing pins it.
	ok, err := l.opts.Handles.pin(s, l.opts.FS)
	l.mu.Unlock()
	if !ok || err != nil {
		// Not reached: under l.mu the segment is the active one, open.
		return err
	}
	defer l.opts.Handles.unpin(s)
	start := time.Now()
	err = s.f.Sync()
	l.stats.observeFsync(time.Since(start))
	if err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages:
		// what is on disk is unknown, so the log stops taking appends
		// rather than acknowledge data it may have lost.
		err = fmt.Errorf("log: fsync %s: %w", s.path, err)
		l.setFailed(err)
		l.opts.Logger.Error("log: fsync failed; log is read-only until reopened", "err", err)
	}
	return err
}

// observeFsync counts a sync that made the log's data durable.
func (st *stats) observeFsync(took time.Duration) {
	st.fsyncs.Add(1)
	st.fsyncNanos.Add(uint64(took))
	st.fsyncBuckets[fsyncBucket(took)].Add(1)
}

// fsyncBucket is the FsyncBounds bucket took falls in.
func fsyncBucket(took time.Duration) int {
	b := 0
	for b < len(FsyncBounds) && took > FsyncBounds[b] {
		b++
	}
	return b
}

func (l *Log) setFailed(err error) {
	l.mu.Lock()
	if l.failed == nil {
		l.failed = err
	}
	l.mu.Unlock()
}

func (l *Log) fail(ps []*pendingBatch, err error) {
	l.stats.failures.Add(1)
	for _, p := range ps {
		for _, w := range p.waiters {
			w.cb(0, err)
		}
	}
}

// publish makes offsets below next readable and wakes tail readers.
func (l *Log) publish(next uint64) {
	l.committed.Store(next)
	l.mu.Lock()
	close(l.tail)
	l.tail = make(chan struct{})
	l.mu.Unlock()
}

// roll seals the active segment (fsync, index file) and starts a new one.
func (l *Log) roll() error {
	s := l.active()
	if s.alloc > s.size {
		// A sealed segment ends at its last batch: its index is trusted
		// only when it describes the whole file.
		if err := s.f.Truncate(s.size); err != nil {
			return err
		}
	}
	s.alloc = 0
	if err := s.f.Sync(); err != nil {
		return err
	}
	if err := s.writeIndex(l.opts.FS); err != nil {
		l.opts.Logger.Warn("log: index not written; it will be rebuilt on open", "file", s.path, "err", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.newSegment(s.next); err != nil {
		return err
	}
	l.opts.Handles.seal(s)
	l.activeAt = l.opts.Now()
	l.enforceRetention()
	return nil
}

// enforceRetention deletes whole sealed segments past the limits. Called
// with l.mu held, on the writer goroutine.
func (l *Log) enforceRetention() {
	total := int64(0)
	for _, s := range l.segs {
		total += s.size
	}
	now := l.opts.Now().UnixNano()
	for len(l.segs) > 1 {
		s := l.segs[0]
		over := l.opts.RetentionBytes > 0 && total > l.opts.RetentionBytes
		old := l.opts.RetentionAge > 0 && s.maxTs > 0 && now-s.maxTs > int64(l.opts.RetentionAge)
		acked := s.next <= l.lowWater && s.next > s.base
		if !over && !old && !acked {
			return
		}
		l.opts.Handles.remove(s)
		if err := s.removeFiles(l.opts.FS); err != nil {
			l.opts.Logger.Error("log: retention could not delete a segment", "file", s.path, "err", err)
			return
		}
		l.opts.Logger.Debug("log: segment deleted by retention", "file", s.path, "size", s.size,
			"by_size", over, "by_age", old, "below_low_water", acked)
		total -= s.size
		l.segs = l.segs[1:]
		if l.segs[0].base > l.lowWater {
			l.lowWater = l.segs[0].base
		}
	}
}

// SetLowWater tells the log that offsets below off are no longer needed
// (a job queue calls it as work is acknowledged); whole segments below it
// are deleted by the writer.
func (l *Log) SetLowWater(off uint64) error {
	l.mu.Lock()
	changed := off > l.lowWater
	if changed {
		l.lowWater = min(off, l.committed.Load())
	}
	lw := l.lowWater
	l.mu.Unlock()
	if changed && l.opts.Meta != nil {
		if err := l.opts.Meta.Set(metaLowWater, binary.LittleEndian.AppendUint64(nil, lw)); err != nil {
			return fmt.Errorf("log: persist low-water mark: %w", err)
		}
	}
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return nil
}

// Released is the low-water mark set by SetLowWater (restored from Meta on
// Open): every offset below it was released by the log's owner, even where
// its segment is still on disk. It is at least LowWater.
func (l *Log) Released() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.lowWater, l.segs[0].base)
}

// LowWater is the first offset still retained.
func (l *Log) LowWater() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[0].base
}

// HighWater is the offset the next record will get: offsets below it are
// readable.
func (l *Log) HighWater() uint64 { return l.committed.Load() }

// Notify returns a channel closed when new records become readable. Tail
// readers check HighWater, then wait on the channel they got before.
func (l *Log) Notify() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tail
}

// Read returns decoded records from offset on, up to about maxBytes of
// record data (at least one record if any is readable). The records own
// their bytes (a record shares its batch's memory with the batch's other
// records) and stay valid after later reads. Reading at HighWater returns
// no records and no error; below the low-water mark, ErrOutOfRange. A
// corrupt batch gives an error wrapping ErrCorrupt with file and position;
// reading on from the offset after the damaged range works.
func (l *Log) Read(offset uint64, maxBytes int, dst []Record) ([]Record, error) {
	return l.read(offset, 0, maxBytes, dst, nil)
}

// Reader reads a log with buffers it keeps from one Read to the next, so a
// sequential reader (a consumer catching up) allocates nothing per batch.
// The records of a Read are valid until the Reader's next Read. A Reader is
// not safe for concurrent use; each reader goroutine keeps its own.
type Reader struct {
	l    *Log
	bufs readBufs
	recs []Record
}

type readBufs struct {
	hb      []byte
	raw     [][]byte // per batch of one Read: the batch as read
	scratch [][]byte // per batch of one Read: its decompressed records

	// Where the last Read stopped: the next offset, and the position of
	// the batch holding it in the segment based at hintBase. A Read at
	// that offset starts there instead of at the index entry before it
	// (up to IndexInterval of batches to read again, each a pread, a CRC
	// and a decode).
	hintOK   bool
	hintOff  uint64
	hintBase uint64
	hintPos  int64
}

// NewReader returns a Reader of l.
func (l *Log) NewReader() *Reader {
	return &Reader{l: l, bufs: readBufs{hb: make([]byte, batchHeaderSize)}}
}

// Read is Log.Read into the Reader's own buffers.
func (r *Reader) Read(offset uint64, maxBytes int) ([]Record, error) {
	return r.ReadN(offset, 0, maxBytes)
}

// ReadN is Read of at most maxRecords records (0: no limit). A caller
// that can take only a few records (a consumer's free window) should say
// so: Read decodes up to maxBytes of batches, and what the caller drops
// is read again next time. A ReadN at the offset where the last one
// stopped starts at the batch holding it.
func (r *Reader) ReadN(offset uint64, maxRecords, maxBytes int) ([]Record, error) {
	var err error
	r.recs, err = r.l.read(offset, maxRecords, maxBytes, r.recs, &r.bufs)
	return r.recs, err
}

// read reads into memory of its own per batch (rb == nil) or into rb's
// buffers, one pair per batch of this read; it stops after maxRecords
// records (0: no limit) or about maxBytes of record data.
func (l *Log) read(offset uint64, maxRecords, maxBytes int, dst []Record, rb *readBufs) ([]Record, error) {
	dst = dst[:0]
	hw := l.committed.Load()
	if offset >= hw {
		if offset > hw {
			return dst, fmt.Errorf("%w: %d is past the high-water mark %d", ErrOutOfRange, offset, hw)
		}
		return dst, nil
	}
	s, err := l.segmentFor(offset)
	if err != nil {
		return dst, err
	}
	defer l.opts.Handles.unpin(s)
	var hb, buf, scratch []byte
	if rb != nil {
		hb = rb.hb
	} else {
		hb = make([]byte, batchHeaderSize)
	}
	// The index and the size of the active segment grow under l.mu.
	l.mu.Lock()
	pos := s.locate(offset)
	end := s.size // covers every offset below hw, which was read first
	l.mu.Unlock()
	if rb != nil {
		if rb.hintOK && rb.hintOff == offset && rb.hintBase == s.base && rb.hintPos >= pos {
			pos = rb.hintPos
		}
		rb.hintOK = false
	}
	if maxRecords <= 0 {
		maxRecords = math.MaxInt
	}
	got, nb := 0, 0
	// resume is the batch holding the first record at or after offset that
	// this read leaves out (at or past hw, or past maxRecords): where the
	// next read starts. end may be well past hw (appends published since
	// hw was loaded; under SyncAlways, batches written but not yet
	// fsynced), so the read stops there rather than scan batches it would
	// drop; a hint at the last batch scanned skipped the ones between
	// (TestReaderAtTheTail).
	resume := int64(-1)
	for pos < end && got < maxBytes && len(dst) < maxRecords && resume < 0 {
		if hl, ok := s.holeAt(pos); ok {
			if offset < hl.nxt {
				return dst, fmt.Errorf("%w: %s bytes %d-%d (offsets %d-%d)", ErrCorrupt, s.path, hl.pos, hl.end, hl.first, hl.nxt)
			}
			pos = hl.end
			continue
		}
		if rb != nil {
			// Batch nb of this read gets buffer pair nb: the records of
			// earlier batches of the same read must stay intact.
			for len(rb.raw) <= nb {
				rb.raw, rb.scratch = append(rb.raw, nil), append(rb.scratch, nil)
			}
			buf, scratch = rb.raw[nb], rb.scratch[nb]
		}
		h, batch, err := readBatchAt(s.f, pos, end, hb, &buf)
		if rb != nil {
			rb.raw[nb] = buf
		}
		if err != nil {
			// Data that verified when written no longer does (a bad
			// sector, a stray write). Mark the damaged range so the next
			// read can step over it, and say where it is.
			s.markHole(pos, hb, &buf)
			return dst, fmt.Errorf("%s at byte %d: %w", s.path, pos, err)
		}
		batchPos := pos
		pos += h.size()
		if h.nextOffset() <= offset {
			continue
		}
		start := len(dst)
		if rb == nil {
			// The records must outlive the read buffer, which the next
			// batch reuses: each batch is decoded into memory of its own
			// (one allocation per batch; copying each record out was three
			// per record and a fifth of a catch-up read's time).
			if h.codec == CodecNone {
				batch = clone(batch)
			}
			scratch = nil
		}
		dst, scratch, err = decodeBatch(batch, scratch, dst)
		if rb != nil {
			rb.scratch[nb] = scratch
			nb++
		}
		if err != nil {
			return dst[:start], fmt.Errorf("%s at byte %d: %w", s.path, pos-h.size(), err)
		}
		// Keep only records at or after offset, below hw, up to maxRecords.
		kept := dst[:start]
		for _, r := range dst[start:] {
			switch {
			case r.Offset < offset:
			case r.Offset < hw && len(kept) < maxRecords:
				got += len(r.Key) + len(r.Headers) + len(r.Value)
				kept = append(kept, r)
			case resume < 0:
				resume = batchPos
			}
		}
		dst = kept
	}
	if rb != nil && len(dst) > 0 {
		next := dst[len(dst)-1].Offset + 1
		rb.hintOK, rb.hintOff, rb.hintBase, rb.hintPos = true, next, s.base, pos
		if resume >= 0 {
			rb.hintPos = resume // stopped inside that batch, or before it
		}
	}
	return dst, nil
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// segmentFor finds and pins the segment holding offset.
func (l *Log) segmentFor(offset uint64) (*segment, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 || offset < l.segs[0].base {
		return nil, fmt.Errorf("%w: %d is below the low-water mark", ErrOutOfRange, offset)
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > offset }) - 1
	s := l.segs[i]
	if ok, err := l.opts.Handles.pin(s, l.opts.FS); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: %d was deleted", ErrOutOfRange, offset)
	}
	return s, nil
}

// SeekTime returns the offset of the first record with a timestamp at or
// after ts, or HighWater if there is none. It costs a binary search over
// segments and over one segment's index, plus one index interval of scan.
func (l *Log) SeekTime(ts int64) (uint64, error) {
	hw := l.committed.Load() // what readers may see: batches past it are not answered
	l.mu.Lock()
	var s *segment
	for _, seg := range l.segs {
		if seg.maxTs >= ts {
			s = seg
			break
		}
	}
	if s != nil {
		ok, err := l.opts.Handles.pin(s, l.opts.FS)
		if err != nil {
			l.mu.Unlock()
			return 0, err
		}
		if !ok {
			s = nil
		}
	}
	l.mu.Unlock()
	if s == nil {
		return hw, nil
	}
	defer l.opts.Handles.unpin(s)
	hb := make([]byte, batchHeaderSize)
	var buf, scratch []byte
	var recs []Record
	l.mu.Lock() // the index and the size of the active segment grow under it
	start, end := s.locateTime(ts), s.size
	l.mu.Unlock()
	for pos := start; pos < end; {
		if hl, ok := s.holeAt(pos); ok {
			pos = hl.end
			continue
		}
		h, batch, err := readBatchAt(s.f, pos, end, hb, &buf)
		if err != nil {
			return 0, fmt.Errorf("%s at byte %d: %w", s.path, pos, err)
		}
		pos += h.size()
		if h.maxTs < ts {
			continue
		}
		recs, scratch, err = decodeBatch(batch, scratch, recs[:0])
		if err != nil {
			return 0, err
		}
		for _, r := range recs {
			if r.Offset >= hw {
				return hw, nil
			}
			if r.Timestamp >= ts {
				return r.Offset, nil
			}
		}
	}
	return hw, nil
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	size := int64(0)
	for _, s := range l.segs {
		size += s.size
	}
	st := Stats{Segments: len(l.segs), SizeBytes: size, LowWater: l.segs[0].base, Policy: l.Policy().String()}
	l.mu.Unlock()
	st.HighWater = l.committed.Load()
	st.Appends, st.Records, st.Batches = l.stats.appends.Load(), l.stats.records.Load(), l.stats.batches.Load()
	st.BytesWritten, st.Fsyncs, st.FsyncNanos = l.stats.bytes.Load(), l.stats.fsyncs.Load(), l.stats.fsyncNanos.Load()
	st.Failures = l.stats.failures.Load()
	for i := range st.FsyncBuckets {
		st.FsyncBuckets[i] = l.stats.fsyncBuckets[i].Load()
	}
	return st
}

// Close waits for pending appends, fsyncs (unless the policy is none) and
// closes every file and the lock. The active segment has no index file: it
// is always scanned on open.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	<-l.done
	<-l.syncDone
	if l.group != nil {
		l.group.leave(l)
	}
	l.stopSpare()
	err := l.closeFiles()
	if lerr := l.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

func (l *Log) closeFiles() error {
	h := l.opts.Handles
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, s := range l.segs {
		s.doomed = true // no new pins
		if err := h.closeFile(s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
