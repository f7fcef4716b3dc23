package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flowmesh/flowmesh/monitor/tracing"
	"github.com/flowmesh/flowmesh/netpoll"
	"github.com/flowmesh/flowmesh/protocol"
	"github.com/flowmesh/flowmesh/stream"
)

// Stream verbs: thin adapters from frames to the stream engine, on the
// connection's loop.
//
// What runs where is a choice between ordering and the loop's time:
//   - Writes go straight to the engine, which copies the payload once into
//     the log batch and completes the reply from the log's writer.
//   - Commands that change metadata (TCREATE, TALTER, TDELETE, SSUB,
//     SUNSUB, SCOMMIT, GRESET, GDELETE) run on the loop, so a pipelined
//     "TCREATE x; SWRITE x" or "SCOMMIT; SUNSUB" takes effect in order. Each
//     costs a Pebble write (an fsync under fsync=always) and is rare next
//     to writes; TDELETE renames the topic away and removes its files in
//     the background.
//   - Queries that read the log (SREAD, SSEEK, GINFO, GLIST) run on their
//     own goroutine behind a Pending: they see every metadata change sent
//     before them, and writes once acknowledged. They may also see a
//     change pipelined after them (it runs on the loop meanwhile);
//     docs/protocol.md says so. GINFO stays off the loop all the same: for
//     a group without live members it reads each partition's offset from
//     Pebble (up to 1024 reads).

func (s *Server) registerStream() {
	h := map[protocol.Verb]HandlerFunc{
		protocol.VerbTCreate: s.tcreate, protocol.VerbTAlter: s.talter, protocol.VerbTDelete: s.tdelete,
		protocol.VerbTList: s.tlist, protocol.VerbTInfo: s.tinfo,
		protocol.VerbSWrite: s.swrite, protocol.VerbSRead: s.sread, protocol.VerbSSeek: s.sseek,
		protocol.VerbSSub: s.ssub, protocol.VerbSAck: s.sack, protocol.VerbSCommit: s.scommit,
		protocol.VerbSHb: s.shb, protocol.VerbSUnsub: s.sunsub,
		protocol.VerbGInfo: s.ginfo, protocol.VerbGList: s.glist, protocol.VerbGReset: s.greset,
		protocol.VerbGDelete: s.gdelete,
	}
	for _, spec := range protocol.StreamSpecs() {
		s.Handle(spec, h[spec.ID])
	}
}

// errCode maps one engine sentinel error to its wire code. titled: the
// wire title already says what the sentinel's text says, so the detail
// drops that text and keeps the rest.
type errCode struct {
	err    error
	code   protocol.Code
	titled bool
}

// engineErr maps an engine error through its engine's table. A
// *protocol.Error (a bad setting found by the server's own parsing) passes
// through; an error in no table is the disk's: a failed write (full, I/O
// error), of which nothing was acknowledged.
func engineErr(err error, table []errCode, prefix string) *protocol.Error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	detail := err.Error()
	code := protocol.CodeStorage
	for _, e := range table {
		if errors.Is(err, e.err) {
			if e.titled {
				detail = strings.TrimPrefix(detail, e.err.Error()+": ")
			}
			code = e.code
			break
		}
	}
	return &protocol.Error{Code: code, Detail: strings.TrimPrefix(detail, prefix)}
}

var streamErrors = []errCode{
	{stream.ErrTopicNotFound, protocol.CodeNotFound, false},
	{stream.ErrPartitionNotFound, protocol.CodeNotFound, false},
	{stream.ErrGroupNotFound, protocol.CodeNotFound, false},
	{stream.ErrTopicExists, protocol.CodeExists, true},
	{stream.ErrOutOfRange, protocol.CodeOutOfRange, true},
	{stream.ErrTooLarge, protocol.CodeTooLarge, true},
	{stream.ErrNotOwner, protocol.CodeNotOwner, false},
	{stream.ErrMemberGone, protocol.CodeNotOwner, false},
	{stream.ErrOutOfSequence, protocol.CodeOutOfSequence, true},
	{stream.ErrBadConfig, protocol.CodeBadArgs, true},
	{stream.ErrBadName, protocol.CodeBadArgs, true},
	{stream.ErrGroupActive, protocol.CodeBadArgs, false},
	{stream.ErrClosed, protocol.CodeShuttingDown, false},
}

