package kv

import (
	"math"
	"math/big"
	"strconv"
)

// SetOpts are SET's options.
type SetOpts struct {
	ExpireAt int64 // Unix ms; 0: none
	NX, XX   bool  // only if absent / present
	KeepTTL  bool
	Get      bool // return the old value
}

// SetResult says what SET did.
type SetResult struct {
	Done   bool   // false when NX/XX stopped it
	Old    []byte // with Get: the old value
	HadOld bool
}

// Set writes a string.
func (e *Engine) Set(key, val []byte, o SetOpts) (SetResult, error) {
	if err := e.checkKey(key); err != nil {
		return SetResult{}, err
	}
	if err := e.checkValue(val); err != nil {
		return SetResult{}, err
	}
	now := e.now()
	defer e.lock(key).Unlock()
	b := e.newBatch()
	old, exists, err := e.loadFor(b, key, now)
	if err != nil {
		return SetResult{}, err
	}
	var r SetResult
	if o.Get && exists {
		if old.typ != TypeString {
			return SetResult{}, ErrWrongType
		}
		r.Old, r.HadOld = old.val, true
	}
	if (o.NX && exists) || (o.XX && !exists) {
		return r, b.commit()
	}
	r.Done = true
	if o.ExpireAt != 0 && o.ExpireAt <= now {
		// A time already past: the SET deletes (as Redis does).
		if exists {
			b.drop(key, old)
		}
		return r, b.commit()
	}
	m := meta{typ: TypeString, val: val, expireAt: o.ExpireAt}
	if o.KeepTTL && exists {
		m.expireAt = old.expireAt
	}
	if exists && old.typ != TypeString {
		b.drop(key, old)
		exists = false
	}
	b.put(key, &m, old, exists)
	return r, b.commit()
}

// Get reads a string; ok is false if the key does not exist.
func (e *Engine) Get(key []byte) (val []byte, ok bool, err error) {
	defer e.lock(key).Unlock()
	m, ok, err := e.typed(key, TypeString, e.now())
	if err != nil || !ok {
		return nil, false, err
	}
	return m.val, true, nil
}

// GetDel reads a string and deletes it.
func (e *Engine) GetDel(key []byte) ([]byte, bool, error) {
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, TypeString, e.now())
	if err != nil || !ok {
		return nil, false, firstErr(err, b.commit())
	}
	b.drop(key, m)
	return m.val, true, b.commit()
}

// GetEx reads a string and changes its expiry: expireAt > 0 sets it,
// persist removes it, neither leaves it.
func (e *Engine) GetEx(key []byte, expireAt int64, persist bool) ([]byte, bool, error) {
	defer e.lock(key).Unlock()
	now := e.now()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, TypeString, now)
	if err != nil || !ok {
		return nil, false, firstErr(err, b.commit())
	}
	switch {
	case expireAt != 0 && expireAt <= now:
		b.drop(key, m)
	case expireAt != 0 || (persist && m.expireAt != 0):
		n := m
		n.expireAt = expireAt
		b.put(key, &n, m, true)
	}
	return m.val, true, b.commit()
}

// MGet reads several strings; a missing key or one of another type is nil.
func (e *Engine) MGet(keys [][]byte) ([][]byte, error) {
	now := e.now()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		m, ok, err := e.read(k, now)
		if err != nil {
			return nil, err
		}
		if ok && m.typ == TypeString {
			out[i] = m.val
			if out[i] == nil {
				out[i] = []byte{} // an empty string is not a missing key (APPEND of "" stores nil)
			}
		}
	}
	return out, nil
}

// MSet writes several strings at once; with nx, none is written if any
// exists (MSETNX). It reports whether it wrote.
func (e *Engine) MSet(pairs [][]byte, nx bool) (bool, error) {
	keys := make([][]byte, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := e.checkKey(pairs[i]); err != nil {
			return false, err
		}
		if err := e.checkValue(pairs[i+1]); err != nil {
			return false, err
		}
		keys = append(keys, pairs[i])
	}
	defer e.lockAll(keys)()
	now := e.now()
	b := e.newBatch()
	type cur struct {
		m      meta
		exists bool
	}
	state := map[string]cur{} // a key given twice: the second write sees the first
	for _, k := range keys {
		if _, seen := state[string(k)]; seen {
			continue
		}
		m, ok, err := e.loadFor(b, k, now)
		if err != nil {
			return false, err
		}
		if nx && ok {
			return false, b.commit()
		}
		state[string(k)] = cur{m, ok}
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		k := pairs[i]
		c := state[string(k)]
		if c.exists && c.m.typ != TypeString {
			b.drop(k, c.m)
			c.exists = false
		}
		m := meta{typ: TypeString, val: pairs[i+1]}
		b.put(k, &m, c.m, c.exists)
		state[string(k)] = cur{m, true}
	}
	return true, b.commit()
}

// IncrBy adds delta to an integer string (a missing key counts as 0).
func (e *Engine) IncrBy(key []byte, delta int64) (int64, error) {
	if err := e.checkKey(key); err != nil {
		return 0, err
	}
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, TypeString, e.now())
	if err != nil {
		return 0, err
	}
	var n int64
	if ok {
		var isInt bool
		if n, isInt = ParseInt(m.val); !isInt {
			return 0, ErrNotInteger
		}
	}
	if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
		return 0, ErrOverflow
	}
	n += delta
	nm := meta{typ: TypeString, val: strconv.AppendInt(nil, n, 10), expireAt: m.expireAt}
	b.put(key, &nm, m, ok)
	return n, b.commit()
}

// IncrByFloat adds delta, a float in text, to a float string (a missing
// key counts as 0), in long double arithmetic and printed as Redis does
// (numbers.go): 0.1 + 0.2 is "0.3". The key's type is checked before the
// increment is read, as in Redis.
func (e *Engine) IncrByFloat(key, delta []byte) ([]byte, error) {
	if err := e.checkKey(key); err != nil {
		return nil, err
	}
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, TypeString, e.now())
	if err != nil {
		return nil, err
	}
	cur, curInf := new(big.Float), false
	if ok {
		var valid bool
		if cur, curInf, valid = parseLongDouble(m.val); !valid {
			return nil, ErrNotFloat
		}
	}
	d, dInf, valid := parseLongDouble(delta)
	if !valid {
		return nil, ErrNotFloat
	}
	sum, finite := (*big.Float)(nil), false
	if !curInf && !dInf {
		sum, finite = addLongDouble(cur, d)
	}
	if !finite {
		return nil, ErrFloatOverflow
	}
	nm := meta{typ: TypeString, val: formatLongDouble(sum), expireAt: m.expireAt}
	b.put(key, &nm, m, ok)
	return nm.val, b.commit()
}

// Append appends to a string and returns its new length.
func (e *Engine) Append(key, val []byte) (int, error) {
	if err := e.checkKey(key); err != nil {
		return 0, err
	}
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, TypeString, e.now())
	if err != nil {
		return 0, err
	}
	nv := append(append([]byte(nil), m.val...), val...)
	if err := e.checkValue(nv); err != nil {
		return 0, err
	}
	nm := meta{typ: TypeString, val: nv, expireAt: m.expireAt}
	b.put(key, &nm, m, ok)
	return len(nv), b.commit()
}

// StrLen is a string's length (0 if missing).
func (e *Engine) StrLen(key []byte) (int, error) {
	v, _, err := e.Get(key)
	return len(v), err
}

type errors1 string

func (e errors1) Error() string { return string(e) }

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
