package store

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Pebble retries a failed flush at once and for ever (its flush code has
// no backoff yet, and says it should count failures and back off). A data directory
// on a full disk, or one removed under a running node, then spins a core
// and writes two log lines per try: measured here, 1.1 million tries and
// 2.2 million lines in two minutes, at 113% CPU. The listener below backs
// the retries off, logs a failure once per logEvery with a count, and
// tells Flush and the node (Err) that the store is failing.
const (
	logEvery        = 10 * time.Second
	maxRetryBackoff = 100 * time.Millisecond
	// failingAfter consecutive failures make Flush give up and Err
	// report: one failure that the retry repairs is not an outage.
	failingAfter = 3
)

// backoffSleep waits between retries; tests record the waits.
var backoffSleep = time.Sleep

// health follows Pebble's background work (flushes and compactions).
type health struct {
	dir string
	log *slog.Logger

	mu          sync.Mutex
	consecutive int    // failures since the last success
	total       uint64 // failures since Open
	last        error
	lastLog     time.Time
	unlogged    int           // failures since the last log line
	changed     chan struct{} // closed and replaced at each failure
}

func newHealth(dir string, log *slog.Logger) *health {
	return &health{dir: dir, log: log, changed: make(chan struct{})}
}

// listener returns the Pebble listener that feeds h; beforeFlush, if
// set, runs before every flush (Options.BeforeFlush).
func (h *health) listener(beforeFlush func()) *pebble.EventListener {
	l := &pebble.EventListener{
		BackgroundError: h.failed,
		FlushEnd: func(i pebble.FlushInfo) {
			if i.Err == nil {
				h.succeeded()
			}
		},
		CompactionEnd: func(i pebble.CompactionInfo) {
			if i.Err == nil {
				h.succeeded()
			}
		},
	}
	if beforeFlush != nil {
		l.FlushBegin = func(pebble.FlushInfo) { beforeFlush() }
	}
	return l
}

// failed records a background failure and, from the second in a row,
// sleeps before Pebble retries: 1 ms, doubling up to maxRetryBackoff.
// Pebble calls it with its mutex held, so the sleep also holds writes
// back; with flushes failing they would soon stall anyway, and a spinning
// core is the worse outcome on a node that shares its CPUs with its event
// loops.
func (h *health) failed(err error) {
	h.mu.Lock()
	h.consecutive++
	h.total++
	h.last = err
	n := h.consecutive
	close(h.changed)
	h.changed = make(chan struct{})
	var logIt bool
	var unlogged int
	if now := time.Now(); now.Sub(h.lastLog) >= logEvery {
		logIt, unlogged = true, h.unlogged
		h.lastLog, h.unlogged = now, 0
	} else {
		h.unlogged++
	}
	h.mu.Unlock()
	if logIt {
		h.log.Error("store: background write failed; Pebble retries it", "dir", h.dir, "err", err,
			"failures_in_a_row", n, "not_logged_since_last", unlogged)
	}
	if n > 1 {
		backoffSleep(min(time.Millisecond<<min(n-2, 20), maxRetryBackoff))
	}
}

func (h *health) succeeded() {
	h.mu.Lock()
	n := h.consecutive
	h.consecutive = 0
	h.lastLog = time.Time{} // the next failure is news
	h.mu.Unlock()
	if n > 0 {
		h.log.Warn("store: background writes recovered", "dir", h.dir, "failures_in_a_row", n)
	}
}

// err is the store's failure, or nil: the last background error once
// failingAfter of them came in a row with no success since.
func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.errLocked()
}

func (h *health) errLocked() error {
	if h.consecutive < failingAfter {
		return nil
	}
	return fmt.Errorf("store %s: %d background writes failed in a row: %w", h.dir, h.consecutive, h.last)
}

// wait returns nil when done is closed, or the store's error when a
// background write fails while the store is failing. A failure that came
// before the call does not count: after the disk recovers, the flush
// waited for may be the retry that succeeds.
func (h *health) wait(done <-chan struct{}) error {
	for {
		h.mu.Lock()
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-done:
			return nil
		case <-changed:
			if err := h.err(); err != nil {
				return err
			}
		}
	}
}

func (h *health) failures() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}
