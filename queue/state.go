package queue

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf8"
)

// Errors of the state machine. The server maps them to wire errors.
var (
	ErrJobNotFound   = errors.New("queue: job not found")
	ErrNotReserved   = errors.New("queue: job is not reserved by this attempt")
	ErrNotDead       = errors.New("queue: job is not dead-lettered")
	ErrBadDelay      = errors.New("queue: delay must be between 0 and 100 years")
	ErrBadAttempts   = errors.New("queue: a job's max attempts must be in [1, 1000], or 0 for the queue's")
	ErrBadVisibility = errors.New("queue: visibility timeout must be positive")
)

// Where a job is.
type Where uint8

// Job states.
const (
	Ready Where = iota + 1
	Delayed
	InFlight
	Dead
)

func (w Where) String() string {
	switch w {
	case Ready:
		return "ready"
	case Delayed:
		return "delayed"
	case InFlight:
		return "in_flight"
	case Dead:
		return "dead"
	}
	return fmt.Sprintf("where(%d)", w)
}

// Policy is a queue's retry and delivery policy.
type Policy struct {
	MaxAttempts int           // deliveries before the job is dead-lettered; >= 1
	Visibility  time.Duration // how long a reserved job stays invisible
	BackoffBase time.Duration // first retry delay; doubles each attempt
	BackoffMax  time.Duration // cap of the retry delay
	Jitter      float64       // in [0, 1]: the delay is scaled by a random factor in [1-Jitter, 1]
	DedupWindow time.Duration // how long an idempotency key is remembered
}

// Job is a job's state. The payload and headers live in the queue's log
// at offset ID; the state machine does not hold them.
type Job struct {
	ID          uint64 // the job's offset in the queue's log: unique, increasing
	Priority    int    // higher first
	MaxAttempts int    // 0: the policy's
	Attempts    int    // deliveries so far
	Where       Where
	EnqueuedAt  int64 // Unix ns
	ReadyAt     int64 // Delayed: when it becomes ready
	Deadline    int64 // InFlight: when its visibility timeout passes
	DeadAt      int64 // Dead: when it was dead-lettered
	ReservedAt  int64 // InFlight: when this attempt was handed out
	Holder      any   // InFlight: who holds it (the driver's worker), opaque here
	LastError   string
	Key         string // idempotency key, if any
	Size        int    // payload bytes, for stats
	// Trace is the job's sampled trace context (trace id, span id, flags),
	// packed by the driver at enqueue; nil if none. Opaque here: it is
	// handed back with deliveries and dead-lettering.
	Trace *[TraceSize]byte

	index int // position in its heap; -1 when in none
}

// TraceSize is the size of a packed trace context.
const TraceSize = 25

// State is one queue's jobs. Not safe for concurrent use: the driver owns
// it and serialises calls.
type State struct {
	policy   Policy
	rand     func() float64
	jobs     map[uint64]*Job
	ready    readyQueue
	delayed  jobHeap // by ReadyAt
	inflight jobHeap // by Deadline
	deadN    int
	dedup    map[string]dedupEntry
	dedupQ   []dedupEntry // in log order (by ID and by time), for expiry
	order    idIndex      // IDs of jobs held, ascending: the low-water mark and browsing
	paused   bool
	counts   Counters
}

type dedupEntry struct {
	key string
	id  uint64
	at  int64
}

// Counters are a queue's lifetime event counts.
type Counters struct {
	Enqueued     uint64 `json:"enqueued"`
	Reserved     uint64 `json:"reserved"`
	Acked        uint64 `json:"acked"`
	Nacked       uint64 `json:"nacked"`
	Expired      uint64 `json:"expired"` // visibility timeouts
	DeadLettered uint64 `json:"dead_lettered"`
	Redriven     uint64 `json:"redriven"`
	Deduplicated uint64 `json:"deduplicated"`
}

// NewState makes an empty queue. rnd returns numbers in [0, 1) for the
// backoff jitter (tests pass a fixed one).
func NewState(p Policy, rnd func() float64) *State {
	s := &State{rand: rnd, jobs: make(map[uint64]*Job), dedup: make(map[string]dedupEntry)}
	s.delayed.less = func(a, b *Job) bool { return a.ReadyAt < b.ReadyAt || a.ReadyAt == b.ReadyAt && a.ID < b.ID }
	s.inflight.less = func(a, b *Job) bool { return a.Deadline < b.Deadline || a.Deadline == b.Deadline && a.ID < b.ID }
	s.SetPolicy(p)
	return s
}

