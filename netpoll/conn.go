package netpoll

import (
	"context"
	"net"
	"os"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Conn is one client connection. Its output is gathered in out and written
// once per read (or per delivery batch), so that a burst of replies or
// deliveries costs one write system call, not one per frame.
type Conn struct {
	gc       gnet.Conn
	loop     *loop
	id       uint64
	out      []byte
	dirty    bool
	closing  bool
	closed   bool
	need     int
	lastIn   int64 // loop clock, nanoseconds
	lastOut  int64
	pingsOut int
	stall    stallState
	stallOn  *Conn // destination this conn waits on; loop only
	paused   bool  // reading is off in epoll (a stall or a hold); loop only
	held     bool  // the handler asked to stop reading (HoldReads); loop only
	barred   bool  // out waits for the loop's barrier (CommitAfterBarrier); loop only

	// Session is the handler's per-connection state. Loop only.
	Session any
}

// ID is unique per server for the process lifetime.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr is the peer's address. Loop only.
func (c *Conn) RemoteAddr() net.Addr { return c.gc.RemoteAddr() }

// LocalAddr is the address the peer connected to. Loop only.
func (c *Conn) LocalAddr() net.Addr { return c.gc.LocalAddr() }

// Closed reports whether the connection is gone or going. Loop only.
func (c *Conn) Closed() bool { return c.closed || c.closing }

// Buf returns the output buffer to append frames to. Loop only; pass the
// extended slice to Commit before anything else touches c.
func (c *Conn) Buf() []byte {
	if c.out == nil {
		c.out = make([]byte, 0, minBuf)
	}
	return c.out
}

// Commit stores the extended output buffer, schedules the flush and cuts the
// connection if its outbound data passed the cap. Loop only.
func (c *Conn) Commit(b []byte) {
	if !c.store(b) {
		return
	}
	if len(c.out) >= maxBatch {
		c.flush() // stays in the dirty list if it is there; flushing twice is harmless
		return
	}
	c.notePending()
	if !c.dirty {
		c.dirty = true
		c.loop.dirty = append(c.loop.dirty, c)
	}
}

// CommitAfterBarrier is Commit for output that may leave only after the
// handler's Barrier (see BarrierHandler): it stays in c's buffer, with
// whatever is committed after it, until the loop's barrier has run once
// after this call. One barrier serves every connection that committed
// this way during the loop's turn. Loop only.
func (c *Conn) CommitAfterBarrier(b []byte) {
	if !c.store(b) {
		return
	}
	if !c.barred {
		c.barred = true
		c.loop.barred = append(c.loop.barred, c)
	}
	c.loop.queueBarrier()
}

// store keeps b as c's output, or drops it if c is closing, and cuts c as
// a slow consumer past the outbound cap. It reports whether c still takes
// output. Loop only.
func (c *Conn) store(b []byte) bool {
	if c.closed || c.closing {
		c.out = c.out[:0]
		return false
	}
	c.out = b
	if len(c.out)+c.gc.OutboundBuffered() > c.loop.s.cfg.MaxPending {
		c.slowConsumer()
		return false
	}
	return true
}

// Write appends frame to the output. Loop only.
func (c *Conn) Write(frame []byte) { c.Commit(append(c.Buf(), frame...)) }

// writeNow writes frames straight to the socket when nothing is queued
// before them, saving the copy into c.out; otherwise it appends. Loop only.
func (c *Conn) writeNow(frames []byte) {
	if len(c.out) > 0 || c.closed || c.closing {
		c.Write(frames)
		return
	}
	_, _ = c.gc.Write(frames) // gnet keeps what the socket does not take
	c.loop.s.out.Add(uint64(len(frames)))
	c.lastOut = c.loop.now()
	c.notePending()
	if c.gc.OutboundBuffered() > c.loop.s.cfg.MaxPending {
		c.slowConsumer()
	}
}

// CloseAfter sends frame, flushes, and closes the connection. Loop only.
// Output waiting for the barrier runs the handler's Barrier now and goes
// only if it succeeds; frame goes in any case. frame is what comes after
// the committed output, not a Buf extended by it.
func (c *Conn) CloseAfter(frame []byte) {
	if c.closed || c.closing {
		return
	}
	if c.barred {
		c.barred = false // it stays in the loop's list; the barrier skips closing connections
		if err := c.loop.s.h.(BarrierHandler).Barrier(); err != nil {
			c.out = c.out[:0]
		}
	}
	c.out = append(c.out, frame...)
	c.flush()
	c.closing = true
	_ = c.gc.Close()
}

func (c *Conn) slowConsumer() {
	c.loop.s.slow.Add(1)
	c.loop.s.cfg.Logger.Warn("netpoll: slow consumer, closing", "conn", c.id, "remote", c.gc.RemoteAddr(),
		"pending_bytes", len(c.out)+c.gc.OutboundBuffered(), "max_pending", c.loop.s.cfg.MaxPending)
	c.out = c.out[:0]
	c.CloseAfter(c.loop.s.cfg.SlowFrame)
}

func (c *Conn) flush() {
	c.dirty = false
	if len(c.out) == 0 || c.closed || c.barred {
		return
	}
	n := len(c.out)
	_, _ = c.gc.Write(c.out)
	c.loop.s.out.Add(uint64(n))
	c.lastOut = c.loop.now()
	c.stall.pending.Store(int64(c.gc.OutboundBuffered()))
	if cap(c.out) > maxKeptBuf {
		c.out = nil // a burst's buffer is not kept by an idle connection
	} else {
		c.out = c.out[:0]
	}
}

// maxKeptBuf is the largest output buffer a connection keeps between
// flushes; bigger ones are dropped so memory follows load.
const maxKeptBuf = 256 << 10

// minBuf is the size an output buffer starts at: small, because most
// connections only ever get short replies; busy ones grow and keep theirs.
const minBuf = 512

// maxKeptBatch is the largest cross-loop batch buffer kept for reuse. One
// batch carries at most what one read (64 KiB) fanned out, so this keeps
// the buffers of a busy loop and drops those of a rare huge fan-out.
const maxKeptBatch = 1 << 20

// Execute runs fn on c's loop and flushes what it wrote. Safe from any
// goroutine; fn must not block. fn is not run if c closed first.
func (c *Conn) Execute(fn func(c *Conn)) error {
	return c.loop.gl.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		if !c.closed {
			fn(c)
		}
		c.loop.flush()
		return nil
	}))
}

