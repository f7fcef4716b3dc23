package kv

import (
	"bytes"
	"encoding/binary"
	"math"

	"github.com/flowmesh/flowmesh/kv/store"
)

// A zset member is two records: f<key><member> -> score (8 bytes, float
// bits) and z<key><sortable score><member> -> nothing, the index that
// ranges by score and rank walk. Equal scores order by member, as in Redis.

// encodeScore stores a score; -0 is stored as 0, as Redis' small sorted
// sets (listpack) keep it: ZSCORE then says "0".
func encodeScore(f float64) []byte {
	if f == 0 {
		f = 0
	}
	return binary.BigEndian.AppendUint64(nil, math.Float64bits(f))
}

func decodeScore(b []byte) float64 {
	if len(b) != 8 {
		return 0
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b))
}

// sortable maps a float to bytes whose order is the floats' order.
func sortable(f float64) []byte {
	if f == 0 {
		f = 0 // -0 sorts with 0
	}
	u := math.Float64bits(f)
	if u&(1<<63) != 0 {
		u = ^u
	} else {
		u |= 1 << 63
	}
	return binary.BigEndian.AppendUint64(nil, u)
}

func unsortable(b []byte) float64 {
	u := binary.BigEndian.Uint64(b)
	if u&(1<<63) != 0 {
		u &^= 1 << 63
	} else {
		u = ^u
	}
	return math.Float64frombits(u)
}

func indexKey(key []byte, score float64, member []byte) []byte {
	return append(append(memberPrefix('z', key), sortable(score)...), member...)
}

// ZAddOpts are ZADD's flags.
type ZAddOpts struct {
	NX, XX, GT, LT, CH, Incr bool
}

// ScoredMember is a zset entry.
type ScoredMember struct {
	Member []byte
	Score  float64
}

// ZAdd adds or updates members. It returns the number added (changed too,
// with CH); with Incr, the new score (ok false if NX/XX/GT/LT stopped it).
func (e *Engine) ZAdd(key []byte, o ZAddOpts, items []ScoredMember) (n int, incr float64, ok bool, err error) {
	if o.NX && o.XX {
		return 0, 0, false, ErrIncompatNX
	}
	if (o.GT && o.LT) || (o.NX && (o.GT || o.LT)) {
		return 0, 0, false, ErrIncompatGT
	}
	if o.Incr && len(items) != 1 {
		return 0, 0, false, ErrIncrOnePair
	}
	if err := e.checkKey(key); err != nil {
		return 0, 0, false, err
	}
	for _, it := range items {
		if math.IsNaN(it.Score) {
			return 0, 0, false, ErrNotFloat
		}
		if err := e.checkValue(it.Member); err != nil {
			return 0, 0, false, err
		}
	}
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, exists, err := e.typedFor(b, key, TypeZSet, e.now())
	if err != nil {
		return 0, 0, false, err
	}
	type cur struct {
		score float64
		there bool
	}
	pending := map[string]cur{}
	added, changed := 0, 0
	for _, it := range items {
		c, seen := pending[string(it.Member)]
		if !seen && exists {
			v, there, err := e.member(key, it.Member)
			if err != nil {
				return 0, 0, false, err
			}
			c = cur{decodeScore(v), there}
		}
		score := it.Score
		if o.Incr && c.there {
			score += c.score
			if math.IsNaN(score) {
				return 0, 0, false, ErrNaN
			}
		}
		switch {
		case o.NX && c.there, o.XX && !c.there,
			o.GT && c.there && score <= c.score, o.LT && c.there && score >= c.score:
			continue
		}
		incr, ok = score, true
		if c.there && score == c.score {
			continue
		}
		if c.there {
			b.del(indexKey(key, c.score, it.Member))
			changed++
		} else {
			added++
		}
		b.set(memberKey(key, it.Member), encodeScore(score))
		b.set(indexKey(key, score, it.Member), nil)
		pending[string(it.Member)] = cur{score, true}
	}
	if added > 0 || changed > 0 {
		nm := meta{typ: TypeZSet, count: m.count + int64(added), expireAt: m.expireAt}
		b.put(key, &nm, m, exists)
	}
	if err := b.commit(); err != nil {
		return 0, 0, false, err
	}
	n = added
	if o.CH {
		n += changed
	}
	return n, incr, ok, nil
}

// ZRem removes members.
func (e *Engine) ZRem(key []byte, members [][]byte) (int, error) {
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, TypeZSet, e.now())
	if err != nil || !ok {
		return 0, firstErr(err, b.commit())
	}
	n := 0
	seen := map[string]bool{}
	for _, mem := range members {
		if seen[string(mem)] {
			continue
		}
		seen[string(mem)] = true
		v, there, err := e.member(key, mem)
		if err != nil {
			return 0, err
		}
		if there {
			b.del(memberKey(key, mem))
			b.del(indexKey(key, decodeScore(v), mem))
			n++
		}
	}
	e.shrink(b, key, m, n)
	return n, b.commit()
}

