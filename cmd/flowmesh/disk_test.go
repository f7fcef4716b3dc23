package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestStopWithFailingStore removes the KV engine's Pebble directory under
// a running node with 40 MB of unflushed keys (40k of 1 KiB), then stops it. Pebble can
// no longer flush (its retries are backed off, not spun), the KV's last
// checkpoint waits on a write stall that never ends, and the node stops at
// its shutdown deadline with an error naming the failing store, instead of
// hanging at full CPU and logging every retry (as it did: 316k log lines
// in 15 s).
func TestStopWithFailingStore(t *testing.T) {
	dir := t.TempDir()
	cfg := configFile(t, dir, "2s")
	addr, respAddr := freeAddr(t), freeAddr(t)
	data := filepath.Join(dir, "data")
	child := childCmd(fmt.Sprintf("server --config %s --data-dir %s --addr %s --resp-addr %s --http-addr off --log-level error",
		cfg, data, addr, respAddr))
	var stderr bytes.Buffer // read once the child is gone: exec's copier is done by then
	child.Stderr = &stderr
	startAndWait(t, child, addr, respAddr)
	defer child.Process.Kill()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: respAddr, Protocol: 2})
	defer rc.Close()
	val := strings.Repeat("v", 1024)
	for i := 0; i < 40; i++ {
		p := rc.Pipeline()
		for j := 0; j < 1000; j++ {
			p.Set(ctx, fmt.Sprintf("key:%d:%d", i, j), val, 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(data, "kv", "db")); err != nil {
		t.Fatal(err)
	}
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	select {
	case err := <-exited:
		if err == nil {
			t.Fatalf("the node exited 0 with its KV store gone; stderr:\n%s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		child.Process.Kill()
		<-exited
		t.Fatalf("the node did not stop 30 s after SIGTERM (shutdown_timeout 2s); stderr:\n%.4000s", stderr.String())
	}
	out := stderr.String()
	for _, want := range []string{"did not close before the deadline", "storage failing", filepath.Join(data, "kv", "db")} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%.4000s", want, out)
		}
	}
	if n := strings.Count(out, "background write failed"); n != 1 {
		t.Errorf("%d log lines for the failing flushes, want 1 (the rest counted):\n%.4000s", n, out)
	}
}
