package server

import (
	"math/rand/v2"
	"sync/atomic"

	"github.com/flowmesh/flowmesh/monitor/tracing"
	"github.com/flowmesh/flowmesh/netpoll"
	"github.com/flowmesh/flowmesh/protocol"
	"github.com/flowmesh/flowmesh/server/subject"
)

// NATS core publish/subscribe.
//
// A subscription is created and removed on its session's loop; publishers
// on any loop find it through the subject list and deliver through their
// own loop's per-destination batches (netpoll.SendBuf/SendCommit), so a
// burst to one subscriber is one write, and a burst to another loop is one
// hand-over.

type subscription struct {
	sess    *session
	subject []byte
	queue   string
	sid     []byte
	headers bool          // the subscriber asked for headers in CONNECT
	max     atomic.Uint64 // 0: unlimited
	count   atomic.Uint64 // messages delivered
	gone    atomic.Bool
}

var noRespondersHdr = []byte("NATS/1.0 503\r\n\r\n")

func (s *session) subscribe(f *protocol.Frame) {
	subj, queue, sid := f.Args[0], []byte(nil), f.Args[len(f.Args)-1]
	if len(f.Args) == 3 {
		queue = f.Args[1]
	}
	if !subject.ValidSubscribe(subj) {
		s.replyErr(protocol.Errorf(protocol.CodeBadSubject, "%q", subj))
		return
	}
	// A queue group's name is any token, as in nats-server ("workers.*"
	// included): refusing one cost a nats.go client its connection.
	if s.subs == nil {
		s.subs = make(map[string]*subscription)
	}
	if _, dup := s.subs[string(sid)]; dup {
		// NATS ignores a repeated sid; so do we, keeping the first.
		s.ok()
		return
	}
	sub := &subscription{sess: s, subject: append([]byte(nil), subj...), queue: string(queue),
		sid: append([]byte(nil), sid...)}
	s.subs[string(sub.sid)] = sub
	s.srv.subs.Insert(sub.subject, sub.queue, sub)
	s.ok()
}

func (s *session) unsubscribe(f *protocol.Frame) {
	sid := f.Args[0]
	sub := s.subs[string(sid)]
	if sub == nil {
		// nats-server ignores an unknown sid silently; FlowMesh says so in
		// verbose mode only, to stay wire-compatible with clients that
		// unsubscribe twice.
		if s.verbose {
			s.replyErr(protocol.Errorf(protocol.CodeBadSid, "%q", sid))
		}
		return
	}
	if len(f.Args) == 2 {
		max := protocol.ParseUint(f.Args[1])
		if max < 0 {
			s.replyErr(protocol.Errorf(protocol.CodeBadArgs, "UNSUB max %q is not a number", f.Args[1]))
			return
		}
		if max > 0 && sub.count.Load() < uint64(max) {
			sub.max.Store(uint64(max))
			s.ok()
			return
		}
	}
	s.removeSub(sub)
	s.ok()
}

func (s *session) removeSub(sub *subscription) {
	if sub.gone.Swap(true) {
		return
	}
	s.srv.subs.Remove(sub.subject, sub.queue, sub)
	delete(s.subs, string(sub.sid))
}

func (s *session) publish(f *protocol.Frame) {
	subj := f.Args[0]
	var reply []byte
	if len(f.Args) == 2 {
		reply = f.Args[1]
	}
	// Only a pedantic client's subjects are checked, as nats-server does:
	// NATS clients connect with pedantic off and close their connection on
	// an error they do not know, so one publish to "orders.*" would cost a
	// nats.go client its connection. Not pedantic, a wildcard is a literal
	// token and an empty token reaches nobody (subject.List.Match).
	if s.pedantic {
		if !subject.ValidPublish(subj) {
			s.replyErr(protocol.Errorf(protocol.CodeBadPublishSubject, "%q", subj))
			return
		}
		if reply != nil && !subject.ValidPublish(reply) {
			s.replyErr(protocol.Errorf(protocol.CodeBadPublishSubject, "reply subject %q", reply))
			return
		}
	}
	s.srv.msgsIn.Add(1)
	hdr := f.Header
	var sp tracing.Span
	if s.srv.tracer != nil {
		sp, hdr = s.srv.traceIn(tracing.Publish, string(subj), hdr, nil) // delivered, not stored: no limit past the parser's
	}
	r := s.srv.subs.Match(subj)
	delivered := 0
	for _, sub := range r.Plain {
		if s.deliver(sub, subj, reply, hdr, f.Payload) {
			delivered++
		}
	}
	for _, group := range r.Groups {
		if s.deliverGroup(group, subj, reply, hdr, f.Payload) {
			delivered++
		}
	}
	if sp.Recording() {
		sp.Set(tracing.Subscribers.Int(delivered))
	}
	sp.End(nil)
	if delivered == 0 && reply != nil && s.noResponders && s.headers {
		s.noRespondersStatus(reply)
	}
	s.ok()
}

// deliverGroup gives the message to one member of a queue group, starting
// at a random member so load spreads; members that cannot take it (closed,
// at their max, our own with echo off) are skipped.
func (s *session) deliverGroup(group []*subscription, subj, reply, hdr, payload []byte) bool {
	start := rand.IntN(len(group))
	for i := range group {
		if s.deliver(group[(start+i)%len(group)], subj, reply, hdr, payload) {
			return true
		}
	}
	return false
}

// deliver writes one MSG/HMSG to sub's connection and reports whether it did.
func (s *session) deliver(sub *subscription, subj, reply, hdr, payload []byte) bool {
	dst := sub.sess
	if dst == s && !s.echo || sub.gone.Load() {
		return false
	}
	if max := sub.max.Load(); max > 0 {
		n := sub.count.Add(1)
		if n > max {
			return false
		}
		if n == max {
			sub.gone.Store(true)
			s.srv.subs.Remove(sub.subject, sub.queue, sub)
			_ = dst.conn.Execute(func(*netpoll.Conn) { delete(dst.subs, string(sub.sid)) })
		}
	} else {
		sub.count.Add(1)
	}
	if !dst.wantsHeaders.Load() {
		hdr = nil // a client that did not ask for headers gets the payload only, as from NATS
	}
	buf := s.conn.SendBuf(dst.conn)
	buf = protocol.AppendMsg(buf, subj, sub.sid, reply, hdr, payload)
	s.conn.SendCommit(dst.conn, buf)
	s.srv.msgsOut.Add(1)
	return true
}

// noRespondersStatus tells a requester that nobody listens on the subject:
// an HMSG with status 503 on its own reply subscription, as nats-server does.
func (s *session) noRespondersStatus(reply []byte) {
	r := s.srv.subs.Match(reply)
	for _, sub := range r.Plain {
		if sub.sess == s {
			buf := protocol.AppendMsg(s.conn.Buf(), reply, sub.sid, nil, noRespondersHdr, nil)
			s.conn.Commit(buf)
			return
		}
	}
}
