package flowmesh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowmesh/flowmesh/protocol"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Streams is the event-stream API of a Conn (Conn.Stream).
type Streams struct{ c *Conn }

// Event is one event of a topic.
type Event struct {
	Topic     string
	Partition int
	Offset    uint64
	Time      time.Time // when the server stored it
	Key       string
	Header    Header // nil if none
	Value     []byte

	cons  *Consumer
	epoch uint64     // the consumer's connection epoch it was delivered in
	span  trace.Span // a Consumer loop's process span, nil otherwise
}

// Position is where a write landed.
type Position struct {
	Partition int
	Offset    uint64
	Duplicate bool // a retry of a write the server had already stored
}

// Record is one event to write.
type Record struct {
	Key    string
	Header Header
	Value  []byte
}

// WriteOption configures Write.
type WriteOption func(*writeOpts)

type writeOpts struct {
	key       string
	header    Header
	partition int
}

func applyWriteOpts(opts []WriteOption) writeOpts {
	o := writeOpts{partition: -1}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Key sets the event's key: events with the same key go to the same
// partition, in order. A key is a token: no spaces or control characters.
func Key(k string) WriteOption { return func(o *writeOpts) { o.key = k } }

// EventHeader attaches headers (trace_id, causation_id, ...) to the event.
func EventHeader(h Header) WriteOption { return func(o *writeOpts) { o.header = h } }

// ToPartition writes to partition p instead of choosing by key.
func ToPartition(p int) WriteOption { return func(o *writeOpts) { o.partition = p } }

// ErrBadKey is returned for a key that cannot travel as a token.
var ErrBadKey = errors.New("flowmesh: key must be 1-256 printable characters without spaces")

func newProducerID() string {
	var b [8]byte
	rand.Read(b[:])
	return "go-" + hex.EncodeToString(b[:])
}

// Write stores one event and returns its partition and offset once the
// server has it durable per the topic's fsync policy. Writes are
// idempotent: each carries this Conn's producer id and a sequence number,
// and a write whose connection dropped before its reply is sent again
// with the same sequence, so it is stored exactly once.
func (s *Streams) Write(ctx context.Context, topic string, value []byte, opts ...WriteOption) (Position, error) {
	o := writeOpts{partition: -1}
	if len(opts) > 0 {
		o = applyWriteOpts(opts) // apart: taking &o here put it on the heap for every write
	}
	if err := s.c.takeWriteSlot(ctx); err != nil {
		return Position{}, err
	}
	cl, err := s.startWrite(ctx, topic, Record{Key: o.key, Header: o.header, Value: value}, o.partition)
	if err != nil {
		<-s.c.writeSlots
		return Position{}, err
	}
	return s.finishWrite(ctx, cl)
}

// WriteBatch writes records pipelined on the connection (the server groups
// them into few log batches and fsyncs) and returns their positions in
// order. It is not atomic: on error, some records may be stored; writing
// the batch again stores only the missing ones (writes are idempotent).
// A record refused before it is sent (a bad key, over the payload limit)
// ends the batch there; the error names it.
func (s *Streams) WriteBatch(ctx context.Context, topic string, recs []Record) ([]Position, error) {
	out := make([]Position, len(recs))
	var first error
	calls := make([]*writeCall, 0, min(len(recs), MaxInflightWrites))
	done := 0
	// finish waits for the writes started so far. A batch never waits for
	// a slot while it holds some (it finishes its own first), so batches on
	// one Conn cannot starve each other of slots.
	finish := func() {
		for _, cl := range calls {
			pos, err := s.finishWrite(ctx, cl)
			if err != nil && first == nil {
				first = fmt.Errorf("flowmesh: record %d of the batch: %w", done, err)
			}
			out[done] = pos
			done++
		}
		calls = calls[:0]
	}
	for i, r := range recs {
		select {
		case s.c.writeSlots <- struct{}{}:
		default:
			finish()
			if err := s.c.takeWriteSlot(ctx); err != nil {
				return out, err
			}
		}
		cl, err := s.startWrite(ctx, topic, r, -1)
		if err != nil {
			<-s.c.writeSlots
			finish()
			// Refused here (bad key, too large): the records before it
			// are written, it and those after it are not.
			return out, fmt.Errorf("flowmesh: record %d of the batch: %w", i, err)
		}
		calls = append(calls, cl)
	}
	finish()
	return out, first
}

// MaxInflightWrites bounds the writes of one Conn waiting for their reply.
// The server recognises a retried write within the producer's last 1024
// sequences; more in flight could not all be retried safely.
const MaxInflightWrites = 1024

type writeCall struct {
	c         *Conn
	topic     string
	key       string
	partition int // -1: by key, or the server's choice
	hdr       []byte
	value     []byte              // the caller's: Write and WriteBatch return after the last send
	build     func([]byte) []byte // w.appendCmd, bound once for the sends and retries
	seq       uint64              // allocated by the first build, kept for retries
	cl        *call
	err       error
	span      trace.Span // the producer span, ended with the reply
}

// appendCmd appends the SWRITE. It runs under c.mu as the command enters
// the output buffer, so sequence numbers reach the server in order even
// when many goroutines write at once.
func (w *writeCall) appendCmd(b []byte) []byte {
	if w.seq == 0 {
		w.c.seq++
		w.seq = w.c.seq
	}
	return protocol.AppendSWrite(b, w.topic, w.key, w.partition, w.c.producer, w.seq, w.hdr, w.value)
}

func (c *Conn) takeWriteSlot(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err // a done ctx sends nothing, even with a slot free
	}
	select { // the common case, without the locks of a three-way select
	case c.writeSlots <- struct{}{}:
		return nil
	default:
	}
	select {
	case c.writeSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closedCh:
		return ErrClosed
	}
}

