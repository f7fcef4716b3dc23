package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/internal/dirs"
)

// TestDataDirLocked: a second node on a data directory in use is refused
// with an error that says so (before, Pebble's own lock answered "resource
// temporarily unavailable"); once the first has shut down, the directory
// is free again.
func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	first := startServer(t, Config{}, func(s *Server) { s.cfg.InMemory, s.cfg.DataDir = false, dir })
	second, err := New(Config{Addr: "127.0.0.1:0", HTTPAddr: "off", DataDir: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(); !errors.Is(err, dirs.ErrInUse) {
		t.Fatalf("second node on %s: Start = %v, want ErrInUse", dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	startServer(t, Config{}, func(s *Server) { s.cfg.InMemory, s.cfg.DataDir = false, dir })
}
