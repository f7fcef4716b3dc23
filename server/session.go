package server

import (
	"encoding/json"
	"sync/atomic"

	"github.com/flowmesh/flowmesh/netpoll"
	"github.com/flowmesh/flowmesh/protocol"
	"github.com/flowmesh/flowmesh/queue"
)

// session is one client connection's protocol state. It lives on the
// connection's loop: every field is touched only there, except subs'
// entries, which publishers on other loops read through the subject list.
type session struct {
	srv     *Server
	conn    *netpoll.Conn
	parser  *protocol.Parser
	frame   protocol.Frame
	replies replyQueue
	done    completions // deferred replies completed off the loop, not yet filled
	scratch []byte
	call    Call

	// CONNECT options (lang and version are accepted and not kept).
	// pedantic: publish subjects are checked (a bad one is an error);
	// true until a CONNECT says otherwise, as in nats-server, and NATS
	// clients say false.
	verbose, pedantic, headers, echo, noResponders bool
	name                                           string // for log lines

	subs  map[string]*subscription // by sid
	ssubs map[string]*streamSub    // stream group memberships, by sid
	qsubs map[string]*queueSub     // queue consumers, by sid
	// polled: the queues this connection long-polled (QGET wait=), told at
	// close so that a wait it leaves ends then, not at its deadline.
	polled map[*queue.Queue]struct{}

	worker *queue.Worker // set by QWORKER
	kvc    *respConn     // runs this connection's KV commands; made by its first
	gone   atomic.Bool   // the connection closed (read by engines' goroutines)

	// wantsHeaders mirrors headers for publishers on other loops, which
	// read it when they deliver to this session.
	wantsHeaders atomic.Bool
}

// connectOpts is the CONNECT JSON. Fields FlowMesh does not use (auth,
// tls_required, ...) are accepted and ignored, as a NATS server without
// those features does.
type connectOpts struct {
	Verbose      bool   `json:"verbose"`
	Pedantic     *bool  `json:"pedantic"`
	Headers      bool   `json:"headers"`
	Echo         *bool  `json:"echo"`
	NoResponders bool   `json:"no_responders"`
	Name         string `json:"name"`
	Lang         string `json:"lang"`
	Version      string `json:"version"`
	Protocol     int    `json:"protocol"`
}

func newSession(srv *Server, c *netpoll.Conn) *session {
	return &session{srv: srv, conn: c, parser: protocol.NewParser(srv.table, srv.limits), echo: true, pedantic: true}
}

// Feed parses and dispatches every complete command in in.
func (s *session) Feed(in []byte) (consumed, need int, closeConn bool) {
	for consumed < len(in) {
		n, nd, err := s.parser.Next(in[consumed:], &s.frame)
		if err != nil {
			s.srv.protoErrors.Add(1)
			s.srv.logClientError(s, err)
			if err.Fatal() {
				// The stream cannot be trusted: say why, then close. Replies
				// still outstanding are dropped with the connection.
				s.conn.CloseAfter(protocol.AppendError(nil, err))
				return len(in), 0, true
			}
			s.replyErr(err)
			consumed += n
			continue
		}
		if n == 0 {
			return consumed, nd, false
		}
		consumed += n
		s.dispatch(&s.frame)
		if s.conn.Closed() {
			return len(in), 0, true
		}
	}
	return consumed, 0, false
}

func (s *session) dispatch(f *protocol.Frame) {
	switch f.Verb {
	case protocol.VerbPing:
		s.scratch = protocol.AppendPong(s.scratch[:0])
		s.sendReply(s.scratch)
	case protocol.VerbPong:
		// Keepalive answered; netpoll already counted the traffic.
	case protocol.VerbConnect:
		s.connect(f)
	case protocol.VerbPub, protocol.VerbHPub:
		s.publish(f)
	case protocol.VerbSub:
		s.subscribe(f)
	case protocol.VerbUnsub:
		s.unsubscribe(f)
	default:
		h := s.srv.handler(f.Verb)
		if h == nil {
			s.replyErr(protocol.Errorf(protocol.CodeUnknownVerb, "%q has no handler", f.Name))
			return
		}
		s.call = Call{s: s, Frame: f}
		h(&s.call)
		if !s.call.answered {
			panic("server: handler for " + string(f.Name) + " returned without a reply")
		}
	}
}

func (s *session) connect(f *protocol.Frame) {
	var o connectOpts
	if len(f.Args) == 0 {
		s.replyErr(protocol.Errorf(protocol.CodeBadConnect, "CONNECT needs a JSON object"))
		return
	}
	if err := json.Unmarshal(f.Args[0], &o); err != nil {
		s.replyErr(protocol.Errorf(protocol.CodeBadConnect, "%v", err))
		return
	}
	s.verbose, s.headers, s.noResponders = o.Verbose, o.Headers, o.NoResponders
	s.wantsHeaders.Store(o.Headers)
	s.echo = o.Echo == nil || *o.Echo
	if o.Pedantic != nil {
		s.pedantic = *o.Pedantic
	}
	s.name = o.Name
	s.ok()
}

// ok acknowledges a NATS core command in verbose mode.
func (s *session) ok() {
	if s.verbose {
		s.scratch = protocol.AppendOK(s.scratch[:0])
		s.sendReply(s.scratch)
	}
}

func (s *session) replyErr(e *protocol.Error) {
	s.scratch = protocol.AppendError(s.scratch[:0], e)
	s.sendReply(s.scratch)
}

// sendReply sends a complete reply in order: straight to the output when
// nothing is outstanding, else behind the outstanding replies.
func (s *session) sendReply(frame []byte) {
	if s.replies.idle() {
		s.conn.Write(frame)
		return
	}
	s.replies.queueDone(frame)
}

func (s *session) close() {
	s.gone.Store(true)
	s.leaveStreams()
	s.leaveQueues()
	for q := range s.polled {
		q.ReserverGone()
	}
	if s.worker != nil {
		s.worker.Leave()
	}
	for sid, sub := range s.subs {
		s.srv.subs.Remove(sub.subject, sub.queue, sub)
		delete(s.subs, sid)
	}
}

// Call is one engine command being handled: its frame and the means to
// answer it exactly once, now (OK, Err, Res) or later (Defer).
//
// Frame's slices are valid only until the handler returns; a handler that
// defers must copy what it keeps.
type Call struct {
	s        *session
	Frame    *protocol.Frame
	answered bool
}

func (c *Call) answer() {
	if c.answered {
		panic("server: command answered twice")
	}
	c.answered = true
}

// OK answers +OK [args].
func (c *Call) OK(args ...[]byte) {
	c.answer()
	c.s.scratch = protocol.AppendOK(c.s.scratch[:0], args...)
	c.s.sendReply(c.s.scratch)
}

// Err answers -ERR.
func (c *Call) Err(e *protocol.Error) {
	c.answer()
	c.s.replyErr(e)
}

// Res answers with a RES frame carrying a payload.
func (c *Call) Res(args [][]byte, hdr, payload []byte) {
	c.answer()
	c.s.scratch = protocol.AppendRes(c.s.scratch[:0], args, hdr, payload)
	c.s.sendReply(c.s.scratch)
}

// Defer reserves the reply's place and returns a Pending to complete it
// from any goroutine. Commands after this one are answered after it.
func (c *Call) Defer() Pending {
	c.answer()
	c.s.srv.inflight.add()
	seq := c.s.replies.reserve()
	if len(c.s.replies.slots) > c.s.srv.cfg.MaxInflight {
		c.s.conn.HoldReads() // released by replyQueue.fill
	}
	return Pending{sess: c.s, seq: seq}
}
