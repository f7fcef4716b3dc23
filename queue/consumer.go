package queue

import (
	"fmt"
	"time"
)

// A Consumer is a standing reservation with a window, as an AMQP consumer
// with a prefetch count: the queue reserves ready jobs for it and pushes
// them while fewer than its window are in flight with it, and each ack,
// nack or passed visibility timeout of one of its jobs frees a place. A
// worker that consumes sends only outcomes; the next job rides back with
// the outcome's reply (they share the queue's write and the connection's
// socket write) instead of each job costing a reserve request and reply.
type Consumer struct {
	q      *Queue
	wk     *Worker // whose counters its jobs follow; nil: none
	window int
	w      *waiter // its deliveries: w.cb is the push function

	// guarded by q.mu
	inFlight int  // jobs reserved for it and not yet finished
	closed   bool // cancelled, or the queue closed
}

// MaxWindow is the largest consumer window.
const MaxWindow = 10000

// Consume starts pushing jobs to push, up to window in flight at once,
// each reserved for visibility (0: the queue's). push runs on the queue's
// goroutine, once the reservations are durable, with the jobs; or once,
// with a nil slice and an error, when the consumer ends because the
// queue was deleted or closed. gone, if set, says the consumer's
// connection closed: it then takes no more jobs.
func (q *Queue) Consume(wk *Worker, gone func() bool, window int, visibility time.Duration, push func([]Delivery, error)) (*Consumer, error) {
	if window < 1 || window > MaxWindow {
		return nil, fmt.Errorf("%w: window %d, want 1..%d", ErrBadConfig, window, MaxWindow)
	}
	if visibility > MaxDelay {
		return nil, fmt.Errorf("%w: visibility %v, at most %v", ErrBadConfig, visibility, MaxDelay)
	}
	c := &Consumer{q: q, wk: wk, window: window}
	c.w = &waiter{holder: wk, gone: gone, max: window, visibility: visibility, cb: push, standing: true}
	q.mu.Lock()
	if q.closed != nil {
		err := q.closed
		q.mu.Unlock()
		return nil, err
	}
	q.consumers = append(q.consumers, c)
	q.mu.Unlock()
	q.kick()
	return c, nil
}

// Cancel stops the pushes. The jobs in flight with the consumer stay
// reserved: they are acked or nacked as usual, or come back when their
// visibility timeout passes. done, if not nil, runs once no push to the
// consumer can follow: on the queue's goroutine after it pushed every job
// reserved for the consumer before the cancel (so an answer sent by done
// through the same ordered path as the pushes comes after all of them,
// as AMQP's basic.cancel-ok does), or at once if the queue is closed.
func (c *Consumer) Cancel(done func()) {
	q := c.q
	q.mu.Lock()
	c.closed = true
	q.dropConsumer(c)
	if done == nil {
		q.mu.Unlock()
		return
	}
	if q.closed != nil {
		q.mu.Unlock()
		done()
		return
	}
	q.cancelled = append(q.cancelled, done)
	q.mu.Unlock()
	q.kick()
}

// dropConsumer removes c from the queue's list. q.mu held.
func (q *Queue) dropConsumer(c *Consumer) {
	for i, x := range q.consumers {
		if x == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			q.consumers = q.consumers[:len(q.consumers):len(q.consumers)] // no stale pointer kept past len
			return
		}
	}
}

// serveConsumers reserves jobs for the consumers with room, taking turns
// from where the last call stopped so none is starved. q.mu held.
func (q *Queue) serveConsumers(now int64) []delivery {
	n := len(q.consumers)
	if n == 0 || q.st.ready.Len() == 0 || q.st.paused {
		return nil
	}
	var out []delivery
	start := q.nextConsumer % n
	for i := 0; i < n && q.st.ready.Len() > 0; i++ {
		c := q.consumers[(start+i)%n]
		if c.closed || c.inFlight >= c.window || (c.w.gone != nil && c.w.gone()) {
			continue
		}
		jobs := q.st.Reserve(c.window-c.inFlight, now, c.w.visibility)
		if len(jobs) == 0 {
			continue
		}
		for _, j := range jobs {
			j.Holder = c
			q.ops = append(q.ops, op{id: j.ID, val: encodeState(j)})
		}
		c.inFlight += len(jobs)
		c.wk.reserved(len(jobs))
		out = append(out, delivery{w: c.w, jobs: jobs})
		q.nextConsumer = (start + i + 1) % n
	}
	return out
}

// readyForConsumers reports whether serveConsumers would reserve a job.
// q.mu held.
func (q *Queue) readyForConsumers() bool {
	if q.st.ready.Len() == 0 || q.st.paused {
		return false
	}
	for _, c := range q.consumers {
		if !c.closed && c.inFlight < c.window && (c.w.gone == nil || !c.w.gone()) {
			return true
		}
	}
	return false
}

// holderWorker is the worker a job's holder stands for: a *Worker (QGET)
// or a *Consumer's worker.
func holderWorker(h any) *Worker {
	switch h := h.(type) {
	case *Worker:
		return h
	case *Consumer:
		return h.wk
	}
	return nil
}

// letGo records that the in-flight job j left its holder (finished, or
// its visibility timeout passed): a consumer's window gets the place
// back. q.mu held.
func letGo(j *Job) {
	if c, ok := j.Holder.(*Consumer); ok && c.inFlight > 0 {
		c.inFlight--
	}
	j.Holder = nil
}