// Close closes the connection after flushing. Safe from any goroutine.
func (c *Conn) Close() error {
	return c.loop.gl.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		c.CloseAfter(nil)
		return nil
	}))
}

// SendBuf returns the buffer to append a frame for dst to, from code running
// on c's loop: dst's own output if dst is on the same loop, else this loop's
// batch for dst's loop. Pass the result to SendCommit.
func (c *Conn) SendBuf(dst *Conn) []byte {
	if dst.loop == c.loop {
		return dst.Buf()
	}
	ob := c.loop.outboxes[dst.loop.idx]
	if ob.buf == nil {
		ob.buf = make([]byte, 0, 16<<10)
	}
	return ob.buf
}

// SendCommit completes a SendBuf. Frames for other loops are batched per
// loop and handed over in one Execute when this loop's work is done.
func (c *Conn) SendCommit(dst *Conn, b []byte) {
	if dst.loop == c.loop {
		dst.Commit(b)
		c.considerStall(dst)
		return
	}
	ob := c.loop.outboxes[dst.loop.idx]
	ob.to = dst.loop
	if n := len(ob.entries); n > 0 && ob.entries[n-1].dst == dst {
		ob.entries[n-1].end = len(b) // frames for one connection stay one write
	} else {
		ob.entries = append(ob.entries, batchEntry{dst: dst, start: len(ob.buf), end: len(b)})
	}
	dst.stall.incoming.Add(int64(len(b) - len(ob.buf)))
	ob.buf = b
	c.considerStall(dst)
	if len(ob.buf) >= maxBatch {
		// A long read fans out to a big batch: hand it over now rather
		// than grow one buffer for the whole read.
		c.loop.sendBox(dst.loop.idx)
		return
	}
	if !ob.queued {
		ob.queued = true
		c.loop.pendingBoxes = append(c.loop.pendingBoxes, dst.loop.idx)
	}
}

// maxBatch is the size at which a batch for another loop, or a
// connection's output, is handed on without waiting for the end of the read.
const maxBatch = 256 << 10

// loop is the per-event-loop state. Fields are touched only on the loop,
// except where noted.
type loop struct {
	s            *Server
	gl           gnet.EventLoop
	idx          int
	conns        map[*Conn]struct{}
	dirty        []*Conn
	outboxes     []*batch // by destination loop index, one per loop of the server
	pendingBoxes []int
	epfd         int // the loop's epoll descriptor for stalls: 0 unknown, -1 unavailable

	barred        []*Conn // connections whose output waits for the barrier
	barrierQueued bool    // runBarrier is queued on the loop
	barrierTask   gnet.RunnableFunc

	freeMu sync.Mutex
	free   []*batch
}

// now is the loop clock: monotonic nanoseconds since clockBase, only ever
// compared with itself. It is read on every read and flush of a
// connection; time.Since reads one clock where time.Now reads two (31 ns
// against 58 ns a call on the project's VM).
func (l *loop) now() int64 { return int64(time.Since(clockBase)) }

var clockBase = time.Now()

// flush writes every dirty connection's output and hands each other loop
// its batch. Loop only.
func (l *loop) flush() {
	for i, c := range l.dirty {
		c.flush()
		l.dirty[i] = nil
	}
	l.dirty = l.dirty[:0]
	for _, idx := range l.pendingBoxes {
		if l.outboxes[idx].queued {
			l.sendBox(idx)
		}
	}
	l.pendingBoxes = l.pendingBoxes[:0]
}