// SetPolicy changes the policy; jobs already delayed or in flight keep
// their times.
func (s *State) SetPolicy(p Policy) {
	if p.MaxAttempts < 1 {
		p.MaxAttempts = 1
	}
	s.policy = p
}

// Policy returns the policy in force.
func (s *State) Policy() Policy { return s.policy }

// SetPaused stops (or resumes) Reserve handing out jobs.
func (s *State) SetPaused(p bool) { s.paused = p }

// Lookup returns the job with id, or nil.
func (s *State) Lookup(id uint64) *Job { return s.jobs[id] }

// Dedup returns the job an idempotency key names, if it is still inside
// the dedup window at now.
func (s *State) Dedup(key string, now int64) (uint64, bool) {
	s.expireDedup(now)
	d, ok := s.dedup[key]
	return d.id, ok
}

// Enqueue adds a job (its ID, Priority, MaxAttempts, Key, Size and
// EnqueuedAt set by the caller) to run at runAt (<= now: ready at once).
// The caller checks Dedup first; Enqueue records the key.
func (s *State) Enqueue(j *Job, runAt int64) {
	j.index = -1
	s.jobs[j.ID] = j
	s.order.add(j.ID)
	if j.Key != "" {
		e := dedupEntry{key: j.Key, id: j.ID, at: j.EnqueuedAt}
		s.dedup[j.Key] = e
		s.dedupQ = append(s.dedupQ, e)
	}
	s.counts.Enqueued++
	if runAt > j.EnqueuedAt {
		j.Where, j.ReadyAt = Delayed, runAt
		heap.Push(&s.delayed, j)
		return
	}
	j.Where = Ready
	s.ready.push(j)
}

// Restore puts back a job recovered from disk, in the state j.Where says
// (with its Attempts, ReadyAt, Deadline, DeadAt, LastError as saved). A key
// is remembered for dedup if it is still inside the window at now.
func (s *State) Restore(j *Job, now int64) {
	j.index = -1
	s.jobs[j.ID] = j
	s.order.add(j.ID)
	s.RememberKey(j.Key, j.ID, j.EnqueuedAt, now)
	switch j.Where {
	case Delayed:
		heap.Push(&s.delayed, j)
	case InFlight:
		heap.Push(&s.inflight, j)
	case Dead:
		s.deadN++
	default:
		j.Where = Ready
		s.ready.push(j)
	}
}

// RememberKey records, for recovery, the idempotency key of job id
// enqueued at at, if it is still inside the dedup window at now; Restore
// does it for the jobs it restores, and recovery calls it for the
// acknowledged ones, whose keys must go on answering inside the window
// as they did before the restart. Calls come in log order.
func (s *State) RememberKey(key string, id uint64, at, now int64) {
	if key == "" || at <= now-int64(s.policy.DedupWindow) {
		return
	}
	e := dedupEntry{key: key, id: id, at: at}
	s.dedup[key] = e
	s.dedupQ = append(s.dedupQ, e)
}

// DedupFloor returns the smallest ID whose idempotency key is still inside
// the dedup window at now (ok false: none): the log must be kept from
// there for recovery to remember the keys. dedupQ is in log order, ID and
// time alike: Enqueue runs as the log completes appends, which it does in
// offset order, and recovery reads the log in order.
func (s *State) DedupFloor(now int64) (id uint64, ok bool) {
	s.expireDedup(now)
	if len(s.dedupQ) == 0 {
		return 0, false
	}
	return s.dedupQ[0].id, true
}

func (s *State) expireDedup(now int64) {
	cut := now - int64(s.policy.DedupWindow)
	n := 0
	for n < len(s.dedupQ) && s.dedupQ[n].at <= cut {
		e := s.dedupQ[n]
		if cur, ok := s.dedup[e.key]; ok && cur == e {
			delete(s.dedup, e.key)
		}
		n++
	}
	if n > 0 {
		s.dedupQ = append(s.dedupQ[:0], s.dedupQ[n:]...)
	}
}

