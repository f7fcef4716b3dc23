package flowmesh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"iter"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/flowmesh/flowmesh/protocol"
	"go.opentelemetry.io/otel/trace"
)

// Header carries message metadata (trace_id, causation_id, correlation_id,
// tags, ...) in the NATS/1.0 header block. Keys keep the case they were set
// with; Get is case-insensitive.
type Header map[string][]string

// Get returns the first value of key, or "".
func (h Header) Get(key string) string {
	if v, ok := h[key]; ok && len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// Set replaces key's values with value.
func (h Header) Set(key, value string) { h[key] = []string{value} }

// Add appends value to key's values.
func (h Header) Add(key, value string) { h[key] = append(h[key], value) }

// encode builds the NATS/1.0 block. A key must be printable ASCII without
// ':' or spaces and a value must hold no CR, LF or other control character
// but tab: either would end a line early and let one header's text become
// another header (or the end of the block) for every reader.
func (h Header) encode() ([]byte, error) {
	if len(h) == 0 {
		return nil, nil
	}
	b := []byte("NATS/1.0\r\n")
	for k, vs := range h {
		if !validHeaderKey(k) {
			return nil, fmt.Errorf("%w: key %q", ErrBadHeader, k)
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return nil, fmt.Errorf("%w: the value of %q has a control character", ErrBadHeader, k)
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...), nil
}

func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func decodeHeader(b []byte) (Header, string) {
	status := string(protocol.HeaderStatus(b))
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return Header{}, status
	}
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(b[i+1:])))
	mh, _ := r.ReadMIMEHeader()
	h := Header{}
	for k, v := range mh {
		h[k] = v
	}
	// textproto canonicalises keys (trace_id → Trace_id); keep the sender's
	// spelling where we can recover it from the raw block.
	for _, line := range strings.Split(string(b[i+1:]), "\r\n") {
		if c := strings.IndexByte(line, ':'); c > 0 {
			raw := strings.TrimSpace(line[:c])
			canon := textproto.CanonicalMIMEHeaderKey(raw)
			if raw != canon {
				if v, ok := h[canon]; ok {
					delete(h, canon)
					h[raw] = v
				}
			}
		}
	}
	return h, status
}

// Msg is a message received on a subscription.
type Msg struct {
	Subject string
	Reply   string
	Header  Header
	Data    []byte
	conn    *Conn
	span    trace.Span // a Messages loop's process span, nil otherwise
}

// Respond publishes data to the message's reply subject.
func (m *Msg) Respond(ctx context.Context, data []byte) error {
	if m.Reply == "" {
		return ErrBadSubject
	}
	return m.conn.Publish(ctx, m.Reply, data)
}

// PubOption configures a publish.
type PubOption func(*pubOptions)

type pubOptions struct {
	reply  string
	header Header
}

// WithHeader attaches headers to a published message.
func WithHeader(h Header) PubOption { return func(o *pubOptions) { o.header = h } }

// WithReply sets the reply subject of a published message.
func WithReply(subject string) PubOption { return func(o *pubOptions) { o.reply = subject } }

// Publish sends data to subject. It returns once the message is buffered;
// Flush waits until the server has it. Core publish is at most once, as in
// NATS: durable delivery is what queues and streams are for.
func (c *Conn) Publish(ctx context.Context, subject string, data []byte, opts ...PubOption) error {
	var o pubOptions
	for _, opt := range opts {
		opt(&o)
	}
	if !validPublish(subject) || o.reply != "" && !validPublish(o.reply) {
		return ErrBadSubject
	}
	h, sp := c.stamp(ctx, "publish", subject, o.header)
	hdr, err := h.encode()
	if err != nil {
		endSpan(sp, err)
		return err
	}
	if max := c.MaxPayload(); max > 0 && len(hdr)+len(data) > max {
		endSpan(sp, ErrMaxPayload)
		return ErrMaxPayload
	}
	if err := ctx.Err(); err != nil {
		endSpan(sp, err)
		return err
	}
	err = c.write(protocol.AppendPub(nil, subject, o.reply, hdr, data))
	endSpan(sp, err)
	return err
}

