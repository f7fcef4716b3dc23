package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Config is the tracing section of the node's config. The zero value is
// off unless the OTEL_* variables turn it on.
type Config struct {
	// Exporter is "otlp" (send spans to an OpenTelemetry collector) or
	// "off". Default: OTEL_TRACES_EXPORTER ("otlp" or "none"), else off.
	Exporter string `json:"exporter,omitempty"`
	// Protocol of the OTLP exporter: grpc or http/protobuf. Default:
	// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL,
	// else grpc.
	Protocol string `json:"protocol,omitempty"`
	// Endpoint is the collector's URL: http://collector:4317 for grpc,
	// http://collector:4318 for http (a URL without a path gets
	// /v1/traces). Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, then
	// OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317 or localhost:4318.
	Endpoint string `json:"endpoint,omitempty"`
	// SampleRatio is the fraction of new traces recorded, 0 to 1. A
	// message whose producer sent a traceparent follows the producer's
	// decision (parent-based sampling). Default: OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG (always_on, always_off, traceidratio and
	// their parentbased_ forms), else 1.
	SampleRatio *float64 `json:"sample_ratio,omitempty"`
	// ServiceName is the resource's service.name. Default "flowmesh";
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override it.
	ServiceName string `json:"service_name,omitempty"`

	// Provider, set by an embedder or a test, turns tracing on with spans
	// going to it instead of an exporter; its sampler should be
	// parent-based, as the server skips the spans of unsampled traces.
	Provider trace.TracerProvider `json:"-"`
}

// Settings are a Config resolved against the environment.
type Settings struct {
	On          bool    `json:"on"`
	Protocol    string  `json:"protocol,omitempty"`
	Endpoint    string  `json:"endpoint,omitempty"` // "" : the exporter's default or its OTEL_* variable
	SampleRatio float64 `json:"sample_ratio"`
	ServiceName string  `json:"service_name,omitempty"`
}

// Resolve applies the defaults and the OTEL_* variables (read through
// getenv) and checks the result.
func (c Config) Resolve(getenv func(string) string) (Settings, error) {
	s := Settings{SampleRatio: 1, ServiceName: c.ServiceName}
	if s.ServiceName == "" {
		s.ServiceName = "flowmesh"
	}
	exp := strings.ToLower(c.Exporter)
	if exp == "" {
		exp = strings.ToLower(getenv("OTEL_TRACES_EXPORTER"))
		if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
			exp = "off"
		}
	}
	switch exp {
	case "", "off", "none":
	case "otlp":
		s.On = true
	default:
		return s, fmt.Errorf("tracing: exporter %q: want otlp or off", exp)
	}
	if !s.On {
		// The variables may be meant for other programs: with tracing off
		// only the node's own settings are checked.
		getenv = func(string) string { return "" }
	}
	s.Protocol = firstOf(c.Protocol, getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "grpc")
	switch s.Protocol {
	case "grpc", "http/protobuf":
	case "http":
		s.Protocol = "http/protobuf"
	default:
		return s, fmt.Errorf("tracing: protocol %q: want grpc or http/protobuf", s.Protocol)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return s, fmt.Errorf("tracing: endpoint %q: want a URL like http://collector:4317", c.Endpoint)
		}
		if s.Protocol == "http/protobuf" && (u.Path == "" || u.Path == "/") {
			u.Path = "/v1/traces"
		}
		s.Endpoint = u.String()
	}
	if c.SampleRatio != nil {
		s.SampleRatio = *c.SampleRatio
	} else {
		r, err := envRatio(getenv("OTEL_TRACES_SAMPLER"), getenv("OTEL_TRACES_SAMPLER_ARG"))
		if err != nil {
			return s, err
		}
		s.SampleRatio = r
	}
	if !(s.SampleRatio >= 0 && s.SampleRatio <= 1) {
		return s, fmt.Errorf("tracing: sample_ratio %v: want 0 to 1", s.SampleRatio)
	}
	return s, nil
}

