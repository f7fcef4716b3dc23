package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/flowmesh/flowmesh/internal/repeatlog"
	"github.com/flowmesh/flowmesh/kv/aof"
	"github.com/flowmesh/flowmesh/kv/store"
)

// Type is a key's type.
type Type byte

const (
	TypeNone   Type = 0
	TypeString Type = 's'
	TypeHash   Type = 'h'
	TypeSet    Type = 'S'
	TypeZSet   Type = 'z'
)

func (t Type) String() string {
	switch t {
	case TypeString:
		return "string"
	case TypeHash:
		return "hash"
	case TypeSet:
		return "set"
	case TypeZSet:
		return "zset"
	}
	return "none"
}

// ParseType reads a type name as TYPE prints it.
func ParseType(s string) (Type, bool) {
	for _, t := range []Type{TypeString, TypeHash, TypeSet, TypeZSet} {
		if t.String() == s {
			return t, true
		}
	}
	return TypeNone, false
}

// Errors. The ports turn them into their own error replies.
var (
	ErrWrongType  = errors.New("WRONGTYPE Operation against a key holding the wrong kind of value")
	ErrNotInteger = errors.New("value is not an integer or out of range")
	ErrNotFloat   = errors.New("value is not a valid float")
	ErrOverflow   = errors.New("increment or decrement would overflow")
	// ErrFloatOverflow is INCRBYFLOAT's: the sum is out of range.
	ErrFloatOverflow = errors.New("increment would produce NaN or Infinity")
	ErrNoSuchKey     = errors.New("no such key")
	ErrTooLarge      = errors.New("key or value too large")
	ErrBadTTL        = errors.New("invalid expire time")
	ErrNaN           = errors.New("resulting score is not a number (NaN)")
	ErrIncompatNX    = errors.New("XX and NX options at the same time are not compatible")
	ErrIncompatGT    = errors.New("GT, LT, and/or NX options at the same time are not compatible")
	ErrIncrOnePair   = errors.New("INCR option supports a single increment-element pair")
)

// Options configure an Engine.
type Options struct {
	// Dir holds the engine's Pebble database (Dir/db) and append-only file
	// (Dir/aof). InMemory keeps Pebble in memory and writes no file.
	Dir      string
	InMemory bool
	// Legacy is a database that may still hold KV data from before the
	// engine had its own (keyspace K of the node's store): moved on Open.
	Legacy *store.Store
	// SyncEach fsyncs the append-only file before a write is acknowledged
	// (the always policy); SyncInterval > 0 fsyncs it this often instead
	// (the interval policy); neither: the OS decides (none).
	SyncEach     bool
	SyncInterval time.Duration

	Now           func() time.Time
	Logger        *slog.Logger
	MaxKeyBytes   int           // default 64 KiB
	MaxValueBytes int           // default 512 MiB is Redis'; ours follows max_payload
	ReapInterval  time.Duration // default 100 ms
	ReapBatch     int           // expired keys deleted per round, default 1000
	CacheBytes    int           // the record cache's budget for unchanged records, default 128 MiB; <0: none
	// Changed key records are written to Pebble at each checkpoint, once
	// DirtyBytes of them (default 64 MiB) wait, and, every FlushInterval
	// (default 5 s), when one of them expires before the next tick (the
	// reaper finds keys through Pebble's expiry index) or a SCAN ran in
	// the last minute. CheckpointBytes of
	// append-only file (default 64 MiB) start a checkpoint, after which the
	// file's older segments go (so a segment, which replay reads whole,
	// stays near that size).
	FlushInterval   time.Duration
	DirtyBytes      int64
	CheckpointBytes uint64
}

// Engine is the KV cache.
type Engine struct {
	o       Options
	st      *store.Store
	aof     atomic.Pointer[aof.File] // nil in memory; set once Open has replayed
	aofDir  string
	seed    maphash.Seed
	stripes [nStripes]sync.Mutex
	caches  [nStripes]cacheShard // caches[i] is guarded by stripes[i]

	keys       atomic.Int64 // live keys, expired ones included until reaped
	expired    atomic.Uint64
	dirtyBytes atomic.Int64 // records changed and not yet in Pebble
	// dirtyDue is the earliest expiry time (Unix ms) among changed
	// records not yet in Pebble, whose expiry index entries are not there
	// either; 0: none (or not known since the last write to Pebble).
	dirtyDue     atomic.Int64
	scanAt       atomic.Int64 // when the last SCAN started (Unix ms); 0: none
	flushNow     chan struct{}
	unsynced     atomic.Bool   // appended since the interval fsync began (SyncInterval > 0)
	unsyncedAt   atomic.Int64  // when unsynced was set, as time.Since(epoch)
	intervalKick chan struct{} // unsynced was set

	cpMu    sync.Mutex    // one checkpoint at a time
	cpPos   uint64        // the last checkpoint's position in the append-only file; under cpMu
	cpStart atomic.Uint64 // cpPos, for Stats

	// Waiters for an fsync (the always policy): AfterDurable queues them,
	// the syncer goroutine serves all that came during one fsync with the
	// next (group commit).
	syncMu   sync.Mutex
	syncQ    []syncWaiter
	syncDone bool // the syncer stopped; under syncMu
	syncKick chan struct{}

	stop chan struct{}
	done sync.WaitGroup
}

type syncWaiter struct {
	pos uint64
	fn  func(error)
}

// replayBatchBytes is how many bytes of records replay applies to Pebble
// in one batch.
const replayBatchBytes = 1 << 20

