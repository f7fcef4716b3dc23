package kv

import (
	"errors"
	"math"
	"math/big"
	"strconv"

	"github.com/flowmesh/flowmesh/kv/store"
)

// member reads one member's value of key (ok false if absent).
func (e *Engine) member(key, member []byte) ([]byte, bool, error) {
	v, err := e.st.Get(store.KeyspaceKV, memberKey(key, member))
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}

// members calls fn for each member of key in order, until it returns false.
func (e *Engine) members(key []byte, fn func(member, val []byte) bool) error {
	p := memberPrefix('f', key)
	return e.st.Iterate(store.KeyspaceKV, p, prefixEnd(p), false, func(k, v []byte) bool {
		return fn(k[len(p):], v)
	})
}

// HSet sets fields (pairs: field, value, ...) and returns how many were new.
func (e *Engine) HSet(key []byte, pairs [][]byte, nx bool) (int, error) {
	if err := e.checkKey(key); err != nil {
		return 0, err
	}
	for _, p := range pairs {
		if err := e.checkValue(p); err != nil {
			return 0, err
		}
	}
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, TypeHash, e.now())
	if err != nil {
		return 0, err
	}
	added := 0
	seen := map[string]bool{}
	for i := 0; i+1 < len(pairs); i += 2 {
		f := pairs[i]
		exists := seen[string(f)]
		if !exists && ok {
			if _, exists, err = e.member(key, f); err != nil {
				return 0, err
			}
		}
		if nx && exists {
			continue
		}
		if !exists {
			added++
			seen[string(f)] = true
		}
		b.set(memberKey(key, f), pairs[i+1])
	}
	if added == 0 && nx {
		return 0, b.commit()
	}
	nm := meta{typ: TypeHash, count: m.count + int64(added), expireAt: m.expireAt}
	b.put(key, &nm, m, ok)
	return added, b.commit()
}

// HGet reads a field.
func (e *Engine) HGet(key, field []byte) ([]byte, bool, error) {
	defer e.lock(key).Unlock()
	_, ok, err := e.typed(key, TypeHash, e.now())
	if err != nil || !ok {
		return nil, false, err
	}
	return e.member(key, field)
}

// HMGet reads fields; an absent one is nil.
func (e *Engine) HMGet(key []byte, fields [][]byte) ([][]byte, error) {
	defer e.lock(key).Unlock()
	out := make([][]byte, len(fields))
	_, ok, err := e.typed(key, TypeHash, e.now())
	if err != nil || !ok {
		return out, err
	}
	for i, f := range fields {
		if out[i], _, err = e.member(key, f); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// delMembers deletes members of a hash or set and returns how many were
// there; the key goes when its last member does.
func (e *Engine) delMembers(key []byte, t Type, members [][]byte) (int, error) {
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, t, e.now())
	if err != nil || !ok {
		return 0, firstErr(err, b.commit())
	}
	n := 0
	seen := map[string]bool{}
	for _, f := range members {
		if seen[string(f)] {
			continue
		}
		seen[string(f)] = true
		_, there, err := e.member(key, f)
		if err != nil {
			return 0, err
		}
		if there {
			b.del(memberKey(key, f))
			n++
		}
	}
	if n == 0 {
		return 0, b.commit()
	}
	if m.count-int64(n) <= 0 {
		b.drop(key, m)
		return n, b.commit()
	}
	nm := m
	nm.count -= int64(n)
	b.put(key, &nm, m, true)
	return n, b.commit()
}

// HDel deletes fields.
func (e *Engine) HDel(key []byte, fields [][]byte) (int, error) {
	return e.delMembers(key, TypeHash, fields)
}

// HGetAll returns field, value, field, value, ... in field order.
func (e *Engine) HGetAll(key []byte, fields, values bool) ([][]byte, error) {
	defer e.lock(key).Unlock()
	_, ok, err := e.typed(key, TypeHash, e.now())
	if err != nil || !ok {
		return nil, err
	}
	var out [][]byte
	err = e.members(key, func(f, v []byte) bool {
		if fields {
			out = append(out, append([]byte(nil), f...))
		}
		if values {
			out = append(out, append([]byte{}, v...))
		}
		return true
	})
	return out, err
}

// HLen is a hash's field count.
func (e *Engine) HLen(key []byte) (int64, error) {
	defer e.lock(key).Unlock()
	m, _, err := e.typed(key, TypeHash, e.now())
	return m.count, err
}

// HExists reports whether a field exists.
func (e *Engine) HExists(key, field []byte) (bool, error) {
	_, ok, err := e.HGet(key, field)
	return ok, err
}

// HIncrBy adds delta to an integer field.
func (e *Engine) HIncrBy(key, field []byte, delta int64) (int64, error) {
	var out int64
	err := e.hUpdate(key, field, func(old []byte, had bool) ([]byte, error) {
		var n int64
		if had {
			var isInt bool
			if n, isInt = ParseInt(old); !isInt {
				return nil, errors1("hash value is not an integer")
			}
		}
		if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
			return nil, ErrOverflow
		}
		out = n + delta
		return strconv.AppendInt(nil, out, 10), nil
	})
	return out, err
}

