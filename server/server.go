package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowmesh/flowmesh/internal/dirs"
	"github.com/flowmesh/flowmesh/kv"
	"github.com/flowmesh/flowmesh/kv/store"
	commitlog "github.com/flowmesh/flowmesh/log"
	"github.com/flowmesh/flowmesh/monitor"
	"github.com/flowmesh/flowmesh/monitor/tracing"
	"github.com/flowmesh/flowmesh/netpoll"
	"github.com/flowmesh/flowmesh/protocol"
	"github.com/flowmesh/flowmesh/queue"
	"github.com/flowmesh/flowmesh/server/subject"
	"github.com/flowmesh/flowmesh/stream"
)

// Version is FlowMesh's version, set at build time with -ldflags.
var Version = "0.1.0-dev"

// natsVersion is the NATS server version whose core protocol FlowMesh
// speaks; it goes in INFO's "version" so NATS clients enable what that
// version has (headers, no-responders). FlowMesh's own version is in
// "flowmesh_version".
const natsVersion = "2.10.0"

// HandlerFunc handles one engine verb. It must answer exactly once, through
// c.OK, c.Err, c.Res or c.Defer, and must not block: it runs on an event
// loop.
type HandlerFunc func(c *Call)

// Server is one FlowMesh node: the protocol port and the engines behind it.
type Server struct {
	cfg        Config
	log        *slog.Logger
	limits     protocol.Limits
	specs      []protocol.Spec
	handlers   map[protocol.Verb]HandlerFunc
	table      *protocol.Table
	subs       *subject.List[*subscription]
	np         *netpoll.Server
	mon        *monitor.Server
	store      *store.Store
	streams    *stream.Engine
	syncGroup  *commitlog.SyncGroup // the logs' interval fsyncs
	handles    *commitlog.Handles   // the open files of the logs' sealed segments
	queues     *queue.Engine
	kv         *kv.Engine
	resp       *netpoll.Server           // the Redis-compatible port, nil when off
	grpc       *monitor.GRPCServer       // the gRPC port, nil when off
	tracer     *tracing.Tracer           // nil when tracing is off
	respCounts map[string]*atomic.Uint64 // commands run on it, by name
	tmpDir     string                    // in-memory mode: where stream logs live until shutdown
	unlock     func() error              // releases the data directory's lock (nil in memory)
	info       serverInfo
	inflight   inflight
	ready      chan struct{}
	shutdown   chan struct{} // closed when Shutdown begins
	fatal      chan error    // a reason the node must stop (Fatal)
	started    atomic.Bool
	stopped    atomic.Bool

	msgsIn, msgsOut, protoErrors atomic.Uint64
	errLogged                    atomic.Int64 // unix second of the last client-error log line
	deadLetters                  deadLetters  // the latest dead-lettered jobs, for the feed
}

// deadLetters keeps the latest jobs that went to a dead-letter queue (the
// queues' goroutines add, Metrics copies): the WebSocket feed names them.
type deadLetters struct {
	mu   sync.Mutex
	ring [monitor.DeadLetterWindow]monitor.DeadLetter
	seq  uint64 // how many were added; the newest is ring[(seq-1)%len]
}

func (d *deadLetters) add(queue string, j queue.Job) {
	dl := monitor.DeadLetter{Queue: queue, ID: j.ID, Attempts: j.Attempts, Error: j.LastError,
		AtMs: time.Now().UnixMilli()}
	if j.Trace != nil {
		dl.TraceID = tracing.Unpack(j.Trace).TraceID().String()
	}
	d.mu.Lock()
	d.seq++
	dl.Seq = d.seq
	d.ring[(d.seq-1)%uint64(len(d.ring))] = dl
	d.mu.Unlock()
}

// snapshot returns the kept dead letters, oldest first.
func (d *deadLetters) snapshot() []monitor.DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := min(d.seq, uint64(len(d.ring)))
	out := make([]monitor.DeadLetter, 0, n)
	for s := d.seq - n; s < d.seq; s++ {
		out = append(out, d.ring[s%uint64(len(d.ring))])
	}
	return out
}

// New validates cfg and builds a node. Start runs it.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		cfg: cfg, log: logger, handlers: make(map[protocol.Verb]HandlerFunc),
		limits: protocol.Limits{MaxControlLine: cfg.MaxControlLine, MaxPayload: cfg.MaxPayload, MaxHeader: cfg.MaxHeader},
		subs:   subject.NewList[*subscription](), ready: make(chan struct{}),
		shutdown: make(chan struct{}), fatal: make(chan error, 1),
	}
	s.specs = protocol.CoreServerSpecs()
	s.info = s.buildInfo()
	s.registerStream()
	s.registerQueue()
	s.registerKV()
	s.respCounts = newKVCounts()
	return s, nil
}