// Reserve hands out up to max ready jobs, highest priority first, each
// invisible until now+visibility (0: the policy's) and with its attempt
// count raised. Call Advance first so due delayed jobs are ready.
func (s *State) Reserve(max int, now int64, visibility time.Duration) []*Job {
	if s.paused {
		return nil
	}
	if visibility <= 0 {
		visibility = s.policy.Visibility
	}
	var out []*Job
	for len(out) < max && s.ready.Len() > 0 {
		j := s.ready.pop()
		j.Where, j.Deadline, j.ReservedAt = InFlight, now+int64(visibility), now
		j.Attempts++
		heap.Push(&s.inflight, j)
		out = append(out, j)
	}
	s.counts.Reserved += uint64(len(out))
	return out
}

// reserved returns the job if it is in flight under attempt.
func (s *State) reserved(id uint64, attempt int) (*Job, error) {
	j := s.jobs[id]
	if j == nil {
		return nil, fmt.Errorf("%w: %d (acknowledged, purged or never enqueued)", ErrJobNotFound, id)
	}
	if j.Where != InFlight || j.Attempts != attempt {
		return nil, fmt.Errorf("%w: job %d is %s at attempt %d, not in flight at attempt %d (its visibility timeout passed and it went back to the queue?)",
			ErrNotReserved, id, j.Where, j.Attempts, attempt)
	}
	return j, nil
}

// Ack completes a reserved job: it is gone. attempt is the attempt the
// worker was given; an ack from an earlier attempt (whose visibility
// timeout passed) is refused, so a job is never completed twice.
func (s *State) Ack(id uint64, attempt int) error {
	j, err := s.reserved(id, attempt)
	if err != nil {
		return err
	}
	heap.Remove(&s.inflight, j.index)
	s.forget(j)
	s.counts.Acked++
	return nil
}

// Touch extends a reserved job's invisibility to now+ext (0: the policy's
// visibility timeout).
func (s *State) Touch(id uint64, attempt int, now int64, ext time.Duration) error {
	j, err := s.reserved(id, attempt)
	if err != nil {
		return err
	}
	if ext > MaxDelay {
		return fmt.Errorf("%w: touch by %v", ErrBadDelay, ext)
	}
	if ext <= 0 {
		ext = s.policy.Visibility
	}
	j.Deadline = now + int64(ext)
	heap.Fix(&s.inflight, j.index)
	return nil
}

// MaxDelay bounds delays, run-at times (from now), visibility timeouts and
// touches: times are Unix nanoseconds, which end in the year 2262, and a
// time past that would wrap into the past (a job delayed 250 years would
// run at once, one reserved for 250 years expire at once).
const MaxDelay = 100 * 365 * 24 * time.Hour

// NackOpts say how a failed attempt is retried.
type NackOpts struct {
	Delay    time.Duration // retry after this long
	UseDelay bool          // Delay applies (0: retry now); false: the policy's backoff
	Fail     bool          // do not retry: dead-letter now
	Error    string        // recorded as the job's last error, clipped to MaxErrorBytes
}

// MaxErrorBytes bounds the error text a job keeps. The text is saved with
// the job's state (rewritten at every change of it) and shown by QBROWSE;
// a handler that returns a whole response body or a deep stack as its
// error would otherwise make each of its job's state writes that large.
const MaxErrorBytes = 4096

// ClipError keeps the first MaxErrorBytes of an error text (cut at a UTF-8
// character boundary) and says how much was cut.
func ClipError(e string) string {
	if len(e) <= MaxErrorBytes {
		return e
	}
	const room = 40 // for the note
	cut := MaxErrorBytes - room
	for cut > 0 && !utf8.RuneStart(e[cut]) {
		cut--
	}
	return e[:cut] + fmt.Sprintf(" … (%d bytes cut)", len(e)-cut)
}

// Nack fails a reserved attempt. The job is retried (now, after a delay,
// or per the backoff policy) or, when its attempts are spent or Fail is
// set, dead-lettered. It returns where the job went.
func (s *State) Nack(id uint64, attempt int, now int64, o NackOpts) (Where, error) {
	j, err := s.reserved(id, attempt)
	if err != nil {
		return 0, err
	}
	if o.UseDelay && (o.Delay < 0 || o.Delay > MaxDelay) {
		return 0, ErrBadDelay
	}
	heap.Remove(&s.inflight, j.index)
	j.LastError = ClipError(o.Error)
	s.counts.Nacked++
	if o.Fail || j.Attempts >= s.maxAttempts(j) {
		s.kill(j, now)
		return Dead, nil
	}
	d := o.Delay
	if !o.UseDelay {
		d = s.Backoff(j.Attempts)
	}
	s.requeue(j, now, now+int64(d))
	return j.Where, nil
}

