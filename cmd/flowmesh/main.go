package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/flowmesh/flowmesh/internal/dirs"
	"github.com/flowmesh/flowmesh/server"
)

const usage = `FlowMesh: cache, job queues and event streams in one broker.

Usage:
  flowmesh server [flags]   run a node (production: config file + flags)
  flowmesh dev [flags]      run a local node with dev defaults (debug logs, ./flowmesh-data)
  flowmesh version          print the version

Run "flowmesh server -h" for the flags.
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "flowmesh:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "server":
		return serve(ctx, args[1:], false, stdout, stderr)
	case "dev":
		return serve(ctx, args[1:], true, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "flowmesh %s\n", server.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func serve(ctx context.Context, args []string, dev bool, stdout, stderr io.Writer) error {
	name := "server"
	if dev {
		name = "dev"
	}
	fs := flag.NewFlagSet("flowmesh "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configPath  = fs.String("config", "", "JSON config file; flags override it")
		checkConfig = fs.Bool("check-config", false, "validate the configuration, print it and exit")
		addr        = fs.String("addr", "", "protocol port `host:port` (default 127.0.0.1:4222)")
		httpAddr    = fs.String("http-addr", "", "monitoring port `host:port`, or off (default 127.0.0.1:8222)")
		respAddr    = fs.String("resp-addr", "", "Redis-compatible port `host:port` (default off)")
		grpcAddr    = fs.String("grpc-addr", "", "gRPC port `host:port`: KEDA external scaler, health (default off)")
		dataDir     = fs.String("data-dir", "", "data directory (default ./flowmesh-data)")
		inMemory    = fs.Bool("in-memory", false, "keep nothing on disk")
		logLevel    = fs.String("log-level", "", "debug, info, warn or error")
		maxPayload  = fs.Int("max-payload", 0, "largest payload in bytes (default 1 MiB)")
		maxConns    = fs.Int("max-connections", 0, "most client connections (default 65536)")
		loops       = fs.Int("loops", 0, "event loops (default: one per CPU)")
		respLoops   = fs.Int("resp-loops", 0, "the Redis port's event loops (default: --loops if set, else half the CPUs)")
		fsync       = fs.String("fsync", "", "default fsync policy: always, interval or none (default interval)")
		cpuProfile  = fs.String("cpuprofile", "", "write a CPU profile of the whole run to `file` (for the bench harness)")
		traceExp    = fs.String("trace-exporter", "", "OpenTelemetry trace export: otlp or off (default off, or OTEL_TRACES_EXPORTER)")
		traceProto  = fs.String("trace-protocol", "", "OTLP protocol: grpc or http/protobuf (default grpc, or OTEL_EXPORTER_OTLP_PROTOCOL)")
		traceURL    = fs.String("trace-endpoint", "", "OTLP collector `URL`, e.g. http://localhost:4317 (default: OTEL_EXPORTER_OTLP_ENDPOINT)")
		traceSample = fs.Float64("trace-sample", 1, "fraction of new traces recorded, 0 to 1 (default 1, or OTEL_TRACES_SAMPLER_ARG)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cfg server.Config
	if *configPath != "" {
		c, err := server.LoadConfig(*configPath)
		if err != nil {
			return err
		}
		cfg = c
	}
	if dev {
		if cfg.LogLevel == "" {
			cfg.LogLevel = "debug"
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	override(set, "addr", &cfg.Addr, *addr)
	override(set, "http-addr", &cfg.HTTPAddr, *httpAddr)
	override(set, "resp-addr", &cfg.RESPAddr, *respAddr)
	override(set, "grpc-addr", &cfg.GRPCAddr, *grpcAddr)
	override(set, "data-dir", &cfg.DataDir, *dataDir)
	override(set, "log-level", &cfg.LogLevel, *logLevel)
	override(set, "fsync", &cfg.Fsync, *fsync)
	if set["in-memory"] {
		cfg.InMemory = *inMemory
	}
	overrideInt(set, "max-payload", &cfg.MaxPayload, *maxPayload)
	overrideInt(set, "max-connections", &cfg.MaxConns, *maxConns)
	overrideInt(set, "loops", &cfg.Loops, *loops)
	overrideInt(set, "resp-loops", &cfg.RESPLoops, *respLoops)
	override(set, "trace-exporter", &cfg.Tracing.Exporter, *traceExp)
	override(set, "trace-protocol", &cfg.Tracing.Protocol, *traceProto)
	override(set, "trace-endpoint", &cfg.Tracing.Endpoint, *traceURL)
	if set["trace-sample"] {
		cfg.Tracing.SampleRatio = traceSample
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *checkConfig {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cfg)
	}
	logger := newLogger(cfg.LogLevel, stderr)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile %s: %w", *cpuProfile, err)
		}
		defer pprof.StopCPUProfile()
	}
	if !cfg.InMemory {
		if err := dirs.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	srv, err := server.New(cfg, logger)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	if dev {
		banner(stdout, srv, cfg)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var fatal error
	select {
	case <-ctx.Done():
	case fatal = <-srv.Fatal():
		// Stop the rest cleanly and exit non-zero: a supervisor restarts
		// the node, its clients reconnect, the data is on disk.
		fatal = fmt.Errorf("flowmesh: stopping: %w", fatal)
	}
	// From here a second SIGINT or SIGTERM has its default effect and ends
	// the process at once, for an operator who will not wait for the drain
	// (up to shutdown_timeout); the data is safe as after a kill.
	stop()
	logger.Info("flowmesh: shutting down (a second SIGINT or SIGTERM stops at once)", "timeout", time.Duration(cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	return errors.Join(fatal, srv.Shutdown(sctx))
}

func override(set map[string]bool, name string, dst *string, v string) {
	if set[name] {
		*dst = v
	}
}

func overrideInt(set map[string]bool, name string, dst *int, v int) {
	if set[name] {
		*dst = v
	}
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func banner(w io.Writer, srv *server.Server, cfg server.Config) {
	data := "in memory (nothing kept)"
	if !cfg.InMemory {
		abs, _ := filepath.Abs(cfg.DataDir)
		data = abs
	}
	httpAddr := "off"
	if a := srv.HTTPAddr(); a != nil {
		httpAddr = "http://" + a.String()
	}
	respAddr := "off (--resp-addr to serve Redis clients)"
	if a := srv.RESPAddr(); a != nil {
		respAddr = "redis://" + a.String() + "     (try: redis-cli -p " + strconv.Itoa(int(a.(*net.TCPAddr).AddrPort().Port())) + ")"
	}
	tracing := "off (--trace-exporter otlp to export spans)"
	if ts, err := cfg.Tracing.Resolve(os.Getenv); err == nil && ts.On {
		endpoint := ts.Endpoint
		if endpoint == "" {
			endpoint = "the OTLP default or OTEL_EXPORTER_OTLP_ENDPOINT"
		}
		tracing = fmt.Sprintf("OTLP %s to %s, %g of new traces", ts.Protocol, endpoint, ts.SampleRatio)
	}
	fmt.Fprintf(w, `
  FlowMesh %s (dev mode)
  protocol   nats://%s     (try: nc %s)
  redis      %s
  monitor    %s
  tracing    %s
  data       %s

`, server.Version, srv.Addr(), hostPort(srv.Addr().String()), respAddr, httpAddr, tracing, data)
}

func hostPort(a string) string {
	for i := len(a) - 1; i >= 0; i-- {
		if a[i] == ':' {
			return a[:i] + " " + a[i+1:]
		}
	}
	return a
}
