package repeatlog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// A failure that repeats every tick is logged when it first comes and
// when it changes, not at every tick.
func TestLog(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	var r Log
	for i := 0; i < 100; i++ {
		r.Log(l, slog.LevelWarn, "kv: append-only file sync failed", errors.New("aof: disk gone"), "file", "a.aof")
	}
	r.Log(l, slog.LevelError, "kv: append-only file sync failed", errors.New("aof: other"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "file=a.aof") ||
		!strings.Contains(lines[0], "disk gone") || !strings.Contains(lines[1], "level=ERROR") ||
		!strings.Contains(lines[1], "other") || !strings.Contains(lines[1], "repeated_since_last_line=99") {
		t.Fatalf("log lines:\n%s", buf.String())
	}
}
