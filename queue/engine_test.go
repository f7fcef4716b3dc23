package queue

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/kv/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a settable time for the engine.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type node struct {
	dir string
	st  *store.Store
	e   *Engine
	clk *clock
}

func openNode(t *testing.T, dir string, clk *clock, mods ...func(*Options)) *node {
	t.Helper()
	st, err := store.Open(dir+"/meta", store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(1<<20, "interval")
	cfg.MaxAttempts, cfg.Jitter = 3, 0
	opts := Options{Dir: dir + "/queues", Store: st, Defaults: cfg, AutoCreate: true, Logger: quiet,
		Now: clk.Now, Rand: func() float64 { return 0 }, SegmentBytes: segmentBytes()}
	for _, m := range mods {
		m(&opts)
	}
	e, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &node{dir: dir, st: st, e: e, clk: clk}
}

func (n *node) close(t *testing.T) {
	t.Helper()
	if err := n.e.Close(); err != nil {
		t.Fatal(err)
	}
	n.st.Close()
}

func enq(t *testing.T, q *Queue, r EnqueueRequest) (uint64, bool) {
	t.Helper()
	type res struct {
		id  uint64
		dup bool
		err error
	}
	ch := make(chan res, 1)
	q.Enqueue(&r, func(id uint64, dup bool, err error) { ch <- res{id, dup, err} })
	x := <-ch
	if x.err != nil {
		t.Fatalf("enqueue: %v", x.err)
	}
	return x.id, x.dup
}

func reserve(t *testing.T, q *Queue, max int, wait time.Duration) []Delivery {
	t.Helper()
	return reserveVis(t, q, max, wait, 0)
}

// reserveVis is reserve with a visibility timeout (0: the queue's).
func reserveVis(t *testing.T, q *Queue, max int, wait, vis time.Duration) []Delivery {
	t.Helper()
	type res struct {
		ds  []Delivery
		err error
	}
	ch := make(chan res, 1)
	q.Reserve(max, wait, vis, func(ds []Delivery, err error) { ch <- res{ds, err} })
	select {
	case x := <-ch:
		if x.err != nil {
			t.Fatalf("reserve: %v", x.err)
		}
		return x.ds
	case <-time.After(10 * time.Second):
		t.Fatal("reserve never answered")
	}
	return nil
}

func ack(q *Queue, id uint64, attempt int) error {
	ch := make(chan error, 1)
	q.Ack(id, attempt, func(_ time.Duration, err error) { ch <- err })
	return <-ch
}

func TestEnqueueReserveAckAndRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, dir, clk)
	q, err := n.e.Queue("emails.send", true)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		enq(t, q, EnqueueRequest{Payload: []byte(fmt.Sprintf("job-%d", i)), Header: []byte("NATS/1.0\r\ntrace_id: t\r\n\r\n")})
	}
	delayed, _ := enq(t, q, EnqueueRequest{Payload: []byte("later"), Delay: time.Hour})
	ds := reserve(t, q, 4, 0)
	if len(ds) != 4 || string(ds[0].Payload) != "job-0" || ds[0].Attempt != 1 || string(ds[0].Header) != "NATS/1.0\r\ntrace_id: t\r\n\r\n" {
		t.Fatalf("reserved %+v", ds)
	}
	// job-0 acked, job-1 nacked (retry in 1s), job-2 failed for good,
	// job-3 left in flight (its worker "dies").
	if err := ack(q, ds[0].ID, 1); err != nil {
		t.Fatal(err)
	}
	if err := ack(q, ds[0].ID, 1); !errors.Is(err, ErrJobNotFound) {
		t.Fatalf("second ack: %v", err)
	}
	ch := make(chan Where, 1)
	q.Nack(ds[1].ID, 1, NackOpts{Error: "smtp 451"}, func(w Where, _ time.Duration, err error) { ch <- w })
	if w := <-ch; w != Delayed {
		t.Fatalf("nack -> %v", w)
	}
	q.Nack(ds[2].ID, 1, NackOpts{Fail: true, Error: "bad address"}, func(w Where, _ time.Duration, err error) { ch <- w })
	if w := <-ch; w != Dead {
		t.Fatalf("fail -> %v", w)
	}
	in := q.Info()
	if in.Ready != 2 || in.InFlight != 1 || in.Delayed != 2 || in.Dead != 1 {
		t.Fatalf("info before restart %+v", in)
	}
	n.close(t)

	// After a restart everything is where it was; the in-flight job comes
	// back when its visibility timeout passes, its attempt counted.
	n = openNode(t, dir, clk)
	defer n.close(t)
	q, _ = n.e.Queue("emails.send", false)
	in = q.Info()
	if in.Ready != 2 || in.InFlight != 1 || in.Delayed != 2 || in.Dead != 1 || in.Recovery.Jobs != 6 {
		t.Fatalf("info after restart %+v", in)
	}
	if j := q.st.Lookup(ds[1].ID); j.LastError != "smtp 451" || j.Attempts != 1 {
		t.Fatalf("nacked job after restart %+v", j)
	}
	if q.st.Lookup(ds[0].ID) != nil {
		t.Fatal("acknowledged job came back")
	}
	clk.Add(31 * time.Second) // past job-3's visibility and job-1's backoff
	q.kick()
	got := reserve(t, q, 10, time.Second)
	ids := map[uint64]int{}
	for _, d := range got {
		ids[d.ID] = d.Attempt
	}
	if len(got) != 4 || ids[ds[3].ID] != 2 || ids[ds[1].ID] != 2 {
		t.Fatalf("after the timeout: %v", ids)
	}
	if _, ok := ids[delayed]; ok {
		t.Fatal("delayed job delivered early")
	}
}

