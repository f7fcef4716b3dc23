package log

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A SyncGroup keeps the interval promise of many logs at once. Alone, a
// log under SyncInterval fsyncs its active segment one interval after the
// write that left it unsynced; a node writing to 256 partitions then asks
// the disk for 25,600 fsyncs a second, each with its own journal commit and
// cache flush, and this project's disk gave 6.5k of them: the writes slowed
// to 40% of what they were with no fsync, and each file was synced every
// ~27 ms, not every 10 (docs/benchmarks.md, "Many partitions under
// interval"). In a group, one goroutine waits for the first due log and
// then makes every log with unsynced data durable: with minSyncfs or more
// of them, by one syncfs(2) per file system, which writes out and commits
// everything dirty on it at once; with fewer, by an fsync of each, as
// alone. syncfs also flushes files the group does not own (the node's
// Pebble, other programs' files on the same file system): docs/storage.md
// says to give the data directory its own file system. A failed syncfs
// cannot say whose data it lost, so each log of that round is then fsynced
// on its own: a log whose fsync fails stops taking appends, as alone.
//
// Only logs on the real file system (OSFS) join; a log whose FS is
// something else (tests' fault injection) keeps its own syncer.
type SyncGroup struct {
	logger     *slog.Logger
	syncfs     func(fd int) error // unix.Syncfs; tests count and fail it
	afterRound func()             // tests: a round ended

	mu    sync.Mutex
	logs  map[*Log]struct{} // unsynced under interval, waiting for a round
	devs  map[uint64]*os.File
	round sync.Mutex // held for a round; a closing log waits on it
	kick  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	stats groupStats
}

// minSyncfs is the number of logs due in one round from which a syncfs
// replaces their fsyncs. Below it an fsync each costs about the same and
// writes out only the log's own file.
const minSyncfs = 4

type groupStats struct {
	rounds, syncfs, syncfsNanos, covered, failures atomic.Uint64
	buckets                                        [len(FsyncBounds) + 1]atomic.Uint64
}

// SyncGroupStats is a snapshot of a group's counters: rounds of syncs, the
// syncfs calls among them (their total time and latency histogram, on the
// FsyncBounds buckets), the log syncs those calls stood for, and the
// syncfs calls that failed.
type SyncGroupStats struct {
	Rounds, Syncfs, SyncfsNanos, Covered, Failures uint64
	Buckets                                        [len(FsyncBounds) + 1]uint64
}

// NewSyncGroup starts a group's goroutine; Close stops it. Logs join it
// through Options.SyncGroup.
func NewSyncGroup(logger *slog.Logger) *SyncGroup {
	return newSyncGroup(logger, unix.Syncfs, nil)
}

