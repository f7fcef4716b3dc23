package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// lockedBuf is a log sink Pebble's goroutines and the test share.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A flush that cannot create its table (a full disk, a data directory
// removed) is retried by Pebble at once and for ever. The store backs the
// retries off, logs the failure once, gives up waiting in Flush, reports
// Err, and recovers when the disk does.
func TestFailingFlushBacksOff(t *testing.T) {
	var mu sync.Mutex
	var waits []time.Duration
	backoffSleep = func(d time.Duration) {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		time.Sleep(d)
	}
	defer func() { backoffSleep = time.Sleep }()

	var broken atomic.Bool
	var tries atomic.Int64
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if broken.Load() && op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, ".sst") {
			tries.Add(1)
			return errorfs.ErrInjected
		}
		return nil
	}))
	var logs lockedBuf
	s, err := Open("db", Options{FS: fs, NoWAL: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		s.Set(KeyspaceKV, fmt.Appendf(nil, "k%d", i), []byte("v"))
	}
	broken.Store(true)
	err = s.Flush()
	if !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("flush on a failing disk = %v, want the injected error", err)
	}
	if s.Err() == nil || s.BackgroundErrors() < failingAfter {
		t.Fatalf("Err = %v after %d failures", s.Err(), s.BackgroundErrors())
	}
	// Each further failed Flush waits for one more retry: the waits
	// between retries grow to the cap instead of none at all.
	for s.BackgroundErrors() < 12 {
		if err := s.Flush(); err == nil {
			t.Fatal("flush succeeded on a failing disk")
		}
	}
	mu.Lock()
	got := append([]time.Duration(nil), waits...)
	mu.Unlock()
	var want []time.Duration
	for _, ms := range []time.Duration{1, 2, 4, 8, 16, 32, 64, 100, 100, 100} {
		want = append(want, ms*time.Millisecond)
	}
	if len(got) < len(want) || fmt.Sprint(got[:len(want)]) != fmt.Sprint(want) {
		t.Fatalf("waits between retries %v, want %v first", got, want)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Fatalf("%d error lines for %d failures, want 1:\n%s", n, tries.Load(), logs.String())
	}

	broken.Store(false)
	if err := s.Flush(); err != nil {
		t.Fatalf("flush after the disk recovered: %v", err)
	}
	if s.Err() != nil {
		t.Fatalf("Err after recovery: %v", s.Err())
	}
	if !strings.Contains(logs.String(), "background writes recovered") {
		t.Fatalf("no recovery line:\n%s", logs.String())
	}
	if v, err := s.Get(KeyspaceKV, []byte("k42")); err != nil || string(v) != "v" {
		t.Fatalf("after recovery: %q %v", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// Pebble's Fatalf (a WAL it cannot create) stops the node with the cause
// logged, instead of a panic through Pebble's held mutexes.
func TestFatalExits(t *testing.T) {
	var code int
	exit = func(c int) { code = c }
	defer func() { exit = os.Exit }()
	var logs lockedBuf
	pebbleLogger{slog.New(slog.NewTextHandler(&logs, nil))}.Fatalf("open %s: %v", "db/000007.log", "no such file or directory")
	if code != 1 || !strings.Contains(logs.String(), "fatal storage error") ||
		!strings.Contains(logs.String(), "db/000007.log: no such file or directory") {
		t.Fatalf("exit code %d, log:\n%s", code, logs.String())
	}
}