func TestLongPollAndDedup(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, t.TempDir(), clk)
	defer n.close(t)
	q, _ := n.e.Queue("q", true)
	got := make(chan []Delivery, 1)
	q.Reserve(1, time.Minute, 0, func(ds []Delivery, err error) { got <- ds })
	id, _ := enq(t, q, EnqueueRequest{Payload: []byte("x"), Key: "order-1"})
	if ds := <-got; len(ds) != 1 || ds[0].ID != id {
		t.Fatalf("long poll got %+v", ds)
	}
	if again, dup := enq(t, q, EnqueueRequest{Payload: []byte("x"), Key: "order-1"}); !dup || again != id {
		t.Fatalf("second enqueue with the key: %d %v", again, dup)
	}
	// A poll whose wait runs out gets nothing.
	q.Reserve(1, time.Second, 0, func(ds []Delivery, err error) { got <- ds })
	clk.Add(2 * time.Second)
	q.kick()
	if ds := <-got; len(ds) != 0 {
		t.Fatalf("expired poll got %+v", ds)
	}
	var errs []error
	q.Enqueue(&EnqueueRequest{Payload: make([]byte, 2<<20)}, func(_ uint64, _ bool, err error) { errs = append(errs, err) })
	q.Enqueue(&EnqueueRequest{Delay: -time.Second}, func(_ uint64, _ bool, err error) { errs = append(errs, err) })
	q.Enqueue(&EnqueueRequest{MaxAttempts: -1}, func(_ uint64, _ bool, err error) { errs = append(errs, err) })
	q.Enqueue(&EnqueueRequest{MaxAttempts: MaxAttemptsLimit + 1}, func(_ uint64, _ bool, err error) { errs = append(errs, err) })
	if !errors.Is(errs[0], ErrTooLarge) || !errors.Is(errs[1], ErrBadDelay) ||
		!errors.Is(errs[2], ErrBadAttempts) || !errors.Is(errs[3], ErrBadAttempts) {
		t.Fatalf("bad enqueues: %v", errs)
	}
}