// startWrite sends one write; the caller holds a write slot, which
// finishWrite gives back.
func (s *Streams) startWrite(ctx context.Context, topic string, r Record, partition int) (*writeCall, error) {
	if r.Key != "" && !protocol.ValidToken([]byte(r.Key), 256) {
		return nil, ErrBadKey
	}
	c := s.c
	h, sp := c.stamp(ctx, "write", topic, r.Header)
	hdr, err := h.encode()
	if err != nil {
		endSpan(sp, err)
		return nil, err
	}
	if max := c.MaxPayload(); max > 0 && len(hdr)+len(r.Value) > max {
		endSpan(sp, ErrMaxPayload)
		return nil, ErrMaxPayload // the server would close the connection
	}
	w := writeCallPool.Get().(*writeCall)
	w.c, w.topic, w.key, w.partition, w.hdr, w.value, w.span = c, topic, r.Key, partition, hdr, r.Value, sp
	w.cl, w.err = c.sendCall(pooledCall(), w.build)
	return w, nil
}

// writeCallPool recycles writeCalls, and releaseCall their calls: a
// producer that waits for each write allocated four objects (~600 B) per
// write, ~60 MB/s of garbage for 64 of them on one connection at 100k
// writes/s (docs/benchmarks.md).
var writeCallPool = sync.Pool{New: func() any {
	w := &writeCall{}
	w.build = w.appendCmd // bound once: the method value is an allocation
	return w
}}

// release gives w (and its call, if the reply is w's) back to the pools.
// Its caller has its outcome and holds nothing of w's.
func (w *writeCall) release() {
	if w.cl != nil {
		releaseCall(w.cl)
	}
	build := w.build
	*w = writeCall{build: build}
	writeCallPool.Put(w)
}

func (s *Streams) finishWrite(ctx context.Context, w *writeCall) (pos Position, err error) {
	defer func() {
		<-s.c.writeSlots
		if w.span.IsRecording() && err == nil {
			w.span.SetAttributes(attribute.String("messaging.message.id", streamMsgID(w.topic, pos.Partition, pos.Offset)),
				attribute.Int("messaging.destination.partition.id", pos.Partition))
		}
		endSpan(w.span, err)
		w.release()
	}()
	for attempt := 0; ; attempt++ {
		if w.err != nil {
			return Position{}, w.err
		}
		err := s.c.wait(ctx, w.cl)
		if errors.Is(err, ErrConnectionLost) && attempt < 10 {
			w.cl, w.err = s.c.send(w.build) // same producer and seq: stored once
			continue
		}
		if err != nil {
			return Position{}, err
		}
		return parsePosition(w.cl.args)
	}
}

func parsePosition(args [][]byte) (Position, error) {
	if len(args) < 2 {
		return Position{}, fmt.Errorf("flowmesh: bad write reply %q", args)
	}
	p, err1 := strconv.Atoi(string(args[0]))
	off, err2 := strconv.ParseUint(string(args[1]), 10, 64)
	if err1 != nil || err2 != nil {
		return Position{}, fmt.Errorf("flowmesh: bad write reply %q", args)
	}
	return Position{Partition: p, Offset: off, Duplicate: len(args) > 2 && string(args[2]) == "duplicate"}, nil
}

