package flowmesh

import (
	"context"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing and message lineage.
//
// Every message can carry, in its header block:
//
//	traceparent     the W3C trace context (OpenTelemetry); trace_id repeats its trace id, readable
//	correlation_id  the id shared by every message of one flow (set by its first producer)
//	causation_id    the id of the message whose processing produced this one
//	tags            free-form labels of the flow, inherited like correlation_id
//
// The SDK fills them from the context a message is sent with:
//   - a span in ctx (an HTTP handler's, a worker's): the message continues
//     its trace, under a producer span ("enqueue emails.send"), and the
//     server's own spans and the consumer's follow;
//   - the context a Worker handler, a Consumer loop body (Event.Context) or
//     a subscriber (Msg.Context) runs with: the message is caused by the one
//     being processed (causation_id = its id), inherits its correlation_id
//     (or takes its id as one, if it had none) and its tags;
//   - WithCorrelationID: the correlation id of a flow's first message.
//
// Message ids are "<queue>/<job id>" for jobs and
// "<topic>/<partition>/<offset>" for events. Headers the caller set itself
// are kept. With no span and no message in ctx the SDK adds nothing; the
// server then starts the trace, if it traces.

// Header keys the SDK sets and reads.
const (
	HeaderTraceparent   = "traceparent"
	HeaderTraceID       = "trace_id"
	HeaderCorrelationID = "correlation_id"
	HeaderCausationID   = "causation_id"
	HeaderTags          = "tags"
)

// TracerProvider sets where the SDK's spans go. Default: OpenTelemetry's
// global provider (otel.GetTracerProvider), as it is when Connect runs.
func TracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

const tracerScope = "github.com/flowmesh/flowmesh/clients/go"

func newTracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(tracerScope, trace.WithInstrumentationVersion(Version))
}

// lineage is what a context knows of the message being processed.
type lineage struct {
	id          string // the message's id: the causation of what it produces
	correlation string
	tags        string
	// of, when set, is the message whose id is the lineage's id, and its
	// correlation when the message had none (the flow's first message
	// names it). It is formatted when asked for: a job whose handler sends
	// nothing never builds the string.
	of messageIdentity
}

// messageIdentity is a received message that has an id (a job, an event).
type messageIdentity interface{ MessageID() string }

func (l *lineage) causationID() string {
	if l.of != nil {
		return l.of.MessageID()
	}
	return l.id
}

func (l *lineage) correlationID() string {
	if l.correlation == "" && l.of != nil {
		return l.of.MessageID()
	}
	return l.correlation
}

type lineageKey struct{}

func lineageOf(ctx context.Context) *lineage {
	l, _ := ctx.Value(lineageKey{}).(*lineage)
	return l
}

// lineageCtx is ctx with a lineage under lineageKey: what
// context.WithValue(ctx, lineageKey{}, &l) gives, in one allocation
// instead of two (a Worker makes one per job).
type lineageCtx struct {
	context.Context
	l lineage
}

func (c *lineageCtx) Value(key any) any {
	if _, ok := key.(lineageKey); ok {
		return &c.l
	}
	return c.Context.Value(key)
}

func withLineage(ctx context.Context, l lineage) context.Context {
	return &lineageCtx{Context: ctx, l: l}
}

// WithCorrelationID returns ctx whose messages carry id as their
// correlation_id: use it where a flow starts (an HTTP request's id).
func WithCorrelationID(ctx context.Context, id string) context.Context {
	l := lineage{correlation: id}
	if cur := lineageOf(ctx); cur != nil {
		l.id, l.tags = cur.causationID(), cur.tags
	}
	return withLineage(ctx, l)
}

// CorrelationID is the correlation id ctx's messages carry, or "".
func CorrelationID(ctx context.Context) string {
	if l := lineageOf(ctx); l != nil {
		return l.correlationID()
	}
	return ""
}

// CausationID is the id of the message ctx is processing, or "".
func CausationID(ctx context.Context) string {
	if l := lineageOf(ctx); l != nil {
		return l.causationID()
	}
	return ""
}

// w3c reads and writes traceparent. The SDK uses it directly, not the
// global propagator: traceparent is part of FlowMesh's protocol.
var w3c propagation.TraceContext

// headerCarrier adapts Header to OpenTelemetry's TextMapCarrier.
type headerCarrier Header

func (h headerCarrier) Get(key string) string { return Header(h).Get(key) }
func (h headerCarrier) Set(key, value string) { Header(h).setFold(key, value) }
func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// setFold sets key, dropping other spellings of it.
func (h Header) setFold(key, value string) {
	for k := range h {
		if k != key && strings.EqualFold(k, key) {
			delete(h, k)
		}
	}
	h[key] = []string{value}
}

