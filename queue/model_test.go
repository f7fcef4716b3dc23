package queue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/internal/seeds"
)

// TestAgainstModel drives a queue with random operations (enqueues with
// keys, delays, priorities and attempt limits; reserves; acks, nacks and
// touches, some of them stale; redrives and purges; time passing; restarts)
// and after each one compares every job the queue holds, with its state,
// attempts and times, against a plain model of the documented semantics.
// FLOWMESH_QUEUE_MODEL_SEEDS sets how many seeds run (default 6).
func TestAgainstModel(t *testing.T) {
	seeds.Run(t, "FLOWMESH_QUEUE_MODEL_SEEDS", 1, 6, func(t *testing.T, seed uint64) { runModel(t, seed, 400) })
}

type modelJob struct {
	id          uint64
	where       Where // 0: gone (acknowledged or purged)
	prio        int
	maxAttempts int
	attempts    int
	at          int64 // ready at (delayed), deadline (in flight), dead since (dead)
	payload     string
}

type queueModel struct {
	pol  Config
	jobs map[uint64]*modelJob
	keys map[string]struct {
		id uint64
		at int64
	}
}

func (m *queueModel) max(j *modelJob) int {
	if j.maxAttempts > 0 {
		return j.maxAttempts
	}
	return m.pol.MaxAttempts
}

// advance is the model of State.Advance.
func (m *queueModel) advance(now int64) {
	for _, j := range m.jobs {
		switch {
		case j.where == Delayed && j.at <= now:
			j.where, j.at = Ready, 0
		case j.where == InFlight && j.at <= now:
			if j.attempts >= m.max(j) {
				j.where, j.at = Dead, now
			} else {
				j.where, j.at = Ready, 0
			}
		}
	}
}