// Handle registers an engine verb before Start. It panics on a duplicate or
// a verb ID below protocol.FirstEngineVerb: both are programming errors.
func (s *Server) Handle(spec protocol.Spec, h HandlerFunc) {
	if s.started.Load() {
		panic("server: Handle after Start")
	}
	if spec.ID < protocol.FirstEngineVerb || s.handlers[spec.ID] != nil {
		panic(fmt.Sprintf("server: bad or duplicate verb id %d for %s", spec.ID, spec.Name))
	}
	s.specs = append(s.specs, spec)
	s.handlers[spec.ID] = h
	if spec.HeaderID != protocol.VerbNone {
		s.handlers[spec.HeaderID] = h
	}
}

func (s *Server) handler(v protocol.Verb) HandlerFunc { return s.handlers[v] }

// Start opens the protocol port. It returns when clients can connect.
func (s *Server) Start() error {
	if s.started.Swap(true) {
		return errors.New("server: already started")
	}
	// undo closes what was opened, newest first, if a later step fails.
	var undo []func()
	fail := func(err error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return fmt.Errorf("server: %w", err)
	}
	tr, err := tracing.New(context.Background(), s.cfg.Tracing, Version, s.log)
	if err != nil {
		return fail(err)
	}
	s.tracer = tr
	undo = append(undo, func() { _ = tr.Shutdown(context.Background()) })
	if tr != nil && s.cfg.Tracing.Provider == nil {
		ts, _ := s.cfg.Tracing.Resolve(os.Getenv) // validated in New
		s.log.Info("server: tracing on", "protocol", ts.Protocol, "endpoint", ts.Endpoint, "sample_ratio", ts.SampleRatio,
			"service_name", ts.ServiceName)
	}
	// Under interval, what the engines write without a sync (offsets,
	// job states) is fsynced at most fsync_interval later, as the logs are.
	metaInterval := time.Duration(0)
	if s.cfg.Fsync == "interval" {
		metaInterval = time.Duration(s.cfg.FsyncInterval)
	}
	if !s.cfg.InMemory {
		// First: a second node on this data directory is refused here,
		// naming the first, before any store or log is opened.
		if s.unlock, err = dirs.Lock(s.cfg.DataDir); err != nil {
			return fail(err)
		}
		undo = append(undo, func() { s.unlock() })
	}
	st, err := store.Open(filepath.Join(s.cfg.DataDir, "meta"), store.Options{InMemory: s.cfg.InMemory,
		Sync: s.cfg.Fsync == "always", SyncInterval: metaInterval, Logger: s.log})
	if err != nil {
		return fail(err)
	}
	s.store = st
	undo = append(undo, func() { st.Close() })
	logRoot := s.cfg.DataDir
	if s.cfg.InMemory {
		// The commit log needs files; in-memory mode keeps them in a
		// temporary directory removed at shutdown.
		if s.tmpDir, err = os.MkdirTemp("", "flowmesh-mem-"); err != nil {
			return fail(err)
		}
		logRoot = s.tmpDir
		undo = append(undo, s.removeTmp)
	}
	// One syncer for the interval fsyncs of every topic partition and
	// queue: many logs written at once share a syncfs (log/syncgroup.go).
	s.syncGroup = commitlog.NewSyncGroup(s.log)
	s.handles = commitlog.NewHandles(commitlog.DefaultHandleLimit())
	undo = append(undo, func() { s.syncGroup.Close() })
	if s.streams, err = stream.Open(s.streamOptions(filepath.Join(logRoot, "streams"))); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { s.streams.Close() })
	if s.queues, err = queue.Open(s.queueOptions(filepath.Join(logRoot, "queues"))); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { s.queues.Close() })
	if s.kv, err = kv.Open(s.kvOptions(filepath.Join(logRoot, "kv"))); err != nil {
		return fail(err)
	}
	undo = append(undo, s.kv.Close)
	s.table = protocol.NewTable(s.specs...)
	ping, pong := protocol.AppendPing(nil), protocol.AppendError(nil, &protocol.Error{Code: protocol.CodeStaleConnection})
	np, err := netpoll.Listen(netpoll.Config{
		Addr: s.cfg.Addr, Loops: s.cfg.Loops, MaxConns: s.cfg.MaxConns, MaxPending: s.cfg.MaxPending,
		PingInterval: time.Duration(s.cfg.PingInterval), MaxPingsOut: s.cfg.MaxPingsOut,
		MaxStall:  time.Duration(s.cfg.MaxStall),
		PingFrame: ping, StaleFrame: pong,
		SlowFrame:  protocol.AppendError(nil, &protocol.Error{Code: protocol.CodeSlowConsumer}),
		FullFrame:  protocol.AppendError(nil, &protocol.Error{Code: protocol.CodeMaxConnections}),
		DrainFrame: protocol.AppendError(nil, &protocol.Error{Code: protocol.CodeShuttingDown}),
		Logger:     s.log,
	}, (*portHandler)(s))
	if err != nil {
		return fail(err)
	}
	s.np = np
	undo = append(undo, func() { _ = np.Shutdown(context.Background()) })
	if s.cfg.RESPAddr != "" && s.cfg.RESPAddr != "off" {
		if s.resp, err = s.listenRESP(); err != nil {
			return fail(err)
		}
		undo = append(undo, func() { _ = s.resp.Shutdown(context.Background()) })
	}
	if s.cfg.GRPCAddr != "" && s.cfg.GRPCAddr != "off" {
		if s.grpc, err = monitor.ListenGRPC(s.cfg.GRPCAddr, monitorNode{s}); err != nil {
			return fail(err)
		}
		undo = append(undo, func() { s.grpc.Shutdown(context.Background()) })
	}
	if s.cfg.HTTPAddr != "off" {
		mon, err := monitor.Listen(s.cfg.HTTPAddr, monitorNode{s}, s.log)
		if err != nil {
			return fail(err)
		}
		s.mon = mon
	}
	close(s.ready)
	attrs := []any{"addr", s.Addr().String(), "max_payload", s.cfg.MaxPayload, "loops", s.np.Loops()}
	if s.resp != nil {
		attrs = append(attrs, "resp_addr", s.resp.Addr().String(), "resp_loops", s.resp.Loops())
	}
	s.log.Info("server: listening", append(attrs, "version", Version)...)
	go s.watchPorts()
	return nil
}

