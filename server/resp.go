package server

import (
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flowmesh/flowmesh/kv"
	"github.com/flowmesh/flowmesh/netpoll"
	"github.com/flowmesh/flowmesh/protocol/resp"
)

// The Redis-compatible port: the same netpoll core as the protocol port,
// a RESP parser, and a command table over the KV engine. Commands run on
// the connection's loop and answer at once: a KV write is one Pebble
// commit, which under the interval and none policies does not wait for the
// disk (the engine fsyncs Pebble's WAL every fsync_interval).

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

func (s *Server) listenRESP() (*netpoll.Server, error) {
	return netpoll.Listen(netpoll.Config{
		Addr: s.cfg.RESPAddr, Loops: s.cfg.Loops, MaxConns: s.cfg.MaxConns, MaxPending: s.cfg.MaxPending,
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

// Feed runs every complete command in in.
func (h *respHandler) Feed(c *netpoll.Conn, in []byte) (int, int, bool) {
	rc := c.Session.(*respConn)
	s := (*Server)(h)
	lim := resp.Limits{MaxBulk: s.cfg.MaxPayload + 1024, MaxInline: s.cfg.MaxControlLine}
	consumed := 0
	rc.w.B = c.Buf()
	for consumed < len(in) {
		args, n, need, err := resp.Parse(in[consumed:], rc.args, lim)
		rc.args = args[:0]
		if err != nil {
			s.protoErrors.Add(1)
			rc.w.Error("ERR " + err.Error())
			c.CloseAfter(rc.w.B)
			return len(in), 0, true
		}
		if n == 0 {
			c.Commit(rc.w.B)
			return consumed, need, false // need counts from in[consumed:], what stays buffered
		}
		consumed += n
		if len(args) == 0 {
			continue
		}
		if quit := rc.run(args); quit {
			c.CloseAfter(rc.w.B)
			return len(in), 0, true
		}
	}
	c.Commit(rc.w.B)
	return consumed, 0, false
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

func (s *Server) kvOptions() kv.Options {
	o := kv.Options{Store: s.store, Logger: s.log, MaxValueBytes: s.cfg.MaxPayload}
	if s.cfg.Fsync == "interval" {
		o.SyncInterval = time.Duration(s.cfg.FsyncInterval)
	}
	return o
}
