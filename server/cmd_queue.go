package server

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/flowmesh/flowmesh/monitor/tracing"
	"github.com/flowmesh/flowmesh/netpoll"
	"github.com/flowmesh/flowmesh/protocol"
	"github.com/flowmesh/flowmesh/queue"
)

// Queue verbs: thin adapters from frames to the queue engine, on the
// connection's loop. As for streams, metadata changes (QCREATE, QALTER,
// QDELETE, QPAUSE, QRESUME) run on the loop so they take effect in order;
// enqueues complete from the log's writer; reserves, acks, nacks and the
// rest complete once the queue's goroutine has written the state change;
// browsing reads the log on its own goroutine.
//
// QSUB makes the connection a consumer: jobs are pushed to it (QMSG)
// while fewer than its window are unfinished, so a worker sends only
// outcomes and its next job rides back with the outcome's reply.
//
// QGET with wait=D holds its reply (and so the replies after it on the
// same connection) until a job comes or D passes, like Redis' BLPOP: a
// worker fetches on a connection of its own (the Go SDK does).

func (s *Server) registerQueue() {
	h := map[protocol.Verb]HandlerFunc{
		protocol.VerbQCreate: s.qcreate, protocol.VerbQAlter: s.qalter, protocol.VerbQDelete: s.qdelete,
		protocol.VerbQList: s.qlist, protocol.VerbQInfo: s.qinfo, protocol.VerbQPut: s.qput, protocol.VerbQGet: s.qget,
		protocol.VerbQAck: s.qack, protocol.VerbQNack: s.qnack, protocol.VerbQTouch: s.qtouch,
		protocol.VerbQBrowse: s.qbrowse, protocol.VerbQRedrive: s.qredrive, protocol.VerbQPurge: s.qpurge,
		protocol.VerbQPause: s.qpause, protocol.VerbQResume: s.qresume, protocol.VerbQWorker: s.qworker,
		protocol.VerbQHb: s.qhb, protocol.VerbQWorkers: s.qworkers, protocol.VerbQSub: s.qsub, protocol.VerbQUnsub: s.qunsub,
	}
	for _, spec := range protocol.QueueSpecs() {
		s.Handle(spec, h[spec.ID])
	}
}

var queueErrors = []errCode{
	{queue.ErrQueueNotFound, protocol.CodeNotFound, false},
	{queue.ErrJobNotFound, protocol.CodeNotFound, false},
	{queue.ErrQueueExists, protocol.CodeExists, true},
	{queue.ErrTooLarge, protocol.CodeTooLarge, true},
	{queue.ErrNotReserved, protocol.CodeNotReserved, true},
	{queue.ErrBadConfig, protocol.CodeBadArgs, true},
	{queue.ErrBadName, protocol.CodeBadArgs, true},
	{queue.ErrBadDelay, protocol.CodeBadArgs, false},
	{queue.ErrBadAttempts, protocol.CodeBadArgs, false},
	{queue.ErrNotDead, protocol.CodeBadArgs, false},
	{queue.ErrClosed, protocol.CodeShuttingDown, false},
}

// queueErr maps a queue engine error to its wire error.
func queueErr(err error) *protocol.Error { return engineErr(err, queueErrors, "queue: ") }

func (s *Server) queueConfig(args [][]byte, base queue.Config) (queue.Config, *protocol.Error) {
	for _, a := range args {
		k, v, ok := optArg(a)
		if !ok {
			return base, badArgs("%q: settings are key=value", a)
		}
		if err := base.Set(k, v); err != nil {
			return base, queueErr(err)
		}
	}
	return base, nil
}

func (s *Server) qcreate(c *Call) {
	cfg, perr := s.queueConfig(c.Frame.Args[1:], s.queues.Defaults())
	if perr != nil {
		c.Err(perr)
		return
	}
	if _, err := s.queues.Create(string(c.Frame.Args[0]), cfg); err != nil {
		c.Err(queueErr(err))
		return
	}
	c.OK()
}

func (s *Server) qalter(c *Call) {
	_, err := s.queues.Alter(string(c.Frame.Args[0]), func(cfg *queue.Config) error {
		next, perr := s.queueConfig(c.Frame.Args[1:], *cfg)
		if perr != nil {
			return perr
		}
		*cfg = next
		return nil
	})
	if err != nil {
		c.Err(queueErr(err))
		return
	}
	c.OK()
}

