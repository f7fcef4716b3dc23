package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/flowmesh/flowmesh/internal/dirs"
	"github.com/flowmesh/flowmesh/kv/store"
	commitlog "github.com/flowmesh/flowmesh/log"
)

// Options configure an Engine.
type Options struct {
	Dir        string       // topics live in Dir/<topic>/<partition>/
	Store      *store.Store // the node's Pebble DB, for metadata and offsets
	Defaults   Config       // a new topic's settings unless given others
	AutoCreate bool         // a write to an unknown topic creates it with Defaults
	// FsyncInterval is how often the interval policy fsyncs. Default 10ms.
	FsyncInterval time.Duration
	// SegmentBytes rolls partition segments at this size; default the log's.
	SegmentBytes int64
	// PreallocateBytes is the size of the preallocated segments that
	// partitions under the always policy write into (the log's
	// PreallocateBytes); 0: none.
	PreallocateBytes int64
	// SyncGroup, if set, does the partitions' interval fsyncs (the log's
	// SyncGroup): one per node, shared with the queues.
	SyncGroup *commitlog.SyncGroup
	// Handles bounds the open files of sealed segments (the log's
	// Handles): one per node, shared with the queues.
	Handles *commitlog.Handles
	Logger  *slog.Logger
	Now     func() time.Time // default time.Now
	FS      commitlog.FS     // default the real file system
}

// Engine owns every topic and consumer group of a node.
type Engine struct {
	opts Options

	mu     sync.RWMutex
	topics map[string]*Topic
	groups map[groupKey]*Group
	// deleting: the names whose Delete is under way; a topic created
	// again by that name (a write auto-creates it) waits for the delete.
	deleting dirs.Deleting
	closed   bool

	stop chan struct{}
	done chan struct{}
}

type groupKey struct{ topic, group string }

// Open loads every topic recorded in the store and recovers its partition
// logs and producer table.
func Open(opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = 10 * time.Millisecond
	}
	if opts.Store == nil {
		return nil, errors.New("stream: Options.Store is required")
	}
	if err := opts.Defaults.Validate(); err != nil {
		return nil, fmt.Errorf("stream: defaults: %w", err)
	}
	e := &Engine{opts: opts, topics: make(map[string]*Topic), groups: make(map[groupKey]*Group), deleting: dirs.Deleting{},
		stop: make(chan struct{}), done: make(chan struct{})}
	var names []string
	var cfgs []Config
	err := opts.Store.Scan(store.KeyspaceStream, []byte("t/"), func(k, v []byte) bool {
		var c Config
		if err := json.Unmarshal(v, &c); err != nil {
			opts.Logger.Error("stream: topic config unreadable; topic skipped", "key", string(k), "err", err)
			return true
		}
		names = append(names, string(k[2:]))
		cfgs = append(cfgs, c)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("stream: load topics: %w", err)
	}
	for i, name := range names {
		t, err := e.openTopic(name, cfgs[i])
		if err != nil {
			e.closeTopics()
			return nil, err
		}
		e.topics[name] = t
	}
	dirs.Sweep(opts.Dir) // what deletes cut short by a crash left behind
	go e.background()
	opts.Logger.Info("stream: engine open", "topics", len(e.topics), "dir", opts.Dir)
	return e, nil
}

// background saves producer tables now and then, so that recovery after a
// crash re-reads only the events written since.
func (e *Engine) background() {
	defer close(e.done)
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			e.mu.RLock()
			topics := make([]*Topic, 0, len(e.topics))
			for _, tp := range e.topics {
				topics = append(topics, tp)
			}
			e.mu.RUnlock()
			for _, tp := range topics {
				tp.saveProducers(false)
			}
		case <-e.stop:
			return
		}
	}
}

func topicKey(name string) []byte { return []byte("t/" + name) }

// Create makes a topic. A zero cfg takes the defaults; a partly filled one
// is completed from them by the caller (see Defaults).
func (e *Engine) Create(name string, cfg Config) (*Topic, error) {
	if err := checkName("topic", name); err != nil {
		return nil, err
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
	if _, ok := e.topics[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrTopicExists, name)
	}
	return e.createLocked(name, cfg)
}

func (e *Engine) createLocked(name string, cfg Config) (*Topic, error) {
	// A directory left by a topic whose record never reached Pebble (a
	// crash between the two) is stale: start clean.
	if err := os.RemoveAll(filepath.Join(e.opts.Dir, name)); err != nil {
		return nil, fmt.Errorf("stream: create %q: %w", name, err)
	}
	t, err := e.openTopic(name, cfg)
	if err != nil {
		return nil, err
	}
	// Fsynced whatever the policy: the partitions' data, fsynced within an
	// interval, must not outlive the record that says the topic exists
	// (a directory without one is removed when the name is used again).
	b, _ := json.Marshal(cfg)
	if err := e.opts.Store.SetSync(store.KeyspaceStream, topicKey(name), b); err != nil {
		t.close()
		return nil, fmt.Errorf("stream: create %q: %w", name, err)
	}
	e.topics[name] = t
	e.opts.Logger.Info("stream: topic created", "topic", name, "partitions", cfg.Partitions)
	return t, nil
}

// Defaults returns the engine's default topic settings.
func (e *Engine) Defaults() Config { return e.opts.Defaults }

// TopicBytes is Topic for a name still in a command's buffer: a topic that
// exists is found without converting the name to a string (an allocation
// per write).
func (e *Engine) TopicBytes(name []byte, create bool) (*Topic, error) {
	e.mu.RLock()
	t, ok := e.topics[string(name)]
	e.mu.RUnlock()
	if ok {
		return t, nil
	}
	return e.Topic(string(name), create)
}

