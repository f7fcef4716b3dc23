package queue

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pushes collects what a consumer is pushed.
type pushes struct {
	jobs chan Delivery
	end  chan error
}

func newPushes() *pushes { return &pushes{jobs: make(chan Delivery, 100), end: make(chan error, 1)} }

func (p *pushes) push(ds []Delivery, err error) {
	if err != nil {
		p.end <- err
		return
	}
	for _, d := range ds {
		p.jobs <- d
	}
}

// take waits for n pushed jobs.
func (p *pushes) take(t *testing.T, n int) []Delivery {
	t.Helper()
	var out []Delivery
	for len(out) < n {
		select {
		case d := <-p.jobs:
			out = append(out, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d pushed jobs, want %d", len(out), n)
		}
	}
	return out
}

// none checks that nothing more is pushed once the queue's goroutine has
// gone around its loop (a Reserve answered through it).
func (p *pushes) none(t *testing.T, q *Queue) {
	t.Helper()
	reserve(t, q, 1, 0) // may take a ready job: callers leave none when it matters
	select {
	case d := <-p.jobs:
		t.Fatalf("pushed %d beyond the window", d.ID)
	default:
	}
}

func TestConsumerWindow(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, t.TempDir(), clk)
	defer n.close(t)
	q, err := n.e.Queue("q", true)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 7; i++ {
		enq(t, q, EnqueueRequest{Payload: []byte(fmt.Sprintf("job-%d", i))})
	}
	w, _ := n.e.RegisterWorker("w", []string{"q"}, 3)
	p := newPushes()
	if _, err := q.Consume(w, nil, 0, 0, p.push); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("window 0: %v, want ErrBadConfig", err)
	}
	c, err := q.Consume(w, nil, 3, 10*time.Second, p.push)
	if err != nil {
		t.Fatal(err)
	}
	got := p.take(t, 3)
	for i, d := range got {
		if d.ID != uint64(i) || d.Attempt != 1 || string(d.Payload) != fmt.Sprintf("job-%d", i) {
			t.Fatalf("push %d: %+v", i, d)
		}
	}
	// The window is full: an anonymous reserve takes job 3, nothing more
	// is pushed.
	p.none(t, q)
	if in := q.Info(); in.InFlight != 4 || in.Ready != 3 {
		t.Fatalf("info %+v, want 4 in flight and 3 ready", in)
	}
	if wi := n.e.Workers()[0]; wi.InFlight != 3 {
		t.Fatalf("worker in flight %d, want 3", wi.InFlight)
	}

	// An ack frees one place, a nack another: two more are pushed.
	if err := ack(q, got[0].ID, 1); err != nil {
		t.Fatal(err)
	}
	nacked := make(chan error, 1)
	q.Nack(got[1].ID, 1, NackOpts{Delay: time.Hour, UseDelay: true, Error: "later"}, func(_ Where, _ time.Duration, err error) { nacked <- err })
	if err := <-nacked; err != nil {
		t.Fatal(err)
	}
	more := p.take(t, 2)
	if more[0].ID != 4 || more[1].ID != 5 {
		t.Fatalf("after ack and nack pushed %d, %d; want 4, 5", more[0].ID, more[1].ID)
	}

	// A passed visibility timeout frees the place too, and the job comes
	// back (to this consumer, the only one) with its attempt raised.
	clk.Add(11 * time.Second)
	q.kick()
	back := p.take(t, 3)
	seen := map[uint64]int{}
	for _, d := range back {
		seen[d.ID] = d.Attempt
	}
	if seen[2] != 2 || seen[4] != 2 || seen[5] != 2 {
		t.Fatalf("after the timeout pushed %v; want jobs 2, 4, 5 at attempt 2", seen)
	}

	// Cancelled: no more pushes; the jobs it holds are acked as usual.
	c.Cancel(nil)
	for _, d := range back {
		if err := ack(q, d.ID, d.Attempt); err != nil {
			t.Fatal(err)
		}
	}
	p.none(t, q) // takes job 6 (or job 3, back after its timeout)
}

