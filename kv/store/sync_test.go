package store

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// crashOpen opens the store a power loss at this moment would leave:
// only what was fsynced (Pebble's crashable in-memory file system).
func crashOpen(t *testing.T, fs *vfs.MemFS) *Store {
	t.Helper()
	s, err := Open("db", Options{FS: fs.CrashClone(vfs.CrashCloneCfg{}), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func has(t *testing.T, s *Store, k string) bool {
	t.Helper()
	_, err := s.Get(KeyspaceStream, []byte(k))
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// TestIntervalSync: under SyncInterval each kind of unsynced write (Set,
// Delete, a batch) survives a power loss once the interval has passed,
// SetSync's at once; with no interval nothing syncs them.
func TestIntervalSync(t *testing.T) {
	for _, every := range []time.Duration{0, 5 * time.Millisecond} {
		fs := vfs.NewCrashableMem()
		s, err := Open("db", Options{FS: fs, SyncInterval: every, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"config", "gone"} {
			if err := s.SetSync(KeyspaceStream, []byte(k), []byte("c")); err != nil {
				t.Fatal(err)
			}
		}
		if !has(t, crashOpen(t, fs), "config") {
			t.Fatal("SetSync's write lost at a power loss")
		}
		writes := []struct {
			name  string
			write func() error
			key   string
			there bool // after the write
		}{
			{"set", func() error { return s.Set(KeyspaceStream, []byte("offset"), []byte("1")) }, "offset", true},
			{"batch", func() error {
				b := s.NewBatch()
				b.Set(KeyspaceStream, []byte("state"), []byte("s"))
				return b.Commit()
			}, "state", true},
			{"delete", func() error { return s.Delete(KeyspaceStream, []byte("gone")) }, "gone", false},
		}
		for _, w := range writes {
			n := s.syncs.Load()
			if err := w.write(); err != nil {
				t.Fatal(err)
			}
			if every == 0 {
				// Nothing syncs: a power loss undoes it (the case the
				// interval sync is for).
				if has(t, crashOpen(t, fs), w.key) == w.there {
					t.Fatalf("%s: an unsynced write survived with no interval sync: the test cannot tell", w.name)
				}
				continue
			}
			deadline := time.Now().Add(10 * time.Second)
			for s.syncs.Load() == n {
				if time.Now().After(deadline) {
					t.Fatalf("%s: no interval sync 10 s after an unsynced write", w.name)
				}
				time.Sleep(time.Millisecond)
			}
			if has(t, crashOpen(t, fs), w.key) != w.there {
				t.Fatalf("%s: undone by a power loss after the interval sync", w.name)
			}
		}
		if every > 0 {
			// Idle: no timer runs, so nothing syncs without a write.
			n := s.syncs.Load()
			time.Sleep(20 * every)
			if got := s.syncs.Load(); got != n {
				t.Fatalf("%d interval syncs with nothing written", got-n)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err == nil {
			t.Fatal("a second Close succeeded")
		}
	}
}