// checkpointKey holds the append-only file's position from which Open
// replays (keyspace KVState, so FLUSHDB does not touch it).
var checkpointKey = []byte("checkpoint")

// Open opens the engine's database, moves legacy data in, replays the
// append-only file from the last checkpoint, counts the keys and starts
// the background work (reaper, flushes, checkpoints, the interval fsync).
func Open(o Options) (*Engine, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxKeyBytes <= 0 {
		o.MaxKeyBytes = 64 << 10
	}
	if o.MaxValueBytes <= 0 {
		o.MaxValueBytes = 1 << 20
	}
	if o.ReapInterval <= 0 {
		o.ReapInterval = 100 * time.Millisecond
	}
	if o.ReapBatch <= 0 {
		o.ReapBatch = 1000
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 128 << 20
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 5 * time.Second
	}
	if o.DirtyBytes <= 0 {
		o.DirtyBytes = 64 << 20
	}
	if o.CheckpointBytes == 0 {
		o.CheckpointBytes = 64 << 20
	}
	if !o.InMemory && o.Dir == "" {
		return nil, errors.New("kv: no directory")
	}
	e := &Engine{o: o, seed: maphash.MakeSeed(), stop: make(chan struct{}), flushNow: make(chan struct{}, 1), intervalKick: make(chan struct{}, 1),
		syncKick: make(chan struct{}, 1), aofDir: filepath.Join(o.Dir, "aof")}
	for i := range e.caches {
		e.caches[i] = newCacheShard(max(o.CacheBytes, 0) / nStripes)
	}
	// 16 sublevels: a checkpoint writes every changed record, so with a
	// hot set of 100k keys each one flushed ~4 overlapping tables and was
	// compacted at once, the same keys merged again every time. Merging
	// four checkpoints at a time took a fifth off the CPU a checkpoint
	// costs (docs/benchmarks.md, "KV checkpoints").
	st, err := store.Open(filepath.Join(o.Dir, "db"), store.Options{InMemory: o.InMemory, NoWAL: !o.InMemory,
		Logger: o.Logger, BeforeFlush: e.beforeFlush, L0Sublevels: 16})
	if err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	e.st = st
	if err := e.recover(); err != nil {
		st.Close()
		return nil, err
	}
	var n int64
	if err := e.st.Scan(store.KeyspaceKV, []byte{'m'}, func(k, v []byte) bool { n++; return true }); err != nil {
		e.closeFiles()
		return nil, fmt.Errorf("kv: count keys: %w", err)
	}
	e.keys.Store(n)
	e.done.Add(1)
	go e.background()
	if e.SyncsEach() {
		e.done.Add(1)
		go e.syncer()
	}
	return e, nil
}

// recover moves legacy data in, replays the append-only file into Pebble
// and checkpoints, so that the replayed segments can go.
func (e *Engine) recover() error {
	if e.o.Legacy != nil {
		if err := e.migrate(e.o.Legacy); err != nil {
			return err
		}
	}
	if e.o.InMemory {
		return nil
	}
	if v, err := e.st.Get(store.KeyspaceKVState, checkpointKey); err == nil && len(v) == 8 {
		e.cpPos = binary.BigEndian.Uint64(v)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("kv: read checkpoint: %w", err)
	}
	start := time.Now()
	records, size := 0, 0
	// Records are applied in order, many to a Pebble batch (one batch is
	// atomic and ordered, so a batch boundary never splits a command).
	b := e.st.NewBatch()
	end, err := aof.Replay(e.aofDir, e.cpPos, func(rec []byte) error {
		records++
		if err := applyRecord(b, rec); err != nil {
			return err
		}
		if size += len(rec); size >= replayBatchBytes {
			err := b.CommitSync(false)
			b, size = e.st.NewBatch(), 0
			return err
		}
		return nil
	})
	if err == nil {
		err = b.CommitSync(false)
	} else {
		b.Discard()
	}
	if err != nil {
		return fmt.Errorf("kv: replay: %w", err)
	}
	f, err := aof.Create(e.aofDir, end, aof.Options{SyncEach: e.o.SyncEach})
	if err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	e.aof.Store(f)
	if records > 0 {
		e.o.Logger.Info("kv: replayed the append-only file", "records", records, "bytes", end-e.cpPos,
			"took", time.Since(start).Round(time.Millisecond))
	}
	if err := e.checkpoint(true); err != nil {
		f.Close()
		return err
	}
	return nil
}

// migrate moves the KV keyspace of a node's shared database (where the
// engine kept its data before it had a database of its own) into this
// one. Copied, made durable, then deleted there: a crash in between
// copies again.
func (e *Engine) migrate(legacy *store.Store) error {
	var b *store.Batch
	n := 0
	var err error
	scanErr := legacy.Scan(store.KeyspaceKV, nil, func(k, v []byte) bool {
		if b == nil {
			b = e.st.NewBatch()
		}
		b.Set(store.KeyspaceKV, k, v)
		if n++; n%10000 == 0 {
			err, b = b.CommitSync(false), nil
		}
		return err == nil
	})
	if err = errors.Join(scanErr, err); err == nil && b != nil {
		err = b.CommitSync(false)
	}
	if err == nil && n > 0 {
		err = e.st.Flush()
	}
	if err == nil && n > 0 {
		d := legacy.NewBatch()
		d.DeletePrefix(store.KeyspaceKV, nil)
		err = d.CommitSync(true)
	}
	if err != nil {
		return fmt.Errorf("kv: move data from the node's database: %w", err)
	}
	if n > 0 {
		e.o.Logger.Info("kv: moved keys into the engine's own database", "records", n)
	}
	return nil
}

