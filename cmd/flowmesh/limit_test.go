package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
)

// TestOpenFileLimit runs a real node with 300 descriptors and uses them
// up: with connections, then with partitions, then with connections
// again. Connections past the limit get the max-connections error and
// partitions a "too many open files" error, and the port keeps serving
// throughout: connected clients keep working, and new ones are let in
// again once topics are deleted. Before, the first accept(2) that failed with EMFILE stopped
// gnet's engine: every connection closed and the port never listened
// again, while /readyz still said ready.
func TestOpenFileLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	child := exec.Command("/bin/sh", "-c", `ulimit -n 300 && exec "$0" -test.run='^$'`, os.Args[0])
	child.Env = append(os.Environ(), "FLOWMESH_CRASH_CHILD="+fmt.Sprintf(
		"server --data-dir %s --addr %s --http-addr off --log-level warn", filepath.Join(dir, "data"), addr))
	var stderr bytes.Buffer // read after the child exited
	child.Stderr = &stderr
	startAndWait(t, child, addr)
	defer child.Process.Kill()

	// hold opens connections until one is refused; each accepted one has
	// had its greeting.
	hold := func() (held []net.Conn, refused string) {
		for i := 0; i < 400; i++ {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("dial %d: %v (the port stopped?)", i, err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatalf("connection %d: no greeting: %v", i, err)
			}
			if strings.HasPrefix(line, "-ERR") {
				c.Close()
				return held, line
			}
			held = append(held, c)
		}
		t.Fatal("400 connections on a node with 300 descriptors")
		return nil, ""
	}
	release := func(cs []net.Conn) {
		for _, c := range cs {
			c.Close()
		}
	}
	// ping connects and PINGs. Closing held connections on this side
	// gives the node its descriptors back only once its loop has seen the
	// closes, which nothing here can wait on: a refusal for max
	// connections is retried until the deadline, any other error fails.
	ping := func(when string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for {
			fm, err := flowmesh.Connect(ctx, "nats://"+addr)
			if err != nil {
				if strings.Contains(err.Error(), "Maximum Connections") && ctx.Err() == nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				t.Fatalf("%s: connect: %v", when, err)
			}
			defer fm.Close()
			if err := fm.Flush(ctx); err != nil {
				t.Fatalf("%s: PING: %v", when, err)
			}
			return
		}
	}

	held, refused := hold()
	if len(held) < 50 || !strings.Contains(refused, "Maximum Connections") {
		t.Fatalf("%d connections held, then %q", len(held), refused)
	}
	release(held)
	ping("after the connections were refused")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fm, err := flowmesh.Connect(ctx, "nats://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	var created int
	for ; created < 300; created++ {
		err = fm.Stream.CreateTopic(ctx, fmt.Sprintf("t%d", created), flowmesh.TopicConfig{Partitions: 1})
		if err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "too many open files") {
		t.Fatalf("%d topics created, then %v", created, err)
	}
	if _, err := fm.Stream.Write(ctx, "t0", []byte("still works")); err != nil {
		t.Fatalf("write to a topic created before the limit: %v", err)
	}
	// The partitions left fewer descriptors than a connection must leave
	// free: new connections are refused, the open one keeps working.
	held, refused = hold()
	if !strings.Contains(refused, "Maximum Connections") {
		t.Fatalf("%d connections held, then %q", len(held), refused)
	}
	release(held)
	if err := fm.Flush(ctx); err != nil {
		t.Fatalf("PING on the open connection: %v", err)
	}
	// Deleting topics gives descriptors back.
	for i := 1; i < created; i++ {
		if err := fm.Stream.DeleteTopic(ctx, fmt.Sprintf("t%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	ping("after the topics were deleted")

	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("node exited with %v; stderr:\n%.4000s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "raise the open-file limit") {
		t.Errorf("no log line telling to raise the limit; stderr:\n%.4000s", stderr.String())
	}
}
