package repeatlog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Every spaces the lines of a failure that repeats unchanged.
const Every = 10 * time.Second

// Log is one recurring failure's log state. The zero value is ready; it is
// safe for concurrent use.
type Log struct {
	mu       sync.Mutex
	last     string
	at       time.Time
	repeated int
}

// Log writes msg with err and attrs at level when err's text differs from
// the last one logged or Every has passed since, with how many times it
// came in between ("repeated_since_last_line"); otherwise it only counts.
func (r *Log) Log(l *slog.Logger, level slog.Level, msg string, err error, attrs ...any) {
	now := time.Now()
	text := err.Error()
	r.mu.Lock()
	if text == r.last && now.Sub(r.at) < Every {
		r.repeated++
		r.mu.Unlock()
		return
	}
	repeated := r.repeated
	r.last, r.at, r.repeated = text, now, 0
	r.mu.Unlock()
	l.Log(context.Background(), level, msg, append(attrs, "err", err, "repeated_since_last_line", repeated)...)
}
