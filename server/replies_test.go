package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/protocol"
)

// Test verbs standing in for the engines: T.FAST answers at once, T.SLOW
// and T.PUT answer later from another goroutine after a random delay, as an
// append waiting on fsync would.
const (
	verbFast protocol.Verb = 200 + iota // clear of the engines' verbs (64-199)
	verbSlow
	verbPut
	verbHPut
)

func registerTestVerbs(s *Server) {
	s.Handle(protocol.Spec{Name: "T.FAST", ID: verbFast, MinArgs: 1, MaxArgs: 1}, func(c *Call) {
		c.OK(c.Frame.Args[0])
	})
	s.Handle(protocol.Spec{Name: "T.SLOW", ID: verbSlow, MinArgs: 2, MaxArgs: 2}, func(c *Call) {
		id := string(c.Frame.Args[0]) // copied: the frame dies when the handler returns
		delay := time.Duration(protocol.ParseUint(c.Frame.Args[1])) * time.Microsecond
		p := c.Defer()
		go func() {
			time.Sleep(delay) // stands in for disk latency; no test waits on it
			p.OK([]byte(id))
		}()
	})
	s.Handle(protocol.Spec{Name: "T.PUT", ID: verbPut, Shape: protocol.Sized, MinArgs: 1, MaxArgs: 1, HeaderID: verbHPut},
		func(c *Call) {
			id := string(c.Frame.Args[0])
			payload := append([]byte(nil), c.Frame.Payload...)
			p := c.Defer()
			go func() {
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
				p.Res([][]byte{[]byte(id)}, nil, payload)
			}()
		})
}

// TestReplyOrderUnderPipelining sends thousands of commands in one write,
// mixing replies that are immediate, replies completed later in random
// order by other goroutines, PINGs and errors, and checks that the replies
// come back exactly in the order of the commands.
func TestReplyOrderUnderPipelining(t *testing.T) {
	s := startServer(t, Config{}, registerTestVerbs)
	for round := 0; round < 3; round++ {
		w := dial(t, s)
		const n = 3000
		var b strings.Builder
		var want []string
		for i := 0; i < n; i++ {
			switch rand.IntN(5) {
			case 0:
				fmt.Fprintf(&b, "T.FAST %d\r\n", i)
				want = append(want, fmt.Sprintf("+OK %d", i))
			case 1:
				fmt.Fprintf(&b, "t.slow %d %d\r\n", i, rand.IntN(500))
				want = append(want, fmt.Sprintf("+OK %d", i))
			case 2:
				v := fmt.Sprintf("v%d", i)
				fmt.Fprintf(&b, "T.PUT %d %d\r\n%s\r\n", i, len(v), v)
				want = append(want, fmt.Sprintf("RES %d %d", i, len(v)), v)
			case 3:
				b.WriteString("PING\r\n")
				want = append(want, "PONG")
			case 4:
				fmt.Fprintf(&b, "T.NOPE %d\r\n", i)
				want = append(want, `-ERR 'Unknown Protocol Operation: "T.NOPE"'`)
			}
		}
		w.send(b.String())
		w.expect(want...)
	}
	if st := s.Stats(); st.Conns != 3 {
		t.Fatalf("conns = %d", st.Conns)
	}
}

// TestDeferredReplyAfterClose: a completion for a connection that has gone
// is dropped without harm, and shutdown waits for it.
func TestDeferredReplyAfterClose(t *testing.T) {
	s := startServer(t, Config{}, registerTestVerbs)
	w := dial(t, s)
	w.send("T.SLOW 1 20000\r\n")
	w.c.Close()
	other := dial(t, s)
	other.send("T.SLOW 2 1\r\nT.FAST 3\r\n")
	other.expect("+OK 2", "+OK 3")
}

func TestHandleRejectsBadRegistration(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0", HTTPAddr: "off"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustPanic := func(name string, f func()) {
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	mustPanic("core id", func() { s.Handle(protocol.Spec{Name: "X", ID: protocol.VerbPub}, func(*Call) {}) })
	s.Handle(protocol.Spec{Name: "X", ID: verbFast}, func(*Call) {})
	mustPanic("duplicate", func() { s.Handle(protocol.Spec{Name: "Y", ID: verbFast}, func(*Call) {}) })
}

// inflight.wait returns once the count is back at zero, whether the last
// done comes before or after the wait begins, and at the context's end
// otherwise.
func TestInflightWait(t *testing.T) {
	var before inflight
	before.add()
	before.done()
	if err := before.wait(context.Background()); err != nil {
		t.Fatalf("nothing in flight: %v", err)
	}
	for range 100 {
		var f inflight
		f.add()
		f.add()
		released := make(chan error, 1)
		go func() { released <- f.wait(context.Background()) }()
		for !f.waiting.Load() { // the wait has begun
			runtime.Gosched()
		}
		f.done()
		f.done()
		select {
		case err := <-released:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the last done did not release the wait")
		}
	}
	var f inflight
	f.add()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := f.wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with one in flight: %v", err)
	}
}