// beforeFlush runs before Pebble flushes a memtable: every change in it
// has its record appended, and now written and fsynced, so nothing is on
// disk in Pebble before its record (replay's premise).
func (e *Engine) beforeFlush() {
	if f := e.aof.Load(); f != nil {
		if err := f.Sync(); err != nil {
			e.o.Logger.Error("kv: append-only file sync before a flush failed", "err", err)
		}
	}
}

// Close checkpoints (so the next Open replays nothing) and closes.
func (e *Engine) Close() {
	select {
	case <-e.stop:
		return
	default:
		close(e.stop)
	}
	e.done.Wait()
	if err := e.checkpoint(true); err != nil {
		e.o.Logger.Warn("kv: checkpoint at close failed; the next start replays the append-only file", "err", err)
	}
	e.closeFiles()
}

func (e *Engine) closeFiles() {
	if f := e.aof.Load(); f != nil {
		if err := f.Close(); err != nil {
			e.o.Logger.Warn("kv: close append-only file", "err", err)
		}
	}
	if err := e.st.Close(); err != nil {
		e.o.Logger.Warn("kv: close database", "err", err)
	}
}

// Barrier returns once every write made so far is in the append-only
// file (and fsynced, under the always policy). The ports call it before
// sending the replies of the commands they ran: a write is acknowledged
// only after its barrier. Under the always policy they use AfterDurable
// instead, so that the loop does not wait for the disk. In memory it does
// nothing.
func (e *Engine) Barrier() error {
	f := e.aof.Load()
	if f == nil {
		return nil
	}
	return f.Barrier(f.End())
}

// SyncsEach reports whether a write is acknowledged only after an fsync
// of the append-only file (the always policy). The ports then wait for
// the fsync without holding their loop: AfterDurable.
func (e *Engine) SyncsEach() bool { return e.o.SyncEach && e.aof.Load() != nil }

// Position is the append-only file position after the last write made:
// a write made before the call is durable once Durable(Position()) is.
func (e *Engine) Position() uint64 {
	if f := e.aof.Load(); f != nil {
		return f.End()
	}
	return 0
}

// Durable reports whether every write before pos is past its barrier.
func (e *Engine) Durable(pos uint64) bool {
	f := e.aof.Load()
	return f == nil || f.Durable(pos)
}

// AfterDurable calls fn once every write before pos is past its barrier
// (written and fsynced under the always policy), or with the error that
// stopped the file. It does not block: fn runs on the engine's syncer
// goroutine, or at once if pos is durable already, and must not block.
// One fsync serves every waiter that came while the previous one ran.
func (e *Engine) AfterDurable(pos uint64, fn func(error)) {
	f := e.aof.Load()
	switch {
	case f == nil:
		fn(nil)
		return
	case !e.SyncsEach() || f.Durable(pos):
		fn(f.Barrier(pos)) // a write at most: no fsync to wait for
		return
	}
	e.syncMu.Lock()
	if e.syncDone {
		e.syncMu.Unlock()
		fn(f.Sync())
		return
	}
	e.syncQ = append(e.syncQ, syncWaiter{pos, fn})
	e.syncMu.Unlock()
	select {
	case e.syncKick <- struct{}{}:
	default:
	}
}

// syncer fsyncs the append-only file for AfterDurable's waiters. At stop
// it serves the last ones; later callers sync for themselves.
func (e *Engine) syncer() {
	defer e.done.Done()
	f := e.aof.Load()
	for {
		stopping := false
		select {
		case <-e.syncKick:
		case <-e.stop:
			stopping = true
		}
		e.syncMu.Lock()
		q := e.syncQ
		e.syncQ, e.syncDone = nil, stopping
		e.syncMu.Unlock()
		if len(q) > 0 {
			// Every waiter in q appended before it queued, so this one
			// write and fsync covers them all.
			err := f.Sync()
			for _, w := range q {
				w.fn(err)
			}
		}
		if stopping {
			return
		}
	}
}

// Stats are the engine's counters.
type Stats struct {
	Keys           int64  `json:"keys"`
	Expired        uint64 `json:"expired"`
	UnflushedBytes int64  `json:"unflushed_bytes"` // dirty key records, not yet in Pebble
	AOFBytes       uint64 `json:"aof_bytes"`       // append-only file since the last checkpoint
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	st := Stats{Keys: e.keys.Load(), Expired: e.expired.Load(), UnflushedBytes: e.dirtyBytes.Load()}
	if f := e.aof.Load(); f != nil {
		st.AOFBytes = f.Size(e.cpStart.Load())
	}
	return st
}

// StoreHealth is the engine's Pebble store's failed background writes
// since it opened, and its error while those keep failing (store.Err).
func (e *Engine) StoreHealth() (failures uint64, err error) {
	return e.st.BackgroundErrors(), e.st.Err()
}

func (e *Engine) now() int64 { return e.o.Now().UnixMilli() }

const nStripes = 256

func (e *Engine) stripeOf(key []byte) int {
	return int(maphash.Bytes(e.seed, key) % nStripes)
}

// lock locks key's stripe and returns it, for a deferred Unlock (a
// returned unlock func was an allocation per command).
func (e *Engine) lock(key []byte) *sync.Mutex {
	m := &e.stripes[e.stripeOf(key)]
	m.Lock()
	return m
}

