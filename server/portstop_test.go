package server

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
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
	var c net.Conn
	var err error
	if err := s.ReadyErr(); err != nil {
		t.Fatalf("not ready before: %v", err)
	}
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Skip(err)
	}
	probe, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	next := probe.Fd()
	probe.Close()
	low := orig
	low.Cur = uint64(next) + 1 // the client's socket takes the last one
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip(err)
	}
	if c, err = net.Dial("tcp", addr); err == nil {
		defer c.Close()
	}
	var fatal error
	select {
	case fatal = <-s.Fatal():
	case <-time.After(10 * time.Second):
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	if fatal == nil || !strings.Contains(fatal.Error(), "stopped") {
		t.Fatalf("Fatal gave %v, want the port's stop", fatal)
	}
	if err := s.ReadyErr(); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("ReadyErr after the port stopped: %v", err)
	}
}
