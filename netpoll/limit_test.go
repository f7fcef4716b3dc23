package netpoll

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/internal/fdlimit/fdtest"
)

// TestPortStoppedReported runs the process out of descriptors at the
// moment the port accepts: gnet's acceptor fails (EMFILE) and stops the
// whole engine. The port must say so (Stopped, Err) rather than sit
// there not listening, and Shutdown must still return.
func TestPortStoppedReported(t *testing.T) {
	h := &echoBarrier{}
	s, err := Listen(Config{Addr: "127.0.0.1:0", Loops: 1, PingInterval: -1}, h)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown of a stopped port: %v", err)
		}
	}()
	addr := s.Addr().String()
	// A first connection starts the runtime's own poller (its descriptors
	// would otherwise be taken below) and, with an echo, shows that the
	// event loops run (Listen returns at OnBoot, before gnet has made
	// their epoll instances).
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "hi\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
	c.Close()
	select {
	case <-s.Stopped():
		t.Fatal("port reported stopped while serving")
	default:
	}

	fdtest.DialLast(t, addr, s.Stopped())
	select {
	case <-s.Stopped():
	default:
		t.Fatal("port not reported stopped 10 s after its accept failed")
	}
	if err := s.Err(); err == nil || !strings.Contains(strings.ToLower(err.Error()), "accept") {
		t.Fatalf("Err() = %v, want the accept failure", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("the stopped port still accepts")
	}
}
