package server

import (
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flowmesh/flowmesh/kv"
	"github.com/flowmesh/flowmesh/netpoll"
	"github.com/flowmesh/flowmesh/protocol/resp"
)

// The Redis-compatible port: the same netpoll core as the protocol port,
// a RESP parser, and a command table over the KV engine. Commands run on
// the connection's loop; their replies go out after a barrier of the
// engine's append-only file: one write call for every connection the loop
// read in its turn (netpoll's CommitAfterBarrier), or an fsync the
// engine's syncer shares between connections under the always policy (the
// engine fsyncs every fsync_interval under interval).

// respCmd is one command of the table.
type respCmd struct {
	arity int // as Redis' COMMAND shows it: n exactly, -n at least n (the name counts)
	run   func(c *respConn, args [][]byte)
	write bool
}

// respConn is one Redis client connection.
type respConn struct {
	srv  *Server
	conn *netpoll.Conn
	id   int64
	name string
	w    resp.Writer
	args [][]byte
}

var respIDs atomic.Int64

// KVOps returns how many of each KV command ran, on either port.
func (s *Server) KVOps() map[string]uint64 {
	out := make(map[string]uint64, len(s.respCounts))
	for name, c := range s.respCounts {
		if n := c.Load(); n > 0 {
			out[name] = n
		}
	}
	return out
}

type respHandler Server

// newKVCounts makes one counter per command of the table (both ports
// count into them): a fixed label set.
func newKVCounts() map[string]*atomic.Uint64 {
	m := make(map[string]*atomic.Uint64, len(respCommands))
	for name := range respCommands {
		m[name] = new(atomic.Uint64)
	}
	return m
}

// respLoops is the Redis port's loop count: resp_loops, else loops, else
// half the CPUs (at least one). Half, because its commands are short: a
// loop spends most of its time in system calls, and the per-turn work (the
// barrier's file write, under always its fsync, gnet's wake-ups) is
// shared by the requests that turn read. Fewer, fuller loops do more per
// turn. On 2 cores with redis-benchmark beside the node (docs/benchmarks.md,
// "Event loops and redis-benchmark on 2 cores"), one loop against two:
// SET -P 1 10-30% less CPU per request and 0.83-0.97x Redis instead of
// 0.69-0.95x; under always, SET -P 1 1.02-1.12x Redis instead of
// 0.74-0.86x (12.7-13.3 against 16.5-20.2 µs per SET); pipelined (-P 16)
// the same for SET and 3-4% less for GET, which one loop runs at a full
// core. The native port keeps one loop per CPU: its loops also carry
// pub/sub fan-out, streams and queues.
func respLoops(c Config, cpus int) int {
	switch {
	case c.RESPLoops > 0:
		return c.RESPLoops
	case c.Loops > 0:
		return c.Loops
	}
	return max(1, cpus/2)
}

func (s *Server) listenRESP() (*netpoll.Server, error) {
	return netpoll.Listen(netpoll.Config{
		Addr: s.cfg.RESPAddr, Loops: respLoops(s.cfg, runtime.NumCPU()), MaxConns: s.cfg.MaxConns, MaxPending: s.cfg.MaxPending,
		PingInterval: -1, // Redis clients are not pinged
		FullFrame:    []byte("-ERR max number of clients reached\r\n"),
		DrainFrame:   []byte("-ERR server shutting down\r\n"),
		Logger:       s.log,
	}, (*respHandler)(s))
}

func (h *respHandler) OnOpen(c *netpoll.Conn) []byte {
	c.Session = &respConn{srv: (*Server)(h), conn: c, id: respIDs.Add(1)}
	return nil
}

func (h *respHandler) OnClose(c *netpoll.Conn, err error) {}

// Feed runs every complete command in in. The replies go out only after
// the KV engine's barrier: every write they acknowledge is in the
// append-only file by then (fsynced under the always policy), one write
// call for all the commands the loop read in its turn.
func (h *respHandler) Feed(c *netpoll.Conn, in []byte) (int, int, bool) {
	rc := c.Session.(*respConn)
	s := (*Server)(h)
	lim := resp.Limits{MaxBulk: s.cfg.MaxPayload + 1024, MaxInline: s.cfg.MaxControlLine}
	consumed := 0
	rc.w.B = c.Buf()
	start := len(rc.w.B)
	for consumed < len(in) {
		args, n, need, err := resp.Parse(in[consumed:], rc.args, lim)
		rc.args = args[:0]
		if err != nil {
			s.protoErrors.Add(1)
			rc.w.Error("ERR " + err.Error())
			return len(in), 0, rc.closeAfter(c, start)
		}
		if n == 0 {
			return consumed, need, rc.commit(c, start) // need counts from in[consumed:], what stays buffered
		}
		consumed += n
		if len(args) == 0 {
			continue
		}
		if quit := rc.run(args); quit {
			return len(in), 0, rc.closeAfter(c, start)
		}
	}
	return consumed, 0, rc.commit(c, start)
}