// TopicConfig are a topic's settings; zero fields take the server's
// defaults.
type TopicConfig struct {
	Partitions     int
	RetentionAge   time.Duration // 0: server default
	RetentionBytes int64
	Fsync          string // always, interval or none
	Compression    string // s2, zstd or none
	MaxEventBytes  int
}

func (tc TopicConfig) args() []string {
	var a []string
	if tc.Partitions > 0 {
		a = append(a, "partitions="+strconv.Itoa(tc.Partitions))
	}
	if tc.RetentionAge > 0 {
		a = append(a, "retention_age="+tc.RetentionAge.String())
	}
	if tc.RetentionBytes > 0 {
		a = append(a, "retention_bytes="+strconv.FormatInt(tc.RetentionBytes, 10))
	}
	if tc.Fsync != "" {
		a = append(a, "fsync="+tc.Fsync)
	}
	if tc.Compression != "" {
		a = append(a, "compression="+tc.Compression)
	}
	if tc.MaxEventBytes > 0 {
		a = append(a, "max_event_bytes="+strconv.Itoa(tc.MaxEventBytes))
	}
	return a
}

func (s *Streams) command(ctx context.Context, verb string, args ...string) (*call, error) {
	return s.c.do(ctx, func(b []byte) []byte { return protocol.AppendCommand(b, verb, args...) })
}

// CreateTopic creates a topic.
func (s *Streams) CreateTopic(ctx context.Context, name string, cfg TopicConfig) error {
	_, err := s.command(ctx, "TCREATE", append([]string{name}, cfg.args()...)...)
	return err
}

// AlterTopic changes the non-zero settings of cfg.
func (s *Streams) AlterTopic(ctx context.Context, name string, cfg TopicConfig) error {
	args := cfg.args()
	if len(args) == 0 {
		return nil
	}
	_, err := s.command(ctx, "TALTER", append([]string{name}, args...)...)
	return err
}

// DeleteTopic deletes a topic, its events and its groups.
func (s *Streams) DeleteTopic(ctx context.Context, name string) error {
	_, err := s.command(ctx, "TDELETE", name)
	return err
}

// Topics lists the topics.
func (s *Streams) Topics(ctx context.Context) ([]string, error) {
	var out []string
	return out, s.jsonCall(ctx, &out, "TLIST")
}

// TopicInfo describes a topic and its partitions.
type TopicInfo struct {
	Name   string `json:"name"`
	Config struct {
		Partitions     int    `json:"partitions"`
		RetentionAge   string `json:"retention_age"`
		RetentionBytes int64  `json:"retention_bytes"`
		Fsync          string `json:"fsync"`
		Compression    string `json:"compression"`
		MaxEventBytes  int    `json:"max_event_bytes"`
	} `json:"config"`
	Partitions []struct {
		Partition int    `json:"partition"`
		Low       uint64 `json:"low"`
		High      uint64 `json:"high"`
		Bytes     int64  `json:"bytes"`
	} `json:"partitions"`
	Events uint64 `json:"events"`
	Bytes  int64  `json:"bytes"`
}

// Describe returns a topic's settings and partitions.
func (s *Streams) Describe(ctx context.Context, topic string) (*TopicInfo, error) {
	var ti TopicInfo
	return &ti, s.jsonCall(ctx, &ti, "TINFO", topic)
}

// GroupInfo is a consumer group's members, offsets and lag.
type GroupInfo struct {
	Topic      string `json:"topic"`
	Group      string `json:"group"`
	Generation uint64 `json:"generation"`
	Members    []struct {
		ID         string `json:"id"`
		Partitions []int  `json:"partitions"`
		InFlight   int    `json:"in_flight"`
	} `json:"members"`
	Partitions []struct {
		Partition int    `json:"partition"`
		Committed int64  `json:"committed"` // -1: none
		High      uint64 `json:"high"`
		Lag       uint64 `json:"lag"`
		Owner     string `json:"owner"`
	} `json:"partitions"`
	Lag uint64 `json:"lag"`
}

// Group describes a consumer group.
func (s *Streams) Group(ctx context.Context, topic, group string) (*GroupInfo, error) {
	var gi GroupInfo
	return &gi, s.jsonCall(ctx, &gi, "GINFO", topic, group)
}