func (s *Server) setPaused(c *Call, paused bool) {
	_, err := s.queues.Alter(string(c.Frame.Args[0]), func(cfg *queue.Config) error { cfg.Paused = paused; return nil })
	if err != nil {
		c.Err(queueErr(err))
		return
	}
	c.OK()
}

func (s *Server) qpause(c *Call)  { s.setPaused(c, true) }
func (s *Server) qresume(c *Call) { s.setPaused(c, false) }

func (s *Server) qdelete(c *Call) {
	if err := s.queues.Delete(string(c.Frame.Args[0])); err != nil {
		c.Err(queueErr(err))
		return
	}
	c.OK()
}

func (s *Server) qlist(c *Call) {
	b, _ := json.Marshal(s.queues.Queues())
	c.Res(nil, nil, b)
}

func (s *Server) qinfo(c *Call) {
	q, err := s.queues.QueueBytes(c.Frame.Args[0], false)
	if err != nil {
		c.Err(queueErr(err))
		return
	}
	b, _ := json.Marshal(q.Info())
	c.Res(nil, nil, b)
}

// intArg reads key=v as an integer in [lo, hi].
func intArg(key, v string, lo, hi int) (int, *protocol.Error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badArgs("%s=%q: want an integer in [%d, %d]", key, v, lo, hi)
	}
	return n, nil
}

// duration reads a duration argument.
func duration(v, what string) (time.Duration, *protocol.Error) {
	d, err := queue.ParseDuration(v)
	if err != nil {
		return 0, badArgs("%s=%q: %v", what, v, err)
	}
	return d, nil
}

// qput: QPUT <queue> [delay=D] [at=T] [priority=N] [key=K] [max_attempts=N] <#bytes>
func (s *Server) qput(c *Call) {
	f := c.Frame
	r := queue.EnqueueRequest{Payload: f.Payload, Header: f.Header}
	for _, a := range f.Args[1:] {
		k, v, ok := optArg(a)
		var perr *protocol.Error
		switch {
		case !ok:
			perr = badArgs("%q: QPUT options are key=value", a)
		case k == "delay":
			r.Delay, perr = duration(v, k)
		case k == "at":
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t, terr := time.Parse(time.RFC3339Nano, v)
				if terr != nil {
					perr = badArgs("at=%q: want RFC 3339 or Unix milliseconds", v)
				}
				r.RunAt = t
			} else {
				r.RunAt = time.UnixMilli(ms)
			}
		case k == "priority":
			r.Priority, perr = intArg(k, v, -1000, 1000)
		case k == "key":
			r.Key = v
		case k == "max_attempts":
			r.MaxAttempts, perr = intArg(k, v, 1, 1000)
		default:
			perr = badArgs("unknown QPUT option %q", k)
		}
		if perr != nil {
			c.Err(perr)
			return
		}
	}
	q, err := s.queues.QueueBytes(f.Args[0], true)
	if err != nil {
		c.Err(queueErr(err))
		return
	}
	var sp tracing.Span
	if s.tracer != nil {
		sp, r.Header = s.traceIn(tracing.Enqueue, q.Name(), r.Header,
			func() int { return q.Config().MaxJobBytes - len(r.Key) - len(r.Header) - len(r.Payload) })
		r.Trace = sp.Packed()
	}
	p := c.Defer()
	q.Enqueue(&r, func(id uint64, dup bool, err error) {
		if sp.Recording() && err == nil {
			sp.Set(tracing.MessageID.String(strconv.FormatUint(id, 10)))
			if dup {
				sp.Set(tracing.Duplicate.Bool(true))
			}
		}
		sp.End(err)
		if err != nil {
			p.Err(queueErr(err))
			return
		}
		suffix := ""
		if dup {
			suffix = "duplicate"
		}
		p.complete(protocol.AppendOKNums(make([]byte, 0, 32), suffix, id))
	})
}

// maxWait bounds a long poll.
const maxWait = 20 * time.Minute