// lockAll locks the stripes of keys in index order (no deadlock between
// two multi-key commands).
func (e *Engine) lockAll(keys [][]byte) func() {
	idx := make([]int, 0, len(keys))
	for _, k := range keys {
		idx = append(idx, e.stripeOf(k))
	}
	sort.Ints(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		e.stripes[i].Lock()
	}
	return func() {
		for _, i := range idx {
			e.stripes[i].Unlock()
		}
	}
}

// Keys in the keyspace.

// metaKey is 'm', the key's 64-bit FNV-1a hash, the key: the keyspace is
// in hash order, so a SCAN cursor is a number (the hash to go on from), as
// Redis clients expect, and needs no state on the server.
func metaKey(key []byte) []byte { return appendMetaKey(make([]byte, 0, 9+len(key)), key) }

// appendMetaKey appends metaKey(key) to dst.
func appendMetaKey[K string | []byte](dst []byte, key K) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, 'm'), keyHash(key))
	return append(dst, key...)
}

func keyHash[K string | []byte](key K) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return h
}

func memberPrefix(tag byte, key []byte) []byte {
	b := append([]byte{tag}, binary.AppendUvarint(nil, uint64(len(key)))...)
	return append(b, key...)
}

func memberKey(key, member []byte) []byte { return append(memberPrefix('f', key), member...) }

func expiryKey(at int64, key []byte) []byte {
	return appendExpiryKey(make([]byte, 0, 9+len(key)), at, key)
}

// appendExpiryKey appends expiryKey(at, key) to dst.
func appendExpiryKey[K string | []byte](dst []byte, at int64, key K) []byte {
	return append(binary.BigEndian.AppendUint64(append(dst, 'x'), uint64(at)), key...)
}

// prefixEnd is the first key after every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// meta is a key's header record.
type meta struct {
	typ      Type
	expireAt int64  // Unix ms, 0: none
	val      []byte // a string's value
	count    int64  // a collection's cardinality
}

func (m *meta) encode() []byte { return m.appendTo(make([]byte, 0, m.size())) }

// size is the length of m's encoding.
func (m *meta) size() int {
	if m.typ == TypeString {
		return 9 + len(m.val)
	}
	var v [binary.MaxVarintLen64]byte
	return 9 + len(binary.AppendUvarint(v[:0], uint64(m.count)))
}

func (m *meta) appendTo(b []byte) []byte {
	b = append(b, byte(m.typ))
	b = binary.BigEndian.AppendUint64(b, uint64(m.expireAt))
	if m.typ == TypeString {
		return append(b, m.val...)
	}
	return binary.AppendUvarint(b, uint64(m.count))
}

func decodeMeta(b []byte) (meta, error) {
	if len(b) < 9 {
		return meta{}, errors.New("kv: short key record")
	}
	m := meta{typ: Type(b[0]), expireAt: int64(binary.BigEndian.Uint64(b[1:9]))}
	if m.typ == TypeString {
		m.val = b[9:]
		return m, nil
	}
	c, n := binary.Uvarint(b[9:])
	if n <= 0 {
		return meta{}, errors.New("kv: bad cardinality in key record")
	}
	m.count = int64(c)
	return m, nil
}

// lookup reads key's record, expired or not, from the cache or Pebble.
// Call with the key's stripe held.
func (e *Engine) lookup(key []byte) (meta, bool, error) {
	sh := &e.caches[e.stripeOf(key)]
	if c, hit := sh.m[string(key)]; hit {
		return c.m, c.ok, nil
	}
	v, err := e.st.Get(store.KeyspaceKV, metaKey(key))
	if errors.Is(err, store.ErrNotFound) {
		sh.set(key, meta{}, false)
		return meta{}, false, nil
	}
	if err != nil {
		return meta{}, false, err
	}
	m, err := decodeMeta(v)
	if err != nil {
		return meta{}, false, fmt.Errorf("%w (key %q)", err, key)
	}
	return sh.set(key, m, true), true, nil
}

// load reads key's record; an expired key does not exist. Call with the
// key's stripe held.
func (e *Engine) load(key []byte, now int64) (meta, bool, error) {
	m, ok, err := e.lookup(key)
	if err != nil || !ok || (m.expireAt != 0 && m.expireAt <= now) {
		return meta{}, false, err
	}
	return m, true, nil
}

// loadFor is load for a command that writes: an expired key's leftovers
// are deleted in b, so the command starts from nothing.
func (e *Engine) loadFor(b *batch, key []byte, now int64) (meta, bool, error) {
	m, ok, err := e.lookup(key)
	if err != nil || !ok {
		return meta{}, false, err
	}
	if m.expireAt != 0 && m.expireAt <= now {
		b.drop(key, m)
		b.expired++
		return meta{}, false, nil
	}
	return m, true, nil
}

// read is load for a single-key read: it takes the key's stripe.
func (e *Engine) read(key []byte, now int64) (meta, bool, error) {
	defer e.lock(key).Unlock()
	return e.load(key, now)
}

// typed loads key and checks its type.
func (e *Engine) typed(key []byte, t Type, now int64) (meta, bool, error) {
	m, ok, err := e.load(key, now)
	if err == nil && ok && m.typ != t {
		return m, ok, ErrWrongType
	}
	return m, ok, err
}

func (e *Engine) typedFor(b *batch, key []byte, t Type, now int64) (meta, bool, error) {
	m, ok, err := e.loadFor(b, key, now)
	if err == nil && ok && m.typ != t {
		return m, ok, ErrWrongType
	}
	return m, ok, err
}