// Topic returns the named topic, creating it with the defaults if
// AutoCreate is on and create is true.
func (e *Engine) Topic(name string, create bool) (*Topic, error) {
	e.mu.RLock()
	t, ok := e.topics[name]
	closed := e.closed
	e.mu.RUnlock()
	if ok {
		return t, nil
	}
	if closed {
		return nil, ErrClosed
	}
	if !create || !e.opts.AutoCreate {
		return nil, fmt.Errorf("%w: %q", ErrTopicNotFound, name)
	}
	if err := checkName("topic", name); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deleting.Wait(&e.mu, name)
	if t, ok := e.topics[name]; ok {
		return t, nil
	}
	if e.closed {
		return nil, ErrClosed
	}
	return e.createLocked(name, e.opts.Defaults)
}

// Alter changes a topic's settings. Partitions may only grow (keys then map
// to partitions anew: per-key order holds from the change on).
func (e *Engine) Alter(name string, change func(*Config) error) (Config, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.topics[name]
	if !ok {
		return Config{}, fmt.Errorf("%w: %q", ErrTopicNotFound, name)
	}
	cfg := t.Config()
	if err := change(&cfg); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	old := t.Config()
	if cfg.Partitions < old.Partitions {
		return Config{}, fmt.Errorf("%w: partitions can grow but not shrink (%d -> %d)", ErrBadConfig, old.Partitions, cfg.Partitions)
	}
	if err := t.grow(cfg); err != nil {
		return Config{}, err
	}
	b, _ := json.Marshal(cfg)
	if err := e.opts.Store.SetSync(store.KeyspaceStream, topicKey(name), b); err != nil {
		return Config{}, fmt.Errorf("stream: alter %q: %w", name, err)
	}
	t.setConfig(cfg)
	for k, g := range e.groups {
		if k.topic == name {
			g.topicChanged()
		}
	}
	e.opts.Logger.Info("stream: topic altered", "topic", name, "config", fmt.Sprintf("%+v", cfg))
	return cfg, nil
}

// Delete removes a topic, its events, its groups and their offsets. Live
// members of its groups are closed with ErrTopicNotFound.
func (e *Engine) Delete(name string) error {
	e.mu.Lock()
	t, ok := e.topics[name]
	if !ok {
		e.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrTopicNotFound, name)
	}
	delete(e.topics, name)
	defer e.deleting.Add(&e.mu, name)() // marked now (e.mu held), unmarked at return
	var groups []*Group
	for k, g := range e.groups {
		if k.topic == name {
			groups = append(groups, g)
			delete(e.groups, k)
		}
	}
	e.mu.Unlock()
	t.deleted.Store(true)
	for _, g := range groups {
		g.shutdown(fmt.Errorf("%w: %q was deleted", ErrTopicNotFound, name))
	}
	b := e.opts.Store.NewBatch()
	b.Delete(store.KeyspaceStream, topicKey(name))
	b.DeletePrefix(store.KeyspaceStream, []byte("o/"+name+"\x00"))
	b.Delete(store.KeyspaceStream, producerKey(name))
	b.DeletePrefix(store.KeyspaceLog, []byte(name+"/"))
	err := b.CommitSync(true) // before its files go: a deleted topic must not come back empty
	t.close()
	if rerr := dirs.Discard(e.opts.Dir, name); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("stream: delete %q: %w", name, err)
	}
	e.opts.Logger.Info("stream: topic deleted", "topic", name)
	return nil
}

// Topics lists the topic names, sorted.
func (e *Engine) Topics() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := slices.AppendSeq(make([]string, 0, len(e.topics)), maps.Keys(e.topics)) // [] not null in JSON when empty
	slices.Sort(out)
	return out
}

// Close stops every group, saves the producer tables and closes the logs.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	groups := make([]*Group, 0, len(e.groups))
	for _, g := range e.groups {
		groups = append(groups, g)
	}
	e.mu.Unlock()
	close(e.stop)
	<-e.done
	for _, g := range groups {
		g.shutdown(ErrClosed)
	}
	return e.closeTopics()
}

func (e *Engine) closeTopics() error {
	var errs []error
	for _, t := range e.topics {
		t.saveProducers(true)
		if err := t.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// openTopic opens (creating if needed) the partition logs of a topic and
// rebuilds its producer table.
func (e *Engine) openTopic(name string, cfg Config) (*Topic, error) {
	t := &Topic{name: name, e: e}
	t.cfg.Store(&cfg)
	t.tail.ch = make(chan struct{})
	if err := t.grow(cfg); err != nil {
		t.close()
		return nil, err
	}
	if err := t.loadProducers(); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

func (e *Engine) openLog(topic string, p int, cfg Config, onPublish func()) (*commitlog.Log, error) {
	tun := cfg.tuning()
	dir := filepath.Join(e.opts.Dir, topic, strconv.Itoa(p))
	l, err := commitlog.Open(dir, commitlog.Options{
		FS: e.opts.FS, Codec: tun.Codec, Sync: tun.Sync, SyncInterval: e.opts.FsyncInterval,
		SegmentBytes: e.opts.SegmentBytes, PreallocateBytes: e.opts.PreallocateBytes,
		RetentionBytes: tun.RetentionBytes, RetentionAge: tun.RetentionAge,
		Logger: e.opts.Logger, Now: e.opts.Now, OnPublish: onPublish, SyncGroup: e.opts.SyncGroup, Handles: e.opts.Handles,
		Meta: e.opts.Store.Namespace(store.KeyspaceLog, topic+"/"+strconv.Itoa(p)+"/"),
	})
	if err != nil {
		return nil, fmt.Errorf("stream: open partition %d of %q: %w", p, topic, err)
	}
	return l, nil
}