// streamErr maps a stream engine error to its wire error.
func streamErr(err error) *protocol.Error { return engineErr(err, streamErrors, "stream: ") }

// async runs fn off the loop and answers the call with its result.
func (c *Call) async(fn func(p Pending)) {
	p := c.Defer()
	go fn(p)
}

func badArgs(format string, args ...any) *protocol.Error {
	return protocol.Errorf(protocol.CodeBadArgs, format, args...)
}

// optArg splits a k=v argument.
func optArg(a []byte) (string, string, bool) {
	k, v, ok := strings.Cut(string(a), "=")
	return k, v, ok && k != ""
}

func parseInt(a []byte, what string) (int, *protocol.Error) {
	n := protocol.ParseUint(a)
	if n < 0 || n > 1<<31 {
		return 0, badArgs("%s %q is not a number", what, a)
	}
	return int(n), nil
}

func (s *Server) topicConfig(args [][]byte, base stream.Config) (stream.Config, *protocol.Error) {
	for _, a := range args {
		k, v, ok := optArg(a)
		if !ok {
			return base, badArgs("%q: settings are key=value", a)
		}
		if err := base.Set(k, v); err != nil {
			return base, streamErr(err)
		}
	}
	return base, nil
}

func (s *Server) tcreate(c *Call) {
	name := string(c.Frame.Args[0])
	cfg, perr := s.topicConfig(c.Frame.Args[1:], s.streams.Defaults())
	if perr != nil {
		c.Err(perr)
		return
	}
	t, err := s.streams.Create(name, cfg)
	if err != nil {
		c.Err(streamErr(err))
		return
	}
	c.OK([]byte(strconv.Itoa(t.Partitions())))
}

func (s *Server) talter(c *Call) {
	name := string(c.Frame.Args[0])
	_, err := s.streams.Alter(name, func(cfg *stream.Config) error {
		next, perr := s.topicConfig(c.Frame.Args[1:], *cfg)
		if perr != nil {
			return perr
		}
		*cfg = next
		return nil
	})
	if err != nil {
		c.Err(streamErr(err))
		return
	}
	c.OK()
}

func (s *Server) tdelete(c *Call) {
	name := string(c.Frame.Args[0])
	if err := s.streams.Delete(name); err != nil {
		c.Err(streamErr(err))
		return
	}
	c.OK()
}

func (s *Server) tlist(c *Call) {
	b, _ := json.Marshal(s.streams.Topics())
	c.Res(nil, nil, b)
}

func (s *Server) tinfo(c *Call) {
	t, err := s.streams.TopicBytes(c.Frame.Args[0], false)
	if err != nil {
		c.Err(streamErr(err))
		return
	}
	b, _ := json.Marshal(t.Info())
	c.Res(nil, nil, b)
}

