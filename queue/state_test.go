package queue

import (
	"cmp"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

const sec = int64(time.Second)

func policy() Policy {
	return Policy{MaxAttempts: 3, Visibility: 30 * time.Second, BackoffBase: time.Second, BackoffMax: 10 * time.Second, DedupWindow: time.Minute}
}

func newState() *State { return NewState(policy(), func() float64 { return 0.5 }) }

func enqueue(s *State, id uint64, now, runAt int64, prio int) *Job {
	j := &Job{ID: id, Priority: prio, EnqueuedAt: now}
	s.Enqueue(j, runAt)
	return j
}

func ids(js []*Job) []uint64 {
	var out []uint64
	for _, j := range js {
		out = append(out, j.ID)
	}
	return out
}

func TestReserveOrderAndAck(t *testing.T) {
	s := newState()
	enqueue(s, 1, 0, 0, 0)
	enqueue(s, 2, 0, 0, 5) // higher priority first
	enqueue(s, 3, 0, 0, 0)
	enqueue(s, 4, 0, 10*sec, 9) // delayed: not before its time
	got := s.Reserve(10, 0, 0)
	if !slices.Equal(ids(got), []uint64{2, 1, 3}) {
		t.Fatalf("reserve order %v", ids(got))
	}
	if got[0].Attempts != 1 || got[0].Deadline != 30*sec || got[0].Where != InFlight {
		t.Fatalf("reserved job %+v", got[0])
	}
	if err := s.Ack(2, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(2, 1); !errors.Is(err, ErrJobNotFound) {
		t.Fatalf("second ack: %v", err)
	}
	if err := s.Ack(1, 2); !errors.Is(err, ErrNotReserved) {
		t.Fatalf("ack with the wrong attempt: %v", err)
	}
	if r, _ := s.Advance(9 * sec); len(r) != 0 {
		t.Fatal("delayed job ready early")
	}
	if w, ok := s.NextWake(); !ok || w != 10*sec {
		t.Fatalf("next wake %d %v", w, ok)
	}
	r, _ := s.Advance(10 * sec)
	if !slices.Equal(ids(r), []uint64{4}) || s.Lookup(4).Where != Ready {
		t.Fatalf("readied %v", ids(r))
	}
	st := s.Stats(10 * sec)
	if st.Ready != 1 || st.InFlight != 2 || st.Delayed != 0 || st.Acked != 1 || st.OldestReadyAge != 10*time.Second {
		t.Fatalf("stats %+v", st)
	}
}

// TestVisibilityTimeout: a job whose worker vanished comes back with its
// attempt count raised; the old worker's late ack is refused, so the job
// is completed once; after the last attempt it is dead-lettered.
func TestVisibilityTimeout(t *testing.T) {
	s := newState()
	enqueue(s, 7, 0, 0, 0)
	s.Reserve(1, 0, 0)
	if err := s.Touch(7, 1, 20*sec, 0); err != nil { // now invisible until 50 s
		t.Fatal(err)
	}
	if _, exp := s.Advance(40 * sec); len(exp) != 0 {
		t.Fatal("touched job expired early")
	}
	_, exp := s.Advance(50 * sec)
	if !slices.Equal(ids(exp), []uint64{7}) || s.Lookup(7).Where != Ready {
		t.Fatalf("expired %v", ids(exp))
	}
	j := s.Reserve(1, 50*sec, 0)[0]
	if j.Attempts != 2 {
		t.Fatalf("attempts after expiry %d", j.Attempts)
	}
	if err := s.Ack(7, 1); !errors.Is(err, ErrNotReserved) {
		t.Fatalf("late ack of the first attempt: %v", err)
	}
	s.Advance(80 * sec)
	s.Reserve(1, 80*sec, 0)
	_, exp = s.Advance(110 * sec)
	if len(exp) != 1 || s.Lookup(7).Where != Dead || s.Stats(110*sec).Dead != 1 {
		t.Fatalf("after the last attempt expired: %+v", s.Lookup(7))
	}
}

func TestNackBackoffAndDeadLetter(t *testing.T) {
	s := newState()
	enqueue(s, 1, 0, 0, 0)
	tests := []struct {
		name  string
		now   int64
		opts  NackOpts
		where Where
		ready int64
	}{
		{"backoff after attempt 1: 1s * 2^0 * (1-0.0)", 0, NackOpts{Error: "smtp down"}, Delayed, 1 * sec},
		{"explicit delay", 2 * sec, NackOpts{UseDelay: true, Delay: 5 * time.Second}, Delayed, 7 * sec},
		{"attempts spent", 8 * sec, NackOpts{Error: "still down"}, Dead, 0},
	}
	for _, tc := range tests {
		s.Advance(tc.now)
		r := s.Reserve(1, tc.now, 0)
		if len(r) != 1 {
			t.Fatalf("%s: nothing to reserve", tc.name)
		}
		w, err := s.Nack(1, r[0].Attempts, tc.now, tc.opts)
		if err != nil || w != tc.where {
			t.Fatalf("%s: nack -> %v %v, want %v", tc.name, w, err, tc.where)
		}
		if tc.where == Delayed && s.Lookup(1).ReadyAt != tc.ready {
			t.Fatalf("%s: ready at %d, want %d", tc.name, s.Lookup(1).ReadyAt, tc.ready)
		}
	}
	j := s.Lookup(1)
	if j.LastError != "still down" || j.Attempts != 3 || j.DeadAt != 8*sec {
		t.Fatalf("dead job %+v", j)
	}
	if err := s.Redrive(1); err != nil || j.Where != Ready || j.Attempts != 0 {
		t.Fatalf("redrive: %v %+v", err, j)
	}
	if err := s.Redrive(1); !errors.Is(err, ErrNotDead) {
		t.Fatalf("redrive of a ready job: %v", err)
	}
	// Fail: dead at once, whatever the attempts.
	r := s.Reserve(1, 9*sec, 0)
	if w, _ := s.Nack(1, r[0].Attempts, 9*sec, NackOpts{Fail: true, Error: "bad address"}); w != Dead {
		t.Fatalf("fail -> %v", w)
	}
	if got := s.PurgeDead(); !slices.Equal(got, []uint64{1}) || s.Lookup(1) != nil {
		t.Fatalf("purge dead -> %v", got)
	}
	if _, err := s.Nack(1, 1, 0, NackOpts{}); !errors.Is(err, ErrJobNotFound) {
		t.Fatalf("nack of a purged job: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	s := NewState(Policy{BackoffBase: time.Second, BackoffMax: 5 * time.Second, Jitter: 0.5}, func() float64 { return 1 })
	for n, want := range map[int]time.Duration{1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second, 4: 2500 * time.Millisecond, 10: 2500 * time.Millisecond} {
		if got := s.Backoff(n); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestDedupLowWaterPausePurge(t *testing.T) {
	s := newState()
	j := &Job{ID: 1, EnqueuedAt: 0, Key: "order-42"}
	s.Enqueue(j, 0)
	if id, ok := s.Dedup("order-42", 30*sec); !ok || id != 1 {
		t.Fatalf("dedup inside the window: %d %v", id, ok)
	}
	if _, ok := s.Dedup("order-42", 61*sec); ok {
		t.Fatal("dedup outside the window")
	}
	enqueue(s, 2, 0, 0, 0)
	enqueue(s, 3, 0, 100*sec, 0)
	if lw := s.LowWater(4); lw != 1 {
		t.Fatalf("low water %d", lw)
	}
	s.SetPaused(true)
	if r := s.Reserve(5, 0, 0); len(r) != 0 {
		t.Fatal("paused queue delivered")
	}
	s.SetPaused(false)
	r := s.Reserve(1, 0, 0)
	s.Ack(r[0].ID, 1)
	if lw := s.LowWater(4); lw != 2 {
		t.Fatalf("low water after acking 1: %d", lw)
	}
	if got := s.Purge(); len(got) != 2 {
		t.Fatalf("purge -> %v", got)
	}
	if lw := s.LowWater(4); lw != 4 {
		t.Fatalf("low water of an empty queue: %d", lw)
	}
	if b, _, more := s.Browse(Ready, 0, 10); len(b) != 0 || more {
		t.Fatalf("browse after purge: %v", ids(b))
	}
}

// TestBrowsePages: pages come in ID order from any from, skip jobs in
// other states and gone jobs, and one call looks at a bounded number of
// IDs, saying where to go on.
func TestBrowsePages(t *testing.T) {
	s := newState()
	n := uint64(browseScan + 100)
	for id := uint64(0); id < n; id++ {
		s.Enqueue(&Job{ID: id, EnqueuedAt: 1}, 0)
	}
	// The last job is the only dead one; the first ten are acknowledged.
	last := s.Reserve(int(n), 2, 0)
	for _, j := range last[:10] {
		if err := s.Ack(j.ID, 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range last[10 : len(last)-1] {
		if _, err := s.Nack(j.ID, 1, 3, NackOpts{UseDelay: true}); err != nil { // ready again now
			t.Fatal(err)
		}
	}
	if _, err := s.Nack(n-1, 1, 3, NackOpts{Fail: true}); err != nil {
		t.Fatal(err)
	}
	// Browsing the dead: the first call stops after its budget.
	var dead []uint64
	from, calls := uint64(0), 0
	for {
		calls++
		jobs, next, more := s.Browse(Dead, from, 10)
		dead = append(dead, ids(jobs)...)
		if !more {
			break
		}
		if next <= from {
			t.Fatalf("next %d after from %d", next, from)
		}
		from = next
	}
	if len(dead) != 1 || dead[0] != n-1 || calls < 2 {
		t.Fatalf("dead %v after %d calls", dead, calls)
	}
	// Ready pages from the middle, acknowledged jobs skipped.
	jobs, next, more := s.Browse(Ready, 5, 3)
	if got := ids(jobs); len(got) != 3 || got[0] != 10 || got[2] != 12 || !more || next != 13 {
		t.Fatalf("ready page: %v next %d more %v", got, next, more)
	}
	if lw := s.LowWater(n); lw != 10 {
		t.Fatalf("low water %d, want 10", lw)
	}
}

// TestRandomOpsKeepInvariants drives the state machine with random
// operations and checks after each that every job is in exactly the
// structure its Where says and the counts agree.
func TestRandomOpsKeepInvariants(t *testing.T) {
	s := newState()
	seed := uint64(1)
	rnd := func(n int) int { seed = seed*6364136223846793005 + 1442695040888963407; return int(seed>>33) % n }
	now, next := int64(0), uint64(1)
	var held []*Job
	for step := 0; step < 20000; step++ {
		now += int64(rnd(3)) * sec
		switch rnd(6) {
		case 0, 1:
			enqueue(s, next, now, now+int64(rnd(3))*5*sec, rnd(3))
			next++
		case 2:
			s.Advance(now)
			held = append(held, s.Reserve(rnd(4)+1, now, 0)...)
		case 3, 4:
			if len(held) > 0 {
				i := rnd(len(held))
				j := held[i]
				held = append(held[:i], held[i+1:]...)
				if rnd(2) == 0 {
					s.Ack(j.ID, j.Attempts)
				} else {
					s.Nack(j.ID, j.Attempts, now, NackOpts{})
				}
			}
		case 5:
			s.Advance(now)
		}
		if step%500 == 0 {
			checkInvariants(t, s)
		}
	}
	checkInvariants(t, s)
}

func checkInvariants(t *testing.T, s *State) {
	t.Helper()
	count := map[Where]int{}
	ready := checkReady(t, &s.ready)
	for id, j := range s.jobs {
		if j.ID != id {
			t.Fatalf("job %d stored under %d", j.ID, id)
		}
		count[j.Where]++
		var h *jobHeap
		switch j.Where {
		case Ready:
			if !ready[j] {
				t.Fatalf("ready job %d not in the ready queue", id)
			}
		case Delayed:
			h = &s.delayed
		case InFlight:
			h = &s.inflight
		}
		if h != nil && (j.index < 0 || j.index >= h.Len() || h.jobs[j.index] != j) {
			t.Fatalf("job %d (%s) not at its heap index %d", id, j.Where, j.index)
		}
	}
	st := s.Stats(0)
	oldest := int64(math.MaxInt64)
	for j := range ready {
		oldest = min(oldest, j.EnqueuedAt)
	}
	if len(ready) > 0 && st.OldestReadyAge != time.Duration(-oldest) {
		t.Fatalf("oldest ready age %v at 0, want %v (scan of the ready jobs)", st.OldestReadyAge, time.Duration(-oldest))
	}
	if len(ready) != count[Ready] {
		t.Fatalf("%d jobs in the ready queue, %d ready", len(ready), count[Ready])
	}
	if st.Ready != count[Ready] || st.Delayed != count[Delayed] || st.InFlight != count[InFlight] || st.Dead != count[Dead] {
		t.Fatalf("stats %+v, counted %v", st, count)
	}
}

// checkReady checks the ready queue's shape (levels by priority, highest
// first, none empty; each FIFO in ID order; the count) and returns its jobs.
func checkReady(t *testing.T, r *readyQueue) map[*Job]bool {
	t.Helper()
	jobs := map[*Job]bool{}
	for i, l := range r.levels {
		if i > 0 && r.levels[i-1].priority <= l.priority {
			t.Fatalf("ready levels out of order: %d before %d", r.levels[i-1].priority, l.priority)
		}
		if l.head == len(l.fifo) && l.late.Len() == 0 {
			t.Fatalf("empty ready level %d kept", l.priority)
		}
		for k, j := range l.fifo[l.head:] {
			if k > 0 && l.fifo[l.head+k-1].ID >= j.ID {
				t.Fatalf("ready FIFO of priority %d out of ID order at %d", l.priority, j.ID)
			}
		}
		for _, j := range append(slices.Clone(l.fifo[l.head:]), l.late.jobs...) {
			if j.Priority != l.priority {
				t.Fatalf("job %d of priority %d in the ready level of %d", j.ID, j.Priority, l.priority)
			}
		}
	}
	r.all(func(j *Job) { jobs[j] = true })
	if len(jobs) != r.Len() {
		t.Fatalf("ready queue holds %d jobs, counts %d", len(jobs), r.Len())
	}
	return jobs
}

// TestClipError: a job keeps at most MaxErrorBytes of its last error, cut
// at a character boundary, saying how much was cut; short texts are kept
// as they are.
func TestClipError(t *testing.T) {
	long := strings.Repeat("é", 5000) // 10000 bytes, 2 per character
	for _, tc := range []struct {
		in       string
		whole    bool
		wantTail string
	}{
		{"smtp down", true, ""},
		{strings.Repeat("x", MaxErrorBytes), true, ""},
		{strings.Repeat("x", MaxErrorBytes+1), false, " … (41 bytes cut)"},
		{long, false, "bytes cut)"},
	} {
		got := ClipError(tc.in)
		if tc.whole {
			if got != tc.in {
				t.Errorf("ClipError of %d bytes changed it", len(tc.in))
			}
			continue
		}
		if len(got) > MaxErrorBytes || !strings.HasSuffix(got, tc.wantTail) || !utf8.ValidString(got) {
			t.Errorf("ClipError of %d bytes = %d bytes ending %q (valid UTF-8: %v)", len(tc.in), len(got), got[max(0, len(got)-30):], utf8.ValidString(got))
		}
	}
	s := newState()
	enqueue(s, 1, 0, 0, 0)
	r := s.Reserve(1, 0, 0)
	if _, err := s.Nack(1, r[0].Attempts, 0, NackOpts{Error: long}); err != nil {
		t.Fatal(err)
	}
	if j := s.Lookup(1); len(j.LastError) > MaxErrorBytes {
		t.Fatalf("the job kept %d bytes of its error", len(j.LastError))
	}
}

// TestReadyQueueOrder: the ready queue hands jobs out by priority, highest
// first, then by ID, whatever order they arrive in: mostly ascending IDs
// (enqueues) with some below the tail (retries), priorities mixed, popped
// in between so FIFOs empty, refill and slide down.
func TestReadyQueueOrder(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		var r readyQueue
		var want []*Job // the model: every job held, sorted on each pop
		nextID := uint64(1)
		for step := 0; step < 6000; step++ {
			if rng.IntN(100) < 55 || r.Len() == 0 {
				id := nextID
				nextID++
				if rng.IntN(10) == 0 && nextID > 50 {
					id = rng.Uint64N(nextID-1) + 1 // below the tail: a retry's ID (IDs need not be unique here)
				}
				j := &Job{ID: id, Priority: []int{0, 0, 0, 0, 5, -2}[rng.IntN(6)], index: -1}
				r.push(j)
				want = append(want, j)
				continue
			}
			slices.SortStableFunc(want, func(a, b *Job) int {
				if a.Priority != b.Priority {
					return cmp.Compare(b.Priority, a.Priority)
				}
				return cmp.Compare(a.ID, b.ID)
			})
			got := r.pop()
			if got.Priority != want[0].Priority || got.ID != want[0].ID {
				t.Fatalf("seed %d step %d: popped %d (priority %d), want %d (priority %d)", seed, step, got.ID, got.Priority, want[0].ID, want[0].Priority)
			}
			want = slices.DeleteFunc(want, func(j *Job) bool { return j == got })
			if len(want) != r.Len() {
				t.Fatalf("seed %d step %d: %d held, want %d", seed, step, r.Len(), len(want))
			}
			if step%500 == 0 {
				checkReady(t, &r)
			}
		}
	}
}