// batch is one command's writes: its append-only file record (every
// write, in order), the member writes to apply to Pebble, the key records
// to put in the cache, and the key count change.
//
// Key records ('m') and the expiry index ('x') are not written to Pebble
// by the command: the record cache is their primary copy, the entry is
// marked dirty, and flushDirty writes the dirty records in the
// background, so a key written many times between two flushes costs
// Pebble one write. Members ('f', 'z') go to Pebble at once, because
// reads of them (HGET, ZRANGE, ...) go there. The record makes all of it
// durable.
type batch struct {
	e       *Engine
	pb      *store.Batch // member writes; nil until the first
	rec     []byte
	keys    int64
	expired uint64
	cache   []cacheOp
}

// cacheOp is a key record to install once the batch commits. prevOK and
// prevExp are the record the command found: if the key was not dirty,
// that is what Pebble holds, which flushDirty needs to fix the expiry
// index.
type cacheOp struct {
	key     string // in c's allocation (newEntry)
	c       cached
	prevOK  bool
	prevExp int64
}

// batches recycles batches: a command's record and cache list are reused
// by the next, so a SET allocates little beyond the value it keeps.
var batches = sync.Pool{New: func() any { return new(batch) }}

func (e *Engine) newBatch() *batch {
	b := batches.Get().(*batch)
	b.e = e
	return b
}

// release returns b to the pool; commit does it, as the last use of b.
func (b *batch) release() {
	if cap(b.rec) > 64<<10 || cap(b.cache) > 1024 {
		return // a big command's buffers are not worth keeping
	}
	clear(b.cache)
	*b = batch{rec: b.rec[:0], cache: b.cache[:0]}
	batches.Put(b)
}

// Record operations. A record is a sequence of them; keys are keyspace K
// keys.
const (
	opSet         = 'S' // key, value
	opDelete      = 'D' // key
	opDeleteRange = 'R' // from, to
	opDeleteAll   = 'A' // (no operand): FLUSHDB
)

func (b *batch) op(op byte, args ...[]byte) {
	b.rec = append(b.rec, op)
	for _, a := range args {
		b.rec = binary.AppendUvarint(b.rec, uint64(len(a)))
		b.rec = append(b.rec, a...)
	}
}

func (b *batch) pebble() *store.Batch {
	if b.pb == nil {
		b.pb = b.e.st.NewBatch()
	}
	return b.pb
}

// set, del and delRange write members: to the record and to Pebble.
func (b *batch) set(k, v []byte) {
	b.op(opSet, k, v)
	b.pebble().Set(store.KeyspaceKV, k, v)
}

func (b *batch) del(k []byte) {
	b.op(opDelete, k)
	b.pebble().Delete(store.KeyspaceKV, k)
}

func (b *batch) delRange(from, to []byte) {
	b.op(opDeleteRange, from, to)
	b.pebble().DeleteRange(store.KeyspaceKV, from, to)
}

// applyRecord adds a record's writes to a Pebble batch (replay).
func applyRecord(pb *store.Batch, rec []byte) error {
	var args [2][]byte
	for len(rec) > 0 {
		op := rec[0]
		rec = rec[1:]
		n := 0
		switch op {
		case opSet, opDeleteRange:
			n = 2
		case opDelete:
			n = 1
		case opDeleteAll:
		default:
			return fmt.Errorf("kv: record: unknown operation %q", op)
		}
		for i := 0; i < n; i++ {
			l, w := binary.Uvarint(rec)
			if w <= 0 || l > uint64(len(rec)-w) {
				return fmt.Errorf("kv: record: operation %q cut short", op)
			}
			args[i], rec = rec[w:w+int(l)], rec[w+int(l):]
		}
		switch op {
		case opSet:
			pb.Set(store.KeyspaceKV, args[0], args[1])
		case opDelete:
			pb.Delete(store.KeyspaceKV, args[0])
		case opDeleteRange:
			pb.DeleteRange(store.KeyspaceKV, args[0], args[1])
		case opDeleteAll:
			pb.DeletePrefix(store.KeyspaceKV, nil)
		}
	}
	return nil
}

// commit appends the record, applies the member writes to Pebble and
// installs the key records in the cache. The record goes first: Pebble
// must not flush a change whose record is not in the file (beforeFlush
// writes what is appended). Call with the stripes of every key held; b is
// not usable afterwards.
func (b *batch) commit() error {
	defer b.release()
	if len(b.rec) == 0 {
		return nil
	}
	e := b.e
	grown := false // the file passed CheckpointBytes since the last checkpoint
	if f := e.aof.Load(); f != nil {
		pos, err := f.Append(b.rec)
		if err != nil {
			if b.pb != nil {
				b.pb.Discard()
			}
			return fmt.Errorf("kv: %w", err)
		}
		grown = pos-e.cpStart.Load() >= e.o.CheckpointBytes
		// The first change since the last interval fsync arms it (an idle
		// engine has no timer running).
		if e.o.SyncInterval > 0 && !e.unsynced.Load() && e.unsynced.CompareAndSwap(false, true) {
			e.unsyncedAt.Store(int64(time.Since(epoch)))
			select {
			case e.intervalKick <- struct{}{}:
			default:
			}
		}
	}
	if b.pb != nil {
		if err := b.pb.CommitSync(false); err != nil {
			// Unreachable short of a closed database: the record is
			// appended, so a restart replays the write that failed here.
			return err
		}
	}
	var grew int64
	for i := range b.cache {
		op := &b.cache[i]
		grew += e.caches[maphash.String(e.seed, op.key)%nStripes].install(op) // stripeOf(op.key)
		if op.c.ok && op.c.m.expireAt != 0 {
			e.noteDue(op.c.m.expireAt)
		}
	}
	if (grew != 0 && e.dirtyBytes.Add(grew) > e.o.DirtyBytes) || grown {
		select {
		case e.flushNow <- struct{}{}:
		default:
		}
	}
	e.keys.Add(b.keys)
	e.expired.Add(b.expired)
	return nil
}

