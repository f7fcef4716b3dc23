package server

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/monitor/tracing"
	"github.com/flowmesh/flowmesh/protocol"
	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// tracedServer starts a node whose spans go to an in-memory exporter,
// synchronously: a span is there once the reply that follows it arrives.
func tracedServer(t *testing.T) (*Server, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	return startServer(t, Config{Tracing: tracing.Config{Provider: tp}}), exp
}

// hframe reads an H-frame (HEVT, HJOB, HMSG) and returns its control
// line, header block and payload.
func (w *wire) hframe() (string, string, string) {
	w.t.Helper()
	line := w.line()
	f := strings.Fields(line)
	if len(f) < 3 || f[0][0] != 'H' {
		w.t.Fatalf("want an H-frame, got %q", line)
	}
	nh, _ := strconv.Atoi(f[len(f)-2])
	nt, _ := strconv.Atoi(f[len(f)-1])
	buf := make([]byte, nt+2)
	if _, err := ioReadFull(w.br, buf); err != nil {
		w.t.Fatal(err)
	}
	return line, string(buf[:nh]), string(buf[nh:nt])
}

func hsend(verb, args, hdr, payload string) string {
	return fmt.Sprintf("%s %s %d %d\r\n%s%s\r\n", verb, args, len(hdr), len(hdr)+len(payload), hdr, payload)
}

const (
	producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	producerSpan  = "00f067aa0ba902b7"
)

func spanNamed(t *testing.T, exp *tracetest.InMemoryExporter, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		var names []string
		for _, s := range exp.GetSpans() {
			names = append(names, s.Name)
		}
		t.Fatalf("want one span %q, have %v", name, names)
	}
	return found[0]
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// TestTraceStreamWrite: a write continues the producer's trace, and the
// stored event carries the server's span from then on; an event without a
// traceparent starts a trace; an unsampled one is left alone.
func TestTraceStreamWrite(t *testing.T) {
	s, exp := tracedServer(t)
	w := dial(t, s)
	w.send("TCREATE orders partitions=1\r\n")
	w.expect("+OK 1")
	parent := "00-" + producerTrace + "-" + producerSpan + "-01"
	w.send(hsend("HSWRITE", "orders", "NATS/1.0\r\ntraceparent: "+parent+"\r\ncorrelation_id: c-1\r\n\r\n", "e0"))
	w.expect("+OK 0 0")
	ws := spanNamed(t, exp, "write orders")
	if ws.Parent.TraceID().String() != producerTrace || ws.Parent.SpanID().String() != producerSpan || !ws.Parent.IsRemote() {
		t.Fatalf("write span's parent %v", ws.Parent)
	}
	if ws.SpanKind != trace.SpanKindServer || attr(ws, "messaging.destination.name") != "orders" ||
		attr(ws, "flowmesh.offset") != "0" || attr(ws, "messaging.system") != "flowmesh" {
		t.Fatalf("write span %v %v", ws.SpanKind, ws.Attributes)
	}
	w.send("SWRITE orders 2\r\ne1\r\n")
	w.expect("+OK 0 1")
	w.send(hsend("HSWRITE", "orders", "NATS/1.0\r\ntraceparent: 00-"+producerTrace+"-"+producerSpan+"-00\r\n\r\n", "e2"))
	w.expect("+OK 0 2")
	if n := len(exp.GetSpans()); n != 2 {
		t.Fatalf("%d spans: the unsampled write must record none", n)
	}

	w.send("SREAD orders 0 0\r\n")
	_, h0, _ := w.hframe()
	wantTP := "00-" + producerTrace + "-" + ws.SpanContext.SpanID().String() + "-01"
	if v := string(protocol.HeaderValue([]byte(h0), "traceparent")); v != wantTP {
		t.Fatalf("stored traceparent %q, want the write span's %q", v, wantTP)
	}
	if string(protocol.HeaderValue([]byte(h0), "correlation_id")) != "c-1" || string(protocol.HeaderValue([]byte(h0), "trace_id")) != producerTrace {
		t.Fatalf("stored header %q", h0)
	}
	_, h1, _ := w.hframe()
	root := exp.GetSpans()[1]
	if root.Parent.IsValid() || string(protocol.HeaderValue([]byte(h1), "trace_id")) != root.SpanContext.TraceID().String() {
		t.Fatalf("a headerless event starts a trace: span parent %v, header %q", root.Parent, h1)
	}
	_, h2, _ := w.hframe()
	if !strings.Contains(h2, producerSpan+"-00") || strings.Contains(h2, "trace_id") {
		t.Fatalf("unsampled header changed: %q", h2)
	}
	w.expect("+OK 3 3")

	// A group member's delivery is a span under the write's.
	exp.Reset()
	w.send("SSUB orders billing s1 start=earliest\r\n")
	if l := w.line(); !strings.HasPrefix(l, "+OK ") {
		t.Fatalf("SSUB: %q", l)
	}
	w.expect("SASSIGN s1 1 0")
	for range 3 {
		w.hframe()
	}
	var delivers []tracetest.SpanStub
	for _, sp := range exp.GetSpans() {
		if sp.Name == "deliver orders" {
			delivers = append(delivers, sp)
		}
	}
	if len(delivers) != 2 || delivers[0].Parent.SpanID() != ws.SpanContext.SpanID() || attr(delivers[0], "messaging.consumer.group.name") != "billing" {
		t.Fatalf("deliver spans %+v", delivers)
	}
}