// commit sends the replies written since start once the engine's writes
// are durable; if the append-only file failed, it sends none of them (the
// client cannot tell which writes were kept, as after a crash) and closes
// with the error. It reports whether the connection closes.
func (rc *respConn) commit(c *netpoll.Conn, start int) bool {
	e := rc.srv.kv
	if !e.Durable(e.Position()) {
		// The replies wait for the end of the loop's turn (Barrier
		// below): one write of the file, and under the always policy one
		// fsync, for every connection read meanwhile, as Redis writes and
		// fsyncs its AOF buffer once per event-loop iteration.
		c.CommitAfterBarrier(rc.w.B)
		return false
	}
	c.Commit(rc.w.B)
	return false
}

// Barrier writes the engine's append-only file up to its last record, and
// fsyncs it under the always policy: the replies held with
// CommitAfterBarrier acknowledge nothing that is not in it. The loop waits
// for the fsync: the Redis port's loops carry KV commands alone, and a
// hand-off to the engine's syncer and back (the native port's way, whose
// loops serve every other verb too) cost a quarter to a third more CPU per
// SET and less throughput (docs/benchmarks.md, "KV always"). Loop only
// (netpoll.BarrierHandler).
func (h *respHandler) Barrier() error { return h.kv.Barrier() }

// BarrierFailed closes c without the replies whose writes the file did
// not take. Loop only (netpoll.BarrierHandler).
func (h *respHandler) BarrierFailed(c *netpoll.Conn, err error) {
	rc := c.Session.(*respConn)
	rc.w.B = c.Buf()
	rc.failed(c, len(rc.w.B), err)
}

// failed drops the replies written since start, sends the error and
// closes the connection. Loop only.
func (rc *respConn) failed(c *netpoll.Conn, start int, err error) {
	rc.srv.log.Error("resp: KV writes not durable; closing the connection without their replies", "err", err)
	rc.w.B = rc.w.B[:start]
	rc.w.Error("ERR " + err.Error())
	c.CloseAfter(rc.w.B[start:]) // output held before start is dropped by the failing barrier
}

// closeAfter is commit for the last replies of a connection that closes,
// after a barrier here.
func (rc *respConn) closeAfter(c *netpoll.Conn, start int) bool {
	if err := rc.srv.kv.Barrier(); err != nil {
		rc.failed(c, start, err)
		return true
	}
	c.CloseAfter(rc.w.B[start:])
	return true
}

// run executes one command; it reports whether the client asked to quit.
func (rc *respConn) run(args [][]byte) (quit bool) {
	// The name lowered into a stack buffer: map lookups with string(b)
	// do not allocate, so a command costs no garbage to find.
	var buf [24]byte
	lname := buf[:0]
	if len(args[0]) <= len(buf) {
		for _, c := range args[0] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lname = append(lname, c)
		}
	}
	if string(lname) == "quit" {
		rc.w.OK()
		return true
	}
	cmd, ok := respCommands[string(lname)]
	if !ok {
		var b strings.Builder
		for _, a := range args[1:] {
			if b.Len() > 128 {
				break
			}
			b.WriteString("'" + string(a) + "' ")
		}
		rc.w.Error("ERR unknown command '" + string(args[0]) + "', with args beginning with: " + b.String())
		return false
	}
	if (cmd.arity > 0 && len(args) != cmd.arity) || (cmd.arity < 0 && len(args) < -cmd.arity) {
		rc.w.Error("ERR wrong number of arguments for '" + string(lname) + "' command")
		return false
	}
	rc.srv.respCounts[string(lname)].Add(1)
	cmd.run(rc, args)
	return false
}

// fail writes err as a Redis error: WRONGTYPE carries its own code, the
// rest are ERR.
func (rc *respConn) fail(err error) {
	if errors.Is(err, kv.ErrWrongType) {
		rc.w.Error(kv.ErrWrongType.Error())
		return
	}
	rc.w.Error("ERR " + err.Error())
}

func (s *Server) kvOptions(dir string) kv.Options {
	o := kv.Options{Dir: dir, InMemory: s.cfg.InMemory, Legacy: s.store, Logger: s.log,
		MaxValueBytes: s.cfg.MaxPayload, SyncEach: s.cfg.Fsync == "always"}
	if s.cfg.Fsync == "interval" {
		o.SyncInterval = time.Duration(s.cfg.FsyncInterval)
	}
	return o
}
