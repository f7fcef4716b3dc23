package stream

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flowmesh/flowmesh/internal/conf"
	commitlog "github.com/flowmesh/flowmesh/log"
)

// Errors. The server maps them to wire errors with errors.Is.
var (
	ErrTopicNotFound     = errors.New("stream: topic not found")
	ErrTopicExists       = errors.New("stream: topic exists")
	ErrPartitionNotFound = errors.New("stream: partition not found")
	ErrGroupNotFound     = errors.New("stream: group not found")
	ErrOutOfRange        = errors.New("stream: offset out of range")
	ErrTooLarge          = errors.New("stream: event too large")
	ErrNotOwner          = errors.New("stream: partition not owned by this member")
	ErrOutOfSequence     = errors.New("stream: sequence older than the producer's dedup window")
	ErrBadConfig         = errors.New("stream: bad config")
	ErrBadName           = errors.New("stream: bad name")
	ErrClosed            = errors.New("stream: engine closed")
	ErrMemberGone        = errors.New("stream: member has left the group")
)

// MaxPartitions bounds a topic's partition count.
const MaxPartitions = 1024

// MaxNameLen bounds topic and group names.
const MaxNameLen = conf.MaxNameLen

// Duration is a time.Duration that reads and writes as "1h30m" in JSON.
type Duration = conf.Duration

// ParseDuration reads a Go duration, with "d" for days allowed ("7d").
func ParseDuration(s string) (time.Duration, error) { return conf.ParseDuration(s) }

// Config is a topic's settings. Partitions can grow but not shrink;
// everything else can change while the topic is in use.
type Config struct {
	Partitions     int      `json:"partitions"`
	RetentionAge   Duration `json:"retention_age"`   // 0: keep forever
	RetentionBytes int64    `json:"retention_bytes"` // per partition; 0: no bound
	Fsync          string   `json:"fsync"`           // always, interval or none
	Compression    string   `json:"compression"`     // s2, zstd or none
	MaxEventBytes  int      `json:"max_event_bytes"` // key + headers + value
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		errs = append(errs, fmt.Errorf("partitions must be in [1, %d], got %d", MaxPartitions, c.Partitions))
	}
	if c.RetentionAge < 0 || c.RetentionBytes < 0 {
		errs = append(errs, errors.New("retention must not be negative"))
	}
	if _, err := commitlog.ParseSyncPolicy(c.Fsync); err != nil {
		errs = append(errs, err)
	}
	if _, err := commitlog.ParseCodec(c.Compression); err != nil || c.Compression == "" {
		errs = append(errs, fmt.Errorf("compression must be s2, zstd or none, got %q", c.Compression))
	}
	if c.MaxEventBytes < 1 || c.MaxEventBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("max_event_bytes must be in [1, 64 MiB], got %d", c.MaxEventBytes))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrBadConfig, errors.Join(errs...))
	}
	return nil
}

// Set changes one setting by its name, as the wire's k=v arguments name
// them.
func (c *Config) Set(key, value string) error {
	var err error
	switch key {
	case "partitions":
		c.Partitions, err = strconv.Atoi(value)
	case "retention_age", "retention":
		var d time.Duration
		d, err = ParseDuration(value)
		c.RetentionAge = Duration(d)
	case "retention_bytes":
		c.RetentionBytes, err = strconv.ParseInt(value, 10, 64)
	case "fsync":
		c.Fsync = value
	case "compression":
		c.Compression = value
	case "max_event_bytes":
		c.MaxEventBytes, err = strconv.Atoi(value)
	default:
		return fmt.Errorf("%w: unknown setting %q (partitions, retention_age, retention_bytes, fsync, compression, max_event_bytes)", ErrBadConfig, key)
	}
	if err != nil {
		return fmt.Errorf("%w: %s=%q: not a valid value", ErrBadConfig, key, value)
	}
	return nil
}

func (c Config) tuning() commitlog.Tuning {
	pol, _ := commitlog.ParseSyncPolicy(c.Fsync)
	codec, _ := commitlog.ParseCodec(c.Compression)
	return commitlog.Tuning{Sync: pol, Codec: codec, RetentionBytes: c.RetentionBytes, RetentionAge: time.Duration(c.RetentionAge)}
}

// ValidName reports whether s can name a topic or a group (conf.ValidName).
func ValidName(s string) bool { return conf.ValidName(s) }

func checkName(kind, s string) error {
	if !ValidName(s) {
		return fmt.Errorf("%w: %s %q: use 1-%d letters, digits, '.', '_' or '-', not starting with '.'", ErrBadName, kind, s, MaxNameLen)
	}
	return nil
}
