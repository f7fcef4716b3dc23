package queue

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flowmesh/flowmesh/internal/conf"
	commitlog "github.com/flowmesh/flowmesh/log"
)

// Engine errors (the state machine's are in state.go).
var (
	ErrQueueNotFound = errors.New("queue: queue not found")
	ErrQueueExists   = errors.New("queue: queue exists")
	ErrTooLarge      = errors.New("queue: job too large")
	ErrBadConfig     = errors.New("queue: bad config")
	ErrBadName       = errors.New("queue: bad name")
	ErrClosed        = errors.New("queue: engine closed")
)

// Duration is a time.Duration that reads and writes as "1h30m" in JSON.
type Duration = conf.Duration

// ParseDuration reads a Go duration, with "d" for days allowed ("7d").
func ParseDuration(s string) (time.Duration, error) { return conf.ParseDuration(s) }

// Config is a queue's settings; all can change while it is in use.
type Config struct {
	MaxAttempts int      `json:"max_attempts"`
	Visibility  Duration `json:"visibility_timeout"`
	BackoffBase Duration `json:"backoff_base"`
	BackoffMax  Duration `json:"backoff_max"`
	Jitter      float64  `json:"backoff_jitter"`
	DedupWindow Duration `json:"dedup_window"`
	Fsync       string   `json:"fsync"`
	MaxJobBytes int      `json:"max_job_bytes"`
	Paused      bool     `json:"paused"`
}

// DefaultConfig is a queue's configuration unless set otherwise.
func DefaultConfig(maxJobBytes int, fsync string) Config {
	return Config{MaxAttempts: 5, Visibility: Duration(30 * time.Second), BackoffBase: Duration(time.Second),
		BackoffMax: Duration(5 * time.Minute), Jitter: 0.2, DedupWindow: Duration(5 * time.Minute),
		Fsync: fsync, MaxJobBytes: maxJobBytes}
}

// MaxAttemptsLimit bounds max_attempts, a queue's and a job's alike.
const MaxAttemptsLimit = 1000

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if c.MaxAttempts < 1 || c.MaxAttempts > MaxAttemptsLimit {
		errs = append(errs, fmt.Errorf("max_attempts must be in [1, %d], got %d", MaxAttemptsLimit, c.MaxAttempts))
	}
	if c.Visibility <= 0 {
		errs = append(errs, errors.New("visibility_timeout must be positive"))
	}
	if c.BackoffBase < 0 || c.BackoffMax < 0 || c.DedupWindow < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	for _, d := range []Duration{c.Visibility, c.BackoffBase, c.BackoffMax, c.DedupWindow} {
		if time.Duration(d) > MaxDelay {
			errs = append(errs, fmt.Errorf("durations must be at most %v (100 years), got %v", MaxDelay, time.Duration(d)))
			break
		}
	}
	if c.Jitter < 0 || c.Jitter > 1 {
		errs = append(errs, fmt.Errorf("backoff_jitter must be in [0, 1], got %g", c.Jitter))
	}
	if _, err := commitlog.ParseSyncPolicy(c.Fsync); err != nil {
		errs = append(errs, err)
	}
	if c.MaxJobBytes < 1 || c.MaxJobBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("max_job_bytes must be in [1, 64 MiB], got %d", c.MaxJobBytes))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrBadConfig, errors.Join(errs...))
	}
	return nil
}

// Set changes one setting by the name the wire's k=v arguments use.
func (c *Config) Set(key, value string) error {
	var err error
	dur := func(d *Duration) {
		var v time.Duration
		v, err = ParseDuration(value)
		*d = Duration(v)
	}
	switch key {
	case "max_attempts":
		c.MaxAttempts, err = strconv.Atoi(value)
	case "visibility_timeout", "visibility":
		dur(&c.Visibility)
	case "backoff_base":
		dur(&c.BackoffBase)
	case "backoff_max":
		dur(&c.BackoffMax)
	case "backoff_jitter":
		c.Jitter, err = strconv.ParseFloat(value, 64)
	case "dedup_window":
		dur(&c.DedupWindow)
	case "fsync":
		c.Fsync = value
	case "max_job_bytes":
		c.MaxJobBytes, err = strconv.Atoi(value)
	default:
		return fmt.Errorf("%w: unknown setting %q (max_attempts, visibility_timeout, backoff_base, backoff_max, backoff_jitter, dedup_window, fsync, max_job_bytes)", ErrBadConfig, key)
	}
	if err != nil {
		return fmt.Errorf("%w: %s=%q: not a valid value", ErrBadConfig, key, value)
	}
	return nil
}

func (c Config) policy() Policy {
	return Policy{MaxAttempts: c.MaxAttempts, Visibility: time.Duration(c.Visibility), BackoffBase: time.Duration(c.BackoffBase),
		BackoffMax: time.Duration(c.BackoffMax), Jitter: c.Jitter, DedupWindow: time.Duration(c.DedupWindow)}
}

// ValidName reports whether s can name a queue (conf.ValidName).
func ValidName(s string) bool { return conf.ValidName(s) }