// envRatio maps the standard sampler variables onto a ratio; the server
// always samples parent-based, so the parentbased_ forms mean the same.
func envRatio(sampler, arg string) (float64, error) {
	switch strings.TrimPrefix(strings.ToLower(sampler), "parentbased_") {
	case "", "always_on":
		return 1, nil
	case "always_off":
		return 0, nil
	case "traceidratio":
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil {
			return 0, fmt.Errorf("tracing: OTEL_TRACES_SAMPLER_ARG %q is not a number", arg)
		}
		return r, nil
	default:
		return 0, fmt.Errorf("tracing: OTEL_TRACES_SAMPLER %q: want always_on, always_off or traceidratio (or parentbased_ of one)", sampler)
	}
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return strings.ToLower(v)
		}
	}
	return ""
}

// Tracer starts the spans of message operations. A nil *Tracer is
// tracing off: its methods return spans that record nothing.
type Tracer struct {
	tr       trace.Tracer
	ratio    float64 // of new traces recorded; see Start
	shutdown func(context.Context) error
}

// scope is the instrumentation scope of the server's spans.
const scope = "github.com/flowmesh/flowmesh/server"

// New builds the tracer of cfg; it returns nil (and no error) when tracing
// is off. The exporter does not connect until it has spans to send; its
// failures (collector down, spans dropped) go to log, at most one line per
// errorEvery, instead of OpenTelemetry's default of a line per failure on
// stderr.
func New(ctx context.Context, cfg Config, version string, log *slog.Logger) (*Tracer, error) {
	if cfg.Provider != nil {
		return &Tracer{tr: cfg.Provider.Tracer(scope, trace.WithInstrumentationVersion(version)), ratio: 1,
			shutdown: func(context.Context) error { return nil }}, nil
	}
	s, err := cfg.Resolve(os.Getenv)
	if err != nil || !s.On {
		return nil, err
	}
	// OpenTelemetry's error handler is process-wide: with several nodes in
	// one process (tests), the last one started logs for all.
	otel.SetErrorHandler(&errorLog{log: log})
	var exp sdktrace.SpanExporter
	if s.Protocol == "grpc" {
		var opts []otlptracegrpc.Option
		if s.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(s.Endpoint))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	} else {
		var opts []otlptracehttp.Option
		if s.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(s.Endpoint))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP %s exporter: %w", s.Protocol, err)
	}
	// Later detectors win: the OTEL_* variables override the defaults.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(s.ServiceName), semconv.ServiceVersion(version)),
		resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil && res == nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// New traces are sampled by Start, before anything is built; the
	// provider records what Start lets through and follows parents.
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	)
	return &Tracer{tr: tp.Tracer(scope, trace.WithInstrumentationVersion(version)), ratio: s.SampleRatio,
		shutdown: tp.Shutdown}, nil
}

// errorEvery bounds how often export failures are logged.
const errorEvery = 10 * time.Second

// errorLog is OpenTelemetry's error handler: a collector that is down
// fails every batch, and one line per 10 s says so.
type errorLog struct {
	log     *slog.Logger
	mu      sync.Mutex
	last    time.Time
	dropped int // failures not logged since the last line
}

func (e *errorLog) Handle(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); now.Sub(e.last) >= errorEvery {
		e.log.Warn("tracing: export failed", "err", err, "more_failures", e.dropped)
		e.last, e.dropped = now, 0
		return
	}
	e.dropped++
}

// Shutdown sends the spans still buffered and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// Op is a message operation: its span's name (with the destination) and
// the messaging attributes of OpenTelemetry's semantic conventions.
type Op struct {
	name string // messaging.operation.name
	typ  string // messaging.operation.type
	kind trace.SpanKind
}

// The operations the server traces.
var (
	Write      = Op{"write", "send", trace.SpanKindServer}
	Publish    = Op{"publish", "send", trace.SpanKindServer}
	Enqueue    = Op{"enqueue", "send", trace.SpanKindServer}
	Deliver    = Op{"deliver", "receive", trace.SpanKindServer}
	Ack        = Op{"ack", "settle", trace.SpanKindServer}
	Nack       = Op{"nack", "settle", trace.SpanKindServer}
	DeadLetter = Op{"dead_letter", "settle", trace.SpanKindInternal}
)

// Span is one operation's span. The zero Span records nothing, so callers
// need not ask whether tracing is on.
type Span struct{ s trace.Span }