// shrink records that n members went; the key goes with its last one.
func (e *Engine) shrink(b *batch, key []byte, m meta, n int) {
	if n == 0 {
		return
	}
	if m.count-int64(n) <= 0 {
		b.drop(key, m)
		return
	}
	nm := m
	nm.count -= int64(n)
	b.put(key, &nm, m, true)
}

// ZScore is a member's score.
func (e *Engine) ZScore(key, member []byte) (float64, bool, error) {
	defer e.lock(key).Unlock()
	_, ok, err := e.typed(key, TypeZSet, e.now())
	if err != nil || !ok {
		return 0, false, err
	}
	v, there, err := e.member(key, member)
	return decodeScore(v), there, err
}

// ZCard is a zset's size.
func (e *Engine) ZCard(key []byte) (int64, error) {
	defer e.lock(key).Unlock()
	m, _, err := e.typed(key, TypeZSet, e.now())
	return m.count, err
}

// ZRank is a member's rank from the lowest score (from the highest with
// rev); ok false if absent.
func (e *Engine) ZRank(key, member []byte, rev bool) (int64, bool, error) {
	defer e.lock(key).Unlock()
	m, ok, err := e.typed(key, TypeZSet, e.now())
	if err != nil || !ok {
		return 0, false, err
	}
	v, there, err := e.member(key, member)
	if err != nil || !there {
		return 0, false, err
	}
	// The rank is the number of index entries before the member's own.
	p := memberPrefix('z', key)
	var rank int64
	err = e.st.Iterate(store.KeyspaceKV, p, indexKey(key, decodeScore(v), member), false, func(_, _ []byte) bool {
		rank++
		return true
	})
	if rev {
		rank = m.count - 1 - rank
	}
	return rank, true, err
}

// walk calls fn for the zset's entries in score order (descending with
// rev), until fn returns false.
func (e *Engine) walk(key []byte, rev bool, fn func(ScoredMember) bool) error {
	p := memberPrefix('z', key)
	return e.st.Iterate(store.KeyspaceKV, p, prefixEnd(p), rev, func(k, _ []byte) bool {
		rest := k[len(p):]
		return fn(ScoredMember{Member: append([]byte(nil), rest[8:]...), Score: unsortable(rest[:8])})
	})
}

// ScoreBound is one end of a score range.
type ScoreBound struct {
	Value     float64
	Exclusive bool
}

func (b ScoreBound) below(f float64) bool { // f is past b as an upper bound
	return f > b.Value || (b.Exclusive && f == b.Value)
}

func (b ScoreBound) above(f float64) bool { // f is before b as a lower bound
	return f < b.Value || (b.Exclusive && f == b.Value)
}

// LexBound is one end of a lex range: "-" and "+" are the ends.
type LexBound struct {
	Value     []byte
	Exclusive bool
	Inf       int // -1: "-", +1: "+", 0: Value
}

func (b LexBound) before(m []byte) bool { // m is before b as a lower bound
	switch b.Inf {
	case -1:
		return false
	case 1:
		return true
	}
	c := bytes.Compare(m, b.Value)
	return c < 0 || (b.Exclusive && c == 0)
}

func (b LexBound) after(m []byte) bool { // m is past b as an upper bound
	switch b.Inf {
	case -1:
		return true
	case 1:
		return false
	}
	c := bytes.Compare(m, b.Value)
	return c > 0 || (b.Exclusive && c == 0)
}

// RangeOpts select a ZRANGE.
type RangeOpts struct {
	By            string // "index", "score", "lex"
	Start, Stop   int64  // by index
	Min, Max      ScoreBound
	LexMin        LexBound
	LexMax        LexBound
	Rev           bool
	Offset, Count int64 // LIMIT; Count < 0: all
}

// ZRange lists entries per o. By score and lex, Min/LexMin are the low end
// and Max/LexMax the high end in either direction (the Redis port swaps
// REV's arguments, which come high end first).
func (e *Engine) ZRange(key []byte, o RangeOpts) ([]ScoredMember, error) {
	defer e.lock(key).Unlock()
	m, ok, err := e.typed(key, TypeZSet, e.now())
	if err != nil || !ok {
		return nil, err
	}
	return e.selectRange(key, m, o)
}