// TestTraceQueue: enqueue, deliver, ack, nack and dead-letter are spans
// of the job's trace.
func TestTraceQueue(t *testing.T) {
	s, exp := tracedServer(t)
	w := dial(t, s)
	w.send("QCREATE jobs max_attempts=3\r\n")
	w.expect("+OK")
	parent := "00-" + producerTrace + "-" + producerSpan + "-01"
	hdr := "NATS/1.0\r\ntraceparent: " + parent + "\r\n\r\n"
	w.send(hsend("HQPUT", "jobs", hdr, "a") + hsend("HQPUT", "jobs", hdr, "b"))
	w.expect("+OK 0", "+OK 1")
	enq := exp.GetSpans()
	if len(enq) != 2 || enq[0].Name != "enqueue jobs" || enq[0].Parent.SpanID().String() != producerSpan || attr(enq[0], "messaging.message.id") != "0" {
		t.Fatalf("enqueue spans %+v", enq)
	}
	w.send("QGET jobs max=2\r\n")
	_, jh, _ := w.hframe()
	if !strings.Contains(jh, enq[0].SpanContext.SpanID().String()) {
		t.Fatalf("job header %q does not carry the enqueue span", jh)
	}
	w.hframe()
	w.expect("+OK 2")
	w.send("QACK jobs 0 1\r\n")
	w.expect("+OK")
	w.send(fmt.Sprintf("QNACK jobs 1 1 fail %d\r\n%s\r\n", len("bad input"), "bad input"))
	w.expect("+OK dead")
	for _, tc := range []struct {
		name   string
		parent trace.SpanID
		attr   string
		want   string
	}{
		{"deliver jobs", enq[0].SpanContext.SpanID(), "flowmesh.attempt", "1"},
		{"ack jobs", enq[0].SpanContext.SpanID(), "messaging.message.id", "0"},
		{"nack jobs", enq[1].SpanContext.SpanID(), "flowmesh.job.where", "dead"},
		{"dead_letter jobs", enq[1].SpanContext.SpanID(), "flowmesh.job.last_error", "bad input"},
	} {
		var got []tracetest.SpanStub
		for _, sp := range exp.GetSpans() {
			if sp.Name == tc.name && sp.Parent.SpanID() == tc.parent {
				got = append(got, sp)
			}
		}
		if len(got) != 1 || attr(got[0], tc.attr) != tc.want || got[0].SpanContext.TraceID().String() != producerTrace {
			t.Errorf("%s: %d spans under %s, %s=%q", tc.name, len(got), tc.parent, tc.attr, attr(firstOr(got), tc.attr))
		}
	}
}

func firstOr(s []tracetest.SpanStub) tracetest.SpanStub {
	if len(s) == 0 {
		return tracetest.SpanStub{}
	}
	return s[0]
}

