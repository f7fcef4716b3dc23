package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flowmesh/flowmesh/internal/dirs"
	"github.com/flowmesh/flowmesh/internal/fdlimit"
)

// Keyspace is an owner's key prefix. The values are part of the on-disk
// format.
type Keyspace byte

const (
	KeyspaceLog     Keyspace = 'L' // commit-log metadata: low-water marks, config
	KeyspaceStream  Keyspace = 'S' // topics, consumer-group offsets
	KeyspaceQueue   Keyspace = 'Q' // queue state
	KeyspaceKV      Keyspace = 'K' // the KV cache
	KeyspaceKVState Keyspace = 'k' // the KV engine's own state: its checkpoint
)

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = errors.New("store: not found")

// Options configure Open.
type Options struct {
	InMemory bool         // keep nothing on disk (Pebble's in-memory FS)
	Sync     bool         // fsync every write (the node's "always" policy)
	Logger   *slog.Logger // Pebble's own log lines go here, at debug level
	// SyncInterval > 0 (without Sync) fsyncs Pebble's WAL at most this
	// long after a write that was not synced (the node's "interval"
	// policy); 0 leaves unsynced writes to Pebble (a later synced write,
	// a WAL rotation) and the OS. No timer runs while nothing is written.
	SyncInterval time.Duration
	// NoWAL turns Pebble's write-ahead log off: an owner with a log of
	// its own (the KV engine's append-only file) makes writes durable,
	// and a write reaches Pebble's files only by a memtable flush.
	// BeforeFlush runs before every flush writes anything, so that the
	// owner can make its own log durable first (no change may be on disk
	// in Pebble before its log record). It runs with Pebble's mutex held:
	// it must not call the store.
	NoWAL       bool
	BeforeFlush func()
	// L0Sublevels is how many overlapping layers of flushed tables may
	// pile up before they are compacted into the level below (0: Pebble's
	// 4). An owner that rewrites the same keys flush after flush (the KV
	// engine's checkpoints write its whole hot set each time) merges
	// several rewrites per compaction with a higher one; point reads look
	// at more tables, each behind a bloom filter.
	L0Sublevels int
	// FS replaces the file system (nil: the OS's, or Pebble's in-memory
	// one with InMemory); tests inject faults through it.
	FS vfs.FS
}

// Store is the node's Pebble database.
type Store struct {
	db *pebble.DB
	wo *pebble.WriteOptions
	h  *health

	// The interval sync (Options.SyncInterval): armed by the first
	// unsynced write after the last sync; closeMu keeps a sync that fires
	// during Close off the closed database.
	every   time.Duration
	armed   atomic.Bool
	closeMu sync.RWMutex
	closed  bool
	log     *slog.Logger
	syncs   atomic.Uint64 // interval syncs done (tests)
}

// Open opens (or creates) the database in dir.
// maxOpenTables bounds the table files one Pebble database keeps open:
// Pebble's default, 1000, but at most an eighth of the process's open-file
// limit, so that two databases cannot take the descriptors the logs and
// the connections need (with a limit of 1024 they could have taken 2000).
func maxOpenTables(fdLimit int) int { return max(16, min(1000, fdLimit/8)) }

func Open(dir string, o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// Tuned for the KV cache's many small point writes and reads: a bloom
	// filter on every level, so a lookup of a key that does not exist
	// (every first SET) rarely reads a block, and a 64 MiB block cache
	// instead of 8. The memtable stays at Pebble's 4 MiB: at 32 MiB,
	// flushes were rarer but every insert walked a deeper skiplist, and
	// redis-benchmark's SET -P 16 over 100k keys fell from 116k/s to 90k/s.
	cache := pebble.NewCache(64 << 20)
	defer cache.Unref()
	po := &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: pebbleLogger{o.Logger},
		Cache: cache, MaxOpenFiles: maxOpenTables(fdlimit.Limit())}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if o.L0Sublevels > 0 {
		po.L0CompactionThreshold = o.L0Sublevels
		po.L0StopWritesThreshold = max(po.L0StopWritesThreshold, 3*o.L0Sublevels)
	}
	if o.InMemory {
		po.FS = vfs.NewMem()
	}
	if o.FS != nil {
		po.FS = o.FS
	}
	if o.NoWAL {
		po.DisableWAL = true
		if o.Sync {
			return nil, fmt.Errorf("store: open %s: a store without WAL cannot fsync each write", dir)
		}
	}
	if po.FS == nil {
		// Pebble syncs its directory, not the entry of it in the parent.
		if err := dirs.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("store: open %s: %w", dir, err)
		}
	}
	h := newHealth(dir, o.Logger)
	po.EventListener = h.listener(o.BeforeFlush)
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	wo := pebble.NoSync
	if o.Sync {
		wo = pebble.Sync
	}
	st := &Store{db: db, wo: wo, h: h, log: o.Logger}
	if !o.Sync && !o.NoWAL && o.SyncInterval > 0 {
		st.every = o.SyncInterval
	}
	return st, nil
}

