package queue

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/internal/seeds"
)

// TestConsumerChurn: consumers with random windows come and go while jobs
// are enqueued (some with priorities); each acknowledges most jobs, nacks
// some (retry now or after a delay), and abandons some as a crashed
// worker would; the queue is paused and resumed now and then. What a
// queue promises, checked throughout and at the end:
//   - an attempt (job, attempt number) is pushed once, to one consumer;
//   - a consumer never holds more unfinished jobs than its window (its
//     abandoned jobs count until their visibility timeout passes);
//   - nothing is pushed while the queue is paused;
//   - each job is acknowledged exactly once: a second ack of the same
//     attempt is refused (stale attempts' acks: TestAgainstModel);
//   - once the abandoned jobs' timeouts pass and the rest is worked off,
//     every job enqueued was acknowledged and the queue is empty.
//
// FLOWMESH_QUEUE_CHURN_SEEDS sets how many seeds run (default 20).
func TestConsumerChurn(t *testing.T) {
	seeds.Run(t, "FLOWMESH_QUEUE_CHURN_SEEDS", 0, 20, consumerChurn)
}

// churnConsumer is one consumer and its application.
type churnConsumer struct {
	c      *Consumer
	window int
	jobs   chan Delivery
	mu     sync.Mutex
	held   int // pushed, not yet acked or nacked (abandoned ones included)
}

// churnBook is what the test knows of the jobs.
type churnBook struct {
	mu       sync.Mutex
	pushed   map[[2]uint64]bool // {id, attempt} pushed
	acked    map[uint64]int     // id -> acks accepted
	paused   bool
	failures []string
}

func (b *churnBook) fail(format string, args ...any) {
	b.mu.Lock()
	b.failures = append(b.failures, fmt.Sprintf(format, args...))
	b.mu.Unlock()
}

