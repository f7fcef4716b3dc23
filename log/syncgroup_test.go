package log

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// countSyncfs is a syncfs that counts its calls and fails with err.
type countSyncfs struct {
	calls atomic.Int64
	err   error
}

func (c *countSyncfs) syncfs(fd int) error {
	c.calls.Add(1)
	if c.err != nil {
		return c.err
	}
	return unix.Syncfs(fd)
}

// openGroupLogs opens n logs in the group under interval, with o's other
// settings.
func openGroupLogs(t *testing.T, g *SyncGroup, n int, o Options) []*Log {
	t.Helper()
	dir := t.TempDir()
	ls := make([]*Log, n)
	for i := range ls {
		o.SyncGroup = g
		ls[i] = open(t, filepath.Join(dir, fmt.Sprint(i)), o)
		if ls[i].group != g {
			t.Fatalf("log %d did not join the group", i)
		}
	}
	t.Cleanup(func() {
		for _, l := range ls {
			l.Close()
		}
	})
	return ls
}

func appendEach(t *testing.T, ls []*Log) {
	t.Helper()
	for i, l := range ls {
		if _, err := l.AppendWait(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// appendQueued appends to each log and waits until the writers have handed
// them to their group (after the appends' callbacks).
func appendQueued(t *testing.T, g *SyncGroup, ls []*Log) {
	t.Helper()
	appendEach(t, ls)
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		n := 0
		for _, l := range ls {
			if _, ok := g.logs[l]; ok {
				n++
			}
		}
		g.mu.Unlock()
		if n == len(ls) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d written logs queued in their group after 10 s", n, len(ls))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSyncGroupRound: a round with many unsynced logs makes them durable
// with one syncfs, a round with few with an fsync each. The interval is an
// hour so that only the test's rounds run.
func TestSyncGroupRound(t *testing.T) {
	sf := &countSyncfs{}
	g := newSyncGroup(quiet, sf.syncfs, nil)
	defer g.Close()
	ls := openGroupLogs(t, g, 8, Options{Codec: CodecNone, Sync: SyncInterval, SyncInterval: time.Hour})
	appendQueued(t, g, ls)
	g.syncRound()
	if n := sf.calls.Load(); n != 1 {
		t.Fatalf("8 unsynced logs: %d syncfs calls, want 1", n)
	}
	st := g.Stats()
	if st.Rounds != 1 || st.Syncfs != 1 || st.Covered != 8 || st.Failures != 0 {
		t.Fatalf("group stats %+v, want 1 round, 1 syncfs covering 8 logs", st)
	}
	for i, l := range ls {
		if l.unsynced.Load() || l.Stats().Fsyncs != 1 {
			t.Fatalf("log %d: unsynced %v, %d fsyncs after the round", i, l.unsynced.Load(), l.Stats().Fsyncs)
		}
	}
	g.syncRound() // nothing unsynced: nothing to do
	if st := g.Stats(); st.Rounds != 1 {
		t.Fatalf("a round with nothing unsynced counted: %+v", st)
	}

	few := ls[:minSyncfs-1]
	appendQueued(t, g, few)
	g.syncRound()
	if n := sf.calls.Load(); n != 1 {
		t.Fatalf("%d unsynced logs took a syncfs (%d calls in all)", len(few), n)
	}
	for i, l := range ls {
		want := uint64(1)
		if i < len(few) {
			want = 2
		}
		if got := l.Stats().Fsyncs; got != want || l.unsynced.Load() {
			t.Fatalf("log %d: %d fsyncs (want %d), unsynced %v", i, got, want, l.unsynced.Load())
		}
	}

	// A log not on the real file system keeps its own syncer.
	other := open(t, t.TempDir(), Options{FS: &faultFS{budget: 1 << 20}, SyncGroup: g})
	defer other.Close()
	if other.group != nil {
		t.Fatal("a log on an injected FS joined the group")
	}
}

// TestSyncGroupSyncfsFails: after a failed syncfs each log of the round is
// fsynced on its own, and logs whose fsync works keep working.
func TestSyncGroupSyncfsFails(t *testing.T) {
	sf := &countSyncfs{err: unix.EIO}
	g := newSyncGroup(quiet, sf.syncfs, nil)
	defer g.Close()
	ls := openGroupLogs(t, g, minSyncfs, Options{Codec: CodecNone, Sync: SyncInterval, SyncInterval: time.Hour})
	appendQueued(t, g, ls)
	g.syncRound()
	if st := g.Stats(); st.Syncfs != 1 || st.Failures != 1 || st.Covered != 0 {
		t.Fatalf("group stats %+v, want one failed syncfs", st)
	}
	for i, l := range ls {
		if l.Stats().Fsyncs != 1 || l.unsynced.Load() {
			t.Fatalf("log %d: %d fsyncs after the failed syncfs, want its own", i, l.Stats().Fsyncs)
		}
	}
	appendEach(t, ls) // not failed: their own fsyncs worked
}

// TestSyncGroupInterval: the group's goroutine syncs logs one interval
// after their writes, leaves logs under none alone until Tune chooses
// interval, and forgets logs that closed.
func TestSyncGroupInterval(t *testing.T) {
	rounds := make(chan struct{}, 100)
	sf := &countSyncfs{}
	g := newSyncGroup(quiet, sf.syncfs, func() {
		select {
		case rounds <- struct{}{}:
		default:
		}
	})
	defer g.Close()
	ls := openGroupLogs(t, g, 6, Options{Codec: CodecNone, Sync: SyncInterval, SyncInterval: 2 * time.Millisecond})
	none := ls[5]
	none.Tune(Tuning{Sync: SyncNone, Codec: CodecNone})
	appendEach(t, ls)
	waitRounds := func(done func() bool) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for !done() {
			select {
			case <-rounds:
			case <-timeout:
				t.Fatal("the group did not sync the logs within 10 s")
			}
		}
	}
	waitRounds(func() bool {
		for _, l := range ls[:5] {
			if l.unsynced.Load() {
				return false
			}
		}
		return true
	})
	if none.Stats().Fsyncs != 0 || !none.unsynced.Load() {
		t.Fatalf("a log under none was synced: %d fsyncs", none.Stats().Fsyncs)
	}
	none.Tune(Tuning{Sync: SyncInterval, Codec: CodecNone})
	// The round clears the flag before its fsync: wait for the fsync.
	waitRounds(func() bool { return none.Stats().Fsyncs > 0 })
	if none.Stats().Fsyncs != 1 || none.unsynced.Load() {
		t.Fatalf("the log switched to interval: %d fsyncs, want 1", none.Stats().Fsyncs)
	}

	// A closed log leaves the group; a Tune racing its Close does not
	// bring it back.
	l := ls[0]
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.unsynced.Store(true)
	l.Tune(Tuning{Sync: SyncInterval, Codec: CodecNone})
	g.mu.Lock()
	_, in := g.logs[l]
	g.mu.Unlock()
	if in {
		t.Fatal("a closed log is back in its group")
	}
}

// TestSyncGroupCloseRace: logs written, synced and closed at once (run
// with -race): every Close and the group's own return nil.
func TestSyncGroupCloseRace(t *testing.T) {
	g := NewSyncGroup(quiet)
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Open(filepath.Join(dir, fmt.Sprint(i)), Options{Codec: CodecNone, Sync: SyncInterval,
				SyncInterval: time.Millisecond, SyncGroup: g, Logger: quiet})
			if err != nil {
				errs <- err
				return
			}
			for j := 0; j < 50; j++ {
				if _, err := l.AppendWait(context.Background(), rec(j)); err != nil {
					errs <- err
					return
				}
			}
			errs <- l.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if st := g.Stats(); st.Failures != 0 {
		t.Fatalf("group stats %+v", st)
	}
}