// Rewind resets a group's committed offsets to target ("earliest",
// "latest", "offset=N" or "time=<RFC 3339 or Unix ms>") for one partition,
// or all if partition < 0. Live members continue from there.
func (s *Streams) Rewind(ctx context.Context, topic, group, target string, partition int) error {
	args := []string{topic, group, target}
	if partition >= 0 {
		args = append(args, strconv.Itoa(partition))
	}
	_, err := s.command(ctx, "GRESET", args...)
	return err
}

// RewindToTime resets a group to the first events at or after t.
func (s *Streams) RewindToTime(ctx context.Context, topic, group string, t time.Time) error {
	return s.Rewind(ctx, topic, group, "time="+t.UTC().Format(time.RFC3339Nano), -1)
}

func (s *Streams) jsonCall(ctx context.Context, v any, verb string, args ...string) error {
	cl, err := s.command(ctx, verb, args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(cl.data, v); err != nil {
		return fmt.Errorf("flowmesh: bad %s reply: %w", verb, err)
	}
	return nil
}

// Read returns up to max events of a partition from offset on, and the
// offset to read next.
func (s *Streams) Read(ctx context.Context, topic string, partition int, offset uint64, max int) ([]*Event, uint64, error) {
	cl, err := s.command(ctx, "SREAD", topic, strconv.Itoa(partition), strconv.FormatUint(offset, 10), "max="+strconv.Itoa(max))
	if err != nil {
		return nil, offset, err
	}
	next := offset
	if len(cl.args) == 2 {
		next, _ = strconv.ParseUint(string(cl.args[1]), 10, 64)
	}
	return cl.events, next, nil
}

// Seek returns the offset of a partition at where: "earliest", "latest" or
// "time=<RFC 3339 or Unix ms>".
func (s *Streams) Seek(ctx context.Context, topic string, partition int, where string) (uint64, error) {
	cl, err := s.command(ctx, "SSEEK", topic, strconv.Itoa(partition), where)
	if err != nil {
		return 0, err
	}
	if len(cl.args) != 1 {
		return 0, fmt.Errorf("flowmesh: bad SSEEK reply %q", cl.args)
	}
	return strconv.ParseUint(string(cl.args[0]), 10, 64)
}

// parseEvent builds an Event from an EVT/HEVT frame:
// EVT <sid> <topic> <partition> <offset> <unix-ns> <key|->. topic, if not
// empty, is the consumer's own copy of the name (no allocation per event).
func parseEvent(f *protocol.Frame, topic string) (*Event, error) {
	a := f.Args
	p := protocol.ParseUint(a[2])
	off := protocol.ParseUint(a[3])
	ts := parseNanos(a[4])
	if p < 0 || off < 0 || ts < 0 {
		return nil, fmt.Errorf("flowmesh: bad event frame %q", a)
	}
	if topic == "" || topic != string(a[1]) {
		topic = string(a[1])
	}
	ev := &Event{Topic: topic, Partition: int(p), Offset: uint64(off), Time: time.Unix(0, ts), Value: append([]byte(nil), f.Payload...)}
	if k := string(a[5]); k != protocol.NoKey {
		ev.Key = k
	}
	if f.Header != nil {
		ev.Header, _ = decodeHeader(f.Header)
	}
	return ev, nil
}

// parseNanos reads a Unix-nanosecond time (19 digits, one more than
// protocol.ParseUint takes), or -1.
func parseNanos(d []byte) int64 {
	if len(d) == 0 || len(d) > 19 {
		return -1
	}
	var n uint64
	for _, c := range d {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + uint64(c-'0')
	}
	if n > 1<<63-1 {
		return -1
	}
	return int64(n)
}

func (c *Conn) deliverEvent(f *protocol.Frame) {
	var cs *Consumer
	read := string(f.Args[0]) == protocol.ReadSid
	if !read {
		c.mu.Lock()
		cs = c.cons[string(f.Args[0])]
		c.mu.Unlock()
		if cs == nil {
			return // left while the event was on its way
		}
	}
	topic := ""
	if cs != nil {
		topic = cs.topic
	}
	ev, err := parseEvent(f, topic)
	if err != nil {
		c.opts.logger.Warn("flowmesh: dropped a bad event frame", "err", err)
		return
	}
	if read {
		c.addEvent(ev)
		return
	}
	cs.push(ev)
}

func (c *Conn) consumerNotice(f *protocol.Frame) {
	c.mu.Lock()
	cs := c.cons[string(f.Args[0])]
	c.mu.Unlock()
	if cs == nil {
		return
	}
	if f.Verb == protocol.VerbSClosed {
		c.mu.Lock()
		delete(c.cons, cs.sid)
		c.mu.Unlock()
		cs.end(closedError(f))
		return
	}
	var ps []int
	if s := string(f.Args[2]); s != "-" {
		for _, p := range strings.Split(s, ",") {
			n, _ := strconv.Atoi(p)
			ps = append(ps, n)
		}
	}
	cs.mu.Lock()
	cs.partitions = ps
	cs.mu.Unlock()
}

// ConsumerOption configures a consumer.
type ConsumerOption func(*consumerOpts)

type consumerOpts struct {
	window         int
	manual         bool
	sessionTimeout time.Duration
	startLatest    bool
	name           string
}

// Window sets how many events the server sends ahead of processing.
// Default 256.
func Window(n int) ConsumerOption { return func(o *consumerOpts) { o.window = n } }

// ManualCommit turns auto-commit off: offsets move only by Event.Commit.
// With auto-commit (the default) an event counts as processed when the
// loop body that got it returns, and the server commits processed offsets
// every 100 events or second.
func ManualCommit() ConsumerOption { return func(o *consumerOpts) { o.manual = true } }

// SessionTimeout sets how long the server waits for a silent member before
// giving its partitions to others. The consumer heartbeats at a third of
// it. Default 10s; 0 turns the timeout (and the heartbeats) off, so only
// leaving or the connection closing ends the membership.
func SessionTimeout(d time.Duration) ConsumerOption {
	return func(o *consumerOpts) { o.sessionTimeout = d }
}

// StartLatest makes partitions without a committed offset start at new
// events instead of the earliest retained one.
func StartLatest() ConsumerOption { return func(o *consumerOpts) { o.startLatest = true } }

// MemberName sets the member id's prefix shown in group descriptions.
func MemberName(n string) ConsumerOption { return func(o *consumerOpts) { o.name = n } }

// Consumer is a member of a consumer group.
type Consumer struct {
	c     *Conn
	topic string
	group string
	sid   string
	o     consumerOpts

	mu         sync.Mutex
	queue      []*Event
	wake       chan struct{}
	err        error
	epoch      uint64 // bumped on reconnect: older deliveries are not acked
	unacked    int    // processed events not yet acknowledged to the server
	partitions []int
}

// Consumer joins group on topic and yields its events as they come; the
// error, if any, comes last. Breaking out of the loop leaves the group.
//
//	for ev, err := range fm.Stream.Consumer(ctx, "orders.events", "billing") { ... }
func (s *Streams) Consumer(ctx context.Context, topic, group string, opts ...ConsumerOption) iter.Seq2[*Event, error] {
	return func(yield func(*Event, error) bool) {
		cs, err := s.Join(ctx, topic, group, opts...)
		if err != nil {
			yield(nil, err)
			return
		}
		defer cs.Close()
		for {
			ev, err := cs.Next(ctx)
			if err != nil {
				yield(nil, err)
				return
			}
			if ev.Header != nil {
				ev.span = s.c.process(ctx, topic, ev, ev.Header,
					attribute.String("messaging.consumer.group.name", group), attribute.Int("messaging.destination.partition.id", ev.Partition))
			}
			more := yield(ev, nil)
			endSpan(ev.span, nil)
			if !more {
				return
			}
			cs.processed(ev)
		}
	}
}

// Join makes a consumer for callers that want Next rather than an
// iterator. Call Done after processing each event, and Close at the end.
func (s *Streams) Join(ctx context.Context, topic, group string, opts ...ConsumerOption) (*Consumer, error) {
	o := consumerOpts{window: 256, sessionTimeout: 10 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	c := s.c
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.nextSid++
	cs := &Consumer{c: c, topic: topic, group: group, sid: "s" + itoa(c.nextSid), o: o, wake: make(chan struct{}, 1)}
	c.cons[cs.sid] = cs
	c.mu.Unlock()
	if _, err := c.do(ctx, cs.appendSub); err != nil {
		c.mu.Lock()
		delete(c.cons, cs.sid)
		c.mu.Unlock()
		return nil, err
	}
	if o.sessionTimeout > 0 { // 0: the server expels no silent member
		go cs.heartbeat()
	}
	return cs, nil
}

func (cs *Consumer) appendSub(b []byte) []byte {
	args := []string{cs.topic, cs.group, cs.sid, "window=" + strconv.Itoa(cs.o.window),
		"session_timeout=" + cs.o.sessionTimeout.String()}
	if cs.o.manual {
		args = append(args, "commit=manual")
	}
	if cs.o.startLatest {
		args = append(args, "start=latest")
	}
	if cs.o.name != "" {
		args = append(args, "name="+cs.o.name)
	}
	return protocol.AppendCommand(b, "SSUB", args...)
}

// reconnected forgets what the old connection had in flight: the server
// delivers uncommitted events again to whoever owns their partitions now.
func (cs *Consumer) reconnected() {
	cs.mu.Lock()
	cs.epoch++
	cs.unacked = 0
	cs.mu.Unlock()
}

func (cs *Consumer) push(ev *Event) {
	cs.mu.Lock()
	ev.cons, ev.epoch = cs, cs.epoch
	cs.queue = append(cs.queue, ev)
	cs.mu.Unlock()
	select {
	case cs.wake <- struct{}{}:
	default:
	}
}

func (cs *Consumer) end(err error) {
	cs.mu.Lock()
	if cs.err == nil {
		cs.err = err
	}
	cs.mu.Unlock()
	select {
	case cs.wake <- struct{}{}:
	default:
	}
}

// Next returns the next event, waiting until one comes, ctx ends or the
// membership ends. Before it waits it acknowledges the events processed
// so far, so the server can send more.
func (cs *Consumer) Next(ctx context.Context) (*Event, error) {
	for {
		cs.mu.Lock()
		if len(cs.queue) > 0 {
			ev := cs.queue[0]
			cs.queue[0] = nil
			cs.queue = cs.queue[1:]
			cs.mu.Unlock()
			return ev, nil
		}
		err := cs.err
		cs.mu.Unlock()
		if err != nil {
			return nil, err
		}
		cs.flushAcks()
		select {
		case <-cs.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Done marks ev processed (the iterator does it when the loop body
// returns). Acknowledgements go to the server in batches.
func (cs *Consumer) Done(ev *Event) { cs.processed(ev) }

func (cs *Consumer) processed(ev *Event) {
	cs.mu.Lock()
	if ev.epoch != cs.epoch {
		cs.mu.Unlock()
		return // delivered on a connection that is gone
	}
	cs.unacked++
	due := cs.unacked >= max(1, cs.o.window/4)
	cs.mu.Unlock()
	if due {
		cs.flushAcks()
	}
}

func (cs *Consumer) flushAcks() {
	cs.mu.Lock()
	n := cs.unacked
	cs.unacked = 0
	cs.mu.Unlock()
	if n > 0 {
		_ = cs.c.write(protocol.AppendCommand(nil, "SACK", cs.sid, strconv.Itoa(n)))
	}
}

// Commit commits the event's partition up to and including it. With
// ManualCommit this is how progress is saved; with auto-commit it saves
// progress at once instead of within a second.
func (ev *Event) Commit(ctx context.Context) error {
	if ev.cons == nil {
		return errors.New("flowmesh: Commit of an event not from a consumer")
	}
	cs := ev.cons
	_, err := cs.c.do(ctx, func(b []byte) []byte {
		return protocol.AppendCommand(b, "SCOMMIT", cs.sid, strconv.Itoa(ev.Partition), strconv.FormatUint(ev.Offset+1, 10))
	})
	return err
}

// Partitions returns the partitions the consumer owns now.
func (cs *Consumer) Partitions() []int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return append([]int(nil), cs.partitions...)
}

func (cs *Consumer) heartbeat() {
	t := time.NewTicker(max(cs.o.sessionTimeout/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			cs.mu.Lock()
			done := cs.err != nil
			cs.mu.Unlock()
			if done {
				return
			}
			_ = cs.c.write(protocol.AppendCommand(nil, "SHB", cs.sid))
		case <-cs.c.closedCh:
			return
		}
	}
}

// Close acknowledges what was processed and leaves the group; the
// consumer's partitions go to the other members.
func (cs *Consumer) Close() error {
	c := cs.c
	c.mu.Lock()
	_, live := c.cons[cs.sid]
	delete(c.cons, cs.sid)
	c.mu.Unlock()
	cs.end(ErrClosed)
	if !live {
		return nil
	}
	cs.flushAcks()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.do(ctx, func(b []byte) []byte { return protocol.AppendCommand(b, "SUNSUB", cs.sid) })
	return err
}