// put writes key's record; old is the record it replaces (exists: there
// was one), for the key count and the expiry index.
func (b *batch) put(key []byte, m *meta, old meta, exists bool) {
	// opSet(metaKey(key), m.encode()), without building either.
	b.rec = append(b.rec, opSet)
	b.rec = binary.AppendUvarint(b.rec, uint64(9+len(key)))
	b.rec = appendMetaKey(b.rec, key)
	b.rec = m.appendTo(binary.AppendUvarint(b.rec, uint64(m.size())))
	k, c := newEntry(key, *m, true) // copies m.val, which may point into the network's buffer
	b.cache = append(b.cache, cacheOp{key: k, c: c, prevOK: exists, prevExp: old.expireAt})
	if !exists {
		b.keys++
	}
	if exists && old.expireAt != 0 && old.expireAt != m.expireAt {
		b.op(opDelete, expiryKey(old.expireAt, key))
	}
	if m.expireAt != 0 && (!exists || old.expireAt != m.expireAt) {
		b.op(opSet, expiryKey(m.expireAt, key), nil)
	}
}

// drop deletes key and everything it holds.
func (b *batch) drop(key []byte, m meta) {
	b.op(opDelete, metaKey(key))
	k, c := newEntry(key, meta{}, false)
	b.cache = append(b.cache, cacheOp{key: k, c: c, prevOK: true, prevExp: m.expireAt})
	b.keys--
	if m.expireAt != 0 {
		b.op(opDelete, expiryKey(m.expireAt, key))
	}
	if m.typ != TypeString {
		for _, tag := range []byte{'f', 'z'} {
			p := memberPrefix(tag, key)
			b.delRange(p, prefixEnd(p))
		}
	}
}

// epoch is the origin of the monotonic times kept in atomics.
var epoch = time.Now()

// background runs the reaper, the flushes of dirty records, checkpoints
// and, under the interval policy, the append-only file's fsync.
func (e *Engine) background() {
	defer e.done.Done()
	reap := time.NewTicker(e.o.ReapInterval)
	defer reap.Stop()
	flush := time.NewTicker(e.o.FlushInterval)
	defer flush.Stop()
	// A failed append-only file refuses writes until the node restarts,
	// and its sync reports that every SyncInterval: logged once per
	// repeatlog.Every with a count, not 100 lines a second.
	var syncLog, flushLog, reapLog repeatlog.Log
	// The interval fsync comes SyncInterval after the first change since
	// the last one; a 10 ms ticker woke an idle node 100 times a second.
	sync := time.NewTimer(time.Hour)
	sync.Stop()
	defer sync.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-e.intervalKick:
			// The interval counts from the change (this loop may have been
			// busy with a flush or the reaper).
			sync.Reset(max(e.o.SyncInterval-(time.Since(epoch)-time.Duration(e.unsyncedAt.Load())), 0))
		case <-sync.C:
			e.unsynced.Store(false) // before: a change after it arms the next fsync
			if err := e.aof.Load().Sync(); err != nil {
				syncLog.Log(e.o.Logger, slog.LevelWarn, "kv: append-only file sync failed", err)
			}
		case <-flush.C:
			// Writing every changed record on each tick rewrote a hot key
			// set into Pebble (and compacted it) twice as often as the
			// checkpoints do; reads go through the cache and do not need
			// it. Only the reaper and SCAN (which flushes first, on the
			// caller's loop) gain from a flush between checkpoints.
			if !e.flushDue() {
				continue
			}
			if err := e.checkpoint(false); err != nil {
				flushLog.Log(e.o.Logger, slog.LevelWarn, "kv: flush of changed keys failed", err)
			}
		case <-e.flushNow:
			if err := e.checkpoint(false); err != nil {
				flushLog.Log(e.o.Logger, slog.LevelWarn, "kv: flush of changed keys failed", err)
			}
		case <-reap.C:
			for {
				n, err := e.Reap()
				if err != nil {
					reapLog.Log(e.o.Logger, slog.LevelWarn, "kv: reaper", err)
				}
				if n < e.o.ReapBatch || err != nil {
					break
				}
			}
		}
	}
}

// checkpoint writes the dirty key records to Pebble and, when forced or
// once the append-only file has grown by CheckpointBytes since the last
// one, makes Pebble durable and drops the file's older segments:
//
//  1. rotate the file at position p: every change before p has its
//     record in the older segments and is in memory or Pebble;
//  2. write every dirty record to Pebble (flushDirty);
//  3. put p in Pebble and flush Pebble's memtables to its files;
//  4. remove the segments before p.
//
// A crash at any step replays from the previous checkpoint: the records
// are whole changes in order, so replaying ones Pebble already holds ends
// in the same state.
func (e *Engine) checkpoint(force bool) error {
	e.cpMu.Lock()
	defer e.cpMu.Unlock()
	f := e.aof.Load()
	full := f != nil && (force || f.Size(e.cpPos) >= e.o.CheckpointBytes)
	var p uint64
	if full {
		var err error
		if p, err = f.Rotate(); err != nil {
			return fmt.Errorf("kv: checkpoint: %w", err)
		}
	}
	if err := e.flushDirty(); err != nil {
		return err
	}
	if !full {
		return nil
	}
	b := e.st.NewBatch()
	b.Set(store.KeyspaceKVState, checkpointKey, binary.BigEndian.AppendUint64(nil, p))
	if err := b.CommitSync(false); err != nil {
		return fmt.Errorf("kv: checkpoint: %w", err)
	}
	if err := e.st.Flush(); err != nil {
		return fmt.Errorf("kv: checkpoint: %w", err)
	}
	if err := aof.Remove(e.aofDir, p, e.o.SyncEach); err != nil {
		return fmt.Errorf("kv: checkpoint: %w", err)
	}
	e.cpPos = p
	e.cpStart.Store(p)
	return nil
}

