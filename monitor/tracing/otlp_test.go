package tracing

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// collector is an in-process OTLP receiver: it keeps the span names and
// service names of what it is sent.
type collector struct {
	coltrace.UnimplementedTraceServiceServer
	mu       sync.Mutex
	spans    []string
	services []string
}

func (c *collector) Export(_ context.Context, r *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range r.ResourceSpans {
		for _, a := range rs.Resource.GetAttributes() {
			if a.Key == "service.name" {
				c.services = append(c.services, a.Value.GetStringValue())
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans = append(c.spans, s.Name)
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func (c *collector) got() ([]string, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.spans...), append([]string(nil), c.services...)
}

// export sends one span through a tracer built from cfg and shuts it down
// (which flushes the batch).
func export(t *testing.T, cfg Config) {
	t.Helper()
	tr, err := New(t.Context(), cfg, "test", slog.New(slog.DiscardHandler))
	if err != nil || tr == nil {
		t.Fatalf("New: %v, %v", tr, err)
	}
	sp, inject := tr.Start(Enqueue, "emails.send", nil)
	if !inject || !sp.Recording() {
		t.Fatal("a new trace at ratio 1 is recorded and injected")
	}
	sp.End(nil)
	if err := tr.Shutdown(t.Context()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestOTLPExportGRPC(t *testing.T) {
	col := &collector{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(gs, col)
	go gs.Serve(ln)
	defer gs.Stop()
	t.Setenv("OTEL_SERVICE_NAME", "flowmesh-test")
	export(t, Config{Exporter: "otlp", Protocol: "grpc", Endpoint: "http://" + ln.Addr().String()})
	spans, services := col.got()
	if len(spans) != 1 || spans[0] != "enqueue emails.send" || services[0] != "flowmesh-test" {
		t.Fatalf("collector got %v from %v", spans, services)
	}
}

func TestOTLPExportHTTP(t *testing.T) {
	col := &collector{}
	var path string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		body, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		col.Export(r.Context(), &req)
		b, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(b)
	}))
	defer hs.Close()
	// The endpoint from the standard variables, the protocol from config.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", hs.URL)
	export(t, Config{Exporter: "otlp", Protocol: "http/protobuf"})
	spans, services := col.got()
	if len(spans) != 1 || spans[0] != "enqueue emails.send" || services[0] != "flowmesh" || path != "/v1/traces" {
		t.Fatalf("collector got %v from %v at %s", spans, services, path)
	}
}

// TestSampling: at ratio 0 a new trace costs nothing (no span, no
// header); a producer's sampled trace is recorded whatever the ratio
// (parent-based), an unsampled one never.
func TestSampling(t *testing.T) {
	zero := 0.0
	tr, err := New(t.Context(), Config{Exporter: "otlp", Endpoint: "http://127.0.0.1:1", SampleRatio: &zero}, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Nothing listens at the endpoint: give up on the one span at once.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		_ = tr.Shutdown(ctx)
	}()
	if sp, inject := tr.Start(Write, "t", nil); sp.Valid() || inject {
		t.Fatalf("new trace at ratio 0: span %v inject %v", sp.Valid(), inject)
	}
	parent := []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	sp, inject := tr.Start(Write, "t", parent)
	if !sp.Recording() || !inject || sp.Packed() == nil {
		t.Fatal("a sampled parent must be recorded at ratio 0")
	}
	sp.End(nil)
	unsampled := []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	if sp, inject := tr.Start(Write, "t", unsampled); sp.Valid() || inject {
		t.Fatal("an unsampled parent gets no write span")
	}
	if tr.Continue(Deliver, "t", unsampled).Valid() {
		t.Fatal("an unsampled parent gets no deliver span")
	}
}