// Close closes the database (Pebble syncs its WAL as it closes).
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return fmt.Errorf("store: close: %w", pebble.ErrClosed)
	}
	s.closed = true
	return s.db.Close()
}

// unsynced notes a write that was not fsynced: under SyncInterval, the
// first one after a sync arms the next.
func (s *Store) unsynced() {
	if s.every == 0 || s.armed.Load() || !s.armed.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(s.every, s.intervalSync)
}

// IntervalSyncs counts the WAL fsyncs SyncInterval made.
func (s *Store) IntervalSyncs() uint64 { return s.syncs.Load() }

// intervalSync fsyncs the WAL for the writes since the last one.
func (s *Store) intervalSync() {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return
	}
	// Writes from here on arm the next sync: this one may not cover them.
	s.armed.Store(false)
	if err := s.SyncWAL(); err != nil {
		// Pebble stops the process on a WAL it cannot write (health.go);
		// anything else is logged and the next write arms a retry.
		s.log.Error("store: interval sync of the WAL failed", "err", err)
		return
	}
	s.syncs.Add(1)
}

func key(ks Keyspace, k []byte) []byte {
	b := make([]byte, 0, 1+len(k))
	return append(append(b, byte(ks)), k...)
}

// Get returns a copy of the value of k in ks, or ErrNotFound.
func (s *Store) Get(ks Keyspace, k []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key(ks, k))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

// Set writes k=v in ks with the store's sync policy.
func (s *Store) Set(ks Keyspace, k, v []byte) error {
	if err := s.db.Set(key(ks, k), v, s.wo); err != nil {
		return fmt.Errorf("store: set: %w", err)
	}
	if s.wo == pebble.NoSync {
		s.unsynced()
	}
	return nil
}

// SetSync sets k=v in ks fsynced, whatever the store's policy: for the
// rare writes that later data depends on (a topic's or queue's config).
func (s *Store) SetSync(ks Keyspace, k, v []byte) error {
	if err := s.db.Set(key(ks, k), v, pebble.Sync); err != nil {
		return fmt.Errorf("store: set: %w", err)
	}
	return nil
}

// Delete removes k from ks.
func (s *Store) Delete(ks Keyspace, k []byte) error {
	if err := s.db.Delete(key(ks, k), s.wo); err != nil {
		return fmt.Errorf("store: delete: %w", err)
	}
	if s.wo == pebble.NoSync {
		s.unsynced()
	}
	return nil
}

// Scan calls fn for every key of ks with the given prefix, in order, until
// fn returns false. Slices passed to fn are valid only during the call.
func (s *Store) Scan(ks Keyspace, prefix []byte, fn func(k, v []byte) bool) error {
	lo := key(ks, prefix)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: upperBound(lo)})
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("store: scan: %w", err)
		}
		if !fn(it.Key()[1:], v) {
			break
		}
	}
	return it.Close()
}

// Iterate calls fn for the keys of ks in [lo, hi) (hi nil: to the end of
// ks), ascending, or descending if reverse, until fn returns false. Slices
// passed to fn are valid only during the call. The iteration sees one
// point in time.
func (s *Store) Iterate(ks Keyspace, lo, hi []byte, reverse bool, fn func(k, v []byte) bool) error {
	o := &pebble.IterOptions{LowerBound: key(ks, lo), UpperBound: key(ks, hi)}
	if hi == nil {
		o.UpperBound = []byte{byte(ks) + 1}
	}
	it, err := s.db.NewIter(o)
	if err != nil {
		return fmt.Errorf("store: iterate: %w", err)
	}
	step, ok := it.Next, it.First()
	if reverse {
		step, ok = it.Prev, it.Last()
	}
	for ; ok; ok = step() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("store: iterate: %w", err)
		}
		if !fn(it.Key()[1:], v) {
			break
		}
	}
	return it.Close()
}

