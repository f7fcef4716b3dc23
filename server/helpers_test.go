package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// startServer runs a node on a free port with cfg's non-zero fields and
// registers its shutdown with t.
func startServer(t testing.TB, cfg Config, setup ...func(*Server)) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "off"
	}
	cfg.InMemory = true
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(s)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// wire is a raw client for send/expect transcripts, as a person with nc.
type wire struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, s *Server) *wire {
	t.Helper()
	w := dial0(t, s)
	if line := w.line(); !strings.HasPrefix(line, "INFO {") {
		t.Fatalf("greeting = %q", line)
	}
	return w
}

func (w *wire) send(s string) {
	w.t.Helper()
	if _, err := w.c.Write([]byte(s)); err != nil {
		w.t.Fatalf("send %q: %v", s, err)
	}
}

// dial0 connects without reading the greeting.
func dial0(t testing.TB, s *Server) *wire {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &wire{t: t, c: c, br: bufio.NewReaderSize(c, 1<<16)}
}

// line reads one line without its line end, failing after 5 s.
func (w *wire) line() string {
	w.t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := w.br.ReadString('\n')
	if err != nil {
		w.t.Fatalf("read line: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// expect reads len(want) lines and compares them.
func (w *wire) expect(want ...string) {
	w.t.Helper()
	for _, exp := range want {
		if got := w.line(); got != exp {
			w.t.Fatalf("got %q, want %q", got, exp)
		}
	}
}

// expectClosed reads until EOF, failing if the server keeps the
// connection open.
func (w *wire) expectClosed() {
	w.t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(w.br)
	if err != nil {
		w.t.Fatalf("connection not closed by the server: %v (read %q)", err, rest)
	}
}

// flush sends PING and waits for PONG: everything before it was handled.
func (w *wire) flush() {
	w.t.Helper()
	w.send("PING\r\n")
	w.expect("PONG")
}

var (
	fmtSscan   = fmt.Sscan
	ioReadFull = io.ReadFull
)
