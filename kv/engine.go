package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

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
	ErrWrongType   = errors.New("WRONGTYPE Operation against a key holding the wrong kind of value")
	ErrNotInteger  = errors.New("value is not an integer or out of range")
	ErrNotFloat    = errors.New("value is not a valid float")
	ErrOverflow    = errors.New("increment or decrement would overflow")
	ErrNoSuchKey   = errors.New("no such key")
	ErrTooLarge    = errors.New("key or value too large")
	ErrBadTTL      = errors.New("invalid expire time")
	ErrNaN         = errors.New("resulting score is not a number (NaN)")
	ErrIncompatNX  = errors.New("XX and NX options at the same time are not compatible")
	ErrIncompatGT  = errors.New("GT, LT, and/or NX options at the same time are not compatible")
	ErrIncrOnePair = errors.New("INCR option supports a single increment-element pair")
)

// Options configure an Engine.
type Options struct {
	Store         *store.Store
	Now           func() time.Time
	Logger        *slog.Logger
	MaxKeyBytes   int           // default 64 KiB
	MaxValueBytes int           // default 512 MiB is Redis'; ours follows max_payload
	SyncInterval  time.Duration // >0: fsync Pebble's WAL this often (the interval policy)
	ReapInterval  time.Duration // default 100 ms
	ReapBatch     int           // expired keys deleted per round, default 1000
	CacheBytes    int           // the key-record cache's budget, default 128 MiB; <0: no cache
}

// Engine is the KV cache.
type Engine struct {
	o       Options
	st      *store.Store
	seed    maphash.Seed
	stripes [nStripes]sync.Mutex
	caches  [nStripes]cacheShard // caches[i] is guarded by stripes[i]

	keys    atomic.Int64 // live keys, expired ones included until reaped
	expired atomic.Uint64

	stop chan struct{}
	done sync.WaitGroup
}

// Open counts the keys and starts the reaper.
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
	e := &Engine{o: o, st: o.Store, seed: maphash.MakeSeed(), stop: make(chan struct{})}
	for i := range e.caches {
		e.caches[i] = cacheShard{m: make(map[string]cached), budget: max(o.CacheBytes, 0) / nStripes}
	}
	var n int64
	if err := e.st.Scan(store.KeyspaceKV, []byte{'m'}, func(k, v []byte) bool { n++; return true }); err != nil {
		return nil, fmt.Errorf("kv: count keys: %w", err)
	}
	e.keys.Store(n)
	e.done.Add(1)
	go e.background()
	return e, nil
}

// Close stops the reaper.
func (e *Engine) Close() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	e.done.Wait()
}

// Stats are the engine's counters.
type Stats struct {
	Keys    int64  `json:"keys"`
	Expired uint64 `json:"expired"`
}

// Stats returns the counters.
func (e *Engine) Stats() Stats { return Stats{Keys: e.keys.Load(), Expired: e.expired.Load()} }

func (e *Engine) now() int64 { return e.o.Now().UnixMilli() }

const nStripes = 256

func (e *Engine) stripeOf(key []byte) int {
	return int(maphash.Bytes(e.seed, key) % nStripes)
}

