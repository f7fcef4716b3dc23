package kv

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/internal/seeds"
)

// TestAgainstModel drives the engine with random commands on a few keys of
// every type (SET with its options, DEL, INCRBY, APPEND, GETDEL, MSET(NX),
// HSET, HDEL, HINCRBY, SADD, SREM, ZADD, ZREM, ZPOPMIN/MAX, EXPIRE,
// PERSIST, RENAME, FLUSHDB), with TTLs, time passing, the reaper, flushes of changed
// records to Pebble, checkpoints, crashes after a barrier and clean
// restarts, and after each step compares every key's type, TTL and value
// with a plain model of Redis' semantics. The record cache, the append-only
// file's replay over what Pebble kept and the expiry index all sit between
// the two. FLOWMESH_KV_MODEL_SEEDS sets how many seeds run (default 6).
func TestAgainstModel(t *testing.T) {
	seeds.Run(t, "FLOWMESH_KV_MODEL_SEEDS", 1, 6, func(t *testing.T, seed uint64) {
		for _, always := range []bool{false, true} {
			t.Run(fmt.Sprintf("always=%v", always), func(t *testing.T) { runKVModel(t, seed, always, 300) })
		}
	})
}

// mval is a key's value in the model.
type mval struct {
	t        Type
	str      string
	fields   map[string]string  // hash
	members  map[string]bool    // set
	scores   map[string]float64 // sorted set
	expireAt int64              // Unix ms; 0: none
}

type kvModel struct {
	keys map[string]*mval
	now  func() int64
}

// get is the live value of k, nil if absent or expired.
func (m *kvModel) get(k string) *mval {
	v := m.keys[k]
	if v == nil || v.expireAt != 0 && v.expireAt <= m.now() {
		delete(m.keys, k)
		return nil
	}
	return v
}

// view renders a key as both sides are compared.
func (m *kvModel) view(k string) string {
	v := m.get(k)
	if v == nil {
		return "none"
	}
	ttl := int64(-1)
	if v.expireAt != 0 {
		ttl = v.expireAt - m.now()
	}
	switch v.t {
	case TypeString:
		return fmt.Sprintf("string ttl=%d %q", ttl, v.str)
	case TypeHash:
		var kv []string
		for f, x := range v.fields {
			kv = append(kv, f+"="+x)
		}
		slices.Sort(kv)
		return fmt.Sprintf("hash ttl=%d %v", ttl, kv)
	case TypeSet:
		return fmt.Sprintf("set ttl=%d %v", ttl, slices.Sorted(maps.Keys(v.members)))
	default:
		var ms []string
		for mem, s := range v.scores {
			ms = append(ms, fmt.Sprintf("%s:%g", mem, s))
		}
		slices.Sort(ms)
		return fmt.Sprintf("zset ttl=%d %v", ttl, ms)
	}
}

func engineView(t *testing.T, e *Engine, k string) string {
	t.Helper()
	key := []byte(k)
	tp := must[Type](t)(e.TypeOf(key))
	ttl := must[int64](t)(e.TTL(key))
	switch tp {
	case TypeNone:
		if ttl != -2 {
			t.Fatalf("%s: no key, but TTL %d", k, ttl)
		}
		return "none"
	case TypeString:
		v, _, err := e.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("string ttl=%d %q", ttl, v)
	case TypeHash:
		all := must[[][]byte](t)(e.HGetAll(key, true, true))
		var kv []string
		for i := 0; i+1 < len(all); i += 2 {
			kv = append(kv, string(all[i])+"="+string(all[i+1]))
		}
		slices.Sort(kv)
		return fmt.Sprintf("hash ttl=%d %v", ttl, kv)
	case TypeSet:
		var ms []string
		for _, x := range must[[][]byte](t)(e.SMembers(key)) {
			ms = append(ms, string(x))
		}
		slices.Sort(ms)
		return fmt.Sprintf("set ttl=%d %v", ttl, ms)
	default:
		var ms []string
		for _, x := range must[[]ScoredMember](t)(e.ZRange(key, RangeOpts{By: "index", Start: 0, Stop: -1})) {
			ms = append(ms, fmt.Sprintf("%s:%g", x.Member, x.Score))
		}
		slices.Sort(ms)
		return fmt.Sprintf("zset ttl=%d %v", ttl, ms)
	}
}