// Start begins op's span on dest, continuing the trace of parent (a
// message's traceparent value) or starting a trace when parent is nil or
// not a traceparent. inject reports whether the message should carry the
// span's traceparent from here on (so that the trace reads producer →
// server → consumer); it is true whenever a span is returned.
//
// Only recorded traces cost anything. A parent that is not sampled gets no
// span and keeps its header. A new trace is sampled first, with one random
// number: one not sampled gets no span, no ids and no header (its
// consumers, seeing no traceparent, start nothing either), so tracing at a
// low ratio costs messages almost nothing.
func (t *Tracer) Start(op Op, dest string, parent []byte) (sp Span, inject bool) {
	if t == nil {
		return Span{}, false
	}
	if parent != nil {
		if sc, ok := ParseTraceparent(parent); ok {
			if !sc.IsSampled() {
				return Span{}, false
			}
			return t.start(trace.ContextWithRemoteSpanContext(context.Background(), sc), op, dest), true
		}
	}
	if t.ratio < 1 && rand.Float64() >= t.ratio {
		return Span{}, false
	}
	return t.start(context.Background(), op, dest), true
}

// Continue begins op's span under a sampled parent, given as a
// traceparent; otherwise it returns the zero Span.
func (t *Tracer) Continue(op Op, dest string, parent []byte) Span {
	if t == nil || !Sampled(parent) {
		return Span{}
	}
	sc, ok := ParseTraceparent(parent)
	if !ok {
		return Span{}
	}
	return t.start(trace.ContextWithRemoteSpanContext(context.Background(), sc), op, dest)
}

// ContinuePacked is Continue with the parent in packed form (nil: none).
func (t *Tracer) ContinuePacked(op Op, dest string, parent *[PackedSize]byte) Span {
	if t == nil || parent == nil {
		return Span{}
	}
	return t.start(trace.ContextWithRemoteSpanContext(context.Background(), Unpack(parent)), op, dest)
}

func (t *Tracer) start(ctx context.Context, op Op, dest string) Span {
	_, s := t.tr.Start(ctx, op.name+" "+dest, trace.WithSpanKind(op.kind), trace.WithAttributes(
		semconv.MessagingSystemKey.String("flowmesh"),
		semconv.MessagingOperationName(op.name),
		semconv.MessagingOperationTypeKey.String(op.typ),
		semconv.MessagingDestinationName(dest),
	))
	return Span{s}
}

// Recording reports whether the span records anything: callers skip
// building attributes otherwise.
func (s Span) Recording() bool { return s.s != nil && s.s.IsRecording() }

// Valid reports whether there is a span at all (recorded or not).
func (s Span) Valid() bool { return s.s != nil }

// Set adds attributes.
func (s Span) Set(kv ...attribute.KeyValue) {
	if s.s != nil {
		s.s.SetAttributes(kv...)
	}
}

// End finishes the span, marking it failed when err is not nil.
func (s Span) End(err error) {
	if s.s == nil {
		return
	}
	if err != nil {
		s.s.RecordError(err)
		s.s.SetStatus(codes.Error, err.Error())
	}
	s.s.End()
}

// AppendTraceparent appends the span's context as a traceparent value.
func (s Span) AppendTraceparent(dst []byte) []byte {
	if s.s == nil {
		return dst
	}
	return AppendTraceparent(dst, s.s.SpanContext())
}

// AppendTraceID appends the span's trace id in hex (the trace_id header).
func (s Span) AppendTraceID(dst []byte) []byte {
	if s.s == nil {
		return dst
	}
	id := s.s.SpanContext().TraceID()
	return appendHex(dst, id[:])
}

// Packed is the span's context packed for the queue engine, nil unless
// sampled: the later spans of an unsampled trace are skipped anyway.
func (s Span) Packed() *[PackedSize]byte {
	if s.s == nil || !s.s.SpanContext().IsSampled() {
		return nil
	}
	return Pack(s.s.SpanContext())
}

// Attributes of the server's spans beyond the messaging basics.
var (
	MessageID   = semconv.MessagingMessageIDKey
	Partition   = semconv.MessagingDestinationPartitionIDKey
	Group       = semconv.MessagingConsumerGroupNameKey
	Offset      = attribute.Key("flowmesh.offset")
	Attempt     = attribute.Key("flowmesh.attempt")
	Where       = attribute.Key("flowmesh.job.where")
	LastError   = attribute.Key("flowmesh.job.last_error")
	Subscribers = attribute.Key("flowmesh.subscribers")
	Duplicate   = attribute.Key("flowmesh.duplicate")
)