// TestSpaceReclaimed: as jobs are acknowledged the log releases them and
// deletes whole segments, their state records with them (nothing is kept
// in Pebble); what is left after a restart is only the live jobs. The queue has the default dedup window,
// which jobs without an idempotency key do not hold.
func TestSpaceReclaimed(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, dir, clk)
	q, _ := n.e.Create("work", n.e.Defaults())
	if q.Config().DedupWindow == 0 {
		t.Fatal("the test needs a dedup window")
	}
	for i := 0; i < 300; i++ {
		enq(t, q, EnqueueRequest{Payload: make([]byte, 100)})
	}
	for done := 0; done < 290; {
		for _, d := range reserve(t, q, 50, 0) {
			if done < 290 {
				if err := ack(q, d.ID, d.Attempt); err != nil {
					t.Fatal(err)
				}
				done++
			}
		}
	}
	before := q.Info().Bytes
	deadline := time.Now().Add(5 * time.Second)
	for q.log.Released() < 290 {
		if time.Now().After(deadline) {
			t.Fatalf("released %d after acking 290 jobs", q.log.Released())
		}
		clk.Add(200 * time.Millisecond)
		q.kick()
		time.Sleep(5 * time.Millisecond) // the release runs on the queue's goroutine; no event to wait on
	}
	for deadline := time.Now().Add(5 * time.Second); q.Info().Bytes >= before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("log size %d, was %d: no segment deleted", q.Info().Bytes, before)
		}
	}
	keys := 0
	n.st.Scan(store.KeyspaceQueue, stateKeyPrefix("work"), func(k, v []byte) bool { keys++; return true })
	if keys != 0 {
		t.Fatalf("%d job states in Pebble; they live in the queue's log", keys)
	}
	n.close(t)
	n = openNode(t, dir, clk)
	defer n.close(t)
	q, _ = n.e.Queue("work", false)
	if in := q.Info(); in.Recovery.Jobs != 10 || in.InFlight+in.Ready != 10 {
		t.Fatalf("after restart %+v", in)
	}
}