// lock locks key's stripe and returns its unlock.
func (e *Engine) lock(key []byte) func() {
	m := &e.stripes[e.stripeOf(key)]
	m.Lock()
	return m.Unlock
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
func metaKey(key []byte) []byte {
	b := make([]byte, 9, 9+len(key))
	b[0] = 'm'
	binary.BigEndian.PutUint64(b[1:], keyHash(key))
	return append(b, key...)
}

func keyHash(key []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range key {
		h ^= uint64(c)
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
	return append(binary.BigEndian.AppendUint64([]byte{'x'}, uint64(at)), key...)
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

func (m *meta) encode() []byte {
	b := make([]byte, 9, 9+len(m.val)+binary.MaxVarintLen64)
	b[0] = byte(m.typ)
	binary.BigEndian.PutUint64(b[1:], uint64(m.expireAt))
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
		sh.set(key, cached{})
		return meta{}, false, nil
	}
	if err != nil {
		return meta{}, false, err
	}
	m, err := decodeMeta(v)
	if err != nil {
		return meta{}, false, fmt.Errorf("%w (key %q)", err, key)
	}
	sh.set(key, cached{m: m, ok: true})
	return m, true, nil
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
	defer e.lock(key)()
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

// batch is one command's writes, with the key count change they make and
// the cache updates to apply once they are committed.
type batch struct {
	e       *Engine
	b       *store.Batch
	keys    int64
	expired uint64
	cache   []cacheOp
}

type cacheOp struct {
	key []byte
	c   cached
}

func (e *Engine) newBatch() *batch { return &batch{e: e, b: e.st.NewBatch()} }

func (b *batch) commit() error {
	if b.b.Empty() {
		return nil
	}
	if err := b.b.Commit(); err != nil {
		// Nothing was applied; what the cache holds for these keys may
		// be what this batch read, so it goes.
		for _, op := range b.cache {
			b.e.caches[b.e.stripeOf(op.key)].remove(op.key)
		}
		return err
	}
	for _, op := range b.cache {
		b.e.caches[b.e.stripeOf(op.key)].set(op.key, op.c)
	}
	b.e.keys.Add(b.keys)
	b.e.expired.Add(b.expired)
	return nil
}

// put writes key's record; old is the record it replaces (exists: there
// was one), for the key count and the expiry index.
func (b *batch) put(key []byte, m *meta, old meta, exists bool) {
	b.b.Set(store.KeyspaceKV, metaKey(key), m.encode())
	c := cached{m: *m, ok: true}
	c.m.val = bytes.Clone(m.val) // m.val may point into the caller's (the network's) buffer
	b.cache = append(b.cache, cacheOp{key: key, c: c})
	if !exists {
		b.keys++
	}
	if exists && old.expireAt != 0 && old.expireAt != m.expireAt {
		b.b.Delete(store.KeyspaceKV, expiryKey(old.expireAt, key))
	}
	if m.expireAt != 0 && (!exists || old.expireAt != m.expireAt) {
		b.b.Set(store.KeyspaceKV, expiryKey(m.expireAt, key), nil)
	}
}

// drop deletes key and everything it holds.
func (b *batch) drop(key []byte, m meta) {
	b.b.Delete(store.KeyspaceKV, metaKey(key))
	b.cache = append(b.cache, cacheOp{key: key})
	b.keys--
	if m.expireAt != 0 {
		b.b.Delete(store.KeyspaceKV, expiryKey(m.expireAt, key))
	}
	if m.typ != TypeString {
		for _, tag := range []byte{'f', 'z'} {
			p := memberPrefix(tag, key)
			b.b.DeleteRange(store.KeyspaceKV, p, prefixEnd(p))
		}
	}
}

// background runs the reaper and, under the interval policy, the WAL sync.
func (e *Engine) background() {
	defer e.done.Done()
	reap := time.NewTicker(e.o.ReapInterval)
	defer reap.Stop()
	var sync <-chan time.Time
	if e.o.SyncInterval > 0 {
		t := time.NewTicker(e.o.SyncInterval)
		defer t.Stop()
		sync = t.C
	}
	for {
		select {
		case <-e.stop:
			return
		case <-sync:
			if err := e.st.SyncWAL(); err != nil {
				e.o.Logger.Warn("kv: WAL sync failed", "err", err)
			}
		case <-reap.C:
			for {
				n, err := e.Reap()
				if err != nil {
					e.o.Logger.Warn("kv: reaper", "err", err)
				}
				if n < e.o.ReapBatch || err != nil {
					break
				}
			}
		}
	}
}

// Reap deletes up to ReapBatch keys whose time has passed, found through
// the expiry index, and returns how many index entries it handled.
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
		unlock := e.lock(d.key)
		b := e.newBatch()
		v, gerr := e.st.Get(store.KeyspaceKV, metaKey(d.key))
		if gerr == nil {
			if m, derr := decodeMeta(v); derr == nil && m.expireAt == d.at {
				b.drop(d.key, m)
				b.expired++
			}
		}
		b.b.Delete(store.KeyspaceKV, expiryKey(d.at, d.key)) // a stale entry goes too
		err := b.commit()
		unlock()
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

// The cache: key records (type, expiry, a string's value or a
// collection's count) by key, including "no such key", so a GET or the
// read a write starts with need no Pebble lookup for a hot key. It is
// written through: a batch's records enter it only once committed, under
// the key's stripe lock, so it never holds what Pebble does not. Each
// shard has a byte budget; over it, entries go in the map's (random)
// iteration order, a cheap approximation of random eviction.
type cacheShard struct {
	m      map[string]cached
	bytes  int
	budget int
}

type cached struct {
	m  meta
	ok bool // false: the key does not exist
}

const cacheEntryOverhead = 80 // map slot, string header, meta

func (c cached) size(key []byte) int { return len(key) + len(c.m.val) + cacheEntryOverhead }

func (sh *cacheShard) set(key []byte, c cached) {
	if sh.budget <= 0 {
		return
	}
	if old, ok := sh.m[string(key)]; ok {
		sh.bytes -= old.size(key)
	}
	n := c.size(key)
	if n > sh.budget/4 {
		delete(sh.m, string(key)) // too big to be worth a quarter of the shard
		return
	}
	sh.m[string(key)] = c
	sh.bytes += n
	for k, v := range sh.m {
		if sh.bytes <= sh.budget {
			break
		}
		if k != string(key) {
			sh.bytes -= v.size([]byte(k))
			delete(sh.m, k)
		}
	}
}

func (sh *cacheShard) remove(key []byte) {
	if old, ok := sh.m[string(key)]; ok {
		sh.bytes -= old.size(key)
		delete(sh.m, string(key))
	}
}