// Ready is closed once the node accepts clients.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Fatal receives an error when the node can no longer serve and should be
// stopped (cmd/flowmesh shuts it down and exits 1, for a supervisor to
// restart it): a client port whose event loops stopped on their own.
func (s *Server) Fatal() <-chan error { return s.fatal }

// watchPorts reports a client port that stopped without Shutdown: gnet
// closes every connection and the listener when its acceptor fails (an
// accept(2) error such as EMFILE), and a node that no longer accepts on its
// port must not go on answering /readyz as if it did.
func (s *Server) watchPorts() {
	var resp <-chan struct{}
	if s.resp != nil {
		resp = s.resp.Stopped()
	}
	var err error
	select {
	case <-s.np.Stopped():
		err = s.np.Err()
	case <-resp:
		err = s.resp.Err()
	case <-s.shutdown:
		return
	}
	s.log.Error("server: a client port stopped; the node cannot serve", "err", err)
	s.fatal <- err
}

// Addr is the protocol port's bound address.
func (s *Server) Addr() net.Addr {
	if s.np == nil {
		return nil
	}
	return s.np.Addr()
}

// Store is the node's Pebble database, shared by the engines.
func (s *Server) Store() *store.Store { return s.store }

// Config returns the effective configuration.
func (s *Server) Config() Config { return s.cfg }

// traceFlushTimeout bounds the sending of buffered spans at shutdown.
const traceFlushTimeout = 2 * time.Second