func runKVModel(t *testing.T, seed uint64, always bool, steps int) {
	rng := rand.New(rand.NewPCG(seed, 11))
	dir := t.TempDir()
	c := &clock{}
	c.ms.Store(1_000_000)
	o := Options{Dir: dir, Now: c.now, ReapInterval: time.Hour, FlushInterval: time.Hour, Logger: quiet, SyncEach: always}
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { e.Close() }()
	m := &kvModel{keys: map[string]*mval{}, now: c.ms.Load}
	names := []string{"k0", "k1", "k2", "k3", "k4", "k5"}
	key := func() string { return names[rng.IntN(len(names))] }
	elem := func(p string) string { return p + strconv.Itoa(rng.IntN(4)) }
	var log []string
	fail := func(format string, args ...any) {
		t.Helper()
		tail := log
		if len(tail) > 30 {
			tail = tail[len(tail)-30:]
		}
		t.Fatalf("seed %d always=%v step %d: %s\n  %s", seed, always, len(log), fmt.Sprintf(format, args...), strings.Join(tail, "\n  "))
	}
	// wantErr checks a command's error against the model's: a command on a
	// key of another type is refused and changes nothing.
	wrongType := func(k string, want Type) bool {
		v := m.get(k)
		return v != nil && v.t != want
	}
	checkErr := func(what string, err error, wantErr bool) bool {
		t.Helper()
		if (err != nil) != wantErr {
			fail("%s: error %v, model expected an error: %v", what, err, wantErr)
		}
		return err == nil
	}
	for step := 0; step < steps; step++ {
		k := key()
		var what string
		switch r := rng.IntN(110); {
		case r < 14: // SET, sometimes with a TTL, NX, XX or KEEPTTL
			val := elem("v")
			if rng.IntN(3) == 0 {
				val = strconv.Itoa(rng.IntN(100))
			}
			var so SetOpts
			switch rng.IntN(6) {
			case 0:
				so.ExpireAt = c.ms.Load() + int64(1+rng.IntN(5000))
			case 1:
				so.NX = true
			case 2:
				so.XX = true
			case 3:
				so.KeepTTL = true
			}
			what = fmt.Sprintf("SET %s %s %+v", k, val, so)
			res := must[SetResult](t)(e.Set([]byte(k), []byte(val), so))
			cur := m.get(k)
			done := !(so.NX && cur != nil || so.XX && cur == nil)
			if res.Done != done {
				fail("%s: done %v, model %v", what, res.Done, done)
			}
			if done {
				exp := so.ExpireAt
				if so.KeepTTL && cur != nil {
					exp = cur.expireAt
				}
				m.keys[k] = &mval{t: TypeString, str: val, expireAt: exp}
			}
		case r < 20: // DEL of one or two keys
			k2 := key()
			what = "DEL " + k + " " + k2
			n := must[int](t)(e.Del(bs(k, k2)))
			want := 0
			uniq := []string{k}
			if k2 != k {
				uniq = append(uniq, k2)
			}
			for _, x := range uniq {
				if m.get(x) != nil {
					want++
					delete(m.keys, x)
				}
			}
			if n != want {
				fail("%s: %d deleted, model %d", what, n, want)
			}
		case r < 27: // INCRBY
			d := int64(rng.IntN(11) - 5)
			what = fmt.Sprintf("INCRBY %s %d", k, d)
			got, err := e.IncrBy([]byte(k), d)
			cur := m.get(k)
			var base int64
			bad := wrongType(k, TypeString)
			if cur != nil && !bad {
				var perr error
				base, perr = strconv.ParseInt(cur.str, 10, 64)
				bad = perr != nil
			}
			if checkErr(what, err, bad) {
				if got != base+d {
					fail("%s: %d, model %d", what, got, base+d)
				}
				if cur == nil {
					cur = &mval{t: TypeString}
					m.keys[k] = cur
				}
				cur.str = strconv.FormatInt(base+d, 10)
			}
		case r < 31: // APPEND
			s := elem("a")
			what = "APPEND " + k + " " + s
			_, err := e.Append([]byte(k), []byte(s))
			if checkErr(what, err, wrongType(k, TypeString)) {
				cur := m.get(k)
				if cur == nil {
					cur = &mval{t: TypeString}
					m.keys[k] = cur
				}
				cur.str += s
			}
		case r < 40: // HSET / HDEL
			f := elem("f")
			if rng.IntN(3) == 0 {
				what = "HDEL " + k + " " + f
				n, err := e.HDel([]byte(k), bs(f))
				if checkErr(what, err, wrongType(k, TypeHash)) {
					want := 0
					if cur := m.get(k); cur != nil {
						if _, ok := cur.fields[f]; ok {
							want = 1
							delete(cur.fields, f)
							if len(cur.fields) == 0 {
								delete(m.keys, k)
							}
						}
					}
					if n != want {
						fail("%s: %d, model %d", what, n, want)
					}
				}
				break
			}
			v := elem("x")
			what = "HSET " + k + " " + f + " " + v
			_, err := e.HSet([]byte(k), bs(f, v), false)
			if checkErr(what, err, wrongType(k, TypeHash)) {
				cur := m.get(k)
				if cur == nil {
					cur = &mval{t: TypeHash, fields: map[string]string{}}
					m.keys[k] = cur
				}
				cur.fields[f] = v
			}
		case r < 49: // SADD / SREM
			mem := elem("m")
			rem := rng.IntN(3) == 0
			what = map[bool]string{false: "SADD ", true: "SREM "}[rem] + k + " " + mem
			var err error
			if rem {
				_, err = e.SRem([]byte(k), bs(mem))
			} else {
				_, err = e.SAdd([]byte(k), bs(mem))
			}
			if checkErr(what, err, wrongType(k, TypeSet)) {
				cur := m.get(k)
				switch {
				case !rem && cur == nil:
					m.keys[k] = &mval{t: TypeSet, members: map[string]bool{mem: true}}
				case !rem:
					cur.members[mem] = true
				case cur != nil:
					delete(cur.members, mem)
					if len(cur.members) == 0 {
						delete(m.keys, k)
					}
				}
			}
		case r < 58: // ZADD / ZREM
			mem := elem("z")
			rem := rng.IntN(3) == 0
			score := float64(rng.IntN(7) - 3)
			var err error
			if rem {
				what = "ZREM " + k + " " + mem
				_, err = e.ZRem([]byte(k), bs(mem))
			} else {
				what = fmt.Sprintf("ZADD %s %g %s", k, score, mem)
				_, _, _, err = e.ZAdd([]byte(k), ZAddOpts{}, []ScoredMember{{[]byte(mem), score}})
			}
			if checkErr(what, err, wrongType(k, TypeZSet)) {
				cur := m.get(k)
				switch {
				case !rem && cur == nil:
					m.keys[k] = &mval{t: TypeZSet, scores: map[string]float64{mem: score}}
				case !rem:
					cur.scores[mem] = score
				case cur != nil:
					delete(cur.scores, mem)
					if len(cur.scores) == 0 {
						delete(m.keys, k)
					}
				}
			}
		case r < 64: // EXPIRE (a time past deletes the key) or PERSIST
			cur := m.get(k)
			if rng.IntN(3) == 0 {
				what = "PERSIST " + k
				ok := must[bool](t)(e.Persist([]byte(k)))
				want := cur != nil && cur.expireAt != 0
				if ok != want {
					fail("%s: %v, model %v", what, ok, want)
				}
				if want {
					cur.expireAt = 0
				}
				break
			}
			at := c.ms.Load() + int64(rng.IntN(6000)-1000)
			what = fmt.Sprintf("EXPIRE %s at %+d ms", k, at-c.ms.Load())
			ok := must[bool](t)(e.Expire([]byte(k), at, ExpireOpts{}))
			if ok != (cur != nil) {
				fail("%s: %v, model has the key: %v", what, ok, cur != nil)
			}
			if cur != nil {
				cur.expireAt = at
				if at <= c.ms.Load() {
					delete(m.keys, k)
				}
			}
		case r < 68: // RENAME
			dst := key()
			what = "RENAME " + k + " " + dst
			_, err := e.Rename([]byte(k), []byte(dst), false)
			cur := m.get(k)
			if (err != nil) != (cur == nil) || err != nil && !errors.Is(err, ErrNoSuchKey) {
				fail("%s: %v, model has the key: %v", what, err, cur != nil)
			}
			if cur != nil {
				delete(m.keys, k)
				m.keys[dst] = cur
			}
		case r < 70: // GETDEL
			what = "GETDEL " + k
			v, ok, err := e.GetDel([]byte(k))
			if checkErr(what, err, wrongType(k, TypeString)) {
				cur := m.get(k)
				if ok != (cur != nil) || cur != nil && string(v) != cur.str {
					fail("%s: %q %v, model %+v", what, v, ok, cur)
				}
				delete(m.keys, k)
			}
		case r < 72: // MSET or MSETNX of two keys (all or nothing)
			k2 := key()
			nx := rng.IntN(2) == 0
			v1, v2 := elem("m"), elem("n")
			what = fmt.Sprintf("MSET nx=%v %s %s %s %s", nx, k, v1, k2, v2)
			done := must[bool](t)(e.MSet(bs(k, v1, k2, v2), nx))
			want := !nx || m.get(k) == nil && m.get(k2) == nil
			if done != want {
				fail("%s: %v, model %v", what, done, want)
			}
			if want {
				m.keys[k] = &mval{t: TypeString, str: v1}
				m.keys[k2] = &mval{t: TypeString, str: v2} // the later pair wins
			}
		case r < 74: // HINCRBY
			f, d := elem("c"), int64(rng.IntN(7)-3)
			what = fmt.Sprintf("HINCRBY %s %s %d", k, f, d)
			got, err := e.HIncrBy([]byte(k), []byte(f), d)
			cur := m.get(k)
			var base int64
			bad := wrongType(k, TypeHash)
			if cur != nil && !bad {
				if x, ok := cur.fields[f]; ok {
					var perr error
					base, perr = strconv.ParseInt(x, 10, 64)
					bad = perr != nil
				}
			}
			if checkErr(what, err, bad) {
				if got != base+d {
					fail("%s: %d, model %d", what, got, base+d)
				}
				if cur == nil {
					cur = &mval{t: TypeHash, fields: map[string]string{}}
					m.keys[k] = cur
				}
				cur.fields[f] = strconv.FormatInt(base+d, 10)
			}
		case r < 76: // ZPOPMIN / ZPOPMAX of one
			max := rng.IntN(2) == 0
			what = fmt.Sprintf("ZPOP max=%v %s", max, k)
			got, err := e.ZPop([]byte(k), 1, max)
			if checkErr(what, err, wrongType(k, TypeZSet)) {
				cur := m.get(k)
				if cur == nil {
					if len(got) != 0 {
						fail("%s: %v from no key", what, got)
					}
					break
				}
				// The lowest (highest) score, ties by member (reversed for max).
				var best string
				for mem, sc := range cur.scores {
					b := cur.scores[best]
					if best == "" || !max && (sc < b || sc == b && mem < best) || max && (sc > b || sc == b && mem > best) {
						best = mem
					}
				}
				if len(got) != 1 || string(got[0].Member) != best || got[0].Score != cur.scores[best] {
					fail("%s: %v, model %s:%g", what, got, best, cur.scores[best])
				}
				delete(cur.scores, best)
				if len(cur.scores) == 0 {
					delete(m.keys, k)
				}
			}
		case r < 77: // FLUSHDB
			what = "FLUSHDB"
			if err := e.FlushDB(); err != nil {
				t.Fatal(err)
			}
			clear(m.keys)
		case r < 88: // time passes
			d := int64(rng.IntN(2500))
			c.ms.Add(d)
			what = fmt.Sprintf("time +%d ms", d)
		case r < 92:
			what = "reap"
			must[int](t)(e.Reap())
		case r < 97:
			what = "flush changed records"
			e.flushDirty()
		case r < 101:
			what = "checkpoint"
			if err := e.checkpoint(true); err != nil {
				t.Fatal(err)
			}
		case r < 106:
			what = "barrier, crash, reopen"
			if err := e.Barrier(); err != nil {
				t.Fatal(err)
			}
			e.crash()
			if e, err = Open(o); err != nil {
				t.Fatal(err)
			}
		default:
			what = "close, reopen"
			e.Close()
			if e, err = Open(o); err != nil {
				t.Fatal(err)
			}
		}
		log = append(log, what)
		for _, k := range names {
			if got, want := engineView(t, e, k), m.view(k); got != want {
				fail("%s: engine %s, model %s", k, got, want)
			}
		}
	}
}