func consumerChurn(t *testing.T, seed uint64) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, t.TempDir(), clk)
	defer n.close(t)
	q, err := n.e.Queue("churn", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.e.Alter("churn", func(c *Config) error { c.MaxAttempts = MaxAttemptsLimit; return nil }); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 11))
	const jobs = 600
	const vis = time.Minute // passes only when the test moves the clock, at the end
	book := &churnBook{pushed: map[[2]uint64]bool{}, acked: map[uint64]int{}}
	ids := make(chan uint64, jobs)

	var wg sync.WaitGroup
	// The producer: one enqueue at a time, a few with priorities.
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		prng := rand.New(rand.NewPCG(seed, 12))
		for i := 0; i < jobs; i++ {
			errc := make(chan error, 1)
			prio := 0
			if prng.IntN(8) == 0 {
				prio = prng.IntN(3) - 1
			}
			q.Enqueue(&EnqueueRequest{Payload: []byte(fmt.Sprint("job-", i)), Priority: prio}, func(id uint64, _ bool, err error) {
				if err == nil {
					ids <- id
				}
				errc <- err
			})
			if err := <-errc; err != nil {
				book.fail("enqueue %d: %v", i, err)
				return
			}
		}
	}()

	// work runs a consumer's application until its channel closes: each
	// job is acked, nacked or abandoned.
	work := func(cc *churnConsumer, arng *rand.Rand) {
		defer wg.Done()
		for d := range cc.jobs {
			r := arng.IntN(100)
			if r < 8 { // abandoned: the worker crashed with it
				continue
			}
			// The place in the window is counted free before the outcome
			// goes: the queue may push the next job as soon as it has it.
			cc.mu.Lock()
			cc.held--
			cc.mu.Unlock()
			switch {
			case r < 20:
				o := NackOpts{UseDelay: true, Error: "churn"}
				if r < 12 {
					o.Delay = time.Second // comes back when the clock moves
				}
				done := make(chan error, 1)
				q.Nack(d.ID, d.Attempt, o, func(_ Where, _ time.Duration, err error) { done <- err })
				if err := <-done; err != nil {
					book.fail("nack %d attempt %d: %v", d.ID, d.Attempt, err)
				}
			default:
				done := make(chan error, 1)
				q.Ack(d.ID, d.Attempt, func(_ time.Duration, err error) { done <- err })
				if err := <-done; err != nil {
					book.fail("ack %d attempt %d: %v", d.ID, d.Attempt, err)
				} else {
					book.mu.Lock()
					book.acked[d.ID]++
					book.mu.Unlock()
				}
				// A second ack of the same attempt must be refused.
				if arng.IntN(10) == 0 {
					q.Ack(d.ID, d.Attempt, func(_ time.Duration, err error) { done <- err })
					if err := <-done; err == nil {
						book.fail("second ack of %d attempt %d accepted", d.ID, d.Attempt)
					}
				}
			}
		}
	}
	start := func(arng *rand.Rand) *churnConsumer {
		cc := &churnConsumer{window: 1 + rng.IntN(8), jobs: make(chan Delivery, MaxWindow)}
		c, err := q.Consume(nil, nil, cc.window, vis, func(ds []Delivery, err error) {
			if err != nil {
				return
			}
			book.mu.Lock()
			if book.paused {
				book.failures = append(book.failures, fmt.Sprintf("%d jobs pushed while paused", len(ds)))
			}
			for _, d := range ds {
				k := [2]uint64{d.ID, uint64(d.Attempt)}
				if book.pushed[k] {
					book.failures = append(book.failures, fmt.Sprintf("job %d attempt %d pushed twice", d.ID, d.Attempt))
				}
				book.pushed[k] = true
			}
			book.mu.Unlock()
			cc.mu.Lock()
			cc.held += len(ds)
			if cc.held > cc.window {
				book.fail("consumer with window %d holds %d jobs", cc.window, cc.held)
			}
			cc.mu.Unlock()
			for _, d := range ds {
				cc.jobs <- d
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		cc.c = c
		wg.Add(1)
		go work(cc, arng)
		return cc
	}
	stop := func(cc *churnConsumer) {
		done := make(chan struct{})
		cc.c.Cancel(func() { close(done) }) // no push follows done
		<-done
		close(cc.jobs)
	}
	// pausedFor pauses the queue, waits until no push of a reservation made
	// before the pause can follow (a consumer's cancel is done once the
	// queue's goroutine has pushed everything reserved before it), checks
	// that the queue pushes nothing for a while, and resumes it.
	pausedFor := func(d time.Duration) {
		if _, err := n.e.Alter("churn", func(c *Config) error { c.Paused = true; return nil }); err != nil {
			t.Fatal(err)
		}
		c, err := q.Consume(nil, nil, 1, vis, func([]Delivery, error) {})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		c.Cancel(func() { close(done) })
		<-done
		book.mu.Lock()
		book.paused = true
		book.mu.Unlock()
		if ds := reserve(t, q, 1, 0); len(ds) > 0 {
			t.Fatalf("a reserve while paused got job %d", ds[0].ID)
		}
		time.Sleep(d)
		book.mu.Lock()
		book.paused = false
		book.mu.Unlock()
		if _, err := n.e.Alter("churn", func(c *Config) error { c.Paused = false; return nil }); err != nil {
			t.Fatal(err)
		}
	}

	var live []*churnConsumer
	for i := 0; i < 3; i++ {
		live = append(live, start(rand.New(rand.NewPCG(seed, uint64(100+i)))))
	}
	for step := 0; step < 60; step++ {
		switch r := rng.IntN(10); {
		case r < 3 && len(live) > 0:
			i := rng.IntN(len(live))
			stop(live[i])
			live = append(live[:i], live[i+1:]...)
		case r < 6:
			live = append(live, start(rand.New(rand.NewPCG(seed, uint64(200+step)))))
		case r == 6:
			pausedFor(time.Duration(rng.IntN(3)) * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
	}
	// The end: the clock moves once past the abandoned jobs' timeouts and
	// the nacks' delays (and no more, so the last consumer's own jobs
	// cannot expire), then one consumer acknowledges everything.
	<-produced
	for _, cc := range live {
		stop(cc)
	}
	wg.Wait() // every outcome of the churn's consumers is in
	clk.Add(vis + time.Second)
	final := &churnConsumer{window: 16, jobs: make(chan Delivery, MaxWindow)}
	fc, err := q.Consume(nil, nil, final.window, vis, func(ds []Delivery, err error) {
		for _, d := range ds {
			final.jobs <- d
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for d := range final.jobs {
			done := make(chan error, 1)
			q.Ack(d.ID, d.Attempt, func(_ time.Duration, err error) { done <- err })
			if err := <-done; err != nil {
				book.fail("final ack %d attempt %d: %v", d.ID, d.Attempt, err)
				continue
			}
			book.mu.Lock()
			book.acked[d.ID]++
			book.mu.Unlock()
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		book.mu.Lock()
		doneN, failed := len(book.acked), len(book.failures) > 0
		book.mu.Unlock()
		if doneN == jobs || failed || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	stopped := make(chan struct{})
	fc.Cancel(func() { close(stopped) })
	<-stopped
	close(final.jobs)
	wg.Wait()
	close(ids)

	for _, f := range book.failures {
		t.Error(f)
	}
	enqueued := 0
	for id := range ids {
		enqueued++
		if c := book.acked[id]; c != 1 {
			t.Errorf("job %d acknowledged %d times", id, c)
		}
	}
	if enqueued != jobs || len(book.acked) != jobs {
		t.Errorf("%d jobs enqueued, %d acknowledged, want %d", enqueued, len(book.acked), jobs)
	}
	in := q.Info()
	if in.Ready+in.Delayed+in.InFlight+in.Dead != 0 {
		t.Errorf("queue not empty at the end: %+v", in)
	}
}