// TestReleaseWaitsForEnqueues: the log publishes an appended job (its
// high-water mark moves past it) before the job's enqueue completes and
// the job enters the state machine. A release in between went past the
// job, as if no live job were left: the enqueue was acknowledged and the
// job gone after a restart (the model test's seed 26 found it, 3 runs in
// 400).
func TestReleaseWaitsForEnqueues(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	var hold atomic.Bool
	published, proceed := make(chan struct{}), make(chan struct{})
	n := openNode(t, dir, clk, func(o *Options) {
		o.afterPublish = func() {
			if hold.CompareAndSwap(true, false) {
				published <- struct{}{}
				<-proceed
			}
		}
	})
	q, _ := n.e.Create("rel", n.e.Defaults())
	hold.Store(true)
	done := make(chan error, 1)
	q.Enqueue(&EnqueueRequest{Payload: []byte("x")}, func(_ uint64, _ bool, err error) { done <- err })
	<-published // in the log, its enqueue not complete
	q.release(clk.Now())
	if r := q.log.Released(); r != 0 {
		t.Fatalf("released to %d while the enqueue of job 0 was completing", r)
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n.close(t)
	n = openNode(t, dir, clk)
	defer n.close(t)
	q, _ = n.e.Queue("rel", false)
	if in := q.Info(); in.Ready != 1 {
		t.Fatalf("after a restart %+v, want the job enqueued", in)
	}
}

// TestStatesFromPebble: a queue written by a version that kept job states
// in Pebble opens with them (in flight, acknowledged, dead); changes made
// since, written to the log, override them across a restart; and once the
// log is released past their jobs, the Pebble states are deleted.
func TestStatesFromPebble(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, dir, clk)
	q, _ := n.e.Create("old", n.e.Defaults())
	var ids []uint64
	for i := 0; i < 4; i++ {
		id, _ := enq(t, q, EnqueueRequest{Payload: []byte{byte(i)}})
		ids = append(ids, id)
	}
	n.close(t)
	// What the older version left: job 0 in flight (attempt 1), job 1
	// acknowledged, job 2 dead; job 3 ready (no state).
	now := clk.Now().UnixNano()
	st, err := store.Open(dir+"/meta", store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	b := st.NewBatch()
	b.Set(store.KeyspaceQueue, stateKey("old", ids[0]), encodeState(&Job{Where: InFlight, Attempts: 1, Deadline: now + int64(time.Minute)}))
	b.Set(store.KeyspaceQueue, stateKey("old", ids[1]), []byte{ackedMarker})
	b.Set(store.KeyspaceQueue, stateKey("old", ids[2]), encodeState(&Job{Where: Dead, Attempts: 3, DeadAt: now, LastError: "smtp down"}))
	if err := b.CommitSync(true); err != nil {
		t.Fatal(err)
	}
	st.Close()

	n = openNode(t, dir, clk)
	q, _ = n.e.Queue("old", false)
	if in := q.Info(); in.InFlight != 1 || in.Ready != 1 || in.Dead != 1 || in.Delayed != 0 {
		t.Fatalf("opened with %+v, want 1 in flight, 1 ready, 1 dead", in)
	}
	// Job 0's timeout passes: ready again, then reserved (attempt 2) and
	// acknowledged, with job 3: all in the log now.
	clk.Add(2 * time.Minute)
	got := map[uint64]int{}
	for _, d := range reserve(t, q, 10, 0) {
		got[d.ID] = d.Attempt
		if err := ack(q, d.ID, d.Attempt); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[ids[0]] != 2 || got[ids[3]] != 1 {
		t.Fatalf("reserved %v, want job %d at attempt 2 and job %d at attempt 1", got, ids[0], ids[3])
	}
	n.close(t)

	n = openNode(t, dir, clk)
	defer n.close(t)
	q, _ = n.e.Queue("old", false)
	if in := q.Info(); in.InFlight != 0 || in.Ready != 0 || in.Dead != 1 {
		t.Fatalf("after the restart %+v, want only the dead job", in)
	}
	views, _, _, err := q.Browse(Dead, 0, 10)
	if err != nil || len(views) != 1 || views[0].ID != ids[2] || views[0].LastError != "smtp down" {
		t.Fatalf("dead letters %+v, %v", views, err)
	}
	// Purge the dead job: the log is released past every job, and the
	// Pebble states below the mark go.
	done := make(chan error, 1)
	q.Purge(true, func(_ int, err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		keys := 0
		n.st.Scan(store.KeyspaceQueue, stateKeyPrefix("old"), func(k, v []byte) bool { keys++; return true })
		if keys == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Pebble states left after every job went", keys)
		}
		clk.Add(200 * time.Millisecond)
		q.kick() // the release runs on the queue's goroutine; no event to wait on
	}
}

// TestDedupHoldsKeyedJobs: a job with an idempotency key holds the log
// (and so its key) for the dedup window, even acknowledged, and its key
// answers after a restart; once the window has passed the log is released
// past it and the key is free.
func TestDedupHoldsKeyedJobs(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, dir, clk)
	q, _ := n.e.Create("work", n.e.Defaults())
	for i := 0; i < 20; i++ {
		enq(t, q, EnqueueRequest{Payload: []byte("plain")})
	}
	keyed, _ := enq(t, q, EnqueueRequest{Payload: []byte("keyed"), Key: "order-7"})
	for i := 0; i < 20; i++ {
		enq(t, q, EnqueueRequest{Payload: []byte("plain")})
	}
	for done := 0; done < 41; {
		for _, d := range reserve(t, q, 50, 0) {
			if err := ack(q, d.ID, d.Attempt); err != nil {
				t.Fatal(err)
			}
			done++
		}
	}
	waitReleased := func(q *Queue, at uint64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); q.log.Released() < at; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("released %d, want %d", q.log.Released(), at)
			}
			clk.Add(200 * time.Millisecond)
			q.kick()
		}
	}
	// The release computes its mark in one step: had the keyed job not
	// held it, it would have gone to the high-water mark at once.
	waitReleased(q, keyed)
	if got := q.log.Released(); got != keyed {
		t.Fatalf("released %d with job %d's key inside the window", got, keyed)
	}
	n.close(t)

	n = openNode(t, dir, clk)
	q, _ = n.e.Queue("work", false)
	if id, dup := enq(t, q, EnqueueRequest{Payload: []byte("again"), Key: "order-7"}); !dup || id != keyed {
		t.Fatalf("after a restart the acknowledged job's key gave %d dup=%v, want %d", id, dup, keyed)
	}
	clk.Add(time.Duration(q.Config().DedupWindow) + time.Second)
	waitReleased(q, keyed+21)
	n.close(t)

	n = openNode(t, dir, clk)
	defer n.close(t)
	q, _ = n.e.Queue("work", false)
	if id, dup := enq(t, q, EnqueueRequest{Payload: []byte("later"), Key: "order-7"}); dup || id == keyed {
		t.Fatalf("past the window the key gave %d dup=%v", id, dup)
	}
}