// stamp returns h (copied, never changed) with ctx's trace and lineage,
// and the producer span the caller ends when the server answers. With
// nothing to add it returns h itself and a span that records nothing.
func (c *Conn) stamp(ctx context.Context, op, dest string, h Header, attrs ...attribute.KeyValue) (Header, trace.Span) {
	l := lineageOf(ctx)
	parent := trace.SpanContextFromContext(ctx)
	if l == nil && !parent.IsValid() {
		return h, noSpan
	}
	out := make(Header, len(h)+5)
	for k, v := range h {
		out[k] = v
	}
	sp := noSpan
	if parent.IsValid() {
		ctx, sp = c.tracer.Start(ctx, op+" "+dest, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(append(attrs, messagingAttrs(op, "send", dest)...)...))
		w3c.Inject(ctx, headerCarrier(out))
		out.setFold(HeaderTraceID, trace.SpanContextFromContext(ctx).TraceID().String())
	}
	if l != nil {
		setIfEmpty(out, HeaderCausationID, l.causationID())
		setIfEmpty(out, HeaderCorrelationID, l.correlationID())
		setIfEmpty(out, HeaderTags, l.tags)
	}
	return out, sp
}

var noSpan = trace.SpanFromContext(context.Background())

func setIfEmpty(h Header, key, value string) {
	if value != "" && h.Get(key) == "" {
		h.Set(key, value)
	}
}

func messagingAttrs(op, typ, dest string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("messaging.system", "flowmesh"),
		attribute.String("messaging.operation.name", op),
		attribute.String("messaging.operation.type", typ),
		attribute.String("messaging.destination.name", dest),
	}
}

// endSpan finishes a span (nil: none) with err's status.
func endSpan(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	if err != nil {
		sp.RecordError(err)
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End()
}

// messageContext is ctx continuing the trace of a received message's
// header, and knowing the message (of: its id; nil for one without) with
// its correlation and tags as the cause of what is sent with it.
func messageContext(ctx context.Context, h Header, of messageIdentity) context.Context {
	// The message's trace replaces whatever span ctx had (a worker started
	// inside an application's span must not make every job a part of it);
	// a message without a trace leaves none. A ctx without a span (a
	// Worker's, usually) has nothing to mask.
	if trace.SpanContextFromContext(ctx).IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{})
	}
	if h != nil {
		ctx = w3c.Extract(ctx, headerCarrier(h))
	}
	return withLineage(ctx, lineage{correlation: h.Get(HeaderCorrelationID), tags: h.Get(HeaderTags), of: of})
}

// process starts the consumer span of one received message under its
// header's trace; a message without a trace gets none (nil), so a
// consumer that does not trace pays one header lookup per message.
// attrs is only read: a caller's arguments stay on its stack.
func (c *Conn) process(ctx context.Context, dest string, of messageIdentity, h Header, attrs ...attribute.KeyValue) trace.Span {
	if h.Get(HeaderTraceparent) == "" {
		return nil
	}
	ctx = w3c.Extract(ctx, headerCarrier(h))
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	all := make([]attribute.KeyValue, 0, len(attrs)+5)
	all = append(append(all, attrs...), messagingAttrs("process", "process", dest)...)
	if of != nil {
		all = append(all, attribute.String("messaging.message.id", of.MessageID()))
	}
	_, sp := c.tracer.Start(ctx, "process "+dest, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(all...))
	return sp
}

// MessageID is the job's id as causation_id and correlation_id carry it:
// "<queue>/<id>".
func (j *Job) MessageID() string { return queueMsgID(j.Queue, j.ID) }

func queueMsgID(queue string, id uint64) string {
	b := make([]byte, 0, 64) // on the stack for most names: one allocation, the string
	b = append(append(b, queue...), '/')
	return string(strconv.AppendUint(b, id, 10))
}

// MessageID is the event's id as causation_id and correlation_id carry
// it: "<topic>/<partition>/<offset>".
func (ev *Event) MessageID() string { return streamMsgID(ev.Topic, ev.Partition, ev.Offset) }

func streamMsgID(topic string, partition int, offset uint64) string {
	return topic + "/" + strconv.Itoa(partition) + "/" + itoa(offset)
}

// Context returns ctx made ready to send the messages this job causes:
// it continues the job's trace (under the Worker's process span, if a
// Worker runs the job) and makes the job their cause. A Worker's handler
// gets such a context already; this is for jobs taken with Reserve.
func (j *Job) Context(ctx context.Context) context.Context {
	return withSpan(messageContext(ctx, j.Header, j), j.span)
}

// Context returns ctx made ready to send the messages this event causes:
// it continues the event's trace (under the process span that a Consumer
// loop starts for each event) and makes the event their cause.
func (ev *Event) Context(ctx context.Context) context.Context {
	return withSpan(messageContext(ctx, ev.Header, ev), ev.span)
}

func withSpan(ctx context.Context, sp trace.Span) context.Context {
	if sp == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, sp)
}

// Context returns ctx made ready to send the messages this message
// causes: its trace (under the process span a Messages loop starts), its
// correlation id and tags (a pub/sub message has no id to be a cause).
func (m *Msg) Context(ctx context.Context) context.Context {
	return withSpan(messageContext(ctx, m.Header, nil), m.span)
}
