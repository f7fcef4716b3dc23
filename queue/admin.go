package queue

import (
	"fmt"
	"sort"
	"time"

	commitlog "github.com/flowmesh/flowmesh/log"
)

// JobView is a job as browsing shows it: state and payload.
type JobView struct {
	ID         uint64 `json:"id"`
	State      string `json:"state"`
	Priority   int    `json:"priority"`
	Attempts   int    `json:"attempts"`
	EnqueuedAt int64  `json:"enqueued_at"`          // Unix ns
	At         int64  `json:"at,omitempty"`         // ready at (delayed), deadline (in flight), dead since (dead)
	LastError  string `json:"last_error,omitempty"` // why the last attempt failed
	Key        string `json:"key,omitempty"`
	Header     []byte `json:"header,omitempty"` // the producer's NATS/1.0 block
	Payload    []byte `json:"payload"`
}

// Browse lists up to limit jobs in state w with IDs from from on, with
// their payloads, changing nothing. If more is set, the next page starts
// at next (a page can be short: one call looks at a bounded number of
// jobs). It reads the log on the calling goroutine.
func (q *Queue) Browse(w Where, from uint64, limit int) (views []JobView, next uint64, more bool, err error) {
	if limit < 1 {
		limit = 1
	}
	q.mu.Lock()
	jobs, next, more := q.st.Browse(w, from, limit)
	views = make([]JobView, len(jobs))
	for i, j := range jobs {
		v := JobView{ID: j.ID, State: j.Where.String(), Priority: j.Priority, Attempts: j.Attempts, EnqueuedAt: j.EnqueuedAt,
			LastError: j.LastError, Key: j.Key}
		switch j.Where {
		case Delayed:
			v.At = j.ReadyAt
		case InFlight:
			v.At = j.Deadline
		case Dead:
			v.At = j.DeadAt
		}
		views[i] = v
	}
	q.mu.Unlock()
	var recs []commitlog.Record
	for i := range views {
		id := views[i].ID
		if len(recs) == 0 || id < recs[0].Offset || id-recs[0].Offset >= uint64(len(recs)) {
			var err error
			if recs, err = q.log.Read(id, 64<<10, nil); err != nil || len(recs) == 0 || recs[0].Offset != id {
				return views[:i], id, true, fmt.Errorf("queue: read job %d of %q: %v", id, q.name, err)
			}
		}
		r := recs[id-recs[0].Offset]
		_, _, _, hdr, _ := decodeJobHeader(r.Headers)
		views[i].Header, views[i].Payload = hdr, r.Value
		if views[i].Payload == nil {
			views[i].Payload = []byte{}
		}
	}
	return views, next, more, nil
}

// Redrive moves dead-lettered jobs back to the queue (all of them when
// all is set, else the one with id) and returns how many moved.
func (q *Queue) Redrive(id uint64, all bool, cb func(int, error)) {
	moved := 0
	q.change(func(err error) { cb(moved, err) }, func() ([]op, error) {
		ids := []uint64{id}
		if all {
			ids = q.st.DeadIDs()
		}
		var ops []op
		for _, id := range ids {
			if err := q.st.Redrive(id); err != nil {
				return nil, err
			}
			ops = append(ops, op{id: id, val: encodeState(q.st.Lookup(id))})
			moved++
		}
		return ops, nil
	})
}

// Purge drops the dead-lettered jobs (dead) or the ready and delayed ones,
// and returns how many went.
func (q *Queue) Purge(dead bool, cb func(int, error)) {
	n := 0
	q.change(func(err error) { cb(n, err) }, func() ([]op, error) {
		var ids []uint64
		if dead {
			ids = q.st.PurgeDead()
		} else {
			ids = q.st.Purge()
		}
		for _, id := range ids {
			if f, ok := q.fresh[id]; ok {
				delete(q.fresh, id)
				q.freshBytes -= len(f.payload) + len(f.hdr)
			}
		}
		ops := make([]op, len(ids))
		for i, id := range ids {
			ops[i] = op{id: id} // the 'A' marker: gone for good
		}
		n = len(ids)
		return ops, nil
	})
}

// histogram counts durations in fixed buckets (upper bounds), for the
// processing-time distribution.
type histogram struct {
	bounds []time.Duration
	counts []uint64
	sum    time.Duration
	n      uint64
}

var processingBounds = []time.Duration{time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 500 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute}

func newHistogram() histogram {
	return histogram{bounds: processingBounds, counts: make([]uint64, len(processingBounds)+1)}
}

func (h *histogram) observe(d time.Duration) {
	i := sort.Search(len(h.bounds), func(i int) bool { return d <= h.bounds[i] })
	h.counts[i]++
	h.sum += d
	h.n++
}

// HistogramView is a snapshot: cumulative counts per upper bound (the last
// bucket is +Inf), their sum and count, as Prometheus wants them.
type HistogramView struct {
	BoundsMs []float64 `json:"bounds_ms"`
	Counts   []uint64  `json:"counts"` // per bucket, not cumulative
	SumMs    float64   `json:"sum_ms"`
	Count    uint64    `json:"count"`
}

func (h *histogram) view() HistogramView {
	v := HistogramView{Counts: append([]uint64(nil), h.counts...), SumMs: float64(h.sum) / 1e6, Count: h.n}
	for _, b := range h.bounds {
		v.BoundsMs = append(v.BoundsMs, float64(b)/1e6)
	}
	return v
}