func TestBrowseRedrivePurgeWorkers(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, t.TempDir(), clk)
	defer n.close(t)
	q, _ := n.e.Queue("q", true)
	for i := 0; i < 5; i++ {
		enq(t, q, EnqueueRequest{Payload: []byte(fmt.Sprint(i))})
	}
	w, _ := n.e.RegisterWorker("mailer", []string{"q"}, 4)
	dch := make(chan []Delivery, 1)
	clk.Add(3 * time.Millisecond)
	q.ReserveFor(w, nil, 2, 0, 0, func(ds []Delivery, err error) { dch <- ds })
	ds := <-dch
	clk.Add(3 * time.Millisecond)
	done := make(chan Where, 2)
	for _, d := range ds {
		q.Nack(d.ID, d.Attempt, NackOpts{Fail: true, Error: "boom " + string(d.Payload)}, func(wh Where, _ time.Duration, err error) {
			if err != nil {
				t.Error(err)
			}
			done <- wh
		})
	}
	<-done
	<-done
	// Browsing changes nothing and shows payloads and errors.
	dead, _, more, err := q.Browse(Dead, 0, 10)
	if err != nil || more || len(dead) != 2 || string(dead[0].Payload) != "0" || dead[0].LastError != "boom 0" || dead[0].State != "dead" {
		t.Fatalf("browse dead: %+v %v", dead, err)
	}
	ready, next, more, _ := q.Browse(Ready, 0, 2)
	if len(ready) != 2 || string(ready[1].Payload) != "3" || !more || next != ready[1].ID+1 {
		t.Fatalf("browse ready page 1: %+v next %d %v", ready, next, more)
	}
	ready, _, more, _ = q.Browse(Ready, next, 2)
	if len(ready) != 1 || string(ready[0].Payload) != "4" || more {
		t.Fatalf("browse ready page 2: %+v", ready)
	}
	if in := q.Info(); in.Ready != 3 || in.Dead != 2 {
		t.Fatalf("browse changed the queue: %+v", in)
	}
	moved := make(chan int, 1)
	q.Redrive(0, true, func(n int, err error) { moved <- n })
	if m := <-moved; m != 2 || q.Info().Ready != 5 {
		t.Fatalf("redrive all moved %d; %+v", m, q.Info())
	}
	q.Purge(false, func(n int, err error) { moved <- n })
	if m := <-moved; m != 5 || q.Info().Ready != 0 {
		t.Fatalf("purge removed %d", m)
	}
	ws := n.e.Workers()
	if len(ws) != 1 || ws[0].State != "idle" || ws[0].Failed != 2 || ws[0].AvgMs != 3 {
		t.Fatalf("workers %+v", ws)
	}
	clk.Add(time.Minute)
	if ws := n.e.Workers(); ws[0].State != "gone" {
		t.Fatalf("silent worker is %s", ws[0].State)
	}
}

// segmentBytes keeps segments small in the tests (space is reclaimed in
// whole segments) but not in the start-up measurement, which would make
// thousands of files.
func segmentBytes() int64 {
	if os.Getenv("FLOWMESH_QUEUE_PERF") != "" {
		return 0
	}
	return 4 << 10
}

// TestRecreate: a queue deleted and created again starts empty, and its
// jobs survive a restart (nothing of the old queue's state leaks in).
func TestRecreate(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, dir, clk)
	q, _ := n.e.Queue("again", true)
	for i := 0; i < 5; i++ {
		enq(t, q, EnqueueRequest{Payload: []byte("old")})
	}
	for _, d := range reserve(t, q, 5, 0) {
		ack(q, d.ID, d.Attempt)
	}
	if err := n.e.Delete("again"); err != nil {
		t.Fatal(err)
	}
	if err := n.e.Delete("again"); !errors.Is(err, ErrQueueNotFound) {
		t.Fatal("second delete succeeded")
	}
	q, _ = n.e.Queue("again", true)
	if in := q.Info(); in.Ready != 0 {
		t.Fatalf("re-created queue not empty: %+v", in)
	}
	id, _ := enq(t, q, EnqueueRequest{Payload: []byte("new")})
	n.close(t)
	n = openNode(t, dir, clk)
	defer n.close(t)
	q, _ = n.e.Queue("again", false)
	ds := reserve(t, q, 5, 0)
	if len(ds) != 1 || ds[0].ID != id || string(ds[0].Payload) != "new" {
		t.Fatalf("after restart: %+v", ds)
	}
}