// swrite: SWRITE <topic> [key=K] [partition=P] [producer=ID seq=N] <#bytes>
func (s *Server) swrite(c *Call) {
	f := c.Frame
	w := stream.Write{Partition: -1, Header: f.Header, Value: f.Payload}
	for _, a := range f.Args[1:] {
		// Not optArg: its string copy of each argument was an allocation
		// per option per write.
		eq := bytes.IndexByte(a, '=')
		if eq <= 0 {
			c.Err(badArgs("%q: SWRITE options are key=, partition=, producer=, seq=", a))
			return
		}
		switch string(a[:eq]) {
		case "key":
			w.Key = a[4:]
		case "partition":
			n, perr := parseInt(a[10:], "partition")
			if perr != nil {
				c.Err(perr)
				return
			}
			w.Partition = n
		case "producer":
			w.Producer = a[9:]
		case "seq":
			n := protocol.ParseUint(a[4:])
			if n < 0 {
				c.Err(badArgs("seq %q is not a number", a[4:]))
				return
			}
			w.Seq = uint64(n)
		default:
			c.Err(badArgs("unknown SWRITE option %q", a[:eq]))
			return
		}
	}
	if (w.Producer == nil) != (w.Seq == 0) {
		c.Err(badArgs("producer= and seq= (from 1) go together"))
		return
	}
	t, err := s.streams.TopicBytes(f.Args[0], true)
	if err != nil {
		c.Err(streamErr(err))
		return
	}
	var sp tracing.Span
	if s.tracer != nil {
		sp, w.Header = s.traceIn(tracing.Write, t.Name(), w.Header,
			func() int { return t.Config().MaxEventBytes - len(w.Key) - len(w.Header) - len(w.Value) })
	}
	p := c.Defer()
	t.Write(&w, func(pos stream.Position, err error) {
		if sp.Recording() && err == nil {
			sp.Set(tracing.Partition.String(strconv.Itoa(pos.Partition)), tracing.Offset.Int64(int64(pos.Offset)))
			if pos.Duplicate {
				sp.Set(tracing.Duplicate.Bool(true))
			}
		}
		sp.End(err)
		if err != nil {
			p.Err(streamErr(err))
			return
		}
		dup := ""
		if pos.Duplicate {
			dup = "duplicate"
		}
		p.complete(protocol.AppendOKNums(make([]byte, 0, 48), dup, uint64(pos.Partition), pos.Offset))
	})
}

// sread: SREAD <topic> <partition> <offset> [max=N] [max_bytes=B]
func (s *Server) sread(c *Call) {
	f := c.Frame
	part, perr := parseInt(f.Args[1], "partition")
	if perr != nil {
		c.Err(perr)
		return
	}
	off := protocol.ParseUint(f.Args[2])
	if off < 0 {
		c.Err(badArgs("offset %q is not a number", f.Args[2]))
		return
	}
	max, maxBytes := 100, 1<<20
	for _, a := range f.Args[3:] {
		k, v, _ := optArg(a)
		n, perr := parseInt([]byte(v), k)
		switch {
		case perr != nil:
			c.Err(perr)
			return
		case (k == "max" || k == "max_bytes") && n <= 0:
			c.Err(badArgs("SREAD %s must be positive, got %d", k, n))
			return
		case k == "max":
			max = min(n, 10000)
		case k == "max_bytes":
			maxBytes = min(n, 16<<20)
		default:
			c.Err(badArgs("unknown SREAD option %q (max=N, max_bytes=N)", a))
			return
		}
	}
	t, err := s.streams.TopicBytes(f.Args[0], false)
	if err != nil {
		c.Err(streamErr(err))
		return
	}
	c.async(func(p Pending) {
		evs, next, err := t.Read(part, uint64(off), max, maxBytes)
		if err != nil {
			p.Err(streamErr(err))
			return
		}
		sid := []byte(protocol.ReadSid)
		var b []byte
		for _, ev := range evs {
			b = protocol.AppendEvt(b, sid, t.Name(), ev.Partition, ev.Offset, ev.Time, ev.Key, ev.Header, ev.Value)
		}
		b = protocol.AppendOK(b, strconv.AppendInt(nil, int64(len(evs)), 10), strconv.AppendUint(nil, next, 10))
		p.complete(b)
	})
}