// flushDirty writes every dirty key record to Pebble, a stripe at a time
// under its lock, and marks it clean. A clean record may be evicted and
// read again from Pebble, so each stripe's writes are committed before its
// records are marked.
func (e *Engine) flushDirty() error {
	if e.dirtyBytes.Load() == 0 {
		return nil
	}
	// Cleared before the stripes are written: a record changed meanwhile
	// either is written below or notes its expiry again.
	due := e.dirtyDue.Swap(0)
	for i := range e.stripes {
		e.stripes[i].Lock()
		freed, err := e.caches[i].flush(e.st)
		e.stripes[i].Unlock()
		e.dirtyBytes.Add(-freed)
		if err != nil {
			if due != 0 {
				e.noteDue(due)
			}
			return fmt.Errorf("kv: write changed keys: %w", err)
		}
	}
	return nil
}

// flushDue reports whether the flush timer should write the changed
// records now: one of them expires before the next tick (its expiry index
// entry must be in Pebble for the reaper to find it in time), or a SCAN
// ran in the last scanRecent (so the next one finds at most a tick's worth
// of records to flush, as a fixed timer gave it, instead of everything
// since the last checkpoint).
func (e *Engine) flushDue() bool {
	now := e.now()
	if due := e.dirtyDue.Load(); due != 0 && due <= now+e.o.FlushInterval.Milliseconds() {
		return true
	}
	at := e.scanAt.Load()
	return at != 0 && now-at < scanRecent.Milliseconds() && e.dirtyBytes.Load() > 0
}

// scanRecent is how long after a SCAN the flush timer keeps writing the
// changed records at every tick.
const scanRecent = time.Minute

// noteDue records that a changed record not yet in Pebble expires at at
// (Unix ms).
func (e *Engine) noteDue(at int64) {
	for {
		cur := e.dirtyDue.Load()
		if cur != 0 && cur <= at {
			return
		}
		if e.dirtyDue.CompareAndSwap(cur, at) {
			return
		}
	}
}