// queueBarrier makes sure runBarrier runs on the loop. gnet has no hook at
// the end of a loop turn, so the barrier is a task: queued during a turn,
// it runs after the next turn's events (the eventfd written to queue it
// is among them). So one barrier, and one write of the handler's file,
// serves every connection read in up to two turns. Loop only.
func (l *loop) queueBarrier() {
	if l.barrierQueued {
		return
	}
	l.barrierQueued = true
	if err := l.gl.Execute(context.Background(), l.barrierTask); err != nil {
		// The engine is stopping: run it now rather than hold the replies.
		l.barrierQueued = false
		_ = l.barrierTask(context.Background())
	}
}

// runBarrier runs the handler's Barrier once for every connection that
// committed output after the last one, then sends their output, or on
// failure drops it and lets the handler close them. Loop only.
func (l *loop) runBarrier(context.Context) error {
	l.barrierQueued = false
	if len(l.barred) == 0 {
		return nil
	}
	bh := l.s.h.(BarrierHandler)
	err := bh.Barrier()
	for i, c := range l.barred {
		l.barred[i] = nil
		if !c.barred || c.closed || c.closing {
			continue
		}
		c.barred = false
		if err != nil {
			c.out = c.out[:0]
			bh.BarrierFailed(c, err)
			continue
		}
		c.flush()
	}
	l.barred = l.barred[:0]
	l.flush()
	return nil
}

// sendBox hands the batch for loop idx to that loop.
func (l *loop) sendBox(idx int) {
	ob := l.outboxes[idx]
	if len(ob.entries) == 0 {
		ob.queued = false
		return
	}
	l.outboxes[idx] = l.getBatch()
	ob.queued = false
	if err := ob.to.gl.Execute(context.Background(), ob); err != nil {
		l.s.cfg.Logger.Debug("netpoll: delivery batch dropped", "err", err)
	}
}

// keepalive pings idle connections and closes those that stopped
// answering. It runs on l's own loop.
func (l *loop) keepalive(context.Context) error {
	s := l.s
	now := l.now()
	idle := int64(s.cfg.PingInterval)
	for c := range l.conns {
		if len(c.out) == 0 && c.out != nil && now-c.lastOut > int64(time.Second) {
			c.out = nil // an idle connection holds no output buffer
		}
		if c.closing || now-c.lastIn < idle {
			continue
		}
		if c.pingsOut >= s.cfg.MaxPingsOut {
			s.stale.Add(1)
			s.cfg.Logger.Debug("netpoll: stale connection, closing", "conn", c.id)
			c.CloseAfter(s.cfg.StaleFrame)
			continue
		}
		c.pingsOut++
		c.lastIn = now // next ping one interval later
		c.Write(s.cfg.PingFrame)
	}
	l.flush()
	return nil
}

// batch is a set of frames from one loop for connections of another.
type batch struct {
	from    *loop
	to      *loop
	buf     []byte
	entries []batchEntry
	queued  bool
}

// getBatch takes a free batch of this loop. Batches go back to the loop
// that filled them (putBatch), so a steady flow between two loops reuses
// the same few buffers. (A sync.Pool does not: a batch put on the
// destination's P sits in that P's private slot where the source cannot
// take it, and every read allocated a fresh buffer.)
func (l *loop) getBatch() *batch {
	l.freeMu.Lock()
	defer l.freeMu.Unlock()
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free = l.free[:n-1]
		return b
	}
	return &batch{from: l}
}

// putBatch returns b to its loop's free list. Any goroutine.
func (l *loop) putBatch(b *batch) {
	l.freeMu.Lock()
	if len(l.free) < maxFreeBatches {
		l.free = append(l.free, b)
	}
	l.freeMu.Unlock()
}

// maxFreeBatches bounds the batches a loop keeps for reuse.
const maxFreeBatches = 16

type batchEntry struct {
	dst        *Conn
	start, end int
}

// Run delivers the batch on the destination loop.
func (b *batch) Run(context.Context) error {
	for i, e := range b.entries {
		if !e.dst.closed && !e.dst.closing {
			e.dst.writeNow(b.buf[e.start:e.end])
		}
		e.dst.stall.incoming.Add(-int64(e.end - e.start))
		b.entries[i].dst = nil
	}
	b.to.flush()
	buf := b.buf[:0]
	if cap(buf) > maxKeptBatch {
		buf = nil
	}
	*b = batch{from: b.from, buf: buf, entries: b.entries[:0]}
	b.from.putBatch(b)
	return nil
}

// Loops is the number of event loops the port runs (Config.Loops, or one
// per CPU when that is 0).
func (s *Server) Loops() int { return s.nloops }

// Addr returns the bound address of the listener (useful with port 0).
func (s *Server) Addr() net.Addr { return s.addr }

// boundAddr reads the listener's address from a duplicate of its socket.
// OnBoot calls it, on the goroutine that later closes the listener: a Dup
// from another goroutine races with gnet closing the listener when the
// engine stops on its own.
func boundAddr(eng gnet.Engine) net.Addr {
	fd, err := eng.Dup()
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil
	}
	defer ln.Close()
	return ln.Addr()
}