// qget: QGET <queue> [max=N] [wait=D] [visibility=D] → JOB frames, then +OK <count>
func (s *Server) qget(c *Call) {
	f := c.Frame
	max, wait, vis := 1, time.Duration(0), time.Duration(0)
	for _, a := range f.Args[1:] {
		k, v, _ := optArg(a)
		var perr *protocol.Error
		switch k {
		case "max":
			max, perr = intArg(k, v, 1, 10000)
		case "wait":
			wait, perr = duration(v, k)
			wait = min(wait, maxWait)
		case "visibility":
			vis, perr = duration(v, k)
		default:
			perr = badArgs("unknown QGET option %q", a)
		}
		if perr != nil {
			c.Err(perr)
			return
		}
	}
	q, err := s.queues.QueueBytes(f.Args[0], false)
	if err != nil {
		c.Err(queueErr(err))
		return
	}
	name := q.Name()
	p := c.Defer()
	sess := c.s
	if wait > 0 {
		if sess.polled == nil {
			sess.polled = make(map[*queue.Queue]struct{})
		}
		sess.polled[q] = struct{}{}
	}
	q.ReserveFor(c.s.worker, sess.gone.Load, max, wait, vis, func(ds []queue.Delivery, err error) {
		if err != nil && len(ds) == 0 {
			p.Err(queueErr(err))
			return
		}
		var b []byte
		for _, d := range ds {
			b = protocol.AppendJob(b, name, d.ID, d.Attempt, d.EnqueuedAt, d.Header, d.Payload)
			if d.Trace != nil {
				s.jobSpan(tracing.Deliver, name, d.ID, d.Attempt, d.Trace).End(nil)
			}
		}
		b = protocol.AppendOK(b, strconv.AppendInt(nil, int64(len(ds)), 10))
		p.complete(b)
	})
}

// jobArgs reads <queue> <id> <attempt>.
func (s *Server) jobArgs(c *Call) (*queue.Queue, uint64, int, bool) {
	a := c.Frame.Args
	id, att := protocol.ParseUint(a[1]), protocol.ParseUint(a[2])
	if id < 0 || att < 1 || att > 1<<20 {
		c.Err(badArgs("want <queue> <id> <attempt>, got %q %q", a[1], a[2]))
		return nil, 0, 0, false
	}
	q, err := s.queues.QueueBytes(a[0], false)
	if err != nil {
		c.Err(queueErr(err))
		return nil, 0, 0, false
	}
	return q, uint64(id), int(att), true
}

func (s *Server) qack(c *Call) {
	q, id, att, ok := s.jobArgs(c)
	if !ok {
		return
	}
	var sp tracing.Span
	if s.tracer != nil {
		sp = s.jobSpan(tracing.Ack, q.Name(), id, att, q.JobTrace(id))
	}
	p := c.Defer()
	q.Ack(id, att, func(_ time.Duration, err error) {
		sp.End(err)
		if err != nil {
			p.Err(queueErr(err))
			return
		}
		p.OK()
	})
}

// qnack: QNACK <queue> <id> <attempt> [delay=D|fail] <#bytes>\r\n<error text>
func (s *Server) qnack(c *Call) {
	var o queue.NackOpts
	if len(c.Frame.Args) == 4 {
		switch k, v, _ := optArg(c.Frame.Args[3]); {
		case string(c.Frame.Args[3]) == "fail":
			o.Fail = true
		case k == "delay":
			d, perr := duration(v, k)
			if perr != nil {
				c.Err(perr)
				return
			}
			o.Delay, o.UseDelay = d, true
		default:
			c.Err(badArgs("QNACK option %q: want delay=D or fail", c.Frame.Args[3]))
			return
		}
	}
	o.Error = queue.ClipError(string(c.Frame.Payload))
	q, id, att, ok := s.jobArgs(c)
	if !ok {
		return
	}
	var sp tracing.Span
	if s.tracer != nil {
		if sp = s.jobSpan(tracing.Nack, q.Name(), id, att, q.JobTrace(id)); sp.Recording() {
			sp.Set(tracing.LastError.String(o.Error))
		}
	}
	p := c.Defer()
	q.Nack(id, att, o, func(where queue.Where, _ time.Duration, err error) {
		if sp.Recording() && err == nil {
			sp.Set(tracing.Where.String(where.String()))
		}
		sp.End(err)
		if err != nil {
			p.Err(queueErr(err))
			return
		}
		p.OK([]byte(where.String()))
	})
}

func (s *Server) qtouch(c *Call) {
	var ext time.Duration
	if len(c.Frame.Args) == 4 {
		k, v, _ := optArg(c.Frame.Args[3])
		if k != "ext" {
			c.Err(badArgs("QTOUCH option %q: want ext=D", c.Frame.Args[3]))
			return
		}
		var perr *protocol.Error
		if ext, perr = duration(v, k); perr != nil {
			c.Err(perr)
			return
		}
	}
	q, id, att, ok := s.jobArgs(c)
	if !ok {
		return
	}
	p := c.Defer()
	q.Touch(id, att, ext, func(err error) {
		if err != nil {
			p.Err(queueErr(err))
			return
		}
		p.OK()
	})
}

