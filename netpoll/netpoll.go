package netpoll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowmesh/flowmesh/internal/fdlimit"
	"github.com/flowmesh/flowmesh/internal/repeatlog"
	"github.com/panjf2000/gnet/v2"
)

// Handler is what a port does with its connections. All methods run on the
// connection's loop and must not block.
type Handler interface {
	// OnOpen is called for a new connection; it returns the greeting to send.
	OnOpen(c *Conn) []byte
	// Feed receives every byte buffered for c. It returns how many it
	// consumed, the smallest total buffered length worth calling it again
	// with (0: any new byte), and whether to close c after flushing.
	Feed(c *Conn, in []byte) (consumed, need int, closeConn bool)
	// OnClose is called once when c is gone, with the reason if any.
	OnClose(c *Conn, err error)
}

// BarrierHandler is a Handler some of whose output may leave only after a
// barrier, such as the KV port's replies, which acknowledge writes that
// must reach the append-only file first. Feed commits such output with
// Conn.CommitAfterBarrier; the loop then calls Barrier once for all the
// connections that did so in its turn (one file write instead of one per
// connection) and sends their output after it.
type BarrierHandler interface {
	Handler
	// Barrier runs on the loop; the held output is sent once it returns nil.
	Barrier() error
	// BarrierFailed is called for each connection whose held output was
	// dropped because Barrier failed; it sends what the client should see
	// and closes c.
	BarrierFailed(c *Conn, err error)
}

// Config configures a Server. Zero values take the defaults noted.
type Config struct {
	Addr         string        // host:port to listen on
	Loops        int           // event loops; default: one per CPU
	MaxConns     int           // default 65536
	MaxPending   int           // outbound bytes per connection before it is a slow consumer; default 64 MiB
	PingInterval time.Duration // idle time before a keepalive PING; default 2 min; <0 disables
	MaxPingsOut  int           // unanswered PINGs before the connection is stale; default 2
	StallBytes   int           // a destination's backlog that pauses its producers; default min(MaxPending/2, 4 MiB); <0 disables
	MaxStall     time.Duration // how long a backed-up destination may stall producers; default 1s
	PingFrame    []byte        // the keepalive PING
	StaleFrame   []byte        // sent before closing a stale connection
	SlowFrame    []byte        // sent before closing a slow consumer
	FullFrame    []byte        // sent to a connection over MaxConns
	DrainFrame   []byte        // sent to a connection arriving during shutdown
	Logger       *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxConns <= 0 {
		c.MaxConns = 65536
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 64 << 20
	}
	if c.PingInterval == 0 {
		c.PingInterval = 2 * time.Minute
	}
	if c.MaxPingsOut <= 0 {
		c.MaxPingsOut = 2
	}
	if c.StallBytes == 0 {
		c.StallBytes = min(c.MaxPending/2, 4<<20)
	}
	if c.MaxStall <= 0 {
		c.MaxStall = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Stats are the port's counters.
type Stats struct {
	Conns         int64 // open now
	TotalConns    uint64
	Rejected      uint64 // over MaxConns or during shutdown
	SlowConsumers uint64
	StaleConns    uint64
	Stalls        uint64 // times a producer was paused for a backed-up destination
	Holds         uint64 // times a connection's reads were held for its own backlog
	BytesIn       uint64
	BytesOut      uint64
}

// Server is one listening port.
type Server struct {
	cfg     Config
	h       Handler
	eng     gnet.Engine
	addr    net.Addr // the bound address, set by OnBoot
	booted  chan struct{}
	done    chan error
	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loop
	list    []*loop // loops seen so far, in index order; read under loopsMu
	nloops  int
	drain   atomic.Bool
	nextID  atomic.Uint64

	conns                                                atomic.Int64
	total, rejected, slow, stale, in, out, stalls, holds atomic.Uint64

	stopped chan struct{}          // closed when the port stopped serving on its own
	failed  atomic.Pointer[error]  // why it did
	gnetErr atomic.Pointer[string] // the first error gnet logged
	fdLog   repeatlog.Log          // connections refused near the open-file limit
}

// connHeadroom is how many descriptors a new connection must leave free,
// else it is refused like one over MaxConns. gnet stops the whole port
// (every connection, and the listener for good) when accept(2) fails with
// EMFILE, so connections must never take the last descriptors: the log
// files, Pebble and the acceptor itself need them.
const connHeadroom = 128

// Listen starts serving cfg.Addr with h and returns once the port accepts
// connections.
func Listen(cfg Config, h Handler) (*Server, error) {
	cfg.setDefaults()
	s := &Server{cfg: cfg, h: h, booted: make(chan struct{}), done: make(chan error, 1),
		loops: make(map[gnet.EventLoop]*loop), stopped: make(chan struct{})}
	if lim := fdlimit.Limit(); cfg.MaxConns > lim-connHeadroom {
		cfg.Logger.Warn("netpoll: max_connections is above what the open-file limit allows; connections past the limit are refused",
			"addr", cfg.Addr, "max_connections", cfg.MaxConns, "open_file_limit", lim, "kept_free", connHeadroom)
	}
	s.nloops = cfg.Loops
	if s.nloops <= 0 {
		s.nloops = runtime.NumCPU() // what gnet's WithMulticore uses
	}
	reserveProc(s.nloops, cfg.Logger)
	opts := []gnet.Option{
		gnet.WithMulticore(cfg.Loops <= 0),
		gnet.WithReusePort(false),
		gnet.WithReuseAddr(true), // a restarted node rebinds while old sockets sit in TIME_WAIT
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithTicker(true),
		gnet.WithLogger(gnetLogger{cfg.Logger, &s.gnetErr}),
	}
	if cfg.Loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(cfg.Loops))
	}
	go func() {
		err := gnet.Run(&events{s: s}, "tcp://"+cfg.Addr, opts...)
		if !s.drain.Load() {
			// Not asked to stop: gnet gave up (its acceptor stops the
			// engine on any accept error but a few transient ones).
			if err == nil {
				err = errors.New("event loops stopped")
				if first := s.gnetErr.Load(); first != nil {
					err = fmt.Errorf("event loops stopped after: %s", *first)
				}
			}
			addr := cfg.Addr
			if s.addr != nil { // set by OnBoot, on this goroutine
				addr = s.addr.String()
			}
			err = fmt.Errorf("netpoll: port %s stopped: %w", addr, err)
			s.failed.Store(&err)
			close(s.stopped)
		}
		s.done <- err
	}()
	select {
	case <-s.booted:
		return s, nil
	case err := <-s.done:
		return nil, fmt.Errorf("netpoll: listen on %s: %w", cfg.Addr, err)
	}
}