// TestTraceHooks: a job's trace context rides along with it (deliveries,
// JobTrace, the dead-letter hook) and is found again on recovery.
func TestTraceHooks(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	dead := make(chan Job, 4)
	hooks := func(o *Options) {
		o.DeadLettered = func(q *Queue, j Job) { dead <- j }
		o.TraceOf = func(hdr []byte) *[TraceSize]byte {
			var p [TraceSize]byte
			copy(p[:], hdr[len(hdr)-4-TraceSize:]) // the test's header ends with the packed bytes
			return &p
		}
	}
	n := openNode(t, dir, clk, hooks)
	q, _ := n.e.Queue("traced", true)
	var p1 [TraceSize]byte
	copy(p1[:], "0123456789abcdef01234567\x01")
	a, _ := enq(t, q, EnqueueRequest{Payload: []byte("a"), Trace: &p1, Header: []byte("NATS/1.0\r\nx: " + string(p1[:]) + "\r\n\r\n")})
	b, _ := enq(t, q, EnqueueRequest{Payload: []byte("b"), MaxAttempts: 1})
	if q.JobTrace(a) != &p1 || q.JobTrace(b) != nil || q.JobTrace(999) != nil {
		t.Fatal("JobTrace does not return the enqueue's context")
	}
	ds := reserve(t, q, 2, 0)
	if len(ds) != 2 || ds[0].Trace != &p1 || ds[1].Trace != nil {
		t.Fatalf("deliveries %+v", ds)
	}
	ch := make(chan Where, 1)
	q.Nack(a, 1, NackOpts{Fail: true, Error: "boom"}, func(w Where, _ time.Duration, err error) { ch <- w })
	if <-ch != Dead {
		t.Fatal("fail did not dead-letter")
	}
	if j := <-dead; j.ID != a || j.Trace != &p1 || j.LastError != "boom" || j.Where != Dead {
		t.Fatalf("hook after nack: %+v", j)
	}
	clk.Add(time.Minute) // b's visibility passes on its only attempt
	q.kick()
	if j := <-dead; j.ID != b || j.Trace != nil || j.Attempts != 1 {
		t.Fatalf("hook after expiry: %+v", j)
	}
	n.close(t)

	n = openNode(t, dir, clk, hooks)
	defer n.close(t)
	q, _ = n.e.Queue("traced", false)
	if got := q.JobTrace(a); got == nil || *got != p1 {
		t.Fatalf("recovered trace %v", got)
	}
	if q.JobTrace(b) != nil {
		t.Fatal("a job without a header got a trace on recovery")
	}
}

// EndLongPolls answers the waiting reserves at once, with no jobs, and
// later reserves do not wait; a reserver whose connection closed is
// answered when ReserverGone wakes the queue, not at its deadline.
func TestEndLongPollsAndReserverGone(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, t.TempDir(), clk)
	defer n.close(t)
	a, _ := n.e.Queue("a", true)
	b, _ := n.e.Queue("b", true)
	type res struct {
		ds  []Delivery
		err error
	}
	answered := func(what string, ch chan res) res {
		t.Helper()
		select {
		case r := <-ch:
			return r
		case <-time.After(10 * time.Second): // the clock does not move: only the wake-up ends the wait
			t.Fatalf("%s: the waiting reserve was not answered", what)
		}
		return res{}
	}

	var left atomic.Bool
	gone := make(chan res, 1)
	a.ReserveFor(nil, left.Load, 1, time.Hour, 0, func(ds []Delivery, err error) { gone <- res{ds, err} })
	// A delayed job's enqueue is answered from the goroutine's turn that
	// also saw the waiter: it waits from here on.
	enq(t, a, EnqueueRequest{Payload: []byte("later"), Delay: time.Hour})
	left.Store(true)
	a.ReserverGone()
	if r := answered("gone", gone); !errors.Is(r.err, ErrClosed) || len(r.ds) != 0 {
		t.Fatalf("reserve whose reserver left: %d jobs, %v", len(r.ds), r.err)
	}

	polls := make(chan res, 2)
	for _, q := range []*Queue{a, b} {
		q.Reserve(1, time.Hour, 0, func(ds []Delivery, err error) { polls <- res{ds, err} })
	}
	n.e.EndLongPolls()
	for i := range 2 {
		if r := answered("EndLongPolls", polls); r.err != nil || len(r.ds) != 0 {
			t.Fatalf("poll %d after EndLongPolls: %d jobs, %v", i, len(r.ds), r.err)
		}
	}
	later := make(chan res, 1)
	b.Reserve(1, time.Hour, 0, func(ds []Delivery, err error) { later <- res{ds, err} })
	if r := answered("after EndLongPolls", later); r.err != nil || len(r.ds) != 0 {
		t.Fatalf("reserve after EndLongPolls: %d jobs, %v", len(r.ds), r.err)
	}
	// Jobs are still served: the drain ends waits, not delivery.
	id, _ := enq(t, b, EnqueueRequest{Payload: []byte("x")})
	if ds := reserve(t, b, 1, time.Hour); len(ds) != 1 || ds[0].ID != id {
		t.Fatalf("reserve of a ready job while draining: %+v", ds)
	}
}