var whereNames = map[string]queue.Where{"ready": queue.Ready, "delayed": queue.Delayed, "in_flight": queue.InFlight, "dead": queue.Dead}

// qbrowse: QBROWSE <queue> <ready|delayed|in_flight|dead> [from=ID] [limit=N] → RES {jobs, next}
func (s *Server) qbrowse(c *Call) {
	a := c.Frame.Args
	where, ok := whereNames[string(a[1])]
	if !ok {
		c.Err(badArgs("QBROWSE state %q: want ready, delayed, in_flight or dead", a[1]))
		return
	}
	from, limit := uint64(0), 100
	for _, arg := range a[2:] {
		k, v, _ := optArg(arg)
		n := protocol.ParseUint([]byte(v))
		switch {
		case k == "from" && n >= 0:
			from = uint64(n)
		case k == "limit" && n > 0:
			limit = int(min(n, 1000))
		default:
			c.Err(badArgs("QBROWSE option %q: want from=ID or limit=N", arg))
			return
		}
	}
	q, err := s.queues.QueueBytes(a[0], false)
	if err != nil {
		c.Err(queueErr(err))
		return
	}
	c.async(func(p Pending) {
		jobs, next, more, err := q.Browse(where, from, limit)
		if err != nil {
			p.Err(queueErr(err))
			return
		}
		page := struct {
			Jobs []queue.JobView `json:"jobs"`
			Next *uint64         `json:"next,omitempty"` // from= of the next page; absent at the end
		}{Jobs: jobs}
		if more {
			page.Next = &next
		}
		b, _ := json.Marshal(page)
		p.Res(nil, nil, b)
	})
}

// qredrive: QREDRIVE <queue> <id|all>
func (s *Server) qredrive(c *Call) {
	arg := c.Frame.Args[1]
	all := string(arg) == "all"
	id := protocol.ParseUint(arg)
	if !all && id < 0 {
		c.Err(badArgs("QREDRIVE %q: want a job id or all", arg))
		return
	}
	q, err := s.queues.QueueBytes(c.Frame.Args[0], false)
	if err != nil {
		c.Err(queueErr(err))
		return
	}
	p := c.Defer()
	q.Redrive(uint64(max(id, 0)), all, func(n int, err error) {
		if err != nil {
			p.Err(queueErr(err))
			return
		}
		p.OK([]byte(strconv.Itoa(n)))
	})
}

// qpurge: QPURGE <queue> [dead]
func (s *Server) qpurge(c *Call) {
	dead := len(c.Frame.Args) == 2
	if dead && string(c.Frame.Args[1]) != "dead" {
		c.Err(badArgs("QPURGE %q: the only option is dead", c.Frame.Args[1]))
		return
	}
	q, err := s.queues.QueueBytes(c.Frame.Args[0], false)
	if err != nil {
		c.Err(queueErr(err))
		return
	}
	p := c.Defer()
	q.Purge(dead, func(n int, err error) {
		if err != nil {
			p.Err(queueErr(err))
			return
		}
		p.OK([]byte(strconv.Itoa(n)))
	})
}

// qworker: QWORKER <name> <queue[,queue...]> [concurrency=N]: this
// connection is that worker until it closes.
func (s *Server) qworker(c *Call) {
	a := c.Frame.Args
	conc := 1
	if len(a) == 3 {
		k, v, _ := optArg(a[2])
		n, err := strconv.Atoi(v)
		if k != "concurrency" || err != nil || n < 1 || n > 100000 {
			c.Err(badArgs("QWORKER option %q: want concurrency=N", a[2]))
			return
		}
		conc = n
	}
	w, err := s.queues.RegisterWorker(string(a[0]), strings.Split(string(a[1]), ","), conc)
	if err != nil {
		c.Err(queueErr(err))
		return
	}
	if c.s.worker != nil {
		c.s.worker.Leave()
	}
	c.s.worker = w
	c.OK([]byte(w.ID()))
}

func (s *Server) qhb(c *Call) {
	if c.s.worker == nil {
		c.quiet(badArgs("QHB without QWORKER"))
		return
	}
	c.s.worker.Heartbeat()
	c.quiet(nil)
}

func (s *Server) qworkers(c *Call) {
	b, _ := json.Marshal(s.queues.Workers())
	c.Res(nil, nil, b)
}

