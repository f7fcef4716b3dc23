package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowmesh/flowmesh/internal/dirs"
	"github.com/flowmesh/flowmesh/kv/store"
	commitlog "github.com/flowmesh/flowmesh/log"
)

// Options configure an Engine.
type Options struct {
	Dir           string       // queues live in Dir/<queue>/
	Store         *store.Store // the node's Pebble DB: configs, the logs' marks (job states of queues written before 2026-12-04)
	Defaults      Config       // a new queue's settings unless given others
	AutoCreate    bool         // an enqueue to an unknown queue creates it
	FsyncInterval time.Duration
	SegmentBytes  int64
	// PreallocateBytes: the log's, for queues under the always policy;
	// 0: none.
	PreallocateBytes int64
	// SyncGroup, if set, does the queues' interval fsyncs (the log's
	// SyncGroup): one per node, shared with the streams.
	SyncGroup *commitlog.SyncGroup
	// Handles bounds the open files of sealed segments (the log's
	// Handles): one per node, shared with the streams.
	Handles *commitlog.Handles
	Logger  *slog.Logger
	Now     func() time.Time
	Rand    func() float64 // backoff jitter; default math/rand
	FS      commitlog.FS

	// Tracing hooks, for the driver's spans; nil when tracing is off.
	// TraceOf finds the packed trace context of a job's header block on
	// recovery (nil: none or not sampled); DeadLettered runs, off the
	// queue's lock and once durable, for each job that reached the
	// dead-letter queue (by nack or by its last visibility timeout).
	TraceOf      func(header []byte) *[TraceSize]byte
	DeadLettered func(q *Queue, j Job)

	// afterPublish, a test hook, is each queue log's OnPublish: it runs
	// on the log's writer once appended records are readable and before
	// their appends complete.
	afterPublish func()
}

// Engine owns every queue of a node.
type Engine struct {
	opts   Options
	mu     sync.RWMutex
	queues map[string]*Queue
	// deleting: the names whose Delete is under way; a queue created
	// again by that name (an enqueue auto-creates it) waits for the delete.
	deleting dirs.Deleting
	closed   bool
	workers  workers
	// draining: reserves answer at once instead of waiting (EndLongPolls).
	draining atomic.Bool
}

func configKey(name string) []byte { return []byte("c/" + name) }

// Open loads every queue recorded in the store and recovers it.
func Open(opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = 10 * time.Millisecond
	}
	if opts.Store == nil {
		return nil, errors.New("queue: Options.Store is required")
	}
	if err := opts.Defaults.Validate(); err != nil {
		return nil, fmt.Errorf("queue: defaults: %w", err)
	}
	e := &Engine{opts: opts, queues: make(map[string]*Queue), deleting: dirs.Deleting{}}
	type rec struct {
		name string
		cfg  Config
	}
	var recs []rec
	err := opts.Store.Scan(store.KeyspaceQueue, []byte("c/"), func(k, v []byte) bool {
		var c Config
		if err := json.Unmarshal(v, &c); err != nil {
			opts.Logger.Error("queue: config unreadable; queue skipped", "key", string(k), "err", err)
			return true
		}
		recs = append(recs, rec{string(k[2:]), c})
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("queue: load queues: %w", err)
	}
	dirs.Sweep(opts.Dir) // what deletes cut short by a crash left behind
	for _, r := range recs {
		q, err := e.openQueue(r.name, r.cfg)
		if err != nil {
			e.closeAll()
			return nil, err
		}
		e.queues[r.name] = q
	}
	opts.Logger.Info("queue: engine open", "queues", len(e.queues), "dir", opts.Dir)
	return e, nil
}

// Defaults returns the engine's default queue settings.
func (e *Engine) Defaults() Config { return e.opts.Defaults }

// Create makes a queue.
func (e *Engine) Create(name string, cfg Config) (*Queue, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("%w: queue %q: use 1-200 letters, digits, '.', '_' or '-', not starting with '.'", ErrBadName, name)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deleting.Wait(&e.mu, name)
	if e.closed {
		return nil, ErrClosed
	}
	if _, ok := e.queues[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrQueueExists, name)
	}
	return e.createLocked(name, cfg)
}

func (e *Engine) createLocked(name string, cfg Config) (*Queue, error) {
	if err := os.RemoveAll(filepath.Join(e.opts.Dir, name)); err != nil {
		return nil, fmt.Errorf("queue: create %q: %w", name, err)
	}
	// A queue that had this name before may have left keys behind if its
	// delete failed half-way; they go before the new log opens (its
	// low-water mark is one of them).
	b := e.opts.Store.NewBatch()
	b.DeletePrefix(store.KeyspaceQueue, stateKeyPrefix(name))
	b.DeletePrefix(store.KeyspaceLog, []byte(logMetaPrefix(name)))
	if err := b.Commit(); err != nil {
		return nil, fmt.Errorf("queue: create %q: %w", name, err)
	}
	q, err := e.openQueue(name, cfg)
	if err != nil {
		return nil, err
	}
	cb, _ := json.Marshal(cfg)
	// Fsynced whatever the policy, as a topic's: the queue's jobs must not
	// outlive the record that it exists.
	if err := e.opts.Store.SetSync(store.KeyspaceQueue, configKey(name), cb); err != nil {
		q.shutdown(ErrClosed)
		q.close()
		return nil, fmt.Errorf("queue: create %q: %w", name, err)
	}
	e.queues[name] = q
	e.opts.Logger.Info("queue: created", "queue", name)
	return q, nil
}

