package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
	"github.com/redis/go-redis/v9"
)

// TestKVKill9 kills the server (SIGKILL of a real process) while writers
// run SETs, HSETs and INCRs, half of them through the Go SDK on the
// native port, half through go-redis on the Redis port (on both, replies
// wait for a barrier at the end of the loop's turn), twice (the second
// life starts from the first's replayed append-only file), under
// fsync=always and under interval: a write is acknowledged after its
// record is written, so a killed process loses none under either. After
// each restart every
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
			addr, respAddr := freeAddr(t), freeAddr(t)
			for life := 0; life < 2; life++ {
				kvKillOnce(t, dir, addr, respAddr, policy)
			}
		})
	}
}

// kvWriter is one crash-test writer's client: the Go SDK or go-redis.
type kvWriter interface {
	set(ctx context.Context, key, val string) error
	hset(ctx context.Context, key, field, val string) error
	incr(ctx context.Context, key string) (int64, error)
	Close() error
}

type sdkWriter struct{ *flowmesh.Conn }

func (w sdkWriter) set(ctx context.Context, key, val string) error {
	_, err := w.KV.Set(ctx, key, []byte(val))
	return err
}

func (w sdkWriter) hset(ctx context.Context, key, field, val string) error {
	_, err := w.KV.HSet(ctx, key, map[string][]byte{field: []byte(val)})
	return err
}

func (w sdkWriter) incr(ctx context.Context, key string) (int64, error) { return w.KV.Incr(ctx, key) }

type redisWriter struct{ *redis.Client }

func (w redisWriter) set(ctx context.Context, key, val string) error {
	return w.Set(ctx, key, val, 0).Err()
}

func (w redisWriter) hset(ctx context.Context, key, field, val string) error {
	return w.HSet(ctx, key, field, val).Err()
}

func (w redisWriter) incr(ctx context.Context, key string) (int64, error) {
	return w.Incr(ctx, key).Result()
}

func kvKillOnce(t *testing.T, dir, addr, respAddr, policy string) {
	child := startChildRESP(t, dir, addr, respAddr, policy)
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
			var cl kvWriter
			if w%2 == 0 {
				fm, err := flowmesh.Connect(ctx, addr, flowmesh.MaxReconnects(0))
				if err != nil {
					t.Error(err)
					return
				}
				cl = sdkWriter{fm}
			} else {
				// No retries: a command cut off by the kill must not be sent
				// again to the next life.
				cl = redisWriter{redis.NewClient(&redis.Options{Addr: respAddr, MaxRetries: -1, Protocol: 2})}
			}
			defer cl.Close()
			a := &got[w]
			for i := 0; ; i++ {
				key := fmt.Sprintf("w%d:k%d", w, i%50)
				val := fmt.Sprintf("v%d", i)
				if err := cl.set(ctx, key, val); err != nil {
					return
				}
				a.mu.Lock()
				a.vals[key] = val
				a.mu.Unlock()
				field := fmt.Sprint("f", i%20)
				if err := cl.hset(ctx, fmt.Sprint("w", w, ":h"), field, val); err != nil {
					return
				}
				a.mu.Lock()
				a.fields[field] = val
				a.mu.Unlock()
				n, err := cl.incr(ctx, fmt.Sprint("w", w, ":n"))
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

	child = startChildRESP(t, dir, addr, respAddr, policy)
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