// sseek: SSEEK <topic> <partition> <earliest|latest|time=T>
func (s *Server) sseek(c *Call) {
	f := c.Frame
	part, perr := parseInt(f.Args[1], "partition")
	if perr != nil {
		c.Err(perr)
		return
	}
	tg, err := stream.ParseTarget(string(f.Args[2]))
	if err != nil {
		c.Err(streamErr(err))
		return
	}
	t, err := s.streams.TopicBytes(f.Args[0], false)
	if err != nil {
		c.Err(streamErr(err))
		return
	}
	c.async(func(p Pending) {
		off, err := t.Resolve(part, tg)
		if err != nil {
			p.Err(streamErr(err))
			return
		}
		p.OK(strconv.AppendUint(nil, off, 10))
	})
}

// streamSub is one SSUB of a session: a group member whose events go to
// the connection. Its Sink methods run on the group's goroutine and hop
// to the connection's loop.
type streamSub struct {
	sess  *session
	conn  *netpoll.Conn
	sid   []byte
	topic string
	group string
	m     *stream.Member
	ready chan struct{} // closed once the SSUB's reply is queued
}

func (ss *streamSub) Deliver(evs []stream.Event) {
	<-ss.ready
	n := 0
	for i := range evs {
		n += 64 + len(ss.topic) + len(evs[i].Key) + len(evs[i].Header) + len(evs[i].Value)
	}
	b := make([]byte, 0, n)
	tr := ss.sess.srv.tracer
	for _, ev := range evs {
		b = protocol.AppendEvt(b, ss.sid, ss.topic, ev.Partition, ev.Offset, ev.Time, ev.Key, ev.Header, ev.Value)
		if tr != nil {
			sp := tr.Continue(tracing.Deliver, ss.topic, protocol.HeaderValue(ev.Header, hdrTraceparent))
			if sp.Recording() {
				sp.Set(tracing.Group.String(ss.group), tracing.Partition.String(strconv.Itoa(ev.Partition)),
					tracing.Offset.Int64(int64(ev.Offset)))
			}
			sp.End(nil)
		}
	}
	ss.sess.srv.msgsOut.Add(uint64(len(evs)))
	_ = ss.conn.Execute(func(c *netpoll.Conn) { c.Write(b) })
}

func (ss *streamSub) Assigned(gen uint64, parts []int) {
	<-ss.ready
	list := "-"
	if len(parts) > 0 {
		strs := make([]string, len(parts))
		for i, p := range parts {
			strs[i] = strconv.Itoa(p)
		}
		list = strings.Join(strs, ",")
	}
	b := protocol.AppendCommand(nil, "SASSIGN", string(ss.sid), strconv.FormatUint(gen, 10), list)
	_ = ss.conn.Execute(func(c *netpoll.Conn) { c.Write(b) })
}

func (ss *streamSub) Closed(err error) {
	b := protocol.AppendCommand(nil, "SCLOSED", string(ss.sid), streamErr(err).WireText())
	_ = ss.conn.Execute(func(c *netpoll.Conn) {
		if cur := ss.sess.ssubs[string(ss.sid)]; cur == ss {
			delete(ss.sess.ssubs, string(ss.sid))
		}
		c.Write(b)
	})
}