func (s *State) maxAttempts(j *Job) int {
	if j.MaxAttempts > 0 {
		return j.MaxAttempts
	}
	return s.policy.MaxAttempts
}

// Backoff is the retry delay after attempt n (1-based): BackoffBase *
// 2^(n-1), capped at BackoffMax, scaled down by up to Jitter.
func (s *State) Backoff(n int) time.Duration {
	p := s.policy
	if p.BackoffBase <= 0 {
		return 0
	}
	d := float64(p.BackoffBase) * math.Pow(2, float64(n-1))
	if p.BackoffMax > 0 && d > float64(p.BackoffMax) {
		d = float64(p.BackoffMax)
	}
	// 2^(n-1) grows past any duration within the attempts allowed
	// (1000): without a BackoffMax the delay still ends at MaxDelay.
	d = min(d, float64(MaxDelay))
	if p.Jitter > 0 && s.rand != nil {
		d *= 1 - p.Jitter*s.rand()
	}
	return time.Duration(d)
}

func (s *State) requeue(j *Job, now, at int64) {
	if at > now {
		j.Where, j.ReadyAt = Delayed, at
		heap.Push(&s.delayed, j)
		return
	}
	j.Where, j.ReadyAt = Ready, 0
	s.ready.push(j)
}

func (s *State) kill(j *Job, now int64) {
	j.Where, j.DeadAt = Dead, now
	s.deadN++
	s.counts.DeadLettered++
}

// forget drops a job for good (acked or purged).
func (s *State) forget(j *Job) {
	if j.Where == Dead {
		s.deadN--
	}
	delete(s.jobs, j.ID)
	j.index = -1
}

// Advance applies time: delayed jobs whose time came become ready, and
// in-flight jobs whose visibility timeout passed go back to the queue (or
// to the dead-letter queue, if that was their last attempt). It returns
// the jobs that changed, for the driver to persist.
func (s *State) Advance(now int64) (readied, expired []*Job) {
	for s.delayed.Len() > 0 && s.delayed.jobs[0].ReadyAt <= now {
		j := heap.Pop(&s.delayed).(*Job)
		j.Where, j.ReadyAt = Ready, 0
		s.ready.push(j)
		readied = append(readied, j)
	}
	for s.inflight.Len() > 0 && s.inflight.jobs[0].Deadline <= now {
		j := heap.Pop(&s.inflight).(*Job)
		s.counts.Expired++
		if j.Attempts >= s.maxAttempts(j) {
			j.LastError = "visibility timeout passed on the last attempt"
			s.kill(j, now)
		} else {
			j.Where = Ready
			s.ready.push(j)
		}
		expired = append(expired, j)
	}
	return readied, expired
}

// NextWake is when Advance next has work: the earliest delayed job's time
// or in-flight deadline; ok is false if there is none.
func (s *State) NextWake() (int64, bool) {
	t, ok := int64(math.MaxInt64), false
	if s.delayed.Len() > 0 {
		t, ok = s.delayed.jobs[0].ReadyAt, true
	}
	if s.inflight.Len() > 0 && s.inflight.jobs[0].Deadline < t {
		t, ok = s.inflight.jobs[0].Deadline, true
	}
	return t, ok
}

// Redrive moves a dead-lettered job back to the ready queue with its
// attempts reset.
func (s *State) Redrive(id uint64) error {
	j := s.jobs[id]
	if j == nil {
		return fmt.Errorf("%w: %d", ErrJobNotFound, id)
	}
	if j.Where != Dead {
		return fmt.Errorf("%w: job %d is %s", ErrNotDead, id, j.Where)
	}
	s.deadN--
	j.Attempts, j.DeadAt = 0, 0
	j.Where = Ready
	s.ready.push(j)
	s.counts.Redriven++
	return nil
}

// DeadIDs lists the dead-lettered jobs' IDs in ID order.
func (s *State) DeadIDs() []uint64 { return s.collect(Dead) }

// PurgeDead drops every dead-lettered job and returns their IDs.
func (s *State) PurgeDead() []uint64 {
	ids := s.collect(Dead)
	for _, id := range ids {
		s.forget(s.jobs[id])
	}
	return ids
}