// HIncrByFloat adds delta, a float in text, to a float field, as
// IncrByFloat does. As in Redis, the increment is read first, and an
// infinite one is refused as such.
func (e *Engine) HIncrByFloat(key, field, delta []byte) ([]byte, error) {
	d, dInf, valid := parseLongDouble(delta)
	switch {
	case !valid:
		return nil, ErrNotFloat
	case dInf:
		return nil, errors1("value is NaN or Infinity")
	}
	var out []byte
	err := e.hUpdate(key, field, func(old []byte, had bool) ([]byte, error) {
		cur, curInf := new(big.Float), false
		if had {
			var valid bool
			if cur, curInf, valid = parseLongDouble(old); !valid {
				return nil, errors1("hash value is not a float")
			}
		}
		if curInf {
			return nil, ErrFloatOverflow
		}
		sum, finite := addLongDouble(cur, d)
		if !finite {
			return nil, ErrFloatOverflow
		}
		out = formatLongDouble(sum)
		return out, nil
	})
	return out, err
}

func (e *Engine) hUpdate(key, field []byte, fn func(old []byte, had bool) ([]byte, error)) error {
	if err := e.checkKey(key); err != nil {
		return err
	}
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, TypeHash, e.now())
	if err != nil {
		return err
	}
	var old []byte
	had := false
	if ok {
		if old, had, err = e.member(key, field); err != nil {
			return err
		}
	}
	nv, err := fn(old, had)
	if err != nil {
		return err
	}
	b.set(memberKey(key, field), nv)
	nm := m
	nm.typ = TypeHash
	if !had {
		nm.count++
	}
	b.put(key, &nm, m, ok)
	return b.commit()
}

// Member is one member of a collection as MemberScan finds it: a hash
// field with its Value, a set member, a sorted-set member with its Score.
type Member struct {
	Name, Value []byte
	Score       float64
}

// MemberScan pages through a hash's, set's or zset's members: from the
// cursor-th member on (in member order), count of them. The cursor is a
// position, so members added or removed during a scan can shift it:
// documented in docs/protocol.md.
func (e *Engine) MemberScan(key []byte, t Type, cursor uint64, match []byte, count int) (out []Member, next uint64, err error) {
	defer e.lock(key).Unlock()
	_, ok, err := e.typed(key, t, e.now())
	if err != nil || !ok {
		return nil, 0, err
	}
	if count <= 0 {
		count = 10
	}
	var i uint64
	done := true
	err = e.members(key, func(f, v []byte) bool {
		if i < cursor {
			i++
			return true
		}
		if i >= cursor+uint64(count) {
			done = false
			return false
		}
		i++
		if match == nil || Glob(match, f) {
			m := Member{Name: append([]byte(nil), f...)}
			switch t {
			case TypeHash:
				m.Value = append([]byte{}, v...)
			case TypeZSet:
				m.Score = decodeScore(v)
			}
			out = append(out, m)
		}
		return true
	})
	if err != nil || done {
		return out, 0, err
	}
	return out, i, nil
}