// Shutdown waits for in-flight commands, flushes every connection and
// closes the port, within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.np == nil || s.stopped.Swap(true) {
		return nil
	}
	close(s.shutdown)
	// Long polls end now (as if their wait ran out): an idle worker's QGET
	// may have minutes to go, and the drain below waits for every reply.
	s.queues.EndLongPolls()
	if err := s.inflight.wait(ctx); err != nil {
		s.log.Warn("server: shutdown deadline passed with commands in flight")
	}
	err := s.np.Shutdown(ctx)
	if s.resp != nil {
		err = errors.Join(err, s.resp.Shutdown(ctx))
	}
	if s.grpc != nil {
		s.grpc.Shutdown(ctx)
	}
	if s.mon != nil {
		err = errors.Join(err, s.mon.Shutdown(ctx))
	}
	// Engines close before the store they write to; the store closes last.
	// A failing disk can hold a close for ever (a Pebble commit waiting
	// for a memtable flush that keeps failing), so Shutdown stops waiting
	// at the deadline: the process may then exit, and the next start
	// recovers what the fsync policy made durable, as after a crash.
	closed := make(chan error, 1)
	go func() {
		s.kv.Close()
		cerr := errors.Join(s.queues.Close(), s.streams.Close())
		cerr = errors.Join(cerr, s.syncGroup.Close(), s.store.Close())
		if s.unlock != nil {
			s.unlock() // after the last write: the next node may open the directory
		}
		closed <- cerr
	}()
	select {
	case cerr := <-closed:
		err = errors.Join(err, cerr)
	case <-ctx.Done():
		late := fmt.Errorf("server: shutdown: the engines did not close before the deadline: %w", ctx.Err())
		if serr := s.StorageErr(); serr != nil {
			late = fmt.Errorf("%w (storage failing: %v)", late, serr)
		}
		err = errors.Join(err, late)
	}
	// Last, so that the spans of the final commands are sent; with a short
	// budget of its own, because a collector that is down must neither hold
	// the node's stop nor fail it (the exporter retries for a minute).
	tctx, cancel := context.WithTimeout(ctx, traceFlushTimeout)
	if terr := s.tracer.Shutdown(tctx); terr != nil {
		s.log.Warn("server: spans not sent at shutdown", "err", terr)
	}
	cancel()
	s.removeTmp()
	s.log.Info("server: stopped")
	return err
}

func (s *Server) removeTmp() {
	if s.tmpDir != "" {
		os.RemoveAll(s.tmpDir)
	}
}

// RESPAddr is the Redis-compatible port's address, nil when it is off.
func (s *Server) RESPAddr() net.Addr {
	if s.resp == nil {
		return nil
	}
	return s.resp.Addr()
}

// GRPCAddr is the gRPC port's address, nil when it is off.
func (s *Server) GRPCAddr() net.Addr {
	if s.grpc == nil {
		return nil
	}
	return s.grpc.Addr()
}

// KV is the KV engine (nil before Start).
func (s *Server) KV() *kv.Engine { return s.kv }

// Streams is the stream engine (nil before Start).
func (s *Server) Streams() *stream.Engine { return s.streams }

// Stats is a snapshot of the node's counters.
type Stats struct {
	netpoll.Stats
	Subscriptions  int
	MsgsIn         uint64
	MsgsOut        uint64
	ProtocolErrors uint64
}

// Stats returns the node's counters.
func (s *Server) Stats() Stats {
	st := Stats{Subscriptions: s.subs.Count(), MsgsIn: s.msgsIn.Load(), MsgsOut: s.msgsOut.Load(),
		ProtocolErrors: s.protoErrors.Load()}
	if s.np != nil {
		st.Stats = s.np.Stats()
	}
	return st
}

// serverInfo is the INFO JSON, NATS's fields plus FlowMesh's.
type serverInfo struct {
	ServerID        string `json:"server_id"`
	ServerName      string `json:"server_name"`
	Version         string `json:"version"`
	FlowMeshVersion string `json:"flowmesh_version"`
	Proto           int    `json:"proto"`
	Go              string `json:"go"`
	Host            string `json:"host"`
	Port            int    `json:"port"`
	Headers         bool   `json:"headers"`
	MaxPayload      int    `json:"max_payload"`
	ClientID        uint64 `json:"client_id,omitempty"`
	ClientIP        string `json:"client_ip,omitempty"`
}

// buildInfo fills the fields common to every connection; host and port are
// the connection's own local address, filled in OnOpen.
func (s *Server) buildInfo() serverInfo {
	return serverInfo{ServerID: "FM" + strconv.FormatInt(time.Now().UnixNano(), 36), ServerName: s.cfg.Name,
		Version: natsVersion, FlowMeshVersion: Version, Proto: 1, Go: runtime.Version(),
		Headers: true, MaxPayload: s.cfg.MaxPayload}
}

// logClientError logs a client's protocol error at most once a second, so a
// misbehaving client cannot flood the log.
func (s *Server) logClientError(sess *session, err *protocol.Error) {
	now := time.Now().Unix()
	if last := s.errLogged.Load(); last == now || !s.errLogged.CompareAndSwap(last, now) {
		return
	}
	s.log.Info("server: client protocol error", "conn", sess.conn.ID(), "name", sess.name,
		"remote", sess.conn.RemoteAddr(), "err", err.Error(), "fatal", err.Fatal())
}