func (m *queueModel) in(w Where) []*modelJob {
	var out []*modelJob
	for _, j := range m.jobs {
		if j.where == w {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, func(a, b *modelJob) int {
		if a.prio != b.prio && w == Ready {
			return b.prio - a.prio
		}
		return int(a.id) - int(b.id)
	})
	return out
}

func runModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	dir := t.TempDir()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	n := openNode(t, dir, clk)
	defer func() { n.close(t) }()
	q, err := n.e.Create("m", n.e.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	m := &queueModel{pol: q.Config(), jobs: map[uint64]*modelJob{}, keys: map[string]struct {
		id uint64
		at int64
	}{}}
	now := func() int64 { return clk.Now().UnixNano() }
	pick := func(w Where) *modelJob {
		js := m.in(w)
		if len(js) == 0 {
			return nil
		}
		return js[rng.IntN(len(js))]
	}
	var log []string // the operations so far, printed on a mismatch
	fail := func(format string, args ...any) {
		t.Helper()
		tail := log
		if len(tail) > 25 {
			tail = tail[len(tail)-25:]
		}
		t.Fatalf("seed %d after %d steps: %s\n  %s", seed, len(log), fmt.Sprintf(format, args...), strings.Join(tail, "\n  "))
	}
	for step := 0; step < steps; step++ {
		switch r := rng.IntN(100); {
		case r < 25: // enqueue
			req := EnqueueRequest{Payload: []byte(fmt.Sprint("job-", step)), Priority: rng.IntN(3) - 1}
			if rng.IntN(3) == 0 {
				req.Key = fmt.Sprint("k", rng.IntN(6))
			}
			if rng.IntN(3) == 0 {
				req.Delay = time.Duration(1+rng.IntN(20)) * time.Second
			}
			if rng.IntN(4) == 0 {
				req.MaxAttempts = 1 + rng.IntN(3)
			}
			id, dup := enq(t, q, req)
			log = append(log, fmt.Sprintf("enqueue %+v -> %d dup=%v", req, id, dup))
			if k, ok := m.keys[req.Key]; ok && req.Key != "" && k.at > now()-int64(m.pol.DedupWindow) {
				if !dup || id != k.id {
					fail("key %s inside the window: got %d dup=%v, want %d", req.Key, id, dup, k.id)
				}
				continue
			}
			if dup || m.jobs[id] != nil {
				fail("enqueue got %d dup=%v: not a new job", id, dup)
			}
			j := &modelJob{id: id, where: Ready, prio: req.Priority, maxAttempts: req.MaxAttempts, payload: string(req.Payload)}
			if req.Delay > 0 {
				j.where, j.at = Delayed, now()+int64(req.Delay)
			}
			m.jobs[id] = j
			if req.Key != "" {
				m.keys[req.Key] = struct {
					id uint64
					at int64
				}{id, now()}
			}
		case r < 45: // time passes, then a reserve (which applies it at once)
			if rng.IntN(2) == 0 {
				d := time.Duration(rng.IntN(40_000)) * time.Millisecond
				if rng.IntN(10) == 0 {
					d = time.Duration(1+rng.IntN(4)) * time.Minute
				}
				clk.Add(d)
				log = append(log, fmt.Sprint("time +", d))
			}
			max := 1 + rng.IntN(3)
			var vis time.Duration
			if rng.IntN(2) == 0 {
				vis = time.Duration(1+rng.IntN(60)) * time.Second
			}
			ds := reserveVis(t, q, max, 0, vis)
			ids := make([]string, len(ds))
			for i, d := range ds {
				ids[i] = fmt.Sprintf("%d/%d", d.ID, d.Attempt)
			}
			log = append(log, fmt.Sprintf("reserve %d vis=%v -> %v", max, vis, ids))
			m.advance(now())
			want := m.in(Ready)
			if len(want) > max {
				want = want[:max]
			}
			if len(ds) != len(want) {
				fail("reserve of %d got %d jobs, want %d", max, len(ds), len(want))
			}
			if vis == 0 {
				vis = time.Duration(m.pol.Visibility)
			}
			for i, d := range ds {
				j := want[i]
				j.where, j.at = InFlight, now()+int64(vis)
				j.attempts++
				if d.ID != j.id || d.Attempt != j.attempts || string(d.Payload) != j.payload || d.Deadline != j.at {
					fail("reserve delivered %d attempt %d %q deadline %d, want %d attempt %d %q deadline %d",
						d.ID, d.Attempt, d.Payload, d.Deadline, j.id, j.attempts, j.payload, j.at)
				}
			}
		case r < 60: // ack: a job in flight, or a stale one
			j := pick(InFlight)
			if j == nil {
				continue
			}
			attempt := j.attempts
			stale := rng.IntN(5) == 0
			if stale {
				attempt--
			}
			err := ack(q, j.id, attempt)
			log = append(log, fmt.Sprintf("ack %d/%d -> %v", j.id, attempt, err))
			if stale != (err != nil) {
				fail("ack of %d at attempt %d (it is at %d): %v", j.id, attempt, j.attempts, err)
			}
			if !stale {
				j.where = 0
				if again := ack(q, j.id, j.attempts); !errors.Is(again, ErrJobNotFound) {
					fail("second ack of %d: %v", j.id, again)
				}
			}
		case r < 72: // nack: retry now, after a delay, per the backoff, or fail
			j := pick(InFlight)
			if j == nil {
				continue
			}
			var o NackOpts
			switch rng.IntN(4) {
			case 0:
				o.UseDelay = true
			case 1:
				o.UseDelay, o.Delay = true, time.Duration(1+rng.IntN(30))*time.Second
			case 2:
				o.Fail = true
			}
			o.Error = "boom"
			where, err := nack(q, j.id, j.attempts, o)
			log = append(log, fmt.Sprintf("nack %d/%d %+v -> %v %v", j.id, j.attempts, o, where, err))
			if err != nil {
				fail("nack: %v", err)
			}
			switch d := o.Delay; {
			case o.Fail || j.attempts >= m.max(j):
				j.where, j.at = Dead, now()
			default:
				if !o.UseDelay {
					d = min(time.Duration(m.pol.BackoffBase)<<(j.attempts-1), time.Duration(m.pol.BackoffMax))
				}
				if d > 0 {
					j.where, j.at = Delayed, now()+int64(d)
				} else {
					j.where, j.at = Ready, 0
				}
			}
			if where != j.where {
				fail("nack of %d put it %v, want %v", j.id, where, j.where)
			}
		case r < 78: // touch
			j := pick(InFlight)
			if j == nil {
				continue
			}
			ext := time.Duration(rng.IntN(90)) * time.Second
			ch := make(chan error, 1)
			q.Touch(j.id, j.attempts, ext, func(err error) { ch <- err })
			err := <-ch
			log = append(log, fmt.Sprintf("touch %d/%d %v -> %v", j.id, j.attempts, ext, err))
			if err != nil {
				fail("touch: %v", err)
			}
			if ext == 0 {
				ext = time.Duration(m.pol.Visibility)
			}
			j.at = now() + int64(ext)
		case r < 83: // redrive one dead job, or all
			all := rng.IntN(3) == 0
			j := pick(Dead)
			if j == nil && !all {
				continue
			}
			var id uint64
			if j != nil {
				id = j.id
			}
			ch := make(chan error, 1)
			var moved int
			q.Redrive(id, all, func(n int, err error) { moved = n; ch <- err })
			err := <-ch
			log = append(log, fmt.Sprintf("redrive %d all=%v -> %d %v", id, all, moved, err))
			if err != nil {
				fail("redrive: %v", err)
			}
			want := []*modelJob{j}
			if all {
				want = m.in(Dead)
			}
			for _, j := range want {
				j.where, j.at, j.attempts = Ready, 0, 0
			}
			if moved != len(want) {
				fail("redrive moved %d, want %d", moved, len(want))
			}
		case r < 85: // purge the dead, or the ready and delayed
			dead := rng.IntN(2) == 0
			ch := make(chan error, 1)
			var purged int
			q.Purge(dead, func(n int, err error) { purged = n; ch <- err })
			err := <-ch
			log = append(log, fmt.Sprintf("purge dead=%v -> %d %v", dead, purged, err))
			want := 0
			for _, j := range m.jobs {
				if dead && j.where == Dead || !dead && (j.where == Ready || j.where == Delayed) {
					j.where = 0
					want++
				}
			}
			if err != nil || purged != want {
				fail("purge got %d %v, want %d", purged, err, want)
			}
		case r < 92: // restart
			n.close(t)
			n = openNode(t, dir, clk)
			if q, err = n.e.Queue("m", false); err != nil {
				t.Fatal(err)
			}
			log = append(log, "restart")
		default: // an operation on a job the queue does not hold
			id := uint64(10_000 + rng.IntN(100))
			if err := ack(q, id, 1); !errors.Is(err, ErrJobNotFound) {
				fail("ack of unknown job %d: %v", id, err)
			}
		}
		compareModel(t, q, m, fail)
	}
}

// compareModel checks every job the queue holds against the model.
func compareModel(t *testing.T, q *Queue, m *queueModel, fail func(string, ...any)) {
	t.Helper()
	counts := map[Where]int{}
	for _, w := range []Where{Ready, Delayed, InFlight, Dead} {
		var got []JobView
		for from, more := uint64(0), true; more; {
			var page []JobView
			var err error
			page, from, more, err = q.Browse(w, from, 7)
			if err != nil {
				fail("browse %v: %v", w, err)
			}
			got = append(got, page...)
		}
		want := m.in(w)
		slices.SortFunc(want, func(a, b *modelJob) int { return int(a.id) - int(b.id) })
		if len(got) != len(want) {
			var g, w2 []uint64
			for _, v := range got {
				g = append(g, v.ID)
			}
			for _, j := range want {
				w2 = append(w2, j.id)
			}
			fail("jobs %v: %v, want %v", w, g, w2)
		}
		for i, v := range got {
			j := want[i]
			if v.ID != j.id || v.Attempts != j.attempts || v.At != j.at || string(v.Payload) != j.payload {
				fail("%v job: got id %d attempts %d at %d %q, want id %d attempts %d at %d %q",
					w, v.ID, v.Attempts, v.At, v.Payload, j.id, j.attempts, j.at, j.payload)
			}
		}
		counts[w] = len(got)
	}
	in := q.Info()
	if in.Ready != counts[Ready] || in.Delayed != counts[Delayed] || in.InFlight != counts[InFlight] || in.Dead != counts[Dead] {
		fail("info counts %d/%d/%d/%d, browse %v", in.Ready, in.Delayed, in.InFlight, in.Dead, counts)
	}
}

func nack(q *Queue, id uint64, attempt int, o NackOpts) (Where, error) {
	type res struct {
		w   Where
		err error
	}
	ch := make(chan res, 1)
	q.Nack(id, attempt, o, func(w Where, _ time.Duration, err error) { ch <- res{w, err} })
	x := <-ch
	return x.w, x.err
}
