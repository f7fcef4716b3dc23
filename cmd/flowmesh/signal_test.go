package main

import (
	"bufio"
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSecondSignalStopsAtOnce: a node draining a subscriber that does not
// read waits up to shutdown_timeout (60 s here) after SIGTERM; a second
// SIGTERM ends the process at once, as an operator pressing Ctrl-C twice
// expects.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	dir := t.TempDir()
	cfg := configFile(t, dir, "60s")
	addr := freeAddr(t)
	cmd := childCmd("server --config " + cfg + " --data-dir " + filepath.Join(dir, "data") + " --addr " + addr + " --http-addr off --log-level info")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	startAndWait(t, cmd, addr)
	exited := make(chan error, 1)
	shuttingDown := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "flowmesh: shutting down") {
				once = true
				close(shuttingDown)
			}
		}
		exited <- cmd.Wait()
	}()
	defer cmd.Process.Kill()

	// A subscriber that reads nothing, and 32 MiB published to it: more
	// than its socket takes, less than max_pending (64 MiB).
	sub := dialNative(t, addr)
	defer sub.Close()
	if _, err := sub.Write([]byte("SUB big 1\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	pub := dialNative(t, addr)
	defer pub.Close()
	payload := bytes.Repeat([]byte("x"), 1<<20)
	frame := append(append([]byte("PUB big 1048576\r\n"), payload...), "\r\n"...)
	for range 32 {
		if _, err := pub.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pub.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(pub)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("publisher: %v", err)
		}
		if l == "PONG\r\n" {
			break // every PUB is in the subscriber's output
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-shuttingDown:
	case err := <-exited:
		t.Fatalf("the node stopped before the second signal (%v): nothing held the drain", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no shutdown after SIGTERM")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Fatalf("exit after the second SIGTERM: %v, want death by the signal", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the second SIGTERM did not stop the draining node")
	}
}

// dialNative connects to a native port and reads its INFO line.
func dialNative(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatalf("INFO from %s: %v", addr, err)
	}
	return c
}
