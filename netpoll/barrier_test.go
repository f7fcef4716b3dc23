package netpoll

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echoBarrier echoes each line it reads, held for the barrier; Barrier
// fails while fail is set.
type echoBarrier struct {
	barriers atomic.Int64
	fail     atomic.Bool
}

func (h *echoBarrier) OnOpen(c *Conn) []byte      { return nil }
func (h *echoBarrier) OnClose(c *Conn, err error) {}

func (h *echoBarrier) Feed(c *Conn, in []byte) (int, int, bool) {
	end := strings.LastIndexByte(string(in), '\n') + 1
	if end == 0 {
		return 0, 0, false
	}
	// "quit" closes after what came before it (held) and "bye".
	if q := strings.Index(string(in[:end]), "quit\n"); q >= 0 {
		c.CommitAfterBarrier(append(c.Buf(), in[:q]...))
		c.CloseAfter([]byte("bye\n"))
		return end, 0, true
	}
	c.CommitAfterBarrier(append(c.Buf(), in[:end]...))
	return end, 0, false
}

func (h *echoBarrier) Barrier() error {
	h.barriers.Add(1)
	if h.fail.Load() {
		return errors.New("disk gone")
	}
	return nil
}

func (h *echoBarrier) BarrierFailed(c *Conn, err error) {
	c.CloseAfter([]byte("ERR " + err.Error() + "\n"))
}

func listenBarrier(t *testing.T, h *echoBarrier) *Server {
	t.Helper()
	s, err := Listen(Config{Addr: "127.0.0.1:0", Loops: 2, PingInterval: -1}, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// TestBarrierHoldsOutput: output committed after the barrier leaves once a
// barrier has run, in order with what was committed after it; when the
// barrier fails, none of it leaves and the handler closes the connection.
func TestBarrierHoldsOutput(t *testing.T) {
	h := &echoBarrier{}
	s := listenBarrier(t, h)

	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i, batch := range []string{"one\n", "two\nthree\n", "four\n"} {
		if _, err := c.Write([]byte(batch)); err != nil {
			t.Fatal(err)
		}
		for _, want := range strings.SplitAfter(batch, "\n") {
			if want == "" {
				continue
			}
			got, err := r.ReadString('\n')
			if err != nil || got != want {
				t.Fatalf("batch %d: read %q (%v), want %q", i, got, err, want)
			}
		}
		if n := h.barriers.Load(); n < int64(i+1) {
			t.Fatalf("batch %d echoed after %d barriers", i, n)
		}
	}

	h.fail.Store(true)
	if _, err := c.Write([]byte("lost\n")); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadString('\n')
	if err != nil || got != "ERR disk gone\n" {
		t.Fatalf("after a failed barrier read %q (%v), want the error alone", got, err)
	}
	if rest, err := r.ReadString('\n'); err == nil || rest != "" {
		t.Fatalf("connection stayed open after a failed barrier: read %q (%v)", rest, err)
	}
}

// TestBarrierManyConns: every connection of both loops gets its output
// when many commit at once.
func TestBarrierManyConns(t *testing.T) {
	h := &echoBarrier{}
	s := listenBarrier(t, h)
	const conns, rounds = 20, 50
	errs := make(chan error, conns)
	for i := 0; i < conns; i++ {
		go func() {
			c, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			r := bufio.NewReader(c)
			for j := 0; j < rounds; j++ {
				want := strings.Repeat("x", j) + "\n"
				if _, err := c.Write([]byte(want)); err != nil {
					errs <- err
					return
				}
				if got, err := r.ReadString('\n'); err != nil || got != want {
					errs <- errors.New("read " + got + ": " + errString(err))
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < conns; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := h.barriers.Load(); n == 0 || n > conns*rounds {
		t.Fatalf("%d barriers for %d replies", n, conns*rounds)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestBarrierCloseAfter: closing a connection whose output is held runs
// the barrier first: the held output goes before the last frame when the
// barrier succeeds, and is dropped (the last frame still sent) when it
// fails.
func TestBarrierCloseAfter(t *testing.T) {
	for _, fail := range []bool{false, true} {
		h := &echoBarrier{}
		h.fail.Store(fail)
		s := listenBarrier(t, h)
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("held\nquit\n")); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		c.Close()
		want := "held\nbye\n"
		if fail {
			want = "bye\n"
		}
		if err != nil || string(got) != want {
			t.Fatalf("barrier failing %v: read %q (%v), want %q", fail, got, err, want)
		}
		if h.barriers.Load() == 0 {
			t.Fatalf("barrier failing %v: closed without a barrier", fail)
		}
	}
}