// queueOptions builds the queue engine's options from the node's config.
func (s *Server) queueOptions(dir string) queue.Options {
	d := queue.DefaultConfig(s.cfg.MaxPayload, s.cfg.Fsync)
	o := queue.Options{Dir: dir, Store: s.store, Defaults: d, AutoCreate: true, Logger: s.log,
		FsyncInterval: time.Duration(s.cfg.FsyncInterval), DeadLettered: s.deadLettered, PreallocateBytes: logPreallocate,
		SyncGroup: s.syncGroup, Handles: s.handles}
	if s.tracer != nil {
		o.TraceOf = traceOf
	}
	return o
}

// defaultWindow is a QSUB's window when it names none.
const defaultWindow = 1

// qsub: QSUB <queue> <sid> [window=N] [visibility=D] → +OK, then QMSG frames
func (s *Server) qsub(c *Call) {
	f := c.Frame
	sess := c.s
	sid := string(f.Args[1])
	if !protocol.ValidToken(f.Args[1], 64) {
		c.Err(protocol.Errorf(protocol.CodeBadSid, "%q", sid))
		return
	}
	if sess.qsubs[sid] != nil {
		c.Err(protocol.Errorf(protocol.CodeBadSid, "%q is in use on this connection", sid))
		return
	}
	window, vis := defaultWindow, time.Duration(0)
	for _, a := range f.Args[2:] {
		k, v, _ := optArg(a)
		var perr *protocol.Error
		switch k {
		case "window":
			window, perr = intArg(k, v, 1, queue.MaxWindow)
		case "visibility":
			vis, perr = duration(v, k)
		default:
			perr = badArgs("unknown QSUB option %q", a)
		}
		if perr != nil {
			c.Err(perr)
			return
		}
	}
	q, err := s.queues.QueueBytes(f.Args[0], false)
	if err != nil {
		c.Err(queueErr(err))
		return
	}
	qs := &queueSub{srv: s, sess: sess, sid: []byte(sid), queue: q.Name()}
	cons, err := q.Consume(sess.worker, sess.gone.Load, window, vis, qs.push)
	if err != nil {
		c.Err(queueErr(err))
		return
	}
	qs.cons = cons
	if sess.qsubs == nil {
		sess.qsubs = make(map[string]*queueSub)
	}
	sess.qsubs[sid] = qs
	c.OK()
}

// qunsub: QUNSUB <sid> → +OK. The jobs pushed and not yet finished stay
// reserved: their outcomes are taken as usual.
func (s *Server) qunsub(c *Call) {
	sid := string(c.Frame.Args[0])
	qs := c.s.qsubs[sid]
	if qs == nil {
		c.Err(protocol.Errorf(protocol.CodeBadSid, "no QSUB %q on this connection", sid))
		return
	}
	delete(c.s.qsubs, sid)
	// The +OK travels behind every job pushed to the consumer before the
	// cancel (both go through the session's completions): after it the
	// client knows no job of this sid can come.
	p := c.Defer()
	qs.cons.Cancel(func() { p.OK() })
}

// queueSub is one QSUB of a session. push runs on the queue's goroutine.
type queueSub struct {
	srv   *Server
	sess  *session
	sid   []byte
	queue string
	cons  *queue.Consumer
}

func (qs *queueSub) push(ds []queue.Delivery, err error) {
	if err != nil {
		// The queue was deleted or the node is stopping: the consumer
		// is over.
		b := protocol.AppendCommand(nil, "QCLOSED", string(qs.sid), queueErr(err).WireText())
		_ = qs.sess.conn.Execute(func(c *netpoll.Conn) {
			if qs.sess.qsubs[string(qs.sid)] == qs {
				delete(qs.sess.qsubs, string(qs.sid))
			}
			c.Write(b)
		})
		return
	}
	n := 0
	for i := range ds {
		n += 80 + len(qs.sid) + len(qs.queue) + len(ds[i].Header) + len(ds[i].Payload)
	}
	b := make([]byte, 0, n)
	for _, d := range ds {
		b = protocol.AppendQMsg(b, qs.sid, qs.queue, d.ID, d.Attempt, d.EnqueuedAt, d.Header, d.Payload)
		if d.Trace != nil {
			qs.srv.jobSpan(tracing.Deliver, qs.queue, d.ID, d.Attempt, d.Trace).End(nil)
		}
	}
	qs.sess.push(b)
}

// leaveQueues cancels the session's consumers (its connection closed).
func (s *session) leaveQueues() {
	for sid, qs := range s.qsubs {
		qs.cons.Cancel(nil)
		delete(s.qsubs, sid)
	}
}