func TestConsumersShareAndEnd(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, t.TempDir(), clk)
	defer n.close(t)
	q, err := n.e.Queue("q", true)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newPushes(), newPushes()
	if _, err := q.Consume(nil, nil, 2, 0, a.push); err != nil {
		t.Fatal(err)
	}
	var gone atomic.Bool
	if _, err := q.Consume(nil, gone.Load, 2, 0, b.push); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		enq(t, q, EnqueueRequest{Payload: []byte("x")})
	}
	// Both consumers get jobs: two each, as the windows allow.
	ga, gb := a.take(t, 2), b.take(t, 2)
	if ga[0].ID == gb[0].ID {
		t.Fatalf("job %d pushed twice", ga[0].ID)
	}
	// A consumer whose connection went takes nothing.
	gone.Store(true)
	for _, d := range gb {
		if err := ack(q, d.ID, d.Attempt); err != nil {
			t.Fatal(err)
		}
	}
	y, _ := enq(t, q, EnqueueRequest{Payload: []byte("y")})
	for _, d := range ga {
		if err := ack(q, d.ID, d.Attempt); err != nil {
			t.Fatal(err)
		}
	}
	if d := a.take(t, 1)[0]; d.ID != y {
		t.Fatalf("pushed %d, want %d", d.ID, y)
	}
	select {
	case d := <-b.jobs:
		t.Fatalf("gone consumer got job %d", d.ID)
	default:
	}
	// Deleting the queue ends the consumers with the reason.
	if err := n.e.Delete("q"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*pushes{a, b} {
		select {
		case err := <-p.end:
			if !errors.Is(err, ErrQueueNotFound) {
				t.Fatalf("end: %v, want ErrQueueNotFound", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("consumer not ended by the delete")
		}
	}
	if _, err := q.Consume(nil, nil, 1, 0, a.push); !errors.Is(err, ErrQueueNotFound) {
		t.Fatalf("consume on a deleted queue: %v", err)
	}
}

// TestConsumerCancelOrdered: Cancel's done runs after the last push to
// the consumer, so an answer sent by it behind the pushes (the QUNSUB
// reply) tells the client no job can follow. Jobs are enqueued all the
// while; each round cancels a fresh consumer mid-stream, then lets the
// queue's goroutine go around (a Reserve) and looks for a push after done.
func TestConsumerCancelOrdered(t *testing.T) {
	n := openNode(t, t.TempDir(), &clock{now: time.Unix(1_700_000_000, 0)})
	defer n.close(t)
	q, err := n.e.Queue("q", true)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			errc := make(chan error, 1)
			q.Enqueue(&EnqueueRequest{Payload: []byte("x")}, func(_ uint64, _ bool, err error) { errc <- err })
			if err := <-errc; err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for round := 0; round < 200; round++ {
		var mu sync.Mutex
		var log []string
		pushed := make(chan struct{}, 1)
		c, err := q.Consume(nil, nil, MaxWindow, time.Minute, func(ds []Delivery, err error) {
			mu.Lock()
			for _, d := range ds {
				log = append(log, fmt.Sprint("push ", d.ID))
			}
			mu.Unlock()
			select {
			case pushed <- struct{}{}:
			default:
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-pushed:
		case <-time.After(10 * time.Second):
			t.Fatal("nothing pushed")
		}
		done := make(chan struct{})
		c.Cancel(func() {
			mu.Lock()
			log = append(log, "done")
			mu.Unlock()
			close(done)
		})
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("cancel's done not called")
		}
		reserve(t, q, 1, 0) // the queue's goroutine has gone around since done
		mu.Lock()
		for i, e := range log {
			if e == "done" && i != len(log)-1 {
				t.Fatalf("round %d: %q after the cancel's done", round, log[i+1])
			}
		}
		mu.Unlock()
	}
}

// TestExpiryFoundByAReserve: a reserve applies time itself (so it sees the
// queue as of its arrival); a consumer's job whose visibility timeout it
// finds passed must give the consumer its place back, and its state change
// and dead-lettering must happen as when the queue's goroutine finds it.
func TestExpiryFoundByAReserve(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	var deadMu sync.Mutex
	var dead []uint64
	n := openNode(t, t.TempDir(), clk, func(o *Options) {
		o.DeadLettered = func(_ *Queue, j Job) { deadMu.Lock(); dead = append(dead, j.ID); deadMu.Unlock() }
	})
	q, _ := n.e.Create("q", func() Config { c := n.e.Defaults(); c.MaxAttempts = 2; return c }())
	first, _ := enq(t, q, EnqueueRequest{Payload: []byte("a")})
	p := newPushes()
	if _, err := q.Consume(nil, nil, 1, 10*time.Second, p.push); err != nil {
		t.Fatal(err)
	}
	p.take(t, 1)
	// The goroutine sleeps until the real-time deadline; the reserve comes
	// first and finds the job expired: attempt 1 of 2, so it is ready again
	// and this reserve takes it.
	clk.Add(11 * time.Second)
	if ds := reserve(t, q, 1, 0); len(ds) != 1 || ds[0].ID != first || ds[0].Attempt != 2 {
		t.Fatalf("reserve after the timeout: %+v", ds)
	}
	second, _ := enq(t, q, EnqueueRequest{Payload: []byte("b")})
	if d := p.take(t, 1)[0]; d.ID != second {
		t.Fatalf("consumer got %d, want %d", d.ID, second)
	}
	// Now its second attempt runs out while the consumer holds job b: the
	// reserve that finds it dead-letters it.
	clk.Add(31 * time.Second)
	reserve(t, q, 1, 0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		deadMu.Lock()
		got := append([]uint64(nil), dead...)
		deadMu.Unlock()
		if len(got) == 1 && got[0] == first {
			break
		}
		if time.Now().After(deadline) || len(got) > 1 {
			t.Fatalf("dead-lettered %v, want [%d]", got, first)
		}
		time.Sleep(time.Millisecond) // the announcement follows the state write; no event to wait on
	}
	if in := q.Info(); in.Dead != 1 {
		t.Fatalf("dead %d, want 1", in.Dead)
	}
	n.close(t)
	n2 := openNode(t, n.dir, clk)
	defer n2.close(t)
	q, _ = n2.e.Queue("q", false)
	if in := q.Info(); in.Dead != 1 {
		t.Fatalf("after a restart: %+v", in)
	}
}
