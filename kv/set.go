package kv

import (
	"sort"
)

// SAdd adds members and returns how many were new.
func (e *Engine) SAdd(key []byte, members [][]byte) (int, error) {
	if err := e.checkKey(key); err != nil {
		return 0, err
	}
	for _, m := range members {
		if err := e.checkValue(m); err != nil {
			return 0, err
		}
	}
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, TypeSet, e.now())
	if err != nil {
		return 0, err
	}
	added := 0
	seen := map[string]bool{}
	for _, mem := range members {
		if seen[string(mem)] {
			continue
		}
		seen[string(mem)] = true
		there := false
		if ok {
			if _, there, err = e.member(key, mem); err != nil {
				return 0, err
			}
		}
		if !there {
			b.set(memberKey(key, mem), nil)
			added++
		}
	}
	if added == 0 {
		return 0, b.commit()
	}
	nm := meta{typ: TypeSet, count: m.count + int64(added), expireAt: m.expireAt}
	b.put(key, &nm, m, ok)
	return added, b.commit()
}

// SRem removes members.
func (e *Engine) SRem(key []byte, members [][]byte) (int, error) {
	return e.delMembers(key, TypeSet, members)
}

// SMembers lists a set's members in order.
func (e *Engine) SMembers(key []byte) ([][]byte, error) {
	defer e.lock(key).Unlock()
	_, ok, err := e.typed(key, TypeSet, e.now())
	if err != nil || !ok {
		return nil, err
	}
	var out [][]byte
	err = e.members(key, func(f, _ []byte) bool {
		out = append(out, append([]byte(nil), f...))
		return true
	})
	return out, err
}

// SIsMember reports whether member is in the set.
func (e *Engine) SIsMember(key, member []byte) (bool, error) {
	defer e.lock(key).Unlock()
	_, ok, err := e.typed(key, TypeSet, e.now())
	if err != nil || !ok {
		return false, err
	}
	_, there, err := e.member(key, member)
	return there, err
}

// SMIsMember reports for each member whether it is in the set.
func (e *Engine) SMIsMember(key []byte, members [][]byte) ([]bool, error) {
	defer e.lock(key).Unlock()
	_, ok, err := e.typed(key, TypeSet, e.now())
	out := make([]bool, len(members))
	if err != nil || !ok {
		return out, err
	}
	for i, mem := range members {
		if _, out[i], err = e.member(key, mem); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SCard is a set's size.
func (e *Engine) SCard(key []byte) (int64, error) {
	defer e.lock(key).Unlock()
	m, _, err := e.typed(key, TypeSet, e.now())
	return m.count, err
}

// SetOp is SINTER, SUNION or SDIFF.
type SetOp int

const (
	SetInter SetOp = iota
	SetUnion
	SetDiff
)

// SCombine computes op over the sets at keys (a missing key is an empty
// set), in member order.
func (e *Engine) SCombine(op SetOp, keys [][]byte) ([][]byte, error) {
	defer e.lockAll(keys)()
	now := e.now()
	sets := make([]map[string]bool, len(keys))
	for i, k := range keys {
		_, ok, err := e.typed(k, TypeSet, now)
		if err != nil {
			return nil, err
		}
		sets[i] = map[string]bool{}
		if !ok {
			continue
		}
		if err := e.members(k, func(f, _ []byte) bool { sets[i][string(f)] = true; return true }); err != nil {
			return nil, err
		}
	}
	res := map[string]bool{}
	for m := range sets[0] {
		res[m] = true
	}
	for _, s := range sets[1:] {
		switch op {
		case SetInter:
			for m := range res {
				if !s[m] {
					delete(res, m)
				}
			}
		case SetUnion:
			for m := range s {
				res[m] = true
			}
		case SetDiff:
			for m := range s {
				delete(res, m)
			}
		}
	}
	out := make([]string, 0, len(res))
	for m := range res {
		out = append(out, m)
	}
	sort.Strings(out)
	bs := make([][]byte, len(out))
	for i, m := range out {
		bs[i] = []byte(m)
	}
	return bs, nil
}
