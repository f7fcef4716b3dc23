package server

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/flowmesh/flowmesh/netpoll"
	"github.com/flowmesh/flowmesh/protocol"
)

// Ordered replies.
//
// Every command that gets a reply reserves its place in the session's reply
// queue in arrival order. A synchronous handler answers at once; a handler
// whose answer waits on the disk (an fsync) or another goroutine takes a
// Pending and completes it later, from any goroutine: the completion hops
// back to the connection's loop and the queue writes the longest filled
// prefix. So pipelined commands are answered in order even when a later
// command finishes first.
//
// The common case costs nothing extra: while no reply is outstanding, a
// synchronous reply is appended straight to the connection's output.

// replyQueue is owned by the session's loop.
type replyQueue struct {
	base  uint64 // sequence number of slots[0]
	slots []replySlot
}

type replySlot struct {
	done bool
	buf  []byte
}

// Pending is a reply that will be given later. Complete it exactly once
// with one of its methods; they are safe from any goroutine.
type Pending struct {
	sess *session
	seq  uint64
}

// OK completes the reply with +OK [args].
func (p Pending) OK(args ...[]byte) { p.complete(protocol.AppendOK(nil, args...)) }

// Err completes the reply with -ERR.
func (p Pending) Err(e *protocol.Error) { p.complete(protocol.AppendError(nil, e)) }

// Res completes the reply with a RES frame.
func (p Pending) Res(args [][]byte, hdr, payload []byte) {
	p.complete(protocol.AppendRes(nil, args, hdr, payload))
}

// complete fills the reply with frame: one or more encoded frames.
//
// Completions of one session are gathered and handed to its loop together:
// a log batch completes hundreds of one connection's writes in a row, and
// one hop to the loop (one Execute, one socket write) for all of them cost
// a fifth of what one hop each did.
func (p Pending) complete(frame []byte) {
	s := p.sess
	d := &s.done
	d.mu.Lock()
	d.items = append(d.items, completion{seq: p.seq, frame: frame})
	schedule := !d.scheduled
	d.scheduled = true
	d.mu.Unlock()
	if schedule {
		if err := s.conn.Execute(func(*netpoll.Conn) { s.drainCompletions() }); err != nil {
			s.srv.log.Debug("server: replies dropped, connection gone", "conn", s.conn.ID(), "err", err)
		}
	}
	s.srv.inflight.done()
}

// push sends frames that answer no command (a consumer's jobs) from any
// goroutine. They travel with the session's completed replies: a job
// pushed when an ack's reply completes goes out in the same socket write.
func (s *session) push(frames []byte) {
	d := &s.done
	d.mu.Lock()
	d.items = append(d.items, completion{push: true, frame: frames})
	schedule := !d.scheduled
	d.scheduled = true
	d.mu.Unlock()
	if schedule {
		if err := s.conn.Execute(func(*netpoll.Conn) { s.drainCompletions() }); err != nil {
			s.srv.log.Debug("server: pushed frames dropped, connection gone", "conn", s.conn.ID(), "err", err)
		}
	}
}

// completions is a session's queue of completed deferred replies, filled
// from any goroutine and drained on the session's loop.
type completions struct {
	mu        sync.Mutex
	items     []completion
	spare     []completion
	scheduled bool
}

type completion struct {
	seq   uint64
	push  bool // frames that answer nothing: written now, not in a reply's place
	frame []byte
}

// drainCompletions fills every queued reply. Loop only.
func (s *session) drainCompletions() {
	d := &s.done
	d.mu.Lock()
	items := d.items
	d.items, d.spare = d.spare[:0], nil
	d.scheduled = false
	d.mu.Unlock()
	for i, c := range items {
		if c.push {
			s.conn.Write(c.frame)
		} else {
			s.replies.fill(s, c.seq, c.frame)
		}
		items[i] = completion{}
	}
	d.mu.Lock()
	if d.spare == nil {
		d.spare = items[:0]
	}
	d.mu.Unlock()
}

// reserve takes the next place in the queue for a reply given later.
func (q *replyQueue) reserve() uint64 {
	q.slots = append(q.slots, replySlot{})
	return q.base + uint64(len(q.slots)) - 1
}

// fill completes slot seq and writes every reply that is now in order.
func (q *replyQueue) fill(s *session, seq uint64, frame []byte) {
	i := seq - q.base
	if i >= uint64(len(q.slots)) || q.slots[i].done {
		panic("server: reply completed twice or out of range")
	}
	q.slots[i] = replySlot{done: true, buf: frame}
	n := 0
	out := s.conn.Buf()
	for n < len(q.slots) && q.slots[n].done {
		out = append(out, q.slots[n].buf...)
		q.slots[n] = replySlot{}
		n++
	}
	q.slots = q.slots[:copy(q.slots, q.slots[n:])]
	q.base += uint64(n)
	s.conn.Commit(out)
	if len(q.slots) <= s.srv.cfg.MaxInflight/2 {
		s.conn.ReleaseReads()
	}
}

// idle reports whether no reply is outstanding, so a synchronous reply may
// go straight to the output.
func (q *replyQueue) idle() bool { return len(q.slots) == 0 }

// queueDone appends an already-complete reply behind outstanding ones.
func (q *replyQueue) queueDone(frame []byte) {
	q.slots = append(q.slots, replySlot{done: true, buf: append([]byte(nil), frame...)})
}

// inflight counts deferred replies not yet completed, so Shutdown can wait
// for them. A sync.WaitGroup does not fit: commands keep arriving (Add from
// zero) while Shutdown waits, which WaitGroup forbids. The count is an
// atomic: every deferred command changes it twice, from every loop and
// engine goroutine; the mutex is taken only once a waiter exists.
type inflight struct {
	n       atomic.Int64
	waiting atomic.Bool
	mu      sync.Mutex
	waiter  chan struct{} // closed when n reaches zero; under mu
}

func (f *inflight) add() { f.n.Add(1) }

func (f *inflight) done() {
	if f.n.Add(-1) == 0 && f.waiting.Load() {
		f.mu.Lock()
		if f.n.Load() == 0 && f.waiter != nil {
			close(f.waiter)
			f.waiter = nil
		}
		f.mu.Unlock()
	}
}

// wait returns when nothing is in flight or ctx is done.
func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	// waiting is set before n is read: a done that brings n to zero after
	// this read sees it and closes the channel made here.
	f.waiting.Store(true)
	if f.n.Load() == 0 {
		f.mu.Unlock()
		return nil
	}
	if f.waiter == nil {
		f.waiter = make(chan struct{})
	}
	ch := f.waiter
	f.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