func newSyncGroup(logger *slog.Logger, syncfs func(int) error, afterRound func()) *SyncGroup {
	if logger == nil {
		logger = slog.Default()
	}
	g := &SyncGroup{logger: logger, syncfs: syncfs, afterRound: afterRound, logs: map[*Log]struct{}{},
		devs: map[uint64]*os.File{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go g.run()
	return g
}

// Stats returns the group's counters.
func (g *SyncGroup) Stats() SyncGroupStats {
	st := SyncGroupStats{Rounds: g.stats.rounds.Load(), Syncfs: g.stats.syncfs.Load(), SyncfsNanos: g.stats.syncfsNanos.Load(),
		Covered: g.stats.covered.Load(), Failures: g.stats.failures.Load()}
	for i := range st.Buckets {
		st.Buckets[i] = g.stats.buckets[i].Load()
	}
	return st
}

// Close stops the group after its current round. Close the logs first: a
// log still open when its group closes loses its interval syncs (the ones
// at roll and close still happen).
func (g *SyncGroup) Close() error {
	select {
	case <-g.stop:
		return ErrClosed
	default:
	}
	close(g.stop)
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for _, f := range g.devs {
		errs = append(errs, f.Close())
	}
	g.devs = nil
	return errors.Join(errs...)
}

// join returns the device of dir's file system, opening a handle on it for
// syncfs if it is the first log there.
func (g *SyncGroup) join(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("log: stat %s: %w", dir, err)
	}
	dev := uint64(st.Dev)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.devs == nil {
		return 0, fmt.Errorf("log: sync group of %s: %w", dir, ErrClosed)
	}
	if _, ok := g.devs[dev]; !ok {
		// Any file on the file system will do; the log's directory stays
		// usable for syncfs after the log is deleted.
		f, err := os.Open(dir)
		if err != nil {
			return 0, fmt.Errorf("log: sync group: %w", err)
		}
		if err := checkFileLimit(f, "open "+dir); err != nil {
			f.Close()
			return 0, err
		}
		g.devs[dev] = f
	}
	return dev, nil
}

// add queues l for the next round (its writer left data unsynced, or Tune
// chose interval).
func (g *SyncGroup) add(l *Log) {
	g.mu.Lock()
	if l.left { // a Tune racing Close
		g.mu.Unlock()
		return
	}
	g.logs[l] = struct{}{}
	g.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// leave takes l out of the group and waits for a round that may be using
// it to end, so that l can close its files.
func (g *SyncGroup) leave(l *Log) {
	g.mu.Lock()
	delete(g.logs, l)
	l.left = true
	g.mu.Unlock()
	g.round.Lock()
	g.round.Unlock() //nolint:staticcheck // waiting for a round to end, nothing to guard
}

func (g *SyncGroup) run() {
	defer close(g.done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		// Wait for the first log that is due: its unsynced write plus its
		// interval (logs may have different intervals).
		g.mu.Lock()
		var due time.Duration
		for l := range g.logs {
			d := time.Duration(l.unsyncedAt.Load()) + l.opts.SyncInterval
			if due == 0 || d < due {
				due = d
			}
		}
		g.mu.Unlock()
		if due == 0 {
			select {
			case <-g.kick:
				continue
			case <-g.stop:
				return
			}
		}
		if wait := due - time.Since(epoch); wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-g.kick: // a log with an earlier due time may have come
				t.Stop()
				continue
			case <-g.stop:
				t.Stop()
				return
			}
		}
		g.syncRound()
		if g.afterRound != nil {
			g.afterRound()
		}
	}
}

// syncRound makes every log of the group with unsynced data durable.
func (g *SyncGroup) syncRound() {
	g.round.Lock()
	defer g.round.Unlock()
	g.mu.Lock()
	var ls []*Log
	for l := range g.logs {
		delete(g.logs, l)
		// Under none the flag stays set, for Tune to bring the log back
		// when it switches to interval.
		if l.Policy() == SyncInterval && l.unsynced.Swap(false) {
			ls = append(ls, l)
		}
	}
	g.mu.Unlock()
	if len(ls) == 0 {
		return
	}
	g.stats.rounds.Add(1)
	if len(ls) < minSyncfs {
		for _, l := range ls {
			l.fsync()
		}
		return
	}
	byDev := map[uint64][]*Log{}
	for _, l := range ls {
		byDev[l.dev] = append(byDev[l.dev], l)
	}
	for dev, ls := range byDev {
		g.mu.Lock()
		f := g.devs[dev]
		g.mu.Unlock()
		start := time.Now()
		err := g.syncfs(int(f.Fd()))
		took := time.Since(start)
		g.stats.syncfs.Add(1)
		g.stats.syncfsNanos.Add(uint64(took))
		g.stats.buckets[fsyncBucket(took)].Add(1)
		if err != nil {
			g.stats.failures.Add(1)
			g.logger.Error("log: syncfs failed; syncing each log of the round on its own", "dir", f.Name(), "logs", len(ls), "err", err)
			for _, l := range ls {
				l.fsync()
			}
			continue
		}
		g.stats.covered.Add(uint64(len(ls)))
		for _, l := range ls {
			l.stats.observeFsync(took)
		}
	}
}
