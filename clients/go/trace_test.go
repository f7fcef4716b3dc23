package flowmesh_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
	"github.com/flowmesh/flowmesh/monitor/tracing"
	"github.com/flowmesh/flowmesh/server"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// tracedNode starts a node and connects an SDK, each with a tracer
// provider of its own (as two processes would) exporting synchronously to
// an in-memory exporter: a span is there once the call that ends it
// returns.
func tracedNode(t *testing.T) (srvExp, cliExp *tracetest.InMemoryExporter, cliTP *sdktrace.TracerProvider, fm *flowmesh.Conn) {
	t.Helper()
	srvExp, cliExp = tracetest.NewInMemoryExporter(), tracetest.NewInMemoryExporter()
	srvTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(srvExp))
	cliTP = sdktrace.NewTracerProvider(sdktrace.WithSyncer(cliExp))
	s, err := server.New(server.Config{Addr: "127.0.0.1:0", HTTPAddr: "off", InMemory: true,
		Tracing: tracing.Config{Provider: srvTP}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return srvExp, cliExp, cliTP, connect(t, s, flowmesh.TracerProvider(cliTP))
}

// TestTraceAcrossQueueAndStream is the tracing check of the observability
// issue: an HTTP handler enqueues a job, a worker processes it and emits
// an event, a consumer group member processes the event, and all of it is
// one trace — producer → server → worker → emitted event → consumer — with
// causation_id and correlation_id right. The server and the SDK have
// tracer providers of their own, as two processes would; both export to
// in-memory exporters.
func TestTraceAcrossQueueAndStream(t *testing.T) {
	srvExp, cliExp, cliTP, fm := tracedNode(t)
	ctx := ctx5(t)

	// The HTTP handler: its span is the trace's root.
	hctx, root := cliTP.Tracer("http").Start(ctx, "POST /signup", trace.WithSpanKind(trace.SpanKindServer))
	hctx = flowmesh.WithCorrelationID(hctx, "req-7")
	jobID, err := fm.Queue.Enqueue(hctx, "emails.send", []byte("to: ada@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	root.End()
	traceID := root.SpanContext().TraceID()

	// The worker emits an event while processing the job.
	wctx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	go func() {
		workerDone <- fm.Queue.Worker(wctx, "emails.send", func(ctx context.Context, job *flowmesh.Job) error {
			if got := flowmesh.CausationID(ctx); got != job.MessageID() {
				t.Errorf("handler context's causation %q, want the job %q", got, job.MessageID())
			}
			_, err := fm.Stream.Write(ctx, "emails.sent", []byte("sent"))
			stopWorker()
			return err
		})
	}()
	if err := <-workerDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}

	// The consumer reads the event and checks its lineage.
	for ev, err := range fm.Stream.Consumer(ctx, "emails.sent", "audit") {
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ev.Header.Get(flowmesh.HeaderCausationID), "emails.send/"+strconv.FormatUint(jobID, 10); got != want {
			t.Errorf("event causation_id %q, want the job's id %q", got, want)
		}
		if got := ev.Header.Get(flowmesh.HeaderCorrelationID); got != "req-7" {
			t.Errorf("event correlation_id %q, want the request's req-7", got)
		}
		if got := ev.Header.Get(flowmesh.HeaderTraceID); got != traceID.String() {
			t.Errorf("event trace_id %q, want %s", got, traceID)
		}
		ectx := ev.Context(ctx)
		if flowmesh.CausationID(ectx) != ev.MessageID() || flowmesh.CorrelationID(ectx) != "req-7" {
			t.Errorf("event context: causation %q correlation %q", flowmesh.CausationID(ectx), flowmesh.CorrelationID(ectx))
		}
		break
	}

	// One trace, in this shape (c: SDK span, s: server span):
	spans := map[string]tracetest.SpanStub{}
	add := func(side string, stubs tracetest.SpanStubs) {
		for _, sp := range stubs {
			if sp.SpanContext.TraceID() != traceID {
				t.Errorf("%s span %q is in trace %s, not the request's", side, sp.Name, sp.SpanContext.TraceID())
			}
			if _, dup := spans[side+" "+sp.Name]; dup {
				t.Errorf("two %s spans %q", side, sp.Name)
			}
			spans[side+" "+sp.Name] = sp
		}
	}
	add("c", cliExp.GetSpans())
	add("s", srvExp.GetSpans())
	for _, e := range []struct{ span, parent string }{
		{"c enqueue emails.send", "c POST /signup"},
		{"s enqueue emails.send", "c enqueue emails.send"},
		{"s deliver emails.send", "s enqueue emails.send"},
		{"c process emails.send", "s enqueue emails.send"},
		{"s ack emails.send", "s enqueue emails.send"},
		{"c write emails.sent", "c process emails.send"},
		{"s write emails.sent", "c write emails.sent"},
		{"s deliver emails.sent", "s write emails.sent"},
		{"c process emails.sent", "s write emails.sent"},
	} {
		sp, ok := spans[e.span]
		if !ok {
			t.Errorf("no span %q (have %d spans)", e.span, len(spans))
			continue
		}
		if p := spans[e.parent]; sp.Parent.SpanID() != p.SpanContext.SpanID() {
			t.Errorf("%q's parent is %s, want %q (%s)", e.span, sp.Parent.SpanID(), e.parent, p.SpanContext.SpanID())
		}
	}
	if k := spans["c process emails.send"].SpanKind; k != trace.SpanKindConsumer {
		t.Errorf("worker span kind %v", k)
	}
	if k := spans["c enqueue emails.send"].SpanKind; k != trace.SpanKindProducer {
		t.Errorf("enqueue span kind %v", k)
	}
}

// TestTracePubSub: a subscriber's Messages loop continues a published
// message's trace, and what it publishes with Msg.Context is in it too.
func TestTracePubSub(t *testing.T) {
	srvExp, cliExp, cliTP, fm := tracedNode(t)
	ctx := ctx5(t)
	in, err := fm.Subscribe(ctx, "orders.new")
	if err != nil {
		t.Fatal(err)
	}
	out, err := fm.Subscribe(ctx, "orders.priced")
	if err != nil {
		t.Fatal(err)
	}
	pctx, root := cliTP.Tracer("test").Start(ctx, "checkout")
	if err := fm.Publish(pctx, "orders.new", []byte("o-1")); err != nil {
		t.Fatal(err)
	}
	root.End()
	for msg, err := range in.Messages(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if err := fm.Publish(msg.Context(ctx), "orders.priced", []byte("o-1 $9")); err != nil {
			t.Fatal(err)
		}
		break
	}
	priced, err := out.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if priced.Header.Get(flowmesh.HeaderTraceID) != root.SpanContext().TraceID().String() {
		t.Fatalf("republished message is in trace %q", priced.Header.Get(flowmesh.HeaderTraceID))
	}
	spans := map[string]tracetest.SpanStub{}
	for _, sp := range append(cliExp.GetSpans(), srvExp.GetSpans()...) {
		spans[sp.Name+"/"+sp.SpanKind.String()] = sp
	}
	for _, e := range []struct{ span, parent string }{
		{"publish orders.new/producer", "checkout/internal"},
		{"publish orders.new/server", "publish orders.new/producer"},
		{"process orders.new/consumer", "publish orders.new/server"},
		{"publish orders.priced/producer", "process orders.new/consumer"},
		{"publish orders.priced/server", "publish orders.priced/producer"},
	} {
		sp, ok := spans[e.span]
		if !ok || sp.Parent.SpanID() != spans[e.parent].SpanContext.SpanID() {
			t.Errorf("span %q (found %v): parent %s, want %q", e.span, ok, sp.Parent.SpanID(), e.parent)
		}
	}
}

// TestMessageContextReplacesSpan: the context of a message without a
// trace carries no span, even when the worker was started inside one; a
// message's own trace wins over the caller's.
func TestMessageContextReplacesSpan(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, outer := tp.Tracer("test").Start(context.Background(), "app start")
	defer outer.End()
	job := &flowmesh.Job{Queue: "q", ID: 7}
	if sc := trace.SpanContextFromContext(job.Context(ctx)); sc.IsValid() {
		t.Fatalf("a job without a trace inherited the caller's span %v", sc.TraceID())
	}
	job.Header = flowmesh.Header{"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	jctx := job.Context(ctx)
	if sc := trace.SpanContextFromContext(jctx); sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("a job's trace must replace the caller's, got %v", sc.TraceID())
	}
	if flowmesh.CausationID(jctx) != "q/7" || flowmesh.CorrelationID(jctx) != "q/7" {
		t.Fatalf("lineage: causation %q correlation %q", flowmesh.CausationID(jctx), flowmesh.CorrelationID(jctx))
	}
}

// TestJobContextIsAContext: a job's context is a plain context to what
// derives from it (cancellation reaches a child of it, values of the
// caller stay visible), and its lineage is the job's until a flow sets a
// correlation id of its own, the empty one included.
func TestJobContextIsAContext(t *testing.T) {
	type callerKey struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), callerKey{}, "caller"))
	job := &flowmesh.Job{Queue: "emails.send", ID: 1234567}
	jctx := job.Context(parent)
	child, stop := context.WithCancel(jctx)
	defer stop()
	if jctx.Value(callerKey{}) != "caller" {
		t.Fatalf("the caller's value is lost: %v", jctx.Value(callerKey{}))
	}
	if flowmesh.CausationID(child) != "emails.send/1234567" || flowmesh.CorrelationID(child) != "emails.send/1234567" {
		t.Fatalf("lineage: causation %q correlation %q", flowmesh.CausationID(child), flowmesh.CorrelationID(child))
	}
	job.Header = flowmesh.Header{flowmesh.HeaderCorrelationID: {"req-9"}}
	if got := flowmesh.CorrelationID(job.Context(parent)); got != "req-9" {
		t.Fatalf("correlation from the header: %q", got)
	}
	for _, corr := range []string{"req-10", ""} {
		c := flowmesh.WithCorrelationID(jctx, corr)
		if flowmesh.CausationID(c) != "emails.send/1234567" || flowmesh.CorrelationID(c) != corr {
			t.Fatalf("WithCorrelationID(%q): causation %q correlation %q", corr, flowmesh.CausationID(c), flowmesh.CorrelationID(c))
		}
	}
	cancel()
	<-child.Done() // a context derived from the job's hears its caller's cancel
	if !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("child err %v", child.Err())
	}
}

// TestNoTraceNoHeaders: without a span or a message in the context the
// SDK adds nothing to what it sends (the server, tracing off, neither).
func TestNoTraceNoHeaders(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	if _, err := fm.Stream.Write(ctx, "plain", []byte("x"), flowmesh.ToPartition(0)); err != nil {
		t.Fatal(err)
	}
	evs, _, err := fm.Stream.Read(ctx, "plain", 0, 0, 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v %v", evs, err)
	}
	if evs[0].Header != nil {
		t.Fatalf("untraced write got headers %v", evs[0].Header)
	}
}
