package tracing

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func TestParseTraceparent(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		in      string
		ok      bool
		sampled bool
	}{
		{good, true, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", true, true}, // unknown flag bits ignored
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false, false}, // 00 has no extra fields
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, false}, // upper case is not W3C
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false, false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"", false, false},
	}
	for _, tc := range tests {
		sc, ok := ParseTraceparent([]byte(tc.in))
		if ok != tc.ok || ok && sc.IsSampled() != tc.sampled {
			t.Errorf("%q: ok=%v sampled=%v, want %v %v", tc.in, ok, sc.IsSampled(), tc.ok, tc.sampled)
		}
		if ok && !sc.IsRemote() {
			t.Errorf("%q: a parsed context is remote", tc.in)
		}
	}
	sc, _ := ParseTraceparent([]byte(good))
	if got := string(AppendTraceparent(nil, sc)); got != good {
		t.Errorf("round trip: %q", got)
	}
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("ids: %s %s", sc.TraceID(), sc.SpanID())
	}
	if u := Unpack(Pack(sc)); !u.Equal(sc) {
		t.Errorf("pack round trip: %v != %v", u, sc)
	}
}

func FuzzTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x")
	f.Fuzz(func(t *testing.T, s string) {
		sc, ok := ParseTraceparent([]byte(s))
		if Sampled([]byte(s)) != (ok && sc.IsSampled()) && ok {
			t.Fatalf("%q: Sampled disagrees with the parse", s)
		}
		if !ok {
			return
		}
		// What parses formats back to the same ids and flag.
		back, ok2 := ParseTraceparent(AppendTraceparent(nil, sc))
		if !ok2 || back.TraceID() != sc.TraceID() || back.SpanID() != sc.SpanID() || back.IsSampled() != sc.IsSampled() {
			t.Fatalf("%q: round trip gave %v", s, back)
		}
	})
}

func TestResolve(t *testing.T) {
	half := 0.5
	bad := 1.5
	tests := []struct {
		name string
		cfg  Config
		env  map[string]string
		want Settings
		err  string
	}{
		{name: "off by default", want: Settings{Protocol: "grpc", SampleRatio: 1, ServiceName: "flowmesh"}},
		{name: "config", cfg: Config{Exporter: "otlp", Protocol: "http", Endpoint: "http://c:4318", SampleRatio: &half},
			want: Settings{On: true, Protocol: "http/protobuf", Endpoint: "http://c:4318/v1/traces", SampleRatio: 0.5, ServiceName: "flowmesh"}},
		{name: "env", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
			"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
			want: Settings{On: true, Protocol: "http/protobuf", SampleRatio: 0.01, ServiceName: "flowmesh"}},
		{name: "traces protocol wins", cfg: Config{Exporter: "otlp"}, env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, want: Settings{On: true, Protocol: "grpc", SampleRatio: 1, ServiceName: "flowmesh"}},
		{name: "config off beats env", cfg: Config{Exporter: "off"}, env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			want: Settings{Protocol: "grpc", SampleRatio: 1, ServiceName: "flowmesh"}},
		{name: "sdk disabled", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
			want: Settings{Protocol: "grpc", SampleRatio: 1, ServiceName: "flowmesh"}},
		{name: "always_off", cfg: Config{Exporter: "otlp"}, env: map[string]string{"OTEL_TRACES_SAMPLER": "always_off"},
			want: Settings{On: true, Protocol: "grpc", SampleRatio: 0, ServiceName: "flowmesh"}},
		{name: "bad exporter", cfg: Config{Exporter: "jaeger"}, err: `exporter "jaeger"`},
		{name: "bad protocol", cfg: Config{Exporter: "otlp", Protocol: "thrift"}, err: `protocol "thrift"`},
		{name: "bad endpoint", cfg: Config{Exporter: "otlp", Endpoint: "collector:4317"}, err: "want a URL"},
		{name: "bad ratio", cfg: Config{Exporter: "otlp", SampleRatio: &bad}, err: "sample_ratio 1.5"},
		{name: "bad sampler", cfg: Config{Exporter: "otlp"}, env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, err: "OTEL_TRACES_SAMPLER"},
		{name: "bad sampler arg", cfg: Config{Exporter: "otlp"}, env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "x"}, err: "not a number"},
		{name: "other programs' variables, tracing off", env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"},
			want: Settings{Protocol: "grpc", SampleRatio: 1, ServiceName: "flowmesh"}},
		{name: "own setting checked when off", cfg: Config{Protocol: "thrift"}, err: `protocol "thrift"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.Resolve(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestNilTracerRecordsNothing(t *testing.T) {
	var tr *Tracer
	sp, inject := tr.Start(Write, "t", nil)
	if sp.Valid() || inject || sp.Recording() || sp.Packed() != nil {
		t.Fatal("a nil tracer must give the zero span")
	}
	sp.End(nil) // no panic
	if tr.Shutdown(t.Context()) != nil {
		t.Fatal("shutdown of a nil tracer")
	}
	if tr.ContinuePacked(Ack, "q", Pack(trace.SpanContext{})).Valid() {
		t.Fatal("continue on a nil tracer")
	}
}

// BenchmarkStartUnsampled is what a message without a traceparent costs
// at 1% sampling when it is not sampled: the common case.
func BenchmarkStartUnsampled(b *testing.B) {
	tr := &Tracer{tr: noop.NewTracerProvider().Tracer(""), ratio: 0.01}
	n := 0
	for b.Loop() {
		if sp, _ := tr.Start(Publish, "x", nil); sp.Valid() {
			n++
		}
	}
	if b.N >= 100_000 && (n == 0 || n > b.N/20) {
		b.Errorf("%d of %d sampled at 1%%", n, b.N)
	}
}

// TestErrorLogLimited: a collector that is down fails every batch; the
// log gets one line per errorEvery, counting the rest.
func TestErrorLogLimited(t *testing.T) {
	var buf bytes.Buffer
	e := &errorLog{log: slog.New(slog.NewTextHandler(&buf, nil))}
	for range 5 {
		e.Handle(errors.New("connection refused"))
	}
	if n := strings.Count(buf.String(), "tracing: export failed"); n != 1 || e.dropped != 4 {
		t.Fatalf("%d lines, %d counted: %s", n, e.dropped, buf.String())
	}
	e.last = e.last.Add(-errorEvery) // as if errorEvery had passed
	e.Handle(errors.New("connection refused"))
	if !strings.Contains(buf.String(), "more_failures=4") {
		t.Fatalf("the second line must count the failures in between: %s", buf.String())
	}
}