// SyncWAL makes every write committed so far durable (one fsync of
// Pebble's WAL): the interval policy's periodic sync.
func (s *Store) SyncWAL() error {
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.LogData([]byte("sync"), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	return nil
}

// Flush writes Pebble's memtables to its files and waits for it: with
// NoWAL, what was written before becomes durable. It gives up when the
// store is failing (Err): Pebble would retry the flush for ever.
func (s *Store) Flush() error {
	done, err := s.db.AsyncFlush()
	if err == nil {
		err = s.h.wait(done)
	}
	if err != nil {
		return fmt.Errorf("store: flush: %w", err)
	}
	return nil
}

// Err reports a store whose background writes (memtable flushes,
// compactions) keep failing: a full disk, a data directory gone. Pebble
// keeps retrying; Err is nil again after one succeeds.
func (s *Store) Err() error { return s.h.err() }

// BackgroundErrors counts the failed background writes since Open.
func (s *Store) BackgroundErrors() uint64 { return s.h.failures() }

// Syncs reports whether every write is fsynced (the always policy).
func (s *Store) Syncs() bool { return s.wo == pebble.Sync }

// Batch is a set of writes applied atomically by Commit. Not safe for
// concurrent use.
type Batch struct {
	s    *Store
	b    *pebble.Batch
	kbuf []byte // ks+k for the next operation: Pebble copies keys into the batch
}

// NewBatch starts a batch.
func (s *Store) NewBatch() *Batch { return &Batch{s: s, b: s.db.NewBatch()} }

// Set adds k=v in ks to the batch.
func (b *Batch) Set(ks Keyspace, k, v []byte) { _ = b.b.Set(b.key(ks, k), v, nil) }

// Delete adds the removal of k in ks to the batch.
func (b *Batch) Delete(ks Keyspace, k []byte) { _ = b.b.Delete(b.key(ks, k), nil) }

// key is ks+k in the batch's scratch buffer, valid until the next call:
// a checkpoint sets a record per changed key, and a fresh slice for each
// was one allocation per record.
func (b *Batch) key(ks Keyspace, k []byte) []byte {
	b.kbuf = append(append(b.kbuf[:0], byte(ks)), k...)
	return b.kbuf
}

// DeletePrefix adds the removal of every key of ks with prefix to the batch.
func (b *Batch) DeletePrefix(ks Keyspace, prefix []byte) {
	lo := key(ks, prefix)
	_ = b.b.DeleteRange(lo, upperBound(lo), nil)
}

// DeleteRange adds the removal of every key of ks in [from, to) to the
// batch.
func (b *Batch) DeleteRange(ks Keyspace, from, to []byte) {
	_ = b.b.DeleteRange(key(ks, from), key(ks, to), nil)
}

// Discard releases the batch without applying it.
func (b *Batch) Discard() { _ = b.b.Close() }

// Empty reports whether nothing was added.
func (b *Batch) Empty() bool { return b.b.Empty() }

// Commit applies the batch with the store's sync policy, all or nothing,
// and releases it.
func (b *Batch) Commit() error { return b.commit(b.s.wo) }

// CommitSync applies the batch fsynced (sync) or not, whatever the store's
// policy: an engine with its own per-object policy decides.
func (b *Batch) CommitSync(sync bool) error {
	if sync {
		return b.commit(pebble.Sync)
	}
	return b.commit(pebble.NoSync)
}

func (b *Batch) commit(wo *pebble.WriteOptions) error {
	defer b.b.Close()
	if err := b.b.Commit(wo); err != nil {
		return fmt.Errorf("store: commit batch: %w", err)
	}
	if wo == pebble.NoSync {
		b.s.unsynced()
	}
	return nil
}

// upperBound is the smallest key greater than every key with prefix p.
func upperBound(p []byte) []byte {
	u := bytes.Clone(p)
	for i := len(u) - 1; i >= 0; i-- {
		if u[i] < 0xff {
			u[i]++
			return u[:i+1]
		}
	}
	return nil
}

// Namespace is a view of one keyspace under a fixed prefix, so an owner
// (one log, one topic) gets a small Get/Set interface of its own.
type Namespace struct {
	s      *Store
	ks     Keyspace
	prefix []byte
}

// Namespace returns the view of ks under prefix.
func (s *Store) Namespace(ks Keyspace, prefix string) *Namespace {
	return &Namespace{s: s, ks: ks, prefix: []byte(prefix)}
}

func (n *Namespace) k(k string) []byte { return append(bytes.Clone(n.prefix), k...) }

// Get returns the value of k, and whether it exists.
func (n *Namespace) Get(k string) ([]byte, bool, error) {
	v, err := n.s.Get(n.ks, n.k(k))
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}

// Set writes k=v.
func (n *Namespace) Set(k string, v []byte) error { return n.s.Set(n.ks, n.k(k), v) }

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug("pebble: " + fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf is Pebble's way to stop the process: it calls it when it cannot
// go on (a WAL it cannot create or write: a full disk, the data directory
// removed) and expects it not to return. A panic here unwound through
// Pebble's held mutexes and ended in "fatal error: sync: unlock of
// unlocked mutex", hiding the cause; the node logs the cause and exits 1
// (fail-stop: acknowledged writes are in the WAL and files it has; a
// restart recovers them or says why it cannot).
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error("store: fatal storage error; the node stops", "err", fmt.Sprintf("pebble: "+format, args...))
	exit(1)
}

// exit is os.Exit; tests replace it.
var exit = os.Exit