// portHandler is the netpoll.Handler of the protocol port.
type portHandler Server

func (h *portHandler) OnOpen(c *netpoll.Conn) []byte {
	s := (*Server)(h)
	sess := newSession(s, c)
	c.Session = sess
	info := s.info
	info.ClientID = c.ID()
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		info.ClientIP = a.IP.String()
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		info.Host, info.Port = a.IP.String(), a.Port
	}
	js, _ := json.Marshal(info)
	return protocol.AppendInfo(nil, js)
}

func (h *portHandler) Feed(c *netpoll.Conn, in []byte) (int, int, bool) {
	return c.Session.(*session).Feed(in)
}

// Barrier writes the KV engine's append-only file up to its last record
// before the output of the reads that ran KV writes leaves. Loop only
// (netpoll.BarrierHandler).
func (h *portHandler) Barrier() error { return h.kv.Barrier() }

// BarrierFailed closes c: its KV writes are applied but not durable, and
// the replies held for them are gone. Loop only (netpoll.BarrierHandler).
func (h *portHandler) BarrierFailed(c *netpoll.Conn, err error) {
	h.log.Error("server: KV writes not durable; closing the connection without their replies", "conn", c.ID(), "err", err)
	c.CloseAfter(protocol.AppendError(nil, protocol.Errorf(protocol.CodeStorage, "KV write not durable: %v", err)))
}

func (h *portHandler) OnClose(c *netpoll.Conn, err error) {
	if sess, ok := c.Session.(*session); ok {
		sess.close()
	}
}

// HTTPAddr is the monitoring port's bound address, or nil if it is off.
func (s *Server) HTTPAddr() net.Addr {
	if s.mon == nil {
		return nil
	}
	return s.mon.Addr()
}

// monitorNode adapts Server to monitor.Node.
type monitorNode struct{ s *Server }

func (m monitorNode) Ready() error { return m.s.ReadyErr() }
func (m monitorNode) Varz() any    { return m.s.Varz() }

func (m monitorNode) Metrics() monitor.Snapshot { return m.s.Metrics() }

func (m monitorNode) Autoscale() []monitor.Recommendation { return m.s.Autoscale() }

// ReadyErr is nil when the node accepts clients and its storage works (for
// /readyz), otherwise why not: a store whose background writes keep
// failing (a full disk) takes the node out of a load balancer's rotation
// until it recovers.
func (s *Server) ReadyErr() error {
	select {
	case <-s.ready:
		var ports []error
		if s.np != nil {
			ports = append(ports, s.np.Err())
		}
		if s.resp != nil {
			ports = append(ports, s.resp.Err())
		}
		return errors.Join(append(ports, s.StorageErr())...)
	default:
		return errors.New("starting: recovery not finished")
	}
}

// StorageErr is the error of a Pebble store whose background writes keep
// failing, or nil.
func (s *Server) StorageErr() error {
	var errs []error
	for _, h := range s.storeHealth() {
		errs = append(errs, h.err)
	}
	return errors.Join(errs...)
}

type storeHealth struct {
	name     string
	failures uint64
	err      error
}

func (s *Server) storeHealth() []storeHealth {
	var out []storeHealth
	if s.store != nil {
		out = append(out, storeHealth{"meta", s.store.BackgroundErrors(), s.store.Err()})
	}
	if s.kv != nil {
		n, err := s.kv.StoreHealth()
		out = append(out, storeHealth{"kv", n, err})
	}
	return out
}