// ssub: SSUB <topic> <group> <sid> [window=N] [name=S] [commit=auto|manual]
// [commit_every=N] [commit_interval=D] [session_timeout=D] [start=earliest|latest]
func (s *Server) ssub(c *Call) {
	f := c.Frame
	sess := c.s
	topic, group, sid := string(f.Args[0]), string(f.Args[1]), string(f.Args[2])
	if !protocol.ValidToken(f.Args[2], 64) {
		c.Err(protocol.Errorf(protocol.CodeBadSid, "%q", sid))
		return
	}
	if sess.ssubs[sid] != nil {
		c.Err(protocol.Errorf(protocol.CodeBadSid, "%q is in use on this connection", sid))
		return
	}
	var o stream.JoinOptions
	for _, a := range f.Args[3:] {
		k, v, ok := optArg(a)
		var err error
		switch {
		case !ok:
			err = fmt.Errorf("%q: options are key=value", a)
		case k == "window":
			o.Window, err = strconv.Atoi(v)
		case k == "name":
			if !stream.ValidName(v) {
				err = fmt.Errorf("name %q: letters, digits, '.', '_', '-'", v)
			}
			o.Name = v
		case k == "commit":
			o.ManualCommit = v == "manual"
			if v != "manual" && v != "auto" {
				err = fmt.Errorf("commit=%q: want auto or manual", v)
			}
		case k == "commit_every":
			o.CommitEvery, err = strconv.Atoi(v)
		case k == "commit_interval":
			o.CommitInterval, err = stream.ParseDuration(v)
		case k == "session_timeout":
			o.SessionTimeout, err = stream.ParseDuration(v)
		case k == "start":
			o.StartLatest = v == "latest"
			if v != "latest" && v != "earliest" {
				err = fmt.Errorf("start=%q: want earliest or latest", v)
			}
		default:
			err = fmt.Errorf("unknown SSUB option %q", k)
		}
		if err == nil && (o.Window < 0 || o.Window > 1<<20 || o.CommitEvery < 0) {
			err = fmt.Errorf("%q out of range", a)
		}
		if err != nil {
			c.Err(badArgs("%v", err))
			return
		}
	}
	ss := &streamSub{sess: sess, conn: sess.conn, sid: []byte(sid), topic: topic, group: group, ready: make(chan struct{})}
	m, err := s.streams.Join(topic, group, o, ss)
	if err != nil {
		c.Err(streamErr(err))
		return
	}
	ss.m = m
	if sess.ssubs == nil {
		sess.ssubs = make(map[string]*streamSub)
	}
	sess.ssubs[sid] = ss
	c.OK([]byte(m.ID()))
	close(ss.ready) // deliveries may go out now: the +OK is ahead of them
}

// member finds the SSUB of sid on this connection.
func (c *Call) member(sid []byte) *streamSub {
	return c.s.ssubs[string(sid)]
}

// sack: SACK <sid> [n]. No reply unless verbose: acks are as frequent as
// events, and an error here (the member was expelled, which SCLOSED
// already said) must not arrive as an unsolicited -ERR.
func (s *Server) sack(c *Call) {
	n := 1
	if len(c.Frame.Args) == 2 {
		var perr *protocol.Error
		if n, perr = parseInt(c.Frame.Args[1], "count"); perr != nil || n < 1 {
			c.quiet(badArgs("SACK count %q", c.Frame.Args[1]))
			return
		}
	}
	ss := c.member(c.Frame.Args[0])
	if ss == nil {
		c.quiet(protocol.Errorf(protocol.CodeBadSid, "%q", c.Frame.Args[0]))
		return
	}
	if err := ss.m.Ack(n); err != nil {
		c.quiet(streamErr(err))
		return
	}
	c.quiet(nil)
}

// quiet answers a reply-less command: +OK or the error in verbose mode;
// in normal mode an error is only logged.
func (c *Call) quiet(e *protocol.Error) {
	c.answer()
	if e != nil {
		c.s.srv.log.Debug("server: stream ack/heartbeat refused", "conn", c.s.conn.ID(), "err", e.WireText())
	}
	if !c.s.verbose {
		return
	}
	if e != nil {
		c.s.replyErr(e)
		return
	}
	c.s.ok()
}

func (s *Server) shb(c *Call) {
	ss := c.member(c.Frame.Args[0])
	if ss == nil {
		c.quiet(protocol.Errorf(protocol.CodeBadSid, "%q", c.Frame.Args[0]))
		return
	}
	ss.m.Heartbeat()
	c.quiet(nil)
}

// scommit: SCOMMIT <sid> <partition> <offset>
func (s *Server) scommit(c *Call) {
	ss := c.member(c.Frame.Args[0])
	if ss == nil {
		c.Err(protocol.Errorf(protocol.CodeBadSid, "%q", c.Frame.Args[0]))
		return
	}
	part, perr := parseInt(c.Frame.Args[1], "partition")
	off := protocol.ParseUint(c.Frame.Args[2])
	if perr != nil || off < 0 {
		c.Err(badArgs("SCOMMIT <sid> <partition> <offset>: %q %q", c.Frame.Args[1], c.Frame.Args[2]))
		return
	}
	if err := ss.m.Commit(part, uint64(off)); err != nil {
		c.Err(streamErr(err))
		return
	}
	c.OK()
}

