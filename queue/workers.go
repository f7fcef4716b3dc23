package queue

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// Workers: who processes the jobs. A worker registers (name, queues,
// concurrency) on its connection and heartbeats; the server reports each
// reservation and outcome, so the node knows every worker's state (idle,
// busy, gone), throughput and processing times: the data behind worker
// health in the metrics and the UI. A worker that disappears is "gone";
// its jobs come back when their visibility timeouts pass.

// workerGoneAfter is how long a silent worker stays "busy"/"idle".
const workerGoneAfter = 30 * time.Second

// keepGone is how long a gone worker stays listed.
const keepGone = 5 * time.Minute

type workers struct {
	mu sync.Mutex
	m  map[string]*Worker
}

// Worker is one registered worker.
type Worker struct {
	e           *Engine
	id          string
	name        string
	queues      []string
	concurrency int

	// guarded by e.workers.mu
	joined, lastSeen, leftAt time.Time
	inFlight                 int
	processed, failed        uint64
	busyNanos                int64
}

// WorkerInfo describes a worker.
type WorkerInfo struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Queues      []string `json:"queues"`
	Concurrency int      `json:"concurrency"`
	State       string   `json:"state"` // idle, busy or gone
	InFlight    int      `json:"in_flight"`
	Processed   uint64   `json:"processed"`
	Failed      uint64   `json:"failed"`
	PerSecond   float64  `json:"per_second"` // completions per second since it joined
	AvgMs       float64  `json:"avg_ms"`     // mean processing time
	LastSeenMs  int64    `json:"last_seen_ms"`
	UptimeMs    int64    `json:"uptime_ms"`
}

// RegisterWorker records a worker.
func (e *Engine) RegisterWorker(name string, queues []string, concurrency int) (*Worker, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("%w: worker %q", ErrBadName, name)
	}
	for _, q := range queues {
		if !ValidName(q) {
			return nil, fmt.Errorf("%w: queue %q", ErrBadName, q)
		}
	}
	if concurrency < 1 {
		concurrency = 1
	}
	now := e.opts.Now()
	w := &Worker{e: e, id: fmt.Sprintf("%s-%08x", name, rand.Uint32()), name: name, queues: slices.Clone(queues),
		concurrency: concurrency, joined: now, lastSeen: now}
	e.workers.mu.Lock()
	if e.workers.m == nil {
		e.workers.m = make(map[string]*Worker)
	}
	e.workers.m[w.id] = w
	e.workers.prune(now)
	e.workers.mu.Unlock()
	return w, nil
}

func (ws *workers) prune(now time.Time) {
	for id, w := range ws.m {
		if !w.leftAt.IsZero() && now.Sub(w.leftAt) > keepGone || w.leftAt.IsZero() && now.Sub(w.lastSeen) > keepGone {
			delete(ws.m, id)
		}
	}
}

// ID is the worker's id.
func (w *Worker) ID() string { return w.id }

// Heartbeat says the worker is alive.
func (w *Worker) Heartbeat() {
	ws := &w.e.workers
	ws.mu.Lock()
	w.lastSeen = w.e.opts.Now()
	ws.mu.Unlock()
}

// reserved counts n jobs handed to the worker (nil: nobody's).
func (w *Worker) reserved(n int) {
	if w == nil {
		return
	}
	ws := &w.e.workers
	ws.mu.Lock()
	w.inFlight += n
	w.lastSeen = w.e.opts.Now()
	ws.mu.Unlock()
}

// done counts one job the worker held that finished: acked (ok), or
// nacked or timed out, and how long it was held.
func (w *Worker) done(ok bool, took time.Duration) {
	if w == nil {
		return
	}
	ws := &w.e.workers
	ws.mu.Lock()
	if w.inFlight > 0 {
		w.inFlight--
	}
	if ok {
		w.processed++
	} else {
		w.failed++
	}
	w.busyNanos += int64(took)
	w.lastSeen = w.e.opts.Now()
	ws.mu.Unlock()
}

// Leave marks the worker gone (its connection closed).
func (w *Worker) Leave() {
	ws := &w.e.workers
	ws.mu.Lock()
	w.leftAt = w.e.opts.Now()
	w.inFlight = 0
	ws.mu.Unlock()
}

// Workers lists the workers, gone ones for five minutes after they went.
func (e *Engine) Workers() []WorkerInfo {
	now := e.opts.Now()
	ws := &e.workers
	ws.mu.Lock()
	ws.prune(now)
	out := make([]WorkerInfo, 0, len(ws.m))
	for _, w := range ws.m {
		state := "idle"
		switch {
		case !w.leftAt.IsZero() || now.Sub(w.lastSeen) > workerGoneAfter:
			state = "gone"
		case w.inFlight > 0:
			state = "busy"
		}
		done := w.processed + w.failed
		in := WorkerInfo{ID: w.id, Name: w.name, Queues: w.queues, Concurrency: w.concurrency, State: state, InFlight: w.inFlight,
			Processed: w.processed, Failed: w.failed, LastSeenMs: now.Sub(w.lastSeen).Milliseconds(), UptimeMs: now.Sub(w.joined).Milliseconds()}
		if up := now.Sub(w.joined).Seconds(); up > 0 {
			in.PerSecond = float64(done) / up
		}
		if done > 0 {
			in.AvgMs = float64(w.busyNanos) / float64(done) / 1e6
		}
		out = append(out, in)
	}
	ws.mu.Unlock()
	slices.SortFunc(out, func(a, b WorkerInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}