// Metrics is the node's state for the monitor's /metrics.
func (s *Server) Metrics() monitor.Snapshot {
	st := s.Stats()
	m := monitor.Snapshot{Conns: st.Conns, TotalConns: st.TotalConns, Rejected: st.Rejected, SlowConsumers: st.SlowConsumers,
		StaleConns: st.StaleConns, Stalls: st.Stalls, Holds: st.Holds, BytesIn: st.BytesIn, BytesOut: st.BytesOut,
		MsgsIn: st.MsgsIn, MsgsOut: st.MsgsOut, ProtocolErrors: st.ProtocolErrors, Subscriptions: st.Subscriptions,
		KVOps: s.KVOps()}
	if s.syncGroup != nil {
		m.SyncGroup = s.syncGroup.Stats()
		m.SealedFiles = s.handles.Stats()
	}
	if s.kv != nil {
		m.KV = s.kv.Stats()
	}
	for _, h := range s.storeHealth() {
		m.Stores = append(m.Stores, monitor.StoreHealth{Name: h.name, Failures: h.failures, Failing: h.err != nil})
	}
	if s.resp != nil {
		rs := s.resp.Stats()
		m.RedisPort, m.RedisConns, m.RedisBytesIn, m.RedisBytesOut = true, rs.Conns, rs.BytesIn, rs.BytesOut
	}
	if s.streams != nil {
		for _, name := range s.streams.Topics() {
			t, err := s.streams.Topic(name, false)
			if err != nil {
				continue // deleted meanwhile
			}
			m.Topics = append(m.Topics, t.Info())
			for p, ls := range t.LogStats() {
				m.Logs = append(m.Logs, monitor.LogStats{Kind: "topic", Name: name, Partition: p, Stats: ls})
			}
			groups, _ := s.streams.Groups(name)
			for _, g := range groups {
				if gi, err := s.streams.GroupInfo(name, g); err == nil {
					m.Groups = append(m.Groups, gi)
				}
			}
		}
	}
	if s.queues != nil {
		for _, name := range s.queues.Queues() {
			q, err := s.queues.Queue(name, false)
			if err != nil {
				continue
			}
			m.Queues = append(m.Queues, q.Info())
			m.Logs = append(m.Logs, monitor.LogStats{Kind: "queue", Name: name, Stats: q.LogStats()})
		}
		m.Workers = s.queues.Workers()
	}
	m.DeadLetters = s.deadLetters.snapshot()
	return m
}

// Autoscale recommends worker counts for every queue and consumer group,
// under the configured policies.
func (s *Server) Autoscale() []monitor.Recommendation {
	policy := func(match func(monitor.ScalePolicy) bool) monitor.ScalePolicy {
		for _, p := range s.cfg.Autoscale {
			if match(p) {
				return p
			}
		}
		return monitor.DefaultScalePolicy
	}
	out := []monitor.Recommendation{}
	m := s.Metrics()
	for _, q := range m.Queues {
		st := monitor.ScaleState{Backlog: int64(q.Ready), OldestAge: time.Duration(q.OldestMs) * time.Millisecond,
			ArrivalRate: q.Rates.Enqueued, DoneRate: q.Rates.Acked + q.Rates.DeadLettered}
		if q.Processing.Count > 0 {
			st.AvgProcessing = time.Duration(q.Processing.SumMs / float64(q.Processing.Count) * float64(time.Millisecond))
		}
		for _, w := range m.Workers {
			if w.State != "gone" && slices.Contains(w.Queues, q.Name) {
				st.Workers++
			}
		}
		r := monitor.Recommend(policy(func(p monitor.ScalePolicy) bool { return p.Queue == q.Name }), st)
		r.Target = "queue:" + q.Name
		out = append(out, r)
	}
	for _, g := range m.Groups {
		st := monitor.ScaleState{Workers: len(g.Members), Backlog: int64(g.Lag)}
		r := monitor.Recommend(policy(func(p monitor.ScalePolicy) bool { return p.Topic == g.Topic && p.Group == g.Group }), st)
		r.Target = "group:" + g.Topic + "/" + g.Group
		out = append(out, r)
	}
	return out
}

// Varz is the node's state for the monitor's /varz.
func (s *Server) Varz() any {
	v := struct {
		Name    string `json:"server_name"`
		Version string `json:"version"`
		Addr    string `json:"addr"`
		Fsync   string `json:"fsync"` // the node's default policy; each topic and queue shows its own
		Stats
		Topics []stream.TopicInfo `json:"topics"`
		Queues []queue.Info       `json:"queues"`
	}{Name: s.cfg.Name, Version: Version, Addr: s.cfg.Addr, Fsync: s.cfg.Fsync, Stats: s.Stats(),
		Topics: []stream.TopicInfo{}, Queues: []queue.Info{}}
	if s.streams != nil {
		for _, name := range s.streams.Topics() {
			if t, err := s.streams.Topic(name, false); err == nil {
				v.Topics = append(v.Topics, t.Info())
			}
		}
	}
	if s.queues != nil {
		for _, name := range s.queues.Queues() {
			if q, err := s.queues.Queue(name, false); err == nil {
				v.Queues = append(v.Queues, q.Info())
			}
		}
	}
	return v
}
