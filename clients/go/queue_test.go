package flowmesh_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
	"github.com/flowmesh/flowmesh/server"
)

// TestWorker: jobs enqueued with headers, priorities and delays are
// processed by a worker with concurrency; a failing job is retried with
// backoff and dead-lettered when its attempts are spent; a panic counts as
// a failure; a permanent error dead-letters at once; redrive brings a dead
// job back.
func TestWorker(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := fm.Queue.Create(ctx, "emails.send", flowmesh.QueueConfig{MaxAttempts: 2, BackoffBase: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	h := flowmesh.Header{}
	h.Set("trace_id", "abc")
	const n = 50
	for i := 0; i < n; i++ {
		if _, err := fm.Queue.Enqueue(ctx, "emails.send", []byte(fmt.Sprintf("ok-%d", i)), flowmesh.JobHeader(h)); err != nil {
			t.Fatal(err)
		}
	}
	fm.Queue.Enqueue(ctx, "emails.send", []byte("flaky"))
	fm.Queue.Enqueue(ctx, "emails.send", []byte("panic"))
	fm.Queue.Enqueue(ctx, "emails.send", []byte("permanent"))
	laterSent := time.Now() // the server's clock starts the delay after this
	later, _ := fm.Queue.Enqueue(ctx, "emails.send", []byte("later"), flowmesh.Delay(300*time.Millisecond))
	if id, _ := fm.Queue.Enqueue(ctx, "emails.send", []byte("x"), flowmesh.IdempotencyKey("k1")); id == 0 {
		t.Fatal("no id")
	}
	if _, err := fm.Queue.Enqueue(ctx, "emails.send", []byte("x"), flowmesh.Delay(-time.Second)); err == nil {
		t.Fatal("negative delay accepted")
	}

	var mu sync.Mutex
	done := map[string]int{}
	attempts := map[string]int{}
	var laterAt time.Time
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	werr := make(chan error, 1)
	go func() {
		werr <- fm.Queue.Worker(wctx, "emails.send", func(ctx context.Context, job *flowmesh.Job) error {
			p := string(job.Payload)
			mu.Lock()
			attempts[p]++
			mu.Unlock()
			switch p {
			case "flaky":
				return errors.New("smtp 451")
			case "panic":
				panic("boom")
			case "permanent":
				return flowmesh.Permanent(errors.New("no such mailbox"))
			case "later":
				mu.Lock()
				laterAt = time.Now()
				mu.Unlock()
			}
			if p != "x" && p != "later" && job.Header.Get("trace_id") != "abc" {
				return fmt.Errorf("header lost: %v", job.Header)
			}
			mu.Lock()
			done[p]++
			mu.Unlock()
			return nil
		}, flowmesh.Concurrency(8), flowmesh.WorkerName("mailer"))
	}()
	for {
		in, err := fm.Queue.Info(ctx, "emails.send")
		if err != nil {
			t.Fatal(err)
		}
		if in.Ready == 0 && in.Delayed == 0 && in.InFlight == 0 && in.Dead == 3 {
			// Everything happened within the last seconds: the rates see it.
			if in.Rates.Enqueued <= 0 || in.Rates.Acked <= 0 || in.Rates.DeadLettered <= 0 || in.Processing.Count == 0 {
				t.Fatalf("rates and processing times missing: %+v", in)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("queue never settled: %+v", in)
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	if err := <-werr; err != nil {
		t.Fatalf("worker: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(done) != n+2 { // ok-*, later, x
		t.Fatalf("completed %d distinct jobs, want %d", len(done), n+2)
	}
	for p, c := range done {
		if c != 1 {
			t.Fatalf("%s completed %d times", p, c)
		}
	}
	if attempts["flaky"] != 2 || attempts["panic"] != 2 || attempts["permanent"] != 1 {
		t.Fatalf("attempts %v", attempts)
	}
	if laterAt.Sub(laterSent) < 300*time.Millisecond {
		t.Fatalf("delayed job ran %v after it was sent, before its 300ms delay", laterAt.Sub(laterSent))
	}
	dead, _, err := fm.Queue.Browse(ctx, "emails.send", "dead", 0, 10)
	if err != nil || len(dead) != 3 {
		t.Fatalf("dead letters: %+v %v", dead, err)
	}
	reasons := map[string]string{}
	for _, d := range dead {
		reasons[string(d.Payload)] = d.LastError
	}
	if reasons["flaky"] != "smtp 451" || reasons["permanent"] != "no such mailbox" || len(reasons["panic"]) < 10 {
		t.Fatalf("dead-letter reasons %v", reasons)
	}
	if n, err := fm.Queue.Redrive(ctx, "emails.send", 0, true); err != nil || n != 3 {
		t.Fatalf("redrive: %d %v", n, err)
	}
	_ = later
}

// TestReserveAckErrors: the low-level calls and their errors.
func TestReserveAckErrors(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	fm.Queue.Enqueue(ctx, "q", []byte("a"))
	jobs, err := fm.Queue.Reserve(ctx, "q", 5, 0)
	if err != nil || len(jobs) != 1 || string(jobs[0].Payload) != "a" || jobs[0].Attempt != 1 {
		t.Fatalf("reserve: %+v %v", jobs, err)
	}
	if err := jobs[0].Touch(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := jobs[0].Ack(ctx); err != nil {
		t.Fatal(err)
	}
	var fe *flowmesh.Error
	if err := jobs[0].Ack(ctx); !errors.As(err, &fe) {
		t.Fatalf("second ack: %v", err)
	}
	if _, err := fm.Queue.Reserve(ctx, "nosuch", 1, 0); !errors.As(err, &fe) {
		t.Fatalf("reserve from an unknown queue: %v", err)
	}
	if jobs, err := fm.Queue.Reserve(ctx, "q", 1, 50*time.Millisecond); err != nil || len(jobs) != 0 {
		t.Fatalf("long poll of an empty queue: %v %v", jobs, err)
	}
}

// TestNackHugeError: an error text over the server's max_payload does not
// cost the connection (the SDK sends its first 64 KiB); the job keeps 4 KiB
// of it and says how much was cut.
func TestNackHugeError(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	if _, err := fm.Queue.Enqueue(ctx, "huge.err", []byte("a")); err != nil {
		t.Fatal(err)
	}
	jobs, err := fm.Queue.Reserve(ctx, "huge.err", 1, 0)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("reserve: %v %v", jobs, err)
	}
	if err := jobs[0].Retry(ctx, time.Hour, errors.New(strings.Repeat("x", 2<<20))); err != nil {
		t.Fatalf("nack with a 2 MiB error: %v", err)
	}
	page, _, err := fm.Queue.Browse(ctx, "huge.err", "delayed", 0, 10)
	if err != nil || len(page) != 1 {
		t.Fatalf("browse delayed: %v %v", page, err)
	}
	if e := page[0].LastError; len(e) > 4096 || !strings.HasSuffix(e, "bytes cut)") {
		t.Fatalf("last error kept: %d bytes ending %q", len(e), e[max(0, len(e)-20):])
	}
}

// TestWorkerNilHandler: a Worker without a handler is refused before it
// takes a job (run, each job would fail its attempts and dead-letter).
func TestWorkerNilHandler(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	if _, err := fm.Queue.Enqueue(ctx, "nil.handler", []byte("a")); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := fm.Queue.Worker(wctx, "nil.handler", nil); err == nil || !strings.Contains(err.Error(), "handler") {
		t.Fatalf("Worker(nil) = %v", err)
	}
	jobs, err := fm.Queue.Reserve(ctx, "nil.handler", 1, 0)
	if err != nil || len(jobs) != 1 || jobs[0].Attempt != 1 {
		t.Fatalf("the job after Worker(nil): %+v %v", jobs, err)
	}
}

// TestEnqueueBatch: a batch larger than the in-flight limit keeps its
// order and ids; keyed jobs deduplicate inside the batch; a job the
// server refuses fails alone and is named.
func TestEnqueueBatch(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	if err := fm.Queue.Create(ctx, "batch", flowmesh.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	n := flowmesh.MaxInflightWrites*2 + 7
	jobs := make([]flowmesh.EnqueueJob, n)
	for i := range jobs {
		jobs[i].Payload = []byte(fmt.Sprintf("job-%d", i))
	}
	jobs[5].Options = []flowmesh.EnqueueOption{flowmesh.IdempotencyKey("same")}
	jobs[6].Options = []flowmesh.EnqueueOption{flowmesh.IdempotencyKey("same")}
	ids, err := fm.Queue.EnqueueBatch(ctx, "batch", jobs)
	if err != nil {
		t.Fatal(err)
	}
	if ids[5] != ids[6] {
		t.Fatalf("same key, ids %d and %d", ids[5], ids[6])
	}
	for i := 1; i < n; i++ {
		if i != 6 && ids[i] <= ids[i-1] {
			t.Fatalf("ids out of order at %d: %d after %d", i, ids[i], ids[i-1])
		}
	}
	info, err := fm.Queue.Info(ctx, "batch")
	if err != nil || info.Ready != n-1 {
		t.Fatalf("ready %d, want %d (%v)", info.Ready, n-1, err)
	}
	got, err := fm.Queue.Reserve(ctx, "batch", 3, 0)
	if err != nil || len(got) != 3 || string(got[2].Payload) != "job-2" {
		t.Fatalf("reserve after the batch: %v %v", got, err)
	}

	// Over the queue's max_job_bytes: the server refuses that job alone.
	if err := fm.Queue.Create(ctx, "small", flowmesh.QueueConfig{MaxJobBytes: 10}); err != nil {
		t.Fatal(err)
	}
	bad := []flowmesh.EnqueueJob{{Payload: []byte("a")}, {Payload: make([]byte, 11)}, {Payload: []byte("c")}}
	ids, err = fm.Queue.EnqueueBatch(ctx, "small", bad)
	var fe *flowmesh.Error
	if !errors.As(err, &fe) || ids[2] != ids[0]+1 {
		t.Fatalf("batch with an oversize job: ids %v, err %v", ids, err)
	}
	if info, err := fm.Queue.Info(ctx, "small"); err != nil || info.Ready != 2 {
		t.Fatalf("small: %+v %v", info, err)
	}
	if !strings.Contains(err.Error(), "job 1 of the batch") || !strings.Contains(err.Error(), "Too Large") {
		t.Fatalf("error does not name the job and the cause: %v", err)
	}
	// Over the connection's max_payload: refused before it is sent (the
	// server would close the connection), the jobs before it are in.
	bad[1].Payload = make([]byte, fm.MaxPayload()+1)
	ids, err = fm.Queue.EnqueueBatch(ctx, "batch", bad)
	if !errors.Is(err, flowmesh.ErrMaxPayload) || ids[0] == 0 || ids[1] != 0 {
		t.Fatalf("batch with a job over max_payload: ids %v, err %v", ids, err)
	}
	if _, err := fm.Queue.Enqueue(ctx, "batch", bad[1].Payload); !errors.Is(err, flowmesh.ErrMaxPayload) {
		t.Fatalf("enqueue over max_payload: %v", err)
	}
	if err := fm.Flush(ctx); err != nil {
		t.Fatalf("connection broken by a refused job: %v", err)
	}
}

// TestWorkerTouchesLongJobs: a handler running past the visibility
// timeout keeps its job (the worker touches it), so the job is not
// delivered again; with touching off, it is.
func TestWorkerTouchesLongJobs(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	for _, tc := range []struct {
		queue   string
		opts    []flowmesh.WorkerOption
		expired bool
	}{
		{"touched", nil, false},
		{"untouched", []flowmesh.WorkerOption{flowmesh.TouchEvery(0), flowmesh.Concurrency(2)}, true},
	} {
		if err := fm.Queue.Create(ctx, tc.queue, flowmesh.QueueConfig{VisibilityTimeout: 300 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		if _, err := fm.Queue.Enqueue(ctx, tc.queue, []byte("long")); err != nil {
			t.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		var mu sync.Mutex
		attempts := 0
		done := make(chan struct{})
		var once sync.Once
		go fm.Queue.Worker(wctx, tc.queue, func(ctx context.Context, j *flowmesh.Job) error {
			mu.Lock()
			attempts++
			mu.Unlock()
			if j.Attempt == 1 {
				time.Sleep(time.Second) // the long job: over three visibility timeouts
			}
			once.Do(func() { close(done) })
			return nil
		}, tc.opts...)
		<-done
		in, err := fm.Queue.Info(ctx, tc.queue)
		stop()
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := attempts
		mu.Unlock()
		if tc.expired != (in.Counters.Expired > 0) || (!tc.expired && got != 1) {
			t.Fatalf("%s: %d deliveries, counters %+v", tc.queue, got, in.Counters)
		}
	}
}

// TestWorkerAcrossRestart: the node restarts on the same address and data
// directory under a running worker; the worker reconnects, registers
// again (the new node lists it by name, with the jobs it did since) and
// goes on consuming.
func TestWorkerAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	start := func(addr string) *server.Server { return startNodeDir(t, addr, dir) }
	s := start("127.0.0.1:0")
	addr := s.Addr().String()
	fm := connect(t, s, flowmesh.ReconnectBackoff(10*time.Millisecond, 100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := fm.Queue.Create(ctx, "restart.q", flowmesh.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 4)
	wctx, stop := context.WithCancel(ctx)
	werr := make(chan error, 1)
	go func() {
		werr <- fm.Queue.Worker(wctx, "restart.q", func(ctx context.Context, j *flowmesh.Job) error {
			done <- string(j.Payload)
			return nil
		}, flowmesh.WorkerName("survivor"), flowmesh.Concurrency(2))
	}()
	for i, payload := range []string{"before", "after"} {
		if i == 1 {
			if err := s.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			s = start(addr)
			t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
		}
		if _, err := fm.Queue.Enqueue(ctx, "restart.q", []byte(payload)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-done:
			if got != payload {
				t.Fatalf("worker did %q, want %q", got, payload)
			}
		case <-ctx.Done():
			t.Fatalf("job %q not done", payload)
		}
	}
	// The outcome of "after" is reported after the handler returned: wait
	// for the new node to count it.
	var ws []flowmesh.WorkerInfo
	for deadline := time.Now().Add(5 * time.Second); ; {
		var err error
		if ws, err = fm.Queue.Workers(ctx); err != nil {
			t.Fatal(err)
		}
		if len(ws) == 1 && ws[0].Processed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers on the restarted node: %+v", ws)
		}
		time.Sleep(10 * time.Millisecond) // no event announces an ack's count
	}
	if w := ws[0]; w.Name != "survivor" || w.Concurrency != 2 || w.State == "gone" ||
		len(w.Queues) != 1 || w.Queues[0] != "restart.q" {
		t.Fatalf("worker after restart: %+v", w)
	}
	stop()
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}
