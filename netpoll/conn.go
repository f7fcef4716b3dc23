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
func (c *Conn) Buf() []byte { return c.out }

// Commit stores the extended output buffer, schedules the flush and cuts the
// connection if its outbound data passed the cap. Loop only.
func (c *Conn) Commit(b []byte) {
	if c.closed || c.closing {
		c.out = c.out[:0]
		return
	}
	c.out = b
	if !c.dirty {
		c.dirty = true
		c.loop.dirty = append(c.loop.dirty, c)
	}
	if len(c.out)+c.gc.OutboundBuffered() > c.loop.s.cfg.MaxPending {
		c.slowConsumer()
	}
}

// Write appends frame to the output. Loop only.
func (c *Conn) Write(frame []byte) { c.Commit(append(c.out, frame...)) }

// CloseAfter sends frame, flushes, and closes the connection. Loop only.
func (c *Conn) CloseAfter(frame []byte) {
	if c.closed || c.closing {
		return
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
	if len(c.out) == 0 || c.closed {
		return
	}
	n := len(c.out)
	_, _ = c.gc.Write(c.out)
	c.loop.s.out.Add(uint64(n))
	c.lastOut = c.loop.now()
	if cap(c.out) > maxKeptBuf {
		c.out = nil // a burst's buffer is not kept by an idle connection
	} else {
		c.out = c.out[:0]
	}
}

// maxKeptBuf is the largest output buffer a connection keeps between
// flushes; bigger ones are dropped so memory follows load.
const maxKeptBuf = 32 << 10

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
		return dst.out
	}
	return c.loop.outboxes[dst.loop.idx].buf
}

// SendCommit completes a SendBuf. Frames for other loops are batched per
// loop and handed over in one Execute when this loop's work is done.
func (c *Conn) SendCommit(dst *Conn, b []byte) {
	if dst.loop == c.loop {
		dst.Commit(b)
		return
	}
	ob := c.loop.outboxes[dst.loop.idx]
	ob.to = dst.loop
	ob.entries = append(ob.entries, batchEntry{dst: dst, start: len(ob.buf), end: len(b)})
	ob.buf = b
	if !ob.queued {
		ob.queued = true
		c.loop.pendingBoxes = append(c.loop.pendingBoxes, dst.loop.idx)
	}
}

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
}

func (l *loop) now() int64 { return time.Now().UnixNano() }

// flush writes every dirty connection's output and hands each other loop
// its batch. Loop only.
func (l *loop) flush() {
	for i, c := range l.dirty {
		c.flush()
		l.dirty[i] = nil
	}
	l.dirty = l.dirty[:0]
	for _, idx := range l.pendingBoxes {
		ob := l.outboxes[idx]
		l.outboxes[idx] = batchPool.Get().(*batch)
		if err := ob.to.gl.Execute(context.Background(), ob); err != nil {
			l.s.cfg.Logger.Debug("netpoll: delivery batch dropped", "err", err)
		}
	}
	l.pendingBoxes = l.pendingBoxes[:0]
}

// keepalive pings idle connections and closes those that stopped
// answering. It runs on l's own loop.
func (l *loop) keepalive(context.Context) error {
	s := l.s
	now := l.now()
	idle := int64(s.cfg.PingInterval)
	for c := range l.conns {
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
	to      *loop
	buf     []byte
	entries []batchEntry
	queued  bool
}

// batchPool recycles batches with their buffers; a batch that grew past
// maxKeptBuf is left to the collector so one burst does not pin memory.
var batchPool = sync.Pool{New: func() any { return &batch{} }}

type batchEntry struct {
	dst        *Conn
	start, end int
}

// Run delivers the batch on the destination loop.
func (b *batch) Run(context.Context) error {
	for i, e := range b.entries {
		if !e.dst.closed && !e.dst.closing {
			e.dst.Write(b.buf[e.start:e.end])
		}
		b.entries[i].dst = nil
	}
	b.to.flush()
	if cap(b.buf) <= maxKeptBuf {
		*b = batch{buf: b.buf[:0], entries: b.entries[:0]}
		batchPool.Put(b)
	}
	return nil
}

// Addr returns the bound address of the listener (useful with port 0).
func (s *Server) Addr() net.Addr {
	fd, err := s.eng.Dup()
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
