package kv

import (
	"encoding/binary"

	"github.com/flowmesh/flowmesh/kv/store"
)

// Del deletes keys and returns how many existed.
func (e *Engine) Del(keys [][]byte) (int, error) {
	defer e.lockAll(keys)()
	now := e.now()
	b := e.newBatch()
	n := 0
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[string(k)] {
			continue
		}
		seen[string(k)] = true
		m, ok, err := e.loadFor(b, k, now)
		if err != nil {
			return 0, err
		}
		if ok {
			b.drop(k, m)
			n++
		}
	}
	return n, b.commit()
}

// Exists counts the keys that exist (a key given twice counts twice).
func (e *Engine) Exists(keys [][]byte) (int, error) {
	now := e.now()
	n := 0
	for _, k := range keys {
		_, ok, err := e.read(k, now)
		if err != nil {
			return 0, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// TypeOf is a key's type (TypeNone if it does not exist).
func (e *Engine) TypeOf(key []byte) (Type, error) {
	defer e.lock(key).Unlock()
	m, ok, err := e.load(key, e.now())
	if err != nil || !ok {
		return TypeNone, err
	}
	return m.typ, nil
}

// Rename moves src to dst (replacing dst); with nx, only if dst does not
// exist (it reports whether it moved).
func (e *Engine) Rename(src, dst []byte, nx bool) (bool, error) {
	if err := e.checkKey(dst); err != nil {
		return false, err
	}
	defer e.lockAll([][]byte{src, dst})()
	now := e.now()
	b := e.newBatch()
	m, ok, err := e.loadFor(b, src, now)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, firstErr(b.commit(), ErrNoSuchKey)
	}
	if string(src) == string(dst) {
		return !nx, b.commit()
	}
	dm, dok, err := e.loadFor(b, dst, now)
	if err != nil {
		return false, err
	}
	if nx && dok {
		return false, b.commit()
	}
	if dok {
		b.drop(dst, dm)
	}
	// Members move key by key: a collection's are under its key's prefix.
	if m.typ != TypeString {
		for _, tag := range []byte{'f', 'z'} {
			sp, dp := memberPrefix(tag, src), memberPrefix(tag, dst)
			err := e.st.Iterate(store.KeyspaceKV, sp, prefixEnd(sp), false, func(k, v []byte) bool {
				b.set(append(append([]byte(nil), dp...), k[len(sp):]...), v)
				return true
			})
			if err != nil {
				return false, err
			}
		}
	}
	b.drop(src, m)
	b.put(dst, &m, meta{}, false)
	return true, b.commit()
}

// ExpireOpts are EXPIRE's conditions (Redis 7).
type ExpireOpts struct{ NX, XX, GT, LT bool }

// Expire sets key's expiry time (Unix ms); a time already past deletes the
// key. It reports whether it changed anything.
func (e *Engine) Expire(key []byte, at int64, o ExpireOpts) (bool, error) {
	defer e.lock(key).Unlock()
	now := e.now()
	b := e.newBatch()
	m, ok, err := e.loadFor(b, key, now)
	if err != nil || !ok {
		return false, firstErr(err, b.commit())
	}
	cur := m.expireAt
	switch {
	case o.NX && cur != 0, o.XX && cur == 0,
		o.GT && (cur == 0 || at <= cur), o.LT && cur != 0 && at >= cur:
		return false, b.commit()
	}
	if at <= now {
		b.drop(key, m)
		b.expired++
		return true, b.commit()
	}
	n := m
	n.expireAt = at
	b.put(key, &n, m, true)
	return true, b.commit()
}

// Persist removes key's expiry; it reports whether there was one.
func (e *Engine) Persist(key []byte) (bool, error) {
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.loadFor(b, key, e.now())
	if err != nil || !ok || m.expireAt == 0 {
		return false, firstErr(err, b.commit())
	}
	n := m
	n.expireAt = 0
	b.put(key, &n, m, true)
	return true, b.commit()
}

// TTL is the time left in ms: -2 if the key does not exist, -1 if it has
// no expiry.
func (e *Engine) TTL(key []byte) (int64, error) {
	defer e.lock(key).Unlock()
	now := e.now()
	m, ok, err := e.load(key, now)
	switch {
	case err != nil:
		return 0, err
	case !ok:
		return -2, nil
	case m.expireAt == 0:
		return -1, nil
	}
	return m.expireAt - now, nil
}

// DBSize counts the keys (expired ones not yet reaped included, as in
// Redis).
func (e *Engine) DBSize() int64 { return e.keys.Load() }

// FlushDB deletes every key.
func (e *Engine) FlushDB() error {
	for i := range e.stripes {
		e.stripes[i].Lock()
	}
	defer func() {
		for i := range e.stripes {
			e.stripes[i].Unlock()
		}
	}()
	b := e.newBatch()
	b.op(opDeleteAll)
	b.pebble().DeletePrefix(store.KeyspaceKV, nil)
	err := b.commit()
	if err != nil {
		return err
	}
	var dirty int64
	for i := range e.caches {
		sh := &e.caches[i]
		dirty += sh.dirtyBytes()
		*sh = newCacheShard(sh.budget)
	}
	e.dirtyBytes.Add(-dirty)
	e.keys.Store(0)
	return nil
}

// ScanOpts filter a SCAN.
type ScanOpts struct {
	Match []byte // glob; nil: all
	Count int    // keys looked at, about; default 10
	Type  Type   // TypeNone: all
}

// Scan returns keys from cursor on (0: from the start) and the cursor to
// go on from (0: done). Keys are visited in the order of their hash and
// the cursor is the next hash, so a scan returns every key that exists
// from its start to its end, and a key once unless keys come and go
// between calls (as Redis promises). A call finishes the hash it is in, so
// it can return a few more than Count.
func (e *Engine) Scan(cursor uint64, o ScanOpts) (keys [][]byte, next uint64, err error) {
	if o.Count <= 0 {
		o.Count = 10
	}
	// The scan reads Pebble, so the records changed since the last flush
	// are written first (and the flush timer keeps them few meanwhile).
	e.scanAt.Store(e.now())
	if err := e.flushDirty(); err != nil {
		return nil, 0, err
	}
	now := e.now()
	lo := binary.BigEndian.AppendUint64([]byte{'m'}, cursor)
	looked := 0
	var lastHash uint64
	stopped := false
	err = e.st.Iterate(store.KeyspaceKV, lo, []byte{'n'}, false, func(k, v []byte) bool {
		h := binary.BigEndian.Uint64(k[1:9])
		if looked >= o.Count && h != lastHash {
			stopped = true
			return false
		}
		looked++
		lastHash = h
		key := k[9:]
		m, derr := decodeMeta(v)
		if derr == nil && (m.expireAt == 0 || m.expireAt > now) && (o.Type == TypeNone || m.typ == o.Type) &&
			(o.Match == nil || Glob(o.Match, key)) {
			keys = append(keys, append([]byte(nil), key...))
		}
		return true
	})
	if err != nil || !stopped {
		return keys, 0, err
	}
	return keys, lastHash + 1, nil
}

// Keys lists every key matching pattern: a full scan, documented as slow.
func (e *Engine) Keys(pattern []byte) ([][]byte, error) {
	var out [][]byte
	var cur uint64
	for {
		ks, next, err := e.Scan(cur, ScanOpts{Match: pattern, Count: 1000})
		if err != nil {
			return nil, err
		}
		out = append(out, ks...)
		if next == 0 {
			return out, nil
		}
		cur = next
	}
}
