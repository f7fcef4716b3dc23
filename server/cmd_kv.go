package server

import (
	"bytes"

	"github.com/flowmesh/flowmesh/protocol"
	"github.com/flowmesh/flowmesh/protocol/resp"
)

// KV on the native port: KV (tokens, for nc) and KVB (a RESP array, for
// SDKs) run a command of the Redis port's table on the connection's loop
// and answer RES with its RESP3 reply, or -ERR in the native catalog.

func (s *Server) registerKV() {
	s.Handle(protocol.KVSpecs()[0], func(c *Call) { s.kvRun(c, c.Frame.Args) })
	s.Handle(protocol.KVSpecs()[1], s.kvBinary)
}

func (s *Server) kvBinary(c *Call) {
	p := c.Frame.Payload
	args, n, _, err := resp.Parse(p, nil, resp.Limits{MaxBulk: len(p), MaxInline: len(p) + 1})
	if err != nil || n != len(p) || len(args) == 0 {
		c.Err(badArgs("KVB payload is not one RESP array of bulk strings"))
		return
	}
	s.kvRun(c, args)
}

// notOnNative are the Redis port's connection commands: the native port
// has its own (CONNECT, PING) and no databases to select.
var notOnNative = map[string]bool{"hello": true, "client": true, "select": true, "quit": true}

func (s *Server) kvRun(c *Call, args [][]byte) {
	name := lower(args[0])
	if notOnNative[name] {
		c.Err(badArgs("%s is a command of the Redis port, not of KV", name))
		return
	}
	rc := c.s.kvc
	if rc == nil {
		rc = &respConn{srv: s, conn: c.s.conn, id: respIDs.Add(1)}
		rc.w.RESP3 = true
		c.s.kvc = rc
	}
	rc.w.B = rc.w.B[:0]
	rc.run(args)
	e := s.kv
	if pos := e.Position(); e.SyncsEach() && !e.Durable(pos) {
		// Under always, the reply waits for the fsync off the loop (the
		// session keeps later replies behind it); one fsync serves every
		// connection that wrote meanwhile.
		out := bytes.Clone(rc.w.B)
		p := c.Defer()
		e.AfterDurable(pos, func(err error) { kvReply(p.Err, p.Res, out, err) })
		return
	}
	hold := !e.Durable(e.Position())
	kvReply(c.Err, c.Res, rc.w.B, nil)
	if hold {
		// The reply is in the connection's output (or queued behind
		// outstanding ones) and leaves only after the loop's barrier: one
		// write of the file for every connection the loop read in its turn.
		conn := c.s.conn
		conn.CommitAfterBarrier(conn.Buf())
	}
}

// kvReply answers a KV command with its RESP reply out, once its writes
// are past the engine's barrier (err: they are not, no success reply).
func kvReply(fail func(*protocol.Error), res func(args [][]byte, hdr, payload []byte), out []byte, err error) {
	switch {
	case err != nil:
		// The write is applied in memory but not durable: no success
		// reply for it.
		fail(protocol.Errorf(protocol.CodeStorage, "KV write not durable: %v", err))
	case len(out) > 0 && out[0] == '-':
		fail(nativeKVError(out[1 : len(out)-2]))
	default:
		res(nil, nil, out)
	}
}

// nativeKVError maps a Redis error reply to the native catalog.
func nativeKVError(msg []byte) *protocol.Error {
	msg = bytes.TrimSpace(msg)
	if rest, ok := bytes.CutPrefix(msg, []byte("WRONGTYPE ")); ok {
		return protocol.Errorf(protocol.CodeWrongType, "%s", rest)
	}
	text := string(bytes.TrimPrefix(msg, []byte("ERR ")))
	for _, m := range kvErrorCodes {
		if bytes.Contains(msg, []byte(m.substr)) {
			return protocol.Errorf(m.code, "%s", text)
		}
	}
	return protocol.Errorf(protocol.CodeBadArgs, "%s", text)
}

var kvErrorCodes = []struct {
	substr string
	code   protocol.Code
}{
	{"not an integer", protocol.CodeBadValue},
	{"not a valid float", protocol.CodeBadValue},
	{"is not a float", protocol.CodeBadValue},
	{"would overflow", protocol.CodeBadValue},
	{"NaN", protocol.CodeBadValue},
	{"no such key", protocol.CodeNotFound},
	{"too large", protocol.CodeTooLarge},
}