// reserveProc makes GOMAXPROCS at least one more than the event loops.
// An idle loop blocks in epoll_wait, a syscall that keeps its P; with one
// loop per P, all Ps can sit in epoll_wait at once, and then nothing runs
// the runtime's timers or a goroutine woken by an fsync until sysmon takes
// a P back, which it does after up to 10 ms. Measured: delayed jobs became
// ready 7.8 ms late at p99 (max 16 ms) with GOMAXPROCS=2 and two loops,
// 1.1 ms (max 1.2 ms) with GOMAXPROCS=3. The extra P costs nothing while
// the loops wait in the kernel.
func reserveProc(loops int, log *slog.Logger) {
	if n := runtime.GOMAXPROCS(0); n <= loops {
		runtime.GOMAXPROCS(loops + 1)
		log.Debug("netpoll: GOMAXPROCS raised above the event loops", "from", n, "to", loops+1)
	}
}

// Stopped is closed when the port stopped serving without Shutdown (every
// connection is closed and nothing is accepted any more); Err says why.
func (s *Server) Stopped() <-chan struct{} { return s.stopped }

// Err is why the port stopped on its own, or nil.
func (s *Server) Err() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{Conns: s.conns.Load(), TotalConns: s.total.Load(), Rejected: s.rejected.Load(),
		SlowConsumers: s.slow.Load(), StaleConns: s.stale.Load(), Stalls: s.stalls.Load(), Holds: s.holds.Load(), BytesIn: s.in.Load(), BytesOut: s.out.Load()}
}

// Shutdown stops accepting connections (new ones get DrainFrame and are
// closed), flushes what every connection has buffered, waits for the
// sockets to drain until ctx is done, then closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.drain.Swap(true) {
		return errors.New("netpoll: already shut down")
	}
	if s.Err() != nil {
		return nil // nothing left to drain or stop; the failure was reported
	}
	for {
		pending := s.pendingOut(ctx)
		if pending == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond): // sockets drain on their own; no event says when
		}
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.eng.Stop(stopCtx)
	if runErr := <-s.done; err == nil && runErr != nil && !errors.Is(runErr, context.Canceled) {
		err = runErr
	}
	return err
}

// pendingOut flushes every loop and returns the outbound bytes still queued.
func (s *Server) pendingOut(ctx context.Context) int {
	s.loopsMu.Lock()
	loops := append([]*loop(nil), s.list...)
	s.loopsMu.Unlock()
	var total atomic.Int64
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		err := l.gl.Execute(ctx, gnet.RunnableFunc(func(context.Context) error {
			defer wg.Done()
			l.flush()
			for c := range l.conns {
				total.Add(int64(len(c.out) + c.gc.OutboundBuffered()))
			}
			return nil
		}))
		if err != nil {
			wg.Done()
		}
	}
	wg.Wait()
	return int(total.Load())
}

