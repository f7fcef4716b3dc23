package server

import (
	"strings"
	"testing"

	"github.com/flowmesh/flowmesh/internal/fdlimit/fdtest"
)

// TestPortStopIsFatal: when the client port's event loops stop on their
// own (here gnet's acceptor fails with EMFILE, the process out of
// descriptors), the node reports it on Fatal (cmd/flowmesh then shuts down
// and exits 1) and /readyz turns not ready, instead of running on with no
// listener.
func TestPortStopIsFatal(t *testing.T) {
	s := startServer(t, Config{})
	addr := s.Addr().String()
	// A PING first: the runtime's poller takes its descriptors before the
	// limit is lowered, and the event loops are known to run.
	w := dial(t, s)
	w.send("PING\r\n")
	w.expect("PONG")
	w.c.Close()
	if err := s.ReadyErr(); err != nil {
		t.Fatalf("not ready before: %v", err)
	}
	var fatal error
	stopped := make(chan struct{})
	go func() {
		fatal = <-s.Fatal()
		close(stopped)
	}()
	fdtest.DialLast(t, addr, stopped)
	select {
	case <-stopped:
	default:
		t.Fatal("no Fatal 10 s after the port's accept failed")
	}
	if fatal == nil || !strings.Contains(fatal.Error(), "stopped") {
		t.Fatalf("Fatal gave %v, want the port's stop", fatal)
	}
	if err := s.ReadyErr(); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("ReadyErr after the port stopped: %v", err)
	}
}