// TestTracePubSub: a plain PUB starts a trace and reaches subscribers
// that take headers as an HMSG with the traceparent; others get the MSG
// as before.
func TestTracePubSub(t *testing.T) {
	s, exp := tracedServer(t)
	sub := dial(t, s)
	sub.send("CONNECT {\"headers\":true}\r\nSUB news 1\r\n")
	sub.flush()
	plain := dial(t, s)
	plain.send("SUB news 2\r\n")
	plain.flush()
	pub := dial(t, s)
	pub.send("PUB news 2\r\nhi\r\n")
	pub.flush()
	line, h, body := sub.hframe()
	if !strings.HasPrefix(line, "HMSG news 1 ") || body != "hi" {
		t.Fatalf("%q %q", line, body)
	}
	sp := spanNamed(t, exp, "publish news")
	if v := string(protocol.HeaderValue([]byte(h), "traceparent")); v != string(tracing.AppendTraceparent(nil, sp.SpanContext)) {
		t.Fatalf("traceparent %q, span %v", v, sp.SpanContext)
	}
	if attr(sp, "flowmesh.subscribers") != "2" {
		t.Fatalf("attributes %v", sp.Attributes)
	}
	plain.expect("MSG news 2 2", "hi")
}

// TestTraceNeverOversizes: an event that fills its topic's limit is
// stored with the producer's header as it was, not refused for the bytes
// tracing would add.
func TestTraceNeverOversizes(t *testing.T) {
	s, exp := tracedServer(t)
	w := dial(t, s)
	w.send("TCREATE small partitions=1 max_event_bytes=200\r\n")
	w.expect("+OK 1")
	hdr := "NATS/1.0\r\ntraceparent: 00-" + producerTrace + "-" + producerSpan + "-01\r\n\r\n"
	body := strings.Repeat("x", 200-len(hdr))
	w.send(hsend("HSWRITE", "small", hdr, body))
	w.expect("+OK 0 0")
	w.send("SREAD small 0 0\r\n")
	if _, h, _ := w.hframe(); h != hdr {
		t.Fatalf("header changed to %q", h)
	}
	w.expect("+OK 1 1")
	if sp := spanNamed(t, exp, "write small"); sp.Parent.SpanID().String() != producerSpan {
		t.Fatalf("span parent %s", sp.Parent.SpanID())
	}
}

// TestTraceNATSClient: nats.go clients, unchanged, see the server's trace
// context on a traced node: a plain Publish arrives with a traceparent, and
// a publisher's own traceparent (and other headers) are continued, not lost.
func TestTraceNATSClient(t *testing.T) {
	s, exp := tracedServer(t)
	sub, pub := natsConnect(t, s), natsConnect(t, s)
	ch := make(chan *nats.Msg, 2)
	if _, err := sub.ChanSubscribe("orders.>", ch); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish("orders.eu", []byte("plain")); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("orders.us")
	m.Data = []byte("traced")
	m.Header.Set("traceparent", "00-"+producerTrace+"-"+producerSpan+"-01")
	m.Header.Set("correlation_id", "c-9")
	if err := pub.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"plain", "traced"} {
		select {
		case got := <-ch:
			tp := got.Header.Get("traceparent")
			sc, ok := tracing.ParseTraceparent([]byte(tp))
			if string(got.Data) != want || !ok || got.Header.Get("trace_id") != sc.TraceID().String() {
				t.Fatalf("%q: headers %v", got.Data, got.Header)
			}
			if want == "traced" && (sc.TraceID().String() != producerTrace || got.Header.Get("correlation_id") != "c-9") {
				t.Fatalf("the publisher's trace was not continued: %v", got.Header)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s not delivered", want)
		}
	}
	if n := len(exp.GetSpans()); n != 2 {
		t.Fatalf("%d publish spans, want 2", n)
	}
}

// TestTraceCollectorDown: a collector that cannot be reached neither fails
// the node's shutdown nor holds it for the exporter's retries.
func TestTraceCollectorDown(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0", HTTPAddr: "off", InMemory: true,
		Tracing: tracing.Config{Exporter: "otlp", Endpoint: "http://127.0.0.1:1"}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	w := dial(t, s)
	w.send("PUB news 2\r\nhi\r\n")
	w.flush() // a span is buffered for the dead collector
	ctx, cancel := context.WithTimeout(context.Background(), 5*traceFlushTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("shutdown waited for the exporter past its flush budget")
	}
}