func (s *Server) sunsub(c *Call) {
	sid := string(c.Frame.Args[0])
	ss := c.s.ssubs[sid]
	if ss == nil {
		c.Err(protocol.Errorf(protocol.CodeBadSid, "%q", sid))
		return
	}
	delete(c.s.ssubs, sid)
	ss.m.Leave()
	c.OK()
}

// leaveStreams ends the connection's memberships when it closes: its
// partitions go to the other members at once, rather than after a timeout.
func (s *session) leaveStreams() {
	for sid, ss := range s.ssubs {
		delete(s.ssubs, sid)
		go ss.m.Leave() // off the loop: many members may be leaving at once
	}
}

func (s *Server) ginfo(c *Call) {
	topic, group := string(c.Frame.Args[0]), string(c.Frame.Args[1])
	c.async(func(p Pending) {
		gi, err := s.streams.GroupInfo(topic, group)
		if err != nil {
			p.Err(streamErr(err))
			return
		}
		b, _ := json.Marshal(gi)
		p.Res(nil, nil, b)
	})
}

func (s *Server) glist(c *Call) {
	topic := string(c.Frame.Args[0])
	c.async(func(p Pending) {
		gs, err := s.streams.Groups(topic)
		if err != nil {
			p.Err(streamErr(err))
			return
		}
		b, _ := json.Marshal(gs)
		p.Res(nil, nil, b)
	})
}

// greset: GRESET <topic> <group> <earliest|latest|offset=N|time=T> [partition]
func (s *Server) greset(c *Call) {
	f := c.Frame
	topic, group := string(f.Args[0]), string(f.Args[1])
	tg, err := stream.ParseTarget(string(f.Args[2]))
	if err != nil {
		c.Err(streamErr(err))
		return
	}
	part := -1
	if len(f.Args) == 4 {
		var perr *protocol.Error
		if part, perr = parseInt(f.Args[3], "partition"); perr != nil {
			c.Err(perr)
			return
		}
	}
	offs, err := s.streams.Reset(topic, group, part, tg)
	if err != nil {
		c.Err(streamErr(err))
		return
	}
	c.OK([]byte(strconv.Itoa(len(offs))))
}

func (s *Server) gdelete(c *Call) {
	topic, group := string(c.Frame.Args[0]), string(c.Frame.Args[1])
	if err := s.streams.DeleteGroup(topic, group); err != nil {
		c.Err(streamErr(err))
		return
	}
	c.OK()
}

// logPreallocate is the size of the preallocated segment files that the
// logs of topics and queues under the always policy write into: an fsync
// into written blocks skips the journal commit an append pays
// (log/prealloc.go; docs/benchmarks.md). Up to two such files per log
// are on disk ahead of its data.
const logPreallocate = 64 << 20

// streamOptions builds the engine's options from the node's config.
func (s *Server) streamOptions(dir string) stream.Options {
	sd := s.cfg.Streams
	return stream.Options{
		Dir: dir, Store: s.store, AutoCreate: *sd.AutoCreate, Logger: s.log,
		FsyncInterval: time.Duration(s.cfg.FsyncInterval), PreallocateBytes: logPreallocate, SyncGroup: s.syncGroup,
		Handles: s.handles,
		Defaults: stream.Config{Partitions: sd.Partitions, RetentionAge: stream.Duration(*sd.RetentionAge),
			RetentionBytes: sd.RetentionBytes, Fsync: s.cfg.Fsync, Compression: sd.Compression, MaxEventBytes: s.cfg.MaxPayload},
	}
}