// Reap deletes up to ReapBatch keys whose time has passed, found through
// the expiry index, and returns how many index entries it handled. A key
// whose expiry time was set since the last flush of records is not in the
// index yet: the flush timer writes it at the last tick before it is due,
// and it is reaped after that (and never read meanwhile).
func (e *Engine) Reap() (int, error) {
	now := e.now()
	type due struct {
		at  int64
		key []byte
	}
	var list []due
	hi := binary.BigEndian.AppendUint64([]byte{'x'}, uint64(now+1))
	err := e.st.Iterate(store.KeyspaceKV, []byte{'x'}, hi, false, func(k, _ []byte) bool {
		list = append(list, due{int64(binary.BigEndian.Uint64(k[1:9])), append([]byte(nil), k[9:]...)})
		return len(list) < e.o.ReapBatch
	})
	if err != nil {
		return 0, err
	}
	for _, d := range list {
		mu := e.lock(d.key)
		b := e.newBatch()
		m, ok, err := e.lookup(d.key)
		if err == nil && ok && m.expireAt == d.at {
			b.drop(d.key, m)
			b.expired++
		}
		if err == nil {
			// The index entry goes from Pebble now, stale or not, so the
			// next round does not find it again before the flush.
			b.del(expiryKey(d.at, d.key))
			err = b.commit()
		}
		mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	return len(list), nil
}

// checkKey refuses oversize keys.
func (e *Engine) checkKey(key []byte) error {
	if len(key) > e.o.MaxKeyBytes {
		return fmt.Errorf("%w: key of %d bytes, at most %d", ErrTooLarge, len(key), e.o.MaxKeyBytes)
	}
	return nil
}

func (e *Engine) checkValue(v []byte) error {
	if len(v) > e.o.MaxValueBytes {
		return fmt.Errorf("%w: value of %d bytes, at most %d", ErrTooLarge, len(v), e.o.MaxValueBytes)
	}
	return nil
}

// The record cache: key records (type, expiry, a string's value or a
// collection's count) by key, including "no such key", so a GET or the
// read a write starts with need no Pebble lookup for a hot key.
//
// A record a command changed is dirty: the cache holds the only current
// copy (the append-only file holds its history) until flushDirty writes
// it to Pebble. Dirty records are never evicted. Clean ones mirror Pebble
// and share each shard's byte budget; over it, a few are evicted per
// insert, in the map's (random) iteration order, a cheap approximation of
// random eviction.
//
// The layout is for the CPU's cache: a lookup of 100k keys missed it at
// every step (docs/benchmarks.md, "Where a pipelined GET goes"). Entries
// sit in the map's slots, not behind pointers, and a key's bytes and its
// string value share one allocation (newEntry), so finding a record
// touches the map's group, its slot and that allocation, which the key
// comparison has already brought in when the value is copied out.
type cacheShard struct {
	m      map[string]cached
	bytes  int
	budget int
	// Entries whose gen is gen are dirty: a flush makes all of them clean
	// at once by moving gen on, without writing to the map.
	gen   uint32
	dirty []string // the dirty records' keys, each once
}

func newCacheShard(budget int) cacheShard {
	return cacheShard{m: make(map[string]cached), budget: budget, gen: 1}
}

type cached struct {
	m  meta // of a string, m.val follows the key in the map key's allocation
	ok bool // false: the key does not exist
	// Of a dirty record: whether Pebble has a record for the key, and its
	// expiry time (whose index entry Pebble holds).
	pok  bool
	gen  uint32 // dirty if the shard's gen; next to the bools: a 64-byte entry
	pexp int64
}

const cacheEntryOverhead = 96 // the map slot (key header and entry) at the map's load, allocation rounding

func (c *cached) size(key string) int { return len(key) + len(c.m.val) + cacheEntryOverhead }

// newEntry returns the map key and the entry for key's record m, with
// key and m.val copied into one allocation that nothing writes to again:
// a record that changes gets a new one.
func newEntry(key []byte, m meta, ok bool) (string, cached) {
	buf := make([]byte, len(key)+len(m.val))
	copy(buf, key)
	if m.typ == TypeString && ok {
		copy(buf[len(key):], m.val)
		m.val = buf[len(key):len(buf):len(buf)]
	} else {
		m.val = nil
	}
	return unsafe.String(unsafe.SliceData(buf), len(key)), cached{m: m, ok: ok}
}

// evictScan bounds the entries an insert looks at to find clean ones to
// evict, so a shard full of dirty records costs no full map walk.
const evictScan = 8

// set caches a clean record read from Pebble and returns it as cached.
// Call only when the key has no entry (lookup's miss).
func (sh *cacheShard) set(key []byte, m meta, ok bool) meta {
	if sh.budget <= 0 || len(key)+len(m.val)+cacheEntryOverhead > sh.budget/4 {
		return m // too big to be worth a quarter of the shard
	}
	k, c := newEntry(key, m, ok)
	sh.m[k] = c
	sh.bytes += c.size(k)
	sh.evict(k, evictScan)
	return c.m
}

// install puts a committed change in the cache, dirty, and returns how
// many dirty bytes that added.
func (sh *cacheShard) install(op *cacheOp) int64 {
	c := op.c
	n := c.size(op.key)
	grew := n
	old, had := sh.m[op.key]
	if had {
		sh.bytes -= old.size(op.key)
	}
	if had && old.gen == sh.gen {
		grew -= old.size(op.key)
		c.pok, c.pexp = old.pok, old.pexp
	} else {
		c.pok, c.pexp = op.prevOK, op.prevExp
		// A copy of the key: the entry's allocation may hold a large
		// value that a later change replaces.
		sh.dirty = append(sh.dirty, strings.Clone(op.key))
	}
	c.gen = sh.gen
	sh.m[op.key] = c
	sh.bytes += n
	if !had {
		sh.evict(op.key, evictScan)
	}
	return int64(grew)
}

// evict drops clean entries other than keep while the shard is over its
// budget, looking at limit entries at most (<0: all).
func (sh *cacheShard) evict(keep string, limit int) {
	if sh.bytes <= sh.budget {
		return
	}
	looked := 0
	for k, v := range sh.m {
		if sh.bytes <= sh.budget || looked == limit {
			return
		}
		looked++
		if v.gen != sh.gen && k != keep {
			sh.bytes -= v.size(k)
			delete(sh.m, k)
		}
	}
}

// dirtyBytes is the size of the shard's dirty records.
func (sh *cacheShard) dirtyBytes() int64 {
	var n int64
	for _, k := range sh.dirty {
		c := sh.m[k]
		n += int64(c.size(k))
	}
	return n
}

// flush writes the shard's dirty records to Pebble, with the expiry index
// entries that change, and marks them clean; it returns the dirty bytes
// it cleared. Call with the stripe held.
func (sh *cacheShard) flush(st *store.Store) (int64, error) {
	if len(sh.dirty) == 0 {
		return 0, nil
	}
	b := st.NewBatch()
	// One key and one value buffer for the whole flush (the batch copies
	// both): a record each way cost four allocations.
	var kb, vb []byte
	for _, k := range sh.dirty {
		c := sh.m[k]
		kb = appendMetaKey(kb[:0], k)
		switch {
		case c.ok:
			vb = c.m.appendTo(vb[:0])
			b.Set(store.KeyspaceKV, kb, vb)
		case c.pok:
			b.Delete(store.KeyspaceKV, kb)
		}
		if c.pok && c.pexp != 0 && (!c.ok || c.m.expireAt != c.pexp) {
			b.Delete(store.KeyspaceKV, appendExpiryKey(kb[:0], c.pexp, k))
		}
		if c.ok && c.m.expireAt != 0 && (!c.pok || c.m.expireAt != c.pexp) {
			b.Set(store.KeyspaceKV, appendExpiryKey(kb[:0], c.m.expireAt, k), nil)
		}
	}
	if err := b.CommitSync(false); err != nil {
		return 0, err
	}
	freed := sh.dirtyBytes()
	clear(sh.dirty) // no key kept alive by the array
	sh.dirty = sh.dirty[:0]
	if sh.gen++; sh.gen == 0 { // all clean now
		sh.gen = 1 // 0 is a record read from Pebble
	}
	sh.evict("", -1) // all clean now: back within the budget
	return freed, nil
}
