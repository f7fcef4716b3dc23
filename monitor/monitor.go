package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Node is what the monitor needs from a running node.
type Node interface {
	// Ready is nil once recovery finished, clients are accepted and the
	// storage works; otherwise why not.
	Ready() error
	// Varz returns a JSON-encodable snapshot of the node's state.
	Varz() any
	Metered
	// Autoscale recommends worker counts for every queue and group.
	Autoscale() []Recommendation
	API
}

// Server is the monitoring HTTP server.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc // ends the live feeds, which Shutdown does not wait for
}

// Handler returns the monitoring routes for node.
func Handler(node Node) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if err := node.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /varz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(node.Varz())
	})
	mux.Handle("GET /metrics", metricsHandler(node))
	apiRoutes(mux, node)
	mux.HandleFunc("GET /api/v1/feed", feedHandler(node))
	mux.HandleFunc("GET /api/v1/autoscale", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(node.Autoscale())
	})
	// One target, for a scaler that reads one number (KEDA's metrics-api
	// scaler with valueLocation "scale_to").
	one := func(w http.ResponseWriter, target string) {
		for _, r := range node.Autoscale() {
			if r.Target == target {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(r)
				return
			}
		}
		http.Error(w, "no such queue or group: "+target, http.StatusNotFound)
	}
	mux.HandleFunc("GET /api/v1/autoscale/queue/{name}", func(w http.ResponseWriter, r *http.Request) {
		one(w, "queue:"+r.PathValue("name"))
	})
	mux.HandleFunc("GET /api/v1/autoscale/group/{topic}/{group}", func(w http.ResponseWriter, r *http.Request) {
		one(w, "group:"+r.PathValue("topic")+"/"+r.PathValue("group"))
	})
	// Profiles, for "profile before you optimise" on a live node.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	return mux
}

// Listen serves Handler(node) on addr until Shutdown.
func Listen(addr string, node Node, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("monitor: listen on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{ln: ln, cancel: cancel, srv: &http.Server{Handler: Handler(node), ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout: 2 * time.Minute, // a kept-alive connection holds a descriptor and a goroutine
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("monitor: serve", "err", err)
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the server within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel()
	return s.srv.Shutdown(ctx)
}
