package main

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
)

// TestQueueChaos: workers that crash at random (their connection closed
// with jobs in hand) while the server is killed (SIGKILL) and restarted.
// Every job enqueued must complete at least once and none may be lost:
// at the end each was processed, and the queue holds nothing.
//
// The server is killed at least twice while the jobs go in, and once per
// 5000 jobs in longer runs. FLOWMESH_CHAOS_JOBS sets the size (default
// 1000; the long version:
// FLOWMESH_CHAOS_JOBS=50000 go test -run TestQueueChaos -timeout 30m ./cmd/flowmesh).
func TestQueueChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	jobs := 1000
	if v, err := strconv.Atoi(os.Getenv("FLOWMESH_CHAOS_JOBS")); err == nil && v > 0 {
		jobs = v
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	child := startChild(t, dir, addr)
	defer func() { child.Process.Kill(); child.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dial := func() *flowmesh.Conn {
		for {
			fm, err := flowmesh.Connect(ctx, addr, flowmesh.ReconnectBackoff(10*time.Millisecond, 200*time.Millisecond))
			if err == nil {
				return fm
			}
			select {
			case <-ctx.Done():
				t.Fatal("server never came back")
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	admin := dial()
	defer admin.Close()
	if err := admin.Queue.Create(ctx, "chaos", flowmesh.QueueConfig{MaxAttempts: 1000, VisibilityTimeout: time.Second, BackoffBase: time.Millisecond}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	processed := map[string]int{}
	enqueued := 0
	// Producer: every job has an idempotency key, so a retry after the
	// crash stores it once.
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		fm := dial()
		defer fm.Close()
		for i := 0; i < jobs; i++ {
			for {
				_, err := fm.Queue.Enqueue(ctx, "chaos", []byte("j-"+strconv.Itoa(i)), flowmesh.IdempotencyKey("k-"+strconv.Itoa(i)))
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return
				}
				time.Sleep(20 * time.Millisecond) // the server is down; the SDK reconnects
			}
			mu.Lock()
			enqueued++
			mu.Unlock()
		}
	}()
	// Workers: each runs a few hundred milliseconds, now and then "crashes"
	// by closing its connection with jobs in hand, then starts over.
	stopWorkers := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stopWorkers:
					return
				default:
				}
				fm, err := flowmesh.Connect(ctx, addr, flowmesh.MaxReconnects(0))
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				wctx, wcancel := context.WithTimeout(ctx, time.Duration(100+rand.IntN(300))*time.Millisecond)
				fm.Queue.Worker(wctx, "chaos", func(ctx context.Context, job *flowmesh.Job) error {
					if rand.IntN(20) == 0 {
						fm.Close() // crash: the ack cannot go out; the job comes back
						return nil
					}
					mu.Lock()
					processed[string(job.Payload)]++
					mu.Unlock()
					return nil
				}, flowmesh.Concurrency(8))
				wcancel()
				fm.Close()
			}
		}()
	}
	// Kill the server while the jobs go in: at least twice (a restart
	// that recovers from a recovery), once per 5000 jobs in long runs.
	kills := max(2, jobs/5000)
	for k := 1; k <= kills; k++ {
		for {
			mu.Lock()
			n := enqueued
			mu.Unlock()
			if n >= jobs*k/(kills+1) {
				break
			}
			select {
			case <-prodDone:
				t.Fatalf("producer gave up after %d of %d jobs", n, jobs)
			case <-time.After(10 * time.Millisecond):
			}
		}
		child.Process.Kill()
		child.Wait()
		child = startChild(t, dir, addr)
	}
	<-prodDone
	if enqueued != jobs {
		t.Fatalf("producer stopped after %d of %d jobs: %v", enqueued, jobs, ctx.Err())
	}
	// Wait for the queue to drain (in-flight jobs of crashed workers come
	// back after their 1 s visibility timeout).
	admin = dial()
	defer admin.Close()
	for {
		in, err := admin.Queue.Info(ctx, "chaos")
		if err == nil && in.Ready == 0 && in.Delayed == 0 && in.InFlight == 0 {
			if in.Dead != 0 {
				t.Fatalf("%d jobs dead-lettered", in.Dead)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("queue did not drain: %+v %v", in, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	close(stopWorkers)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	again := 0
	for i := 0; i < jobs; i++ {
		c := processed["j-"+strconv.Itoa(i)]
		if c == 0 {
			t.Fatalf("job j-%d never processed (lost)", i)
		}
		again += c - 1
	}
	t.Logf("%d jobs, all processed; %d extra deliveries after crashes", jobs, again)
}