// ZRemRange removes the entries o selects (ZREMRANGEBYRANK, BYSCORE,
// BYLEX) and reports how many went; the key goes with its last entry.
func (e *Engine) ZRemRange(key []byte, o RangeOpts) (int, error) {
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, TypeZSet, e.now())
	if err != nil || !ok {
		return 0, firstErr(err, b.commit())
	}
	out, err := e.selectRange(key, m, o)
	if err != nil {
		return 0, err
	}
	for _, sm := range out {
		b.del(memberKey(key, sm.Member))
		b.del(indexKey(key, sm.Score, sm.Member))
	}
	e.shrink(b, key, m, len(out))
	return len(out), b.commit()
}

// ZMScore is the score of each member (ok false: not there).
func (e *Engine) ZMScore(key []byte, members [][]byte) (scores []float64, ok []bool, err error) {
	defer e.lock(key).Unlock()
	_, exists, err := e.typed(key, TypeZSet, e.now())
	scores, ok = make([]float64, len(members)), make([]bool, len(members))
	if err != nil || !exists {
		return scores, ok, err
	}
	for i, mem := range members {
		v, there, err := e.member(key, mem)
		if err != nil {
			return nil, nil, err
		}
		scores[i], ok[i] = decodeScore(v), there
	}
	return scores, ok, nil
}

// selectRange lists the entries of zset key (record m) that o selects.
// Call with the key's stripe held.
func (e *Engine) selectRange(key []byte, m meta, o RangeOpts) ([]ScoredMember, error) {
	if o.Offset < 0 && o.By != "index" {
		return nil, nil // a negative LIMIT offset selects nothing (Redis), after the type check
	}
	var out []ScoredMember
	var err error
	switch o.By {
	case "index":
		start, stop := o.Start, o.Stop
		if start < 0 {
			start += m.count
		}
		if stop < 0 {
			stop += m.count
		}
		start = max(start, 0)
		if start > stop || start >= m.count {
			return nil, nil
		}
		var i int64
		err = e.walk(key, o.Rev, func(sm ScoredMember) bool {
			if i >= start {
				out = append(out, sm)
			}
			i++
			return i <= stop
		})
	case "score":
		// Min and Max are the low and high ends whatever the direction.
		out, err = e.walkRange(key, o,
			func(f float64, _ []byte) bool { return o.Max.below(f) },
			func(f float64, _ []byte) bool { return o.Min.above(f) })
	case "lex":
		out, err = e.walkRange(key, o,
			func(_ float64, m []byte) bool { return o.LexMax.after(m) },
			func(_ float64, m []byte) bool { return o.LexMin.before(m) })
	}
	return out, err
}

// walkRange lists the entries between the ends of a score or lex range,
// in o's direction, after o.Offset of them and at most o.Count (<0: all).
// overHigh and underLow say whether an entry is past the high end or
// before the low one.
func (e *Engine) walkRange(key []byte, o RangeOpts, overHigh, underLow func(float64, []byte) bool) ([]ScoredMember, error) {
	var out []ScoredMember
	skip, left := o.Offset, o.Count
	stop, skipIt := overHigh, underLow // ascending: stop past the high end
	if o.Rev {
		stop, skipIt = underLow, overHigh
	}
	err := e.walk(key, o.Rev, func(sm ScoredMember) bool {
		if stop(sm.Score, sm.Member) {
			return false
		}
		if skipIt(sm.Score, sm.Member) {
			return true
		}
		if skip > 0 {
			skip--
			return true
		}
		if left == 0 {
			return false
		}
		out = append(out, sm)
		left--
		return true
	})
	return out, err
}

// ZCount counts the entries with scores in [min, max].
func (e *Engine) ZCount(key []byte, min, max ScoreBound) (int64, error) {
	r, err := e.ZRange(key, RangeOpts{By: "score", Min: min, Max: max, Count: -1})
	return int64(len(r)), err
}

// ZIncrBy adds delta to a member's score.
func (e *Engine) ZIncrBy(key []byte, delta float64, member []byte) (float64, error) {
	_, f, _, err := e.ZAdd(key, ZAddOpts{Incr: true}, []ScoredMember{{Member: member, Score: delta}})
	return f, err
}

// ZPop removes and returns up to count entries with the lowest scores (the
// highest with max).
func (e *Engine) ZPop(key []byte, count int, max bool) ([]ScoredMember, error) {
	defer e.lock(key).Unlock()
	b := e.newBatch()
	m, ok, err := e.typedFor(b, key, TypeZSet, e.now())
	if err != nil || !ok || count <= 0 {
		return nil, firstErr(err, b.commit())
	}
	var out []ScoredMember
	err = e.walk(key, max, func(sm ScoredMember) bool {
		out = append(out, sm)
		return len(out) < count
	})
	if err != nil {
		return nil, err
	}
	for _, sm := range out {
		b.del(memberKey(key, sm.Member))
		b.del(indexKey(key, sm.Score, sm.Member))
	}
	e.shrink(b, key, m, len(out))
	return out, b.commit()
}