// SubOption configures a subscription.
type SubOption func(*subOptions)

type subOptions struct{ queue string }

// Queue joins the subscription to a queue group: each message goes to one
// member of the group.
func Queue(group string) SubOption { return func(o *subOptions) { o.queue = group } }

// Subscription receives the messages of one subject (wildcards allowed).
type Subscription struct {
	conn    *Conn
	subject string
	queue   string
	sid     string
	q       msgQueue
	dropped atomic.Uint64
}

// Subscribe starts a subscription. It returns once the server has it.
func (c *Conn) Subscribe(ctx context.Context, subject string, opts ...SubOption) (*Subscription, error) {
	var o subOptions
	for _, opt := range opts {
		opt(&o)
	}
	if !validSubscribe(subject) || o.queue != "" && !validPublish(o.queue) {
		return nil, ErrBadSubject
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.nextSid++
	s := &Subscription{conn: c, subject: subject, queue: o.queue, sid: itoa(c.nextSid)}
	s.q.init(c.opts.subPending)
	c.subs[s.sid] = s
	c.mu.Unlock()
	if err := c.write(protocol.AppendSub(nil, subject, o.queue, s.sid)); err != nil {
		// Not sent (buffer full, closed): forget it, or a reconnect
		// would subscribe it again with nobody reading it.
		c.mu.Lock()
		delete(c.subs, s.sid)
		c.mu.Unlock()
		s.q.close(err)
		return nil, err
	}
	// Flush so that a publish made after Subscribe returns is seen.
	if err := c.Flush(ctx); err != nil {
		_ = s.Unsubscribe()
		return nil, err
	}
	return s, nil
}

// Next returns the next message, waiting until one arrives or ctx ends.
func (s *Subscription) Next(ctx context.Context) (*Msg, error) { return s.q.pop(ctx) }

// Messages iterates over the messages until ctx ends or the subscription
// closes; the error, if any, comes last. A message that carries a trace
// is processed under a "process <subject>" span (Msg.Context has it):
//
//	for msg, err := range sub.Messages(ctx) { ... }
func (s *Subscription) Messages(ctx context.Context) iter.Seq2[*Msg, error] {
	return func(yield func(*Msg, error) bool) {
		for {
			m, err := s.q.pop(ctx)
			if err != nil {
				yield(nil, err)
				return
			}
			if m.Header != nil {
				m.span = m.conn.process(ctx, m.Subject, nil, m.Header)
			}
			more := yield(m, nil)
			endSpan(m.span, nil)
			if !more {
				return
			}
		}
	}
}

// Dropped counts messages discarded because the subscription held
// SubscriptionPending unread messages.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Unsubscribe ends the subscription; Next then returns ErrClosed.
func (s *Subscription) Unsubscribe() error {
	c := s.conn
	c.mu.Lock()
	_, live := c.subs[s.sid]
	delete(c.subs, s.sid)
	c.mu.Unlock()
	s.q.close(ErrClosed)
	if !live {
		return nil
	}
	return c.write(protocol.AppendUnsub(nil, s.sid, 0))
}

func (c *Conn) deliver(f *protocol.Frame) {
	sid := f.Args[1]
	c.mu.Lock()
	s := c.subs[string(sid)]
	c.mu.Unlock()
	if s == nil {
		return // unsubscribed while in flight
	}
	m := &Msg{Subject: string(f.Args[0]), Data: append([]byte(nil), f.Payload...), conn: c}
	if len(f.Args) == 3 {
		m.Reply = string(f.Args[2])
	}
	if f.Header != nil {
		var status string
		m.Header, status = decodeHeader(f.Header)
		if status == "503" && len(f.Payload) == 0 {
			m.Header.Set("Status", "503")
		}
	}
	if !s.q.push(m) {
		s.dropped.Add(1)
	}
}

// msgQueue is a bounded FIFO with a wake-up channel: push never blocks the
// reader goroutine, pop waits on ctx.
type msgQueue struct {
	mu     sync.Mutex
	items  []*Msg
	max    int
	wake   chan struct{}
	closed error
}

func (q *msgQueue) init(max int) { q.max, q.wake = max, make(chan struct{}, 1) }

func (q *msgQueue) push(m *Msg) bool {
	q.mu.Lock()
	if q.closed != nil || len(q.items) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, m)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

func (q *msgQueue) pop(ctx context.Context) (*Msg, error) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			m := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.mu.Unlock()
			return m, nil
		}
		err := q.closed
		q.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (q *msgQueue) close(err error) {
	q.mu.Lock()
	if q.closed == nil {
		q.closed = err
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Request publishes data to subject with a reply subject and waits for the
// first response. A subject nobody listens on fails at once with
// ErrNoResponders.
func (c *Conn) Request(ctx context.Context, subject string, data []byte, opts ...PubOption) (*Msg, error) {
	mux, err := c.requestMux(ctx)
	if err != nil {
		return nil, err
	}
	token, ch := mux.register()
	defer mux.unregister(token)
	opts = append(opts, WithReply(mux.prefix+token))
	if err := c.Publish(ctx, subject, data, opts...); err != nil {
		return nil, err
	}
	select {
	case m := <-ch:
		if m.Header != nil && m.Header.Get("Status") == "503" {
			return nil, ErrNoResponders
		}
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// requestMux routes the replies of every request through one wildcard
// inbox subscription, so a request costs no SUB/UNSUB round trip.
type requestMux struct {
	prefix string
	mu     sync.Mutex
	next   uint64
	waits  map[string]chan *Msg
}

func (c *Conn) requestMux(ctx context.Context) (*requestMux, error) {
	c.mu.Lock()
	mux := c.inbox
	c.mu.Unlock()
	if mux != nil {
		return mux, nil
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	mux = &requestMux{prefix: "_INBOX." + hex.EncodeToString(id[:]) + ".", waits: map[string]chan *Msg{}}
	sub, err := c.Subscribe(ctx, mux.prefix+"*")
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.inbox != nil { // another goroutine won the race
		c.mu.Unlock()
		_ = sub.Unsubscribe()
		return c.inbox, nil
	}
	c.inbox = mux
	c.mu.Unlock()
	go func() {
		for m, err := range sub.Messages(context.Background()) {
			if err != nil {
				return
			}
			mux.dispatch(m)
		}
	}()
	return mux, nil
}

func (r *requestMux) register() (string, chan *Msg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	token := itoa(r.next)
	ch := make(chan *Msg, 1)
	r.waits[token] = ch
	return token, ch
}

func (r *requestMux) unregister(token string) {
	r.mu.Lock()
	delete(r.waits, token)
	r.mu.Unlock()
}

func (r *requestMux) dispatch(m *Msg) {
	token := strings.TrimPrefix(m.Subject, r.prefix)
	r.mu.Lock()
	ch := r.waits[token]
	delete(r.waits, token)
	r.mu.Unlock()
	if ch != nil {
		ch <- m
	}
}

func validPublish(s string) bool   { return validSubject(s, false) }
func validSubscribe(s string) bool { return validSubject(s, true) }

// validSubject mirrors the server's rules so a bad subject fails here, not
// as an -ERR that arrives later without a call to answer.
func validSubject(s string, wildcards bool) bool {
	if s == "" {
		return false
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if t == "" || strings.ContainsAny(t, " \t\r\n") {
			return false
		}
		if t == "*" || t == ">" {
			if !wildcards || t == ">" && i != len(toks)-1 {
				return false
			}
		}
	}
	return true
}