// QueueBytes is Queue for a name still in a command's buffer: a queue that
// exists is found without converting the name to a string (an allocation
// per command).
func (e *Engine) QueueBytes(name []byte, create bool) (*Queue, error) {
	e.mu.RLock()
	q, ok := e.queues[string(name)]
	e.mu.RUnlock()
	if ok {
		return q, nil
	}
	return e.Queue(string(name), create)
}

// Queue returns the named queue, creating it with the defaults if
// AutoCreate is on and create is true.
func (e *Engine) Queue(name string, create bool) (*Queue, error) {
	e.mu.RLock()
	q, ok := e.queues[name]
	closed := e.closed
	e.mu.RUnlock()
	if ok {
		return q, nil
	}
	if closed {
		return nil, ErrClosed
	}
	if !create || !e.opts.AutoCreate {
		return nil, fmt.Errorf("%w: %q", ErrQueueNotFound, name)
	}
	if !ValidName(name) {
		return nil, fmt.Errorf("%w: queue %q", ErrBadName, name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deleting.Wait(&e.mu, name)
	if q, ok := e.queues[name]; ok {
		return q, nil
	}
	if e.closed {
		return nil, ErrClosed
	}
	return e.createLocked(name, e.opts.Defaults)
}

// Alter changes a queue's settings.
func (e *Engine) Alter(name string, change func(*Config) error) (Config, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	q, ok := e.queues[name]
	if !ok {
		return Config{}, fmt.Errorf("%w: %q", ErrQueueNotFound, name)
	}
	cfg := q.Config()
	if err := change(&cfg); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	b, _ := json.Marshal(cfg)
	if err := e.opts.Store.SetSync(store.KeyspaceQueue, configKey(name), b); err != nil {
		return Config{}, fmt.Errorf("queue: alter %q: %w", name, err)
	}
	q.setConfig(cfg)
	return cfg, nil
}

// Delete removes a queue and all its jobs. Waiting reservers get
// ErrQueueNotFound.
func (e *Engine) Delete(name string) error {
	e.mu.Lock()
	q, ok := e.queues[name]
	if !ok {
		e.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrQueueNotFound, name)
	}
	delete(e.queues, name)
	done := e.deleting.Add(&e.mu, name)
	e.mu.Unlock()
	defer done()
	q.shutdown(fmt.Errorf("%w: %q was deleted", ErrQueueNotFound, name))
	b := e.opts.Store.NewBatch()
	b.Delete(store.KeyspaceQueue, configKey(name))
	b.DeletePrefix(store.KeyspaceQueue, stateKeyPrefix(name))
	b.DeletePrefix(store.KeyspaceLog, []byte(logMetaPrefix(name)))
	err := b.CommitSync(true) // before its files go, as a topic's
	q.close()
	if rerr := dirs.Discard(e.opts.Dir, name); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("queue: delete %q: %w", name, err)
	}
	e.opts.Logger.Info("queue: deleted", "queue", name)
	return nil
}

// Queues lists the queue names, sorted.
func (e *Engine) Queues() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := slices.AppendSeq(make([]string, 0, len(e.queues)), maps.Keys(e.queues)) // [] not null in JSON when empty
	slices.Sort(out)
	return out
}

// Close stops every queue and closes its log.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	return e.closeAll()
}

// EndLongPolls answers every waiting reserve now, with the jobs it can take
// or none, as if its wait had run out, and makes later reserves answer at
// once. A node's shutdown calls it first: the drain waits for every
// command's reply, and a worker's long poll may have minutes to go.
// Consumers (QSUB) are not affected; they end when the engine closes.
func (e *Engine) EndLongPolls() {
	e.draining.Store(true)
	e.mu.RLock()
	qs := slices.Collect(maps.Values(e.queues))
	e.mu.RUnlock()
	for _, q := range qs {
		q.mu.Lock()
		for _, w := range q.waiters {
			w.deadline = 0 // answered at the goroutine's next turn
		}
		n := len(q.waiters)
		q.mu.Unlock()
		if n > 0 {
			q.kick()
		}
	}
}

func (e *Engine) closeAll() error {
	var errs []error
	for _, q := range e.queues {
		q.shutdown(ErrClosed)
		if err := q.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
