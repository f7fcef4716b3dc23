package queue

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// TestStartupReport measures how long a queue with many jobs takes to
// open (recovery reads the job states from Pebble and every job record
// from the log). A measurement, not a pass/fail test:
//
//	FLOWMESH_QUEUE_PERF=1 go test -run TestStartupReport -v -timeout 30m ./queue/
//	FLOWMESH_QUEUE_PERF=1 FLOWMESH_QUEUE_PERF_JOBS=1000000 ...
func TestStartupReport(t *testing.T) {
	if os.Getenv("FLOWMESH_QUEUE_PERF") == "" {
		t.Skip("set FLOWMESH_QUEUE_PERF=1 to measure")
	}
	jobs := 1_000_000
	fmt.Sscan(os.Getenv("FLOWMESH_QUEUE_PERF_JOBS"), &jobs)
	dir := t.TempDir()
	clk := &clock{now: time.Now()}
	n := openNode(t, dir, clk)
	cfg := n.e.Defaults()
	cfg.Fsync = "none"
	q, err := n.e.Create("big", cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Random payloads, a different window of a pool for each job, so the
	// log's compression does not shrink them to nothing.
	pool := make([]byte, 1<<20)
	for i := range pool {
		pool[i] = byte(rand.IntN(256))
	}
	var wg sync.WaitGroup
	window := make(chan struct{}, 10000)
	start := time.Now()
	for i := 0; i < jobs; i++ {
		window <- struct{}{}
		wg.Add(1)
		o := rand.IntN(len(pool) - 100)
		r := EnqueueRequest{Payload: pool[o : o+100]}
		if i%10 == 0 {
			r.Delay = time.Hour // a tenth delayed
		}
		q.Enqueue(&r, func(uint64, bool, error) { <-window; wg.Done() })
	}
	wg.Wait()
	fill := time.Since(start)
	// A thousand in flight and a thousand dead, so recovery has states to
	// merge too.
	got := reserve(t, q, 2000, 0)
	for _, d := range got[:1000] {
		ch := make(chan Where, 1)
		q.Nack(d.ID, d.Attempt, NackOpts{Fail: true, Error: "x"}, func(w Where, _ time.Duration, _ error) { ch <- w })
		<-ch
	}
	n.close(t)
	start = time.Now()
	n = openNode(t, dir, clk)
	open := time.Since(start)
	q, _ = n.e.Queue("big", false)
	in := q.Info()
	t.Logf("| queue start-up with %d jobs (%d ready, %d delayed, %d in flight, %d dead), 100 B each, log %d MiB | %v (recovery %v) | filled in %v |",
		jobs, in.Ready, in.Delayed, in.InFlight, in.Dead, in.Bytes>>20, open.Round(time.Millisecond), in.Recovery.Duration.Round(time.Millisecond), fill.Round(time.Millisecond))
	if in.Recovery.Jobs != jobs {
		t.Fatalf("recovered %d jobs of %d", in.Recovery.Jobs, jobs)
	}
	n.close(t)
}