// Purge drops every ready and delayed job (in-flight ones finish their
// attempt) and returns their IDs.
func (s *State) Purge() []uint64 {
	var ids []uint64
	drop := func(j *Job) {
		ids = append(ids, j.ID)
		s.forget(j)
	}
	s.ready.all(drop)
	s.ready.clear()
	for _, j := range s.delayed.jobs {
		drop(j)
	}
	s.delayed.jobs = s.delayed.jobs[:0]
	return ids
}

func (s *State) collect(w Where) []uint64 {
	var ids []uint64
	for id, j := range s.jobs {
		if j.Where == w {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// LowWater is the smallest ID the queue still holds (every job below it is
// acknowledged or purged, so its log space can go), or next if it holds
// none.
func (s *State) LowWater(next uint64) uint64 {
	s.order.compact(s.jobs)
	if len(s.order.ids) > 0 {
		return s.order.ids[0]
	}
	return next
}

// Stats is a snapshot of a queue's state.
type Stats struct {
	Ready, Delayed, InFlight, Dead int
	OldestReadyAge                 time.Duration // how long the oldest ready job has waited
	Counters
}

// Stats counts the jobs by state at now.
func (s *State) Stats(now int64) Stats {
	st := Stats{Ready: s.ready.Len(), Delayed: s.delayed.Len(), InFlight: s.inflight.Len(), Dead: s.deadN, Counters: s.counts}
	if oldest, ok := s.ready.oldest(); ok {
		st.OldestReadyAge = time.Duration(now - oldest)
	}
	return st
}

// Browse lists up to limit jobs in state w with IDs from from on, in ID
// order, changing nothing.
func (s *State) Browse(w Where, from uint64, limit int) (jobs []*Job, next uint64, more bool) {
	ids := s.order.ids
	i, _ := slices.BinarySearch(ids, from)
	// A page looks at a bounded number of IDs, so browsing a rare state
	// among a million jobs never holds the queue for long: a short page
	// with more set says where to go on.
	budget := browseScan + 4*limit
	for ; i < len(ids) && budget > 0; i, budget = i+1, budget-1 {
		if j := s.jobs[ids[i]]; j != nil && j.Where == w {
			jobs = append(jobs, j)
			if len(jobs) == limit {
				i++
				break
			}
		}
	}
	if i < len(ids) {
		return jobs, ids[i], true
	}
	return jobs, 0, false
}

// browseScan is how many IDs one Browse call looks at, beyond four per
// job asked for.
const browseScan = 20000

// idIndex holds IDs in ascending order. IDs are added in ascending order
// (they are log offsets, added as the log assigns them) and removed
// lazily: an ID whose job is gone stays until compact, which runs when
// more than half the entries are dead.
type idIndex struct {
	ids []uint64
}

func (x *idIndex) add(id uint64) {
	if n := len(x.ids); n == 0 || x.ids[n-1] < id {
		x.ids = append(x.ids, id)
		return
	}
	if i, found := slices.BinarySearch(x.ids, id); !found {
		x.ids = slices.Insert(x.ids, i, id)
	}
}

// compact drops the IDs no longer in jobs: the leading ones always (the
// low-water mark needs the first to be live), the rest when they are more
// than half.
func (x *idIndex) compact(jobs map[uint64]*Job) {
	i := 0
	for i < len(x.ids) && jobs[x.ids[i]] == nil {
		i++
	}
	x.ids = x.ids[i:]
	if len(x.ids) > 2*len(jobs)+1024 {
		keep := x.ids[:0]
		for _, id := range x.ids {
			if jobs[id] != nil {
				keep = append(keep, id)
			}
		}
		clear(x.ids[len(keep):])
		x.ids = slices.Clip(keep)
	}
}

// jobHeap is a heap of jobs that keeps each job's index, so a job can be
// removed or fixed in place.
type jobHeap struct {
	jobs []*Job
	less func(a, b *Job) bool
}

func (h jobHeap) Len() int           { return len(h.jobs) }
func (h jobHeap) Less(i, k int) bool { return h.less(h.jobs[i], h.jobs[k]) }
func (h jobHeap) Swap(i, k int) {
	h.jobs[i], h.jobs[k] = h.jobs[k], h.jobs[i]
	h.jobs[i].index, h.jobs[k].index = i, k
}
func (h *jobHeap) Push(x any) {
	j := x.(*Job)
	j.index = len(h.jobs)
	h.jobs = append(h.jobs, j)
}
func (h *jobHeap) Pop() any {
	n := len(h.jobs) - 1
	j := h.jobs[n]
	h.jobs[n] = nil
	h.jobs = h.jobs[:n]
	j.index = -1
	return j
}

// readyQueue holds the ready jobs in the order Reserve hands them out:
// highest priority first, then lowest ID. A heap of them all made every
// Reserve cost a sift through log2(n) levels of pointers, a cache miss
// each with a deep queue (7% of the server's CPU with 100k jobs ready);
// but jobs mostly arrive in that order already (enqueues come in ID order,
// and most queues use one priority). So each priority keeps a FIFO of the
// jobs that arrived in ID order and a heap only for those that did not
// (retries, expired reservations, redrives): Reserve takes the lower ID of
// the two heads.
type readyQueue struct {
	levels []*readyLevel // by priority, highest first; none empty
	n      int
	spare  *readyLevel // the last level emptied: a queue that drains after every job reuses it
}

type readyLevel struct {
	priority int
	fifo     []*Job // ascending IDs from head on
	head     int
	late     jobHeap // by ID: jobs that arrived below the FIFO's tail
}

func (r *readyQueue) Len() int { return r.n }

func (r *readyQueue) push(j *Job) {
	r.n++
	i, found := slices.BinarySearchFunc(r.levels, j.Priority, func(l *readyLevel, p int) int { return cmp.Compare(p, l.priority) })
	if !found {
		l := r.spare
		if l == nil {
			l = &readyLevel{late: jobHeap{less: lowerID}}
		}
		r.spare, l.priority = nil, j.Priority
		r.levels = slices.Insert(r.levels, i, l)
	}
	l := r.levels[i]
	if t := len(l.fifo); t == l.head || l.fifo[t-1].ID < j.ID {
		l.fifo = append(l.fifo, j)
		return
	}
	heap.Push(&l.late, j)
}

// pop takes the next job; the queue must not be empty.
func (r *readyQueue) pop() *Job {
	l := r.levels[0]
	var j *Job
	if l.head < len(l.fifo) && (l.late.Len() == 0 || l.fifo[l.head].ID < l.late.jobs[0].ID) {
		j = l.fifo[l.head]
		l.fifo[l.head] = nil
		l.head++
		if l.head == len(l.fifo) {
			l.fifo, l.head = l.fifo[:0], 0
		} else if l.head >= 1024 && 2*l.head >= len(l.fifo) {
			// Slide the FIFO down so a queue that never empties does not
			// grow its slice for ever: amortised O(1) per job.
			n := copy(l.fifo, l.fifo[l.head:])
			clear(l.fifo[n:])
			l.fifo, l.head = l.fifo[:n], 0
		}
	} else {
		j = heap.Pop(&l.late).(*Job)
	}
	r.n--
	if l.head == len(l.fifo) && l.late.Len() == 0 {
		r.levels = slices.Delete(r.levels, 0, 1)
		r.spare = l
	}
	return j
}

func lowerID(a, b *Job) bool { return a.ID < b.ID }

// oldest returns the earliest EnqueuedAt of the ready jobs. A job's
// EnqueuedAt grows with its ID (the driver stamps jobs as the log
// completes their appends, in offset order; recovery takes the records'
// append times), so the oldest job of a level is one of its two heads,
// the lowest IDs: no scan. A scan of a million ready jobs held the queue
// for 10 ms, at every stats call (metrics scrapes, QINFO, the UI).
func (r *readyQueue) oldest() (at int64, ok bool) {
	at = math.MaxInt64
	for _, l := range r.levels {
		if l.head < len(l.fifo) {
			at, ok = min(at, l.fifo[l.head].EnqueuedAt), true
		}
		if l.late.Len() > 0 {
			at, ok = min(at, l.late.jobs[0].EnqueuedAt), true
		}
	}
	return at, ok
}

// all calls fn for each ready job, in no particular order.
func (r *readyQueue) all(fn func(*Job)) {
	for _, l := range r.levels {
		for _, j := range l.fifo[l.head:] {
			fn(j)
		}
		for _, j := range l.late.jobs {
			fn(j)
		}
	}
}

func (r *readyQueue) clear() {
	r.levels, r.n, r.spare = nil, 0, nil
}
