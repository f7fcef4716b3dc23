package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
)

// TestMain lets the test binary run as the server of a crash test.
func TestMain(m *testing.M) {
	if args := os.Getenv("FLOWMESH_CRASH_CHILD"); args != "" {
		if err := run(context.Background(), strings.Fields(args), io.Discard, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// freeAddr is a loopback address with a port nothing listens on now, for a
// child server (which the test restarts on the same address).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// configFile writes a config file setting shutdown_timeout into dir and
// returns its path, for tests of how a child stops.
func configFile(t *testing.T, dir, shutdownTimeout string) string {
	t.Helper()
	cfg := filepath.Join(dir, "flowmesh.json")
	if err := os.WriteFile(cfg, []byte(`{"shutdown_timeout": "`+shutdownTimeout+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startChild runs a real server process on dir and addr.
func startChild(t *testing.T, dir, addr string) *exec.Cmd {
	t.Helper()
	return startChildFsync(t, dir, addr, "always")
}

// startChildFsync is startChild under the given fsync policy.
func startChildFsync(t *testing.T, dir, addr, policy string) *exec.Cmd {
	t.Helper()
	return startChildRESP(t, dir, addr, "", policy)
}

// startChildRESP is startChildFsync with the Redis-compatible port on
// respAddr too, unless it is "".
func startChildRESP(t *testing.T, dir, addr, respAddr, policy string) *exec.Cmd {
	t.Helper()
	args := "server --data-dir " + dir + " --addr " + addr + " --http-addr off --fsync " + policy + " --log-level error"
	wait := []string{addr}
	if respAddr != "" {
		// Two loops: both write (and under always fsync) the one
		// append-only file when the process is killed.
		args += " --resp-addr " + respAddr + " --resp-loops 2"
		wait = append(wait, respAddr)
	}
	cmd := childCmd(args)
	cmd.Stderr = os.Stderr
	startAndWait(t, cmd, wait...)
	return cmd
}

// childCmd is a server process run with args (not started).
func childCmd(args string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FLOWMESH_CRASH_CHILD="+args)
	return cmd
}

// startAndWait starts cmd and waits until it listens on every address.
func startAndWait(t *testing.T, cmd *exec.Cmd, wait ...string) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range wait {
		for {
			c, err := net.Dial("tcp", a)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("server child not listening on %s: %v", a, err)
			}
			time.Sleep(20 * time.Millisecond) // polling a port: there is no signal to wait on
		}
	}
}

// TestStreamKill9 kills the server (SIGKILL of a real process) while
// producers write under fsync=always and a consumer commits. After the
// restart every acknowledged event is there exactly once, in order per
// key; the producers' writes that were cut off are retried by the SDK with
// the same sequence and stored once; the group resumes from its committed
// offsets.
func TestStreamKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	child := startChild(t, dir, addr)
	defer func() { child.Process.Kill(); child.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := flowmesh.Connect(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Stream.CreateTopic(ctx, "orders", flowmesh.TopicConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	admin.Close()

	const producers = 8
	type ack struct {
		pos flowmesh.Position
		n   int
	}
	acked := make([][]ack, producers)
	stopWriting := make(chan struct{})
	var wg sync.WaitGroup
	written := make(chan struct{}, 10000)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fm, err := flowmesh.Connect(ctx, addr, flowmesh.ReconnectBackoff(10*time.Millisecond, 200*time.Millisecond))
			if err != nil {
				t.Error(err)
				return
			}
			defer fm.Close()
			for n := 0; ; n++ {
				select {
				case <-stopWriting:
					return
				default:
				}
				pos, err := fm.Stream.Write(ctx, "orders", []byte(fmt.Sprintf("p%d-%d", p, n)), flowmesh.Key(fmt.Sprintf("k%d", p)))
				if err != nil {
					t.Errorf("producer %d write %d: %v", p, n, err)
					return
				}
				acked[p] = append(acked[p], ack{pos, n})
				select {
				case written <- struct{}{}:
				default:
				}
			}
		}()
	}
	// A consumer commits each event it gets, explicitly.
	committed := map[int]uint64{}
	var cmu sync.Mutex
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		fm, err := flowmesh.Connect(ctx, addr, flowmesh.MaxReconnects(0))
		if err != nil {
			return
		}
		defer fm.Close()
		for ev, err := range fm.Stream.Consumer(ctx, "orders", "billing", flowmesh.ManualCommit()) {
			if err != nil || ev.Commit(ctx) != nil {
				return // the kill
			}
			cmu.Lock()
			committed[ev.Partition] = ev.Offset + 1
			cmu.Unlock()
		}
	}()
	for i := 0; i < 2000; i++ {
		<-written
	}
	if err := child.Process.Kill(); err != nil { // SIGKILL: no shutdown, no flush
		t.Fatal(err)
	}
	child.Wait()
	<-consumerDone
	child = startChild(t, dir, addr)
	// Let the producers get through the restart and write some more.
	for i := 0; i < 500; i++ {
		select {
		case <-written:
		case <-ctx.Done():
			t.Fatal("producers did not resume after the restart")
		}
	}
	close(stopWriting)
	wg.Wait()
	if t.Failed() {
		return
	}

	fm, err := flowmesh.Connect(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	// Read everything back.
	count := map[string]int{}
	at := map[string]flowmesh.Position{}
	lastN := map[int]map[int]int{} // partition -> producer -> last n seen
	for part := 0; part < 4; part++ {
		lastN[part] = map[int]int{}
		for off := uint64(0); ; {
			evs, next, err := fm.Stream.Read(ctx, "orders", part, off, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			for _, ev := range evs {
				v := string(ev.Value)
				count[v]++
				at[v] = flowmesh.Position{Partition: part, Offset: ev.Offset}
				var p, n int
				fmt.Sscanf(v, "p%d-%d", &p, &n)
				if last, ok := lastN[part][p]; ok && n <= last {
					t.Fatalf("partition %d: %s after p%d-%d: per-key order broken", part, v, p, last)
				}
				lastN[part][p] = n
			}
			off = next
		}
	}
	total, dups := 0, 0
	for p := range acked {
		for _, a := range acked[p] {
			v := fmt.Sprintf("p%d-%d", p, a.n)
			if count[v] != 1 {
				t.Fatalf("acknowledged %s stored %d times", v, count[v])
			}
			if at[v].Partition != a.pos.Partition || at[v].Offset != a.pos.Offset {
				t.Fatalf("acknowledged %s at %+v, found at %+v", v, a.pos, at[v])
			}
			total++
			if a.pos.Duplicate {
				dups++
			}
		}
	}
	for v, c := range count {
		if c != 1 {
			t.Fatalf("%s stored %d times", v, c)
		}
	}
	gi, err := fm.Stream.Group(ctx, "orders", "billing")
	if err != nil {
		t.Fatal(err)
	}
	cmu.Lock()
	for _, p := range gi.Partitions {
		if want, ok := committed[p.Partition]; ok && (p.Committed < int64(want) || uint64(p.Committed) > p.High) {
			t.Fatalf("partition %d committed %d after restart; %d was acknowledged, high %d", p.Partition, p.Committed, want, p.High)
		}
	}
	cmu.Unlock()
	// A member that joins now starts each partition at its committed offset.
	cs, err := fm.Stream.Join(ctx, "orders", "billing", flowmesh.ManualCommit())
	if err != nil {
		t.Fatal(err)
	}
	firsts := map[int]uint64{}
	pending := 0 // partitions with events past their committed offset
	for _, p := range gi.Partitions {
		if uint64(max(p.Committed, 0)) < p.High {
			pending++
		}
	}
	for len(firsts) < pending {
		ev, err := cs.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := firsts[ev.Partition]; !ok {
			firsts[ev.Partition] = ev.Offset
		}
		cs.Done(ev)
	}
	cs.Close()
	for _, p := range gi.Partitions {
		if want := uint64(max(p.Committed, 0)); want < p.High && firsts[p.Partition] != want {
			t.Fatalf("partition %d resumed at %d, committed %d", p.Partition, firsts[p.Partition], p.Committed)
		}
	}
	t.Logf("%d acknowledged writes across the kill (%d of them retries the server had stored before it died), %d events stored, committed offsets %v",
		total, dups, len(count), committed)
}
