package netpoll

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Producer stall: back-pressure from a subscriber that falls behind to the
// connections that feed it.
//
// Without it, a publisher faster than its subscriber fills the subscriber's
// outbound buffer at memory speed and the subscriber is cut as a slow
// consumer within a fraction of a second, even though it is reading. With
// it, once a destination has more than StallBytes queued, the connection
// that just wrote to it stops being read (its socket is taken out of the
// loop's epoll read set, so TCP flow control slows the publisher down) until
// the destination drains below half of that, or until MaxStall passes. A
// destination that stays backed up for longer than MaxStall no longer
// stalls anyone, and is cut when it reaches MaxPending: a stuck subscriber
// cannot freeze its publishers for ever. nats-server does the same with its
// stall channel.
//
// gnet v2.10.0 has no "pause reading" call, so pausing is done with
// epoll_ctl on the loop's own epoll descriptor (stall_linux.go). Where that
// descriptor cannot be found, stalls are off and the rest works as before.

// stallState is the part of a Conn's stall bookkeeping read by other loops.
type stallState struct {
	pending     atomic.Int64 // bytes queued for this conn, as of its loop's last write
	incoming    atomic.Int64 // bytes in batches from other loops not yet written to it
	stalledFrom atomic.Int64 // unix nanos since which this conn has stalled others; 0 if not
}

// notePending records dst's backlog after a write on dst's own loop.
func (c *Conn) notePending() {
	p := int64(len(c.out) + c.gc.OutboundBuffered())
	c.stall.pending.Store(p)
	if p < int64(c.loop.s.cfg.StallBytes/2) {
		c.stall.stalledFrom.Store(0)
	}
}

// considerStall is called on c's loop after c queued frames for dst.
func (c *Conn) considerStall(dst *Conn) {
	s := c.loop.s
	if s.cfg.StallBytes <= 0 || c.stallOn != nil || dst == c || c.loop.epfd < 0 {
		return
	}
	if dst.stall.pending.Load()+dst.stall.incoming.Load() < int64(s.cfg.StallBytes) {
		return
	}
	now := time.Now().UnixNano()
	since := dst.stall.stalledFrom.Load()
	if since == 0 {
		dst.stall.stalledFrom.CompareAndSwap(0, now)
	} else if now-since > int64(s.cfg.MaxStall) {
		return // hopeless: let it reach MaxPending and be cut
	}
	c.stallOn = dst
}

// applyStall runs at the end of c's read: it stops reading c and starts
// watching the destination.
func (c *Conn) applyStall() {
	dst := c.stallOn
	if dst == nil {
		return
	}
	if c.paused || c.closed || c.closing {
		c.stallOn = nil // already not reading; the next write re-checks dst
		return
	}
	if !c.loop.pauseRead(c) {
		c.stallOn = nil
		return
	}
	c.paused = true
	c.loop.s.stalls.Add(1)
	c.watch(dst, 100*time.Microsecond, time.Now())
}

// watch checks dst on dst's loop after wait, and resumes c once dst has
// drained, closed, or MaxStall passed.
func (c *Conn) watch(dst *Conn, wait time.Duration, started time.Time) {
	time.AfterFunc(wait, func() {
		_ = dst.loop.gl.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			p := 0
			if !dst.closed {
				p = len(dst.out) + dst.gc.OutboundBuffered()
				dst.notePending()
			}
			if dst.closed || p < c.loop.s.cfg.StallBytes/2 || time.Since(started) > c.loop.s.cfg.MaxStall {
				_ = c.loop.gl.Execute(context.Background(), gnet.RunnableFunc(c.resume))
				return nil
			}
			c.watch(dst, min(2*wait, 5*time.Millisecond), started)
			return nil
		}))
	})
}

// resume reads c again. It runs on c's loop, so c.closed is exact and the
// descriptor is still c's.
func (c *Conn) resume(context.Context) error {
	c.stallOn = nil
	if !c.paused || c.closed || c.held {
		return nil
	}
	c.paused = false
	c.loop.resumeRead(c)
	return nil
}

// HoldReads stops reading c once the current read is handled, until
// ReleaseReads: back-pressure from the handler's own backlog (commands
// whose replies wait on the disk), where a stall is back-pressure from a
// subscriber. Without it a pipelining producer can queue appends at memory
// speed while the log writes at disk speed. Loop only.
func (c *Conn) HoldReads() { c.held = true }

// ReleaseReads undoes HoldReads. Reading resumes at once unless a stall
// still holds c. Loop only.
func (c *Conn) ReleaseReads() {
	if !c.held {
		return
	}
	c.held = false
	if c.paused && c.stallOn == nil && !c.closed {
		c.paused = false
		c.loop.resumeRead(c)
	}
}

// applyHold runs at the end of c's read, like applyStall.
func (c *Conn) applyHold() {
	if !c.held || c.paused || c.closed || c.closing {
		return
	}
	if !c.loop.pauseRead(c) {
		c.held = false // no epoll access on this loop: reads go on
		return
	}
	c.paused = true
	c.loop.s.holds.Add(1)
}