// TestDeleteRacingAutoCreate: a queue deleted while producers keep
// enqueuing to it is created again by the next enqueue; that new queue
// must be whole (its directory, log and config record are not the ones
// the delete removes), so after a restart it holds every job it held.
func TestDeleteRacingAutoCreate(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, dir, clk)
	defer func() { n.close(t) }()
	for round := range 20 {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				q, err := n.e.Queue("churn", true)
				if err != nil {
					continue // deleted between the lookup and the enqueue
				}
				ch := make(chan error, 1)
				q.Enqueue(&EnqueueRequest{Payload: []byte("x")}, func(_ uint64, _ bool, err error) { ch <- err })
				<-ch
			}
		}()
		time.Sleep(time.Millisecond) // let the producer create the queue; no event to wait on
		if err := n.e.Delete("churn"); err != nil && !errors.Is(err, ErrQueueNotFound) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		close(stop)
		<-done
		q, err := n.e.Queue("churn", false)
		if err != nil {
			continue
		}
		ready := q.Info().Ready
		n.close(t)
		n = openNode(t, dir, clk)
		q, err = n.e.Queue("churn", false)
		if err != nil {
			t.Fatalf("round %d: the queue created again after the delete (%d jobs) is gone after a restart: %v", round, ready, err)
		}
		if got := q.Info().Ready; got != ready {
			t.Fatalf("round %d: %d jobs after a restart, %d before", round, got, ready)
		}
	}
}

// TestTimesPastTheClock: delays, run-at times, visibility timeouts and
// touches so far ahead that the nanosecond clock would overflow (past the
// year 2262) are refused, not wrapped into times already past (a job
// delayed 250 years ran at once; one reserved for 250 years expired at
// once). A run-at time in the past means now.
func TestTimesPastTheClock(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, t.TempDir(), clk)
	defer n.close(t)
	q, _ := n.e.Create("far", n.e.Defaults())
	far := 250 * 365 * 24 * time.Hour
	try := func(r EnqueueRequest) error {
		ch := make(chan error, 1)
		q.Enqueue(&r, func(_ uint64, _ bool, err error) { ch <- err })
		return <-ch
	}
	for _, r := range []EnqueueRequest{{Delay: far}, {RunAt: time.Unix(1_700_000_000, 0).Add(far)}, {RunAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}} {
		if err := try(r); !errors.Is(err, ErrBadDelay) {
			t.Errorf("enqueue delay %v run at %v: %v, want ErrBadDelay", r.Delay, r.RunAt, err)
		}
	}
	if err := try(EnqueueRequest{Payload: []byte("old"), RunAt: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	q.Reserve(1, 0, far, func(_ []Delivery, err error) { ch <- err })
	if err := <-ch; !errors.Is(err, ErrBadConfig) {
		t.Errorf("reserve with visibility %v: %v, want ErrBadConfig", far, err)
	}
	if _, err := q.Consume(nil, nil, 1, far, func([]Delivery, error) {}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("consume with visibility %v: %v, want ErrBadConfig", far, err)
	}
	ds := reserve(t, q, 1, 0)
	if len(ds) != 1 || string(ds[0].Payload) != "old" {
		t.Fatalf("a job to run in the year 1000 is ready now: %+v", ds)
	}
	q.Touch(ds[0].ID, ds[0].Attempt, far, func(err error) { ch <- err })
	if err := <-ch; !errors.Is(err, ErrBadDelay) {
		t.Errorf("touch by %v: %v, want ErrBadDelay", far, err)
	}
	if _, err := nack(q, ds[0].ID, ds[0].Attempt, NackOpts{UseDelay: true, Delay: far}); !errors.Is(err, ErrBadDelay) {
		t.Errorf("nack with delay %v: %v, want ErrBadDelay", far, err)
	}
	if in := q.Info(); in.InFlight != 1 {
		t.Fatalf("after the refused touch and nack: %+v", in)
	}
	c := n.e.Defaults()
	c.Visibility = Duration(far)
	if _, err := n.e.Create("far2", c); !errors.Is(err, ErrBadConfig) {
		t.Errorf("create with visibility_timeout %v: %v, want ErrBadConfig", far, err)
	}
}
