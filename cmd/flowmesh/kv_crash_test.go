package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
)

// TestKVKill9 kills the server (SIGKILL of a real process) while writers
// run SETs, HSETs and INCRs, twice (the second life starts from the
// first's replayed append-only file), under fsync=always and under
// interval: a write is acknowledged after its record is written, so a
// killed process loses none under either. After each restart every
// acknowledged write is there: the last acknowledged value of each key,
// each hash field, and a counter at least as high as its last
// acknowledged INCR (an INCR cut off before its reply may or may not have
// landed, never more than once); and no command is half there: a hash's
// count is its number of fields.
func TestKVKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	for _, policy := range []string{"always", "interval"} {
		t.Run(policy, func(t *testing.T) {
			dir := t.TempDir()
			addr := freeAddr(t)
			for life := 0; life < 2; life++ {
				kvKillOnce(t, dir, addr, policy)
			}
		})
	}
}

func kvKillOnce(t *testing.T, dir, addr, policy string) {
	child := startChildFsync(t, dir, addr, policy)
	defer func() { child.Process.Kill(); child.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const writers = 8
	type acked struct {
		mu      sync.Mutex
		vals    map[string]string
		fields  map[string]string
		counter int64
	}
	got := make([]acked, writers)
	var wg sync.WaitGroup
	killed := make(chan struct{})
	enough := make(chan struct{}, writers)
	for w := 0; w < writers; w++ {
		got[w].vals, got[w].fields = map[string]string{}, map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fm, err := flowmesh.Connect(ctx, addr, flowmesh.MaxReconnects(0))
			if err != nil {
				t.Error(err)
				return
			}
			defer fm.Close()
			a := &got[w]
			for i := 0; ; i++ {
				key := fmt.Sprintf("w%d:k%d", w, i%50)
				val := fmt.Sprintf("v%d", i)
				if _, err := fm.KV.Set(ctx, key, []byte(val)); err != nil {
					return
				}
				a.mu.Lock()
				a.vals[key] = val
				a.mu.Unlock()
				field := fmt.Sprint("f", i%20)
				if _, err := fm.KV.HSet(ctx, fmt.Sprint("w", w, ":h"), map[string][]byte{field: []byte(val)}); err != nil {
					return
				}
				a.mu.Lock()
				a.fields[field] = val
				a.mu.Unlock()
				n, err := fm.KV.Incr(ctx, fmt.Sprint("w", w, ":n"))
				if err != nil {
					return
				}
				a.mu.Lock()
				a.counter = n
				a.mu.Unlock()
				if i == 100 {
					enough <- struct{}{}
				}
				select {
				case <-killed:
					return
				default:
				}
			}
		}()
	}
	for w := 0; w < writers; w++ {
		select {
		case <-enough:
		case <-ctx.Done():
			t.Fatal("writers did not get going")
		}
	}
	child.Process.Kill()
	child.Wait()
	close(killed)
	wg.Wait()

	child = startChildFsync(t, dir, addr, policy)
	fm, err := flowmesh.Connect(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	for w := range got {
		a := &got[w]
		for key, want := range a.vals {
			v, ok, err := fm.KV.Get(ctx, key)
			if err != nil || !ok {
				t.Fatalf("%s lost after kill -9 (%v)", key, err)
			}
			// The write after the last acknowledged one may have landed
			// without its reply: the value is the acknowledged one or later.
			if string(v) != want && !later(string(v), want) {
				t.Fatalf("%s = %s, acknowledged %s", key, v, want)
			}
		}
		h, err := fm.KV.HGetAll(ctx, fmt.Sprint("w", w, ":h"))
		if err != nil {
			t.Fatal(err)
		}
		for f, want := range a.fields {
			if v := string(h[f]); v != want && !later(v, want) {
				t.Fatalf("w%d:h.%s = %q, acknowledged %s", w, f, v, want)
			}
		}
		if n, err := fm.KV.HLen(ctx, fmt.Sprint("w", w, ":h")); err != nil || n != int64(len(h)) {
			t.Fatalf("w%d:h counts %d fields, holds %d (%v)", w, n, len(h), err)
		}
		v, _, err := fm.KV.Get(ctx, fmt.Sprint("w", w, ":n"))
		n, _ := strconv.ParseInt(string(v), 10, 64)
		if err != nil || n < a.counter || n > a.counter+1 {
			t.Fatalf("w%d:n = %d, last acknowledged %d (%v)", w, n, a.counter, err)
		}
	}
}

// later reports whether value v ("v<i>") was written after want.
func later(v, want string) bool {
	a, err1 := strconv.Atoi(v[1:])
	b, err2 := strconv.Atoi(want[1:])
	return err1 == nil && err2 == nil && a > b
}
