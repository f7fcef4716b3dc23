package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/flowmesh/flowmesh/monitor"
	"github.com/flowmesh/flowmesh/monitor/tracing"
)

// Config is a node's configuration. The zero value of a field means its
// default, given in its comment; Default returns a Config with every default
// filled in. A JSON config file has the same field names (see
// docs/configuration in the README), and command-line flags override it.
type Config struct {
	// Name identifies the node in INFO and logs. Default: the host name.
	Name string `json:"name,omitempty"`
	// Addr is the FlowMesh/NATS protocol port. Default "127.0.0.1:4222".
	Addr string `json:"addr,omitempty"`
	// RESPAddr is the Redis-compatible port; "" or "off" (the default)
	// disables it.
	RESPAddr string `json:"resp_addr,omitempty"`
	// GRPCAddr is the gRPC port: KEDA's external scaler and gRPC health;
	// "" or "off" (the default) disables it.
	GRPCAddr string `json:"grpc_addr,omitempty"`
	// HTTPAddr is the monitoring port (metrics, REST, UI). Default
	// "127.0.0.1:8222"; "off" disables it.
	HTTPAddr string `json:"http_addr,omitempty"`
	// DataDir holds the node's data. Default "./flowmesh-data". Ignored
	// when InMemory is set.
	DataDir string `json:"data_dir,omitempty"`
	// InMemory keeps nothing on disk.
	InMemory bool `json:"in_memory,omitempty"`
	// Loops is the number of event loops. Default: one per CPU.
	Loops int `json:"loops,omitempty"`
	// RESPLoops is the number of the Redis port's event loops. Default:
	// Loops if set, else half the CPUs (at least one); see respLoops.
	RESPLoops int `json:"resp_loops,omitempty"`
	// MaxConns bounds client connections. Default 65536.
	MaxConns int `json:"max_connections,omitempty"`
	// MaxControlLine bounds one control line in bytes. Default 4096.
	MaxControlLine int `json:"max_control_line,omitempty"`
	// MaxPayload bounds one payload in bytes, headers included. Default 1 MiB.
	MaxPayload int `json:"max_payload,omitempty"`
	// MaxHeader bounds one header block in bytes. Default 64 KiB.
	MaxHeader int `json:"max_header,omitempty"`
	// MaxPending is the outbound bytes a connection may have queued before
	// it is closed as a slow consumer. Default 64 MiB.
	MaxPending int `json:"max_pending,omitempty"`
	// MaxStall is how long a subscriber that has fallen behind may slow its
	// publishers down (their sockets are not read while it catches up)
	// before it is left to hit MaxPending and be cut. Default 1s.
	MaxStall Duration `json:"max_stall,omitempty"`
	// MaxInflight is how many commands of one connection may wait on the
	// disk (deferred replies) before the server stops reading it until half
	// of them are answered. Default 4096.
	MaxInflight int `json:"max_inflight,omitempty"`
	// Fsync is the node's default fsync policy for the commit log and the
	// metadata store: always, interval or none (docs/storage.md says what
	// each promises). Default interval.
	Fsync string `json:"fsync,omitempty"`
	// FsyncInterval is how often the interval policy fsyncs. Default 10ms.
	FsyncInterval Duration `json:"fsync_interval,omitempty"`
	// Streams are the defaults of new topics.
	Streams StreamDefaults `json:"streams,omitempty"`
	// Autoscale are the scaling policies of queues and consumer groups
	// (docs/observability.md); the others get monitor.DefaultScalePolicy.
	Autoscale []monitor.ScalePolicy `json:"autoscale,omitempty"`
	// Tracing is OpenTelemetry tracing of messages (docs/observability.md):
	// off unless tracing.exporter or OTEL_TRACES_EXPORTER is otlp.
	Tracing tracing.Config `json:"tracing,omitzero"`
	// PingInterval is how long a connection may be silent before the server
	// PINGs it. Default 2m.
	PingInterval Duration `json:"ping_interval,omitempty"`
	// MaxPingsOut is how many PINGs may go unanswered before the
	// connection is closed as stale. Default 2.
	MaxPingsOut int `json:"max_pings_out,omitempty"`
	// ShutdownTimeout bounds the graceful drain on stop. Default 10s.
	ShutdownTimeout Duration `json:"shutdown_timeout,omitempty"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `json:"log_level,omitempty"`
}

// StreamDefaults are the settings a topic gets unless it is created with
// its own.
type StreamDefaults struct {
	// Partitions of a new topic. Default 4.
	Partitions int `json:"partitions,omitempty"`
	// RetentionAge deletes whole segments whose newest event is older.
	// Default 168h (7 days); 0s keeps events forever.
	RetentionAge *Duration `json:"retention_age,omitempty"`
	// RetentionBytes bounds each partition's size; 0 (default): no bound.
	RetentionBytes int64 `json:"retention_bytes,omitempty"`
	// Compression of new batches: s2 (default), zstd or none.
	Compression string `json:"compression,omitempty"`
	// AutoCreate creates a topic on its first write. Default true.
	AutoCreate *bool `json:"auto_create,omitempty"`
}

// Duration is a time.Duration that reads and writes as "1m30s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Default returns the configuration with every default filled in.
func Default() Config {
	c := Config{}
	c.fill()
	return c
}

func (c *Config) fill() {
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	setDefault(&c.Addr, "127.0.0.1:4222")
	setDefault(&c.HTTPAddr, "127.0.0.1:8222")
	setDefault(&c.DataDir, "./flowmesh-data")
	setDefault(&c.LogLevel, "info")
	setDefaultInt(&c.MaxConns, 65536)
	setDefaultInt(&c.MaxControlLine, 4096)
	setDefaultInt(&c.MaxPayload, 1<<20)
	setDefaultInt(&c.MaxHeader, min(64<<10, c.MaxPayload))
	setDefaultInt(&c.MaxPending, 64<<20)
	setDefaultInt(&c.MaxPingsOut, 2)
	setDefaultInt(&c.MaxInflight, 4096)
	setDefault(&c.Fsync, "interval")
	if c.FsyncInterval == 0 {
		c.FsyncInterval = Duration(10 * time.Millisecond)
	}
	setDefaultInt(&c.Streams.Partitions, 4)
	setDefault(&c.Streams.Compression, "s2")
	if c.Streams.RetentionAge == nil {
		week := Duration(7 * 24 * time.Hour)
		c.Streams.RetentionAge = &week
	}
	if c.Streams.AutoCreate == nil {
		yes := true
		c.Streams.AutoCreate = &yes
	}
	if c.PingInterval == 0 {
		c.PingInterval = Duration(2 * time.Minute)
	}
	if c.MaxStall == 0 {
		c.MaxStall = Duration(time.Second)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(10 * time.Second)
	}
}

func setDefault(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setDefaultInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

// Validate fills defaults and reports every invalid field at once.
func (c *Config) Validate() error {
	c.fill()
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("config: "+format, args...))
		}
	}
	check(c.MaxConns > 0, "max_connections must be positive, got %d", c.MaxConns)
	for i, p := range c.Autoscale {
		check((p.Queue != "") != (p.Topic != "" && p.Group != ""), "autoscale[%d] must name a queue, or a topic and a group", i)
		check(p.MinWorkers >= 0 && (p.MaxWorkers == 0 || p.MinWorkers <= p.MaxWorkers),
			"autoscale[%d]: min_workers %d must be in [0, max_workers %d]", i, p.MinWorkers, p.MaxWorkers)
	}
	check(c.MaxControlLine >= 256, "max_control_line must be at least 256, got %d", c.MaxControlLine)
	check(c.MaxPayload > 0 && c.MaxPayload <= 64<<20, "max_payload must be in (0, 64 MiB], got %d", c.MaxPayload)
	check(c.MaxHeader > 0 && c.MaxHeader <= c.MaxPayload, "max_header must be in (0, max_payload], got %d", c.MaxHeader)
	check(c.MaxPending >= c.MaxPayload, "max_pending (%d) must be at least max_payload (%d)", c.MaxPending, c.MaxPayload)
	check(c.Loops >= 0, "loops must not be negative, got %d", c.Loops)
	check(c.RESPLoops >= 0, "resp_loops must not be negative, got %d", c.RESPLoops)
	check(c.PingInterval > 0, "ping_interval must be positive")
	check(c.MaxInflight > 0, "max_inflight must be positive, got %d", c.MaxInflight)
	switch c.Fsync {
	case "always", "interval", "none":
	default:
		errs = append(errs, fmt.Errorf("config: fsync must be always, interval or none, got %q", c.Fsync))
	}
	check(c.FsyncInterval > 0, "fsync_interval must be positive")
	check(c.Streams.Partitions > 0 && c.Streams.Partitions <= 1024, "streams.partitions must be in [1, 1024], got %d", c.Streams.Partitions)
	check(*c.Streams.RetentionAge >= 0, "streams.retention_age must not be negative")
	check(c.Streams.RetentionBytes >= 0, "streams.retention_bytes must not be negative")
	switch c.Streams.Compression {
	case "s2", "zstd", "none":
	default:
		errs = append(errs, fmt.Errorf("config: streams.compression must be s2, zstd or none, got %q", c.Streams.Compression))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("config: log_level must be debug, info, warn or error, got %q", c.LogLevel))
	}
	if _, err := c.Tracing.Resolve(os.Getenv); err != nil {
		errs = append(errs, fmt.Errorf("config: %w", err))
	}
	return errors.Join(errs...)
}

// LoadConfig reads a JSON config file. Unknown fields are errors, so a typo
// is not silently ignored.
func LoadConfig(path string) (Config, error) {
	var c Config
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}