// loopOf returns the state of gl, creating it on first sight. Called from
// OnOpen only, so the lock is off the hot path.
func (s *Server) loopOf(gl gnet.EventLoop) *loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	l := s.loops[gl]
	if l == nil {
		if len(s.list) == s.nloops {
			panic("netpoll: more event loops than configured")
		}
		l = &loop{s: s, gl: gl, idx: len(s.list), conns: make(map[*Conn]struct{}),
			outboxes: make([]*batch, s.nloops)}
		for i := range l.outboxes {
			l.outboxes[i] = &batch{from: l}
		}
		l.barrierTask = l.runBarrier
		s.loops[gl] = l
		s.list = append(s.list, l)
	}
	return l
}

// events is the gnet.EventHandler.
type events struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (e *events) OnBoot(eng gnet.Engine) gnet.Action {
	e.s.eng = eng
	e.s.addr = boundAddr(eng)
	close(e.s.booted)
	return gnet.None
}

func (e *events) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := e.s
	if s.drain.Load() {
		s.rejected.Add(1)
		return s.cfg.DrainFrame, gnet.Close
	}
	if s.conns.Add(1) > int64(s.cfg.MaxConns) {
		s.conns.Add(-1)
		s.rejected.Add(1)
		return s.cfg.FullFrame, gnet.Close
	}
	if free := fdlimit.Free(gc.Fd()); free < connHeadroom {
		s.conns.Add(-1)
		s.rejected.Add(1)
		s.fdLog.Log(s.cfg.Logger, slog.LevelWarn, "netpoll: connection refused; raise the open-file limit (ulimit -n, LimitNOFILE)",
			fmt.Errorf("open-file limit %d nearly reached (%d descriptors kept free)", fdlimit.Limit(), connHeadroom),
			"addr", s.cfg.Addr, "conns", s.conns.Load(), "fd", gc.Fd())
		return s.cfg.FullFrame, gnet.Close
	}
	s.total.Add(1)
	l := s.loopOf(gc.EventLoop())
	c := &Conn{gc: gc, loop: l, id: s.nextID.Add(1), lastIn: l.now()}
	gc.SetContext(c)
	l.conns[c] = struct{}{}
	greeting := s.h.OnOpen(c)
	if c.closing {
		return greeting, gnet.Close
	}
	s.out.Add(uint64(len(greeting)))
	return greeting, gnet.None
}

func (e *events) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*Conn)
	if c == nil {
		return gnet.Close
	}
	if c.closing {
		_, _ = gc.Discard(-1)
		return gnet.Close
	}
	c.lastIn = c.loop.now()
	c.pingsOut = 0
	n := gc.InboundBuffered()
	if n < c.need {
		return gnet.None // a large payload is still arriving
	}
	buf, _ := gc.Peek(-1)
	consumed, need, closeIt := e.s.h.Feed(c, buf)
	if consumed > 0 {
		// Never Discard(0): gnet reads n <= 0 as "discard everything",
		// which dropped a frame whose control line came in one read and
		// its payload in the next.
		_, _ = gc.Discard(consumed)
	}
	e.s.in.Add(uint64(consumed))
	c.need = need
	c.loop.flush()
	if closeIt || c.closing {
		c.closing = true
		return gnet.Close
	}
	c.applyStall()
	c.applyHold()
	return gnet.None
}

func (e *events) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, _ := gc.Context().(*Conn)
	if c == nil {
		return gnet.None
	}
	c.closed = true
	delete(c.loop.conns, c)
	e.s.conns.Add(-1)
	e.s.h.OnClose(c, err)
	return gnet.None
}

// OnTick runs on one loop; each loop checks its own connections.
func (e *events) OnTick() (time.Duration, gnet.Action) {
	s := e.s
	tick := time.Second
	if s.cfg.PingInterval > 0 && s.cfg.PingInterval/2 < tick {
		tick = s.cfg.PingInterval / 2
	}
	if s.cfg.PingInterval < 0 || s.drain.Load() {
		return tick, gnet.None
	}
	s.loopsMu.Lock()
	loops := append([]*loop(nil), s.list...)
	s.loopsMu.Unlock()
	for _, l := range loops {
		_ = l.gl.Execute(context.Background(), gnet.RunnableFunc(l.keepalive))
	}
	return tick, gnet.None
}

// gnetLogger routes gnet's logging to slog and keeps its first error: gnet
// logs why an engine stops (an accept(2) failure, say) and returns nil
// from Run.
type gnetLogger struct {
	l     *slog.Logger
	first *atomic.Pointer[string]
}

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) {
	msg := fmt.Sprintf(f, a...)
	g.first.CompareAndSwap(nil, &msg)
	g.l.Error("gnet: " + msg)
}
func (g gnetLogger) Fatalf(f string, a ...any) { g.Errorf("fatal: "+f, a...) }
