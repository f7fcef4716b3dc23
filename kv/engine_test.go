package kv

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/kv/store"
)

type clock struct{ ms atomic.Int64 }

func (c *clock) now() time.Time { return time.UnixMilli(c.ms.Load()) }

func open(t *testing.T, dir string, c *clock) (*Engine, *store.Store) {
	t.Helper()
	e, err := Open(Options{Dir: dir, InMemory: dir == "", Now: c.now, ReapInterval: time.Hour, ReapBatch: 3,
		Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, e.st
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func bs(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// TestTTL: an expired key is never returned, whatever its type; the
// reaper deletes it through the expiry index (a bounded batch per call)
// and counts it; a write over an expired collection starts from nothing.
func TestTTL(t *testing.T) {
	c := &clock{}
	c.ms.Store(1_000_000)
	e, _ := open(t, "", c)
	now := c.ms.Load()
	must[SetResult](t)(e.Set([]byte("s"), []byte("v"), SetOpts{ExpireAt: now + 1000}))
	must[int](t)(e.HSet([]byte("h"), bs("old", "1"), false))
	must[bool](t)(e.Expire([]byte("h"), now+1000, ExpireOpts{}))
	must[int](t)(e.SAdd([]byte("set"), bs("a")))
	must[bool](t)(e.Expire([]byte("set"), now+1000, ExpireOpts{}))
	must[SetResult](t)(e.Set([]byte("keep"), []byte("v"), SetOpts{}))
	for i := 0; i < 4; i++ {
		must[SetResult](t)(e.Set([]byte(fmt.Sprint("tmp", i)), []byte("v"), SetOpts{ExpireAt: now + 2000}))
	}
	if ttl := must[int64](t)(e.TTL([]byte("s"))); ttl != 1000 {
		t.Fatalf("ttl %d", ttl)
	}
	c.ms.Add(1000) // s, h and set expire now
	if _, ok, _ := e.Get([]byte("s")); ok {
		t.Fatal("expired string returned")
	}
	if n := must[int](t)(e.Exists(bs("s", "h", "set", "keep"))); n != 1 {
		t.Fatalf("exists = %d", n)
	}
	if ttl := must[int64](t)(e.TTL([]byte("h"))); ttl != -2 {
		t.Fatalf("ttl of an expired key = %d", ttl)
	}
	// HSET over the expired hash: the old field is not there.
	must[int](t)(e.HSet([]byte("h"), bs("new", "2"), false))
	if all := must[[][]byte](t)(e.HGetAll([]byte("h"), true, true)); len(all) != 2 || string(all[0]) != "new" {
		t.Fatalf("hash after re-create: %q", all)
	}
	if ttl := must[int64](t)(e.TTL([]byte("h"))); ttl != -1 {
		t.Fatalf("re-created hash kept the old ttl: %d", ttl)
	}
	keysBefore := e.DBSize()
	// The expiry index reaches Pebble with the key records (flushDirty):
	// before that, the reaper finds nothing (and reads return nothing).
	if n := must[int](t)(e.Reap()); n != 0 {
		t.Fatalf("reap before the flush handled %d", n)
	}
	if err := e.flushDirty(); err != nil {
		t.Fatal(err)
	}
	// Re-creating h deleted its expiry entry (and counted the expiry);
	// the reaper finds s and set.
	if n := must[int](t)(e.Reap()); n != 2 {
		t.Fatalf("reap handled %d", n)
	}
	if n := must[int](t)(e.Reap()); n != 0 {
		t.Fatalf("second reap handled %d", n)
	}
	if st := e.Stats(); st.Expired != 3 || e.DBSize() != keysBefore-2 {
		t.Fatalf("after reaping: %+v, keys %d (before %d)", st, e.DBSize(), keysBefore)
	}
	c.ms.Add(1000)
	for n := 1; n > 0; {
		n = must[int](t)(e.Reap())
	}
	if e.DBSize() != 2 || e.Stats().Expired != 7 { // four tmp keys, at most 3 per Reap
		t.Fatalf("keys %d, expired %d", e.DBSize(), e.Stats().Expired)
	}
	// A time in the past deletes at once.
	must[bool](t)(e.Expire([]byte("keep"), c.ms.Load()-1, ExpireOpts{}))
	if n := must[int](t)(e.Exists(bs("keep"))); n != 0 {
		t.Fatal("EXPIRE in the past kept the key")
	}
}

// TestCollections: type errors, member counts, deleting the last member
// deletes the key, RENAME moves members, DEL drops all of them.
func TestCollections(t *testing.T) {
	e, st := open(t, "", &clock{})
	must[int](t)(e.SAdd([]byte("s"), bs("a", "b", "a")))
	if n := must[int64](t)(e.SCard([]byte("s"))); n != 2 {
		t.Fatalf("scard %d", n)
	}
	if _, err := e.HSet([]byte("s"), bs("f", "v"), false); err != ErrWrongType {
		t.Fatalf("HSET on a set: %v", err)
	}
	if _, err := e.IncrBy([]byte("s"), 1); err != ErrWrongType {
		t.Fatalf("INCR on a set: %v", err)
	}
	must[int](t)(e.SRem([]byte("s"), bs("a", "b")))
	if tp := must[Type](t)(e.TypeOf([]byte("s"))); tp != TypeNone {
		t.Fatalf("empty set still a %v", tp)
	}
	items := []ScoredMember{{[]byte("x"), 3}, {[]byte("y"), -1}, {[]byte("z"), 3}}
	must[int](t)(func() (int, error) { n, _, _, err := e.ZAdd([]byte("z"), ZAddOpts{}, items); return n, err }())
	must[bool](t)(e.Rename([]byte("z"), []byte("z2"), false))
	got := must[[]ScoredMember](t)(e.ZRange([]byte("z2"), RangeOpts{By: "index", Start: 0, Stop: -1}))
	if len(got) != 3 || string(got[0].Member) != "y" || string(got[2].Member) != "z" {
		t.Fatalf("renamed zset: %v", got)
	}
	if r, _, _ := e.ZRank([]byte("z2"), []byte("z"), false); r != 2 {
		t.Fatalf("rank %d", r)
	}
	must[int](t)(e.Del(bs("z2")))
	if err := e.flushDirty(); err != nil {
		t.Fatal(err)
	}
	left := 0
	st.Iterate(store.KeyspaceKV, nil, nil, false, func(k, _ []byte) bool { left++; return true })
	if left != 0 || e.DBSize() != 0 {
		t.Fatalf("%d records and %d keys left after DEL", left, e.DBSize())
	}
	// MSETNX is all or nothing.
	must[SetResult](t)(e.Set([]byte("b"), []byte("1"), SetOpts{}))
	if ok := must[bool](t)(e.MSet(bs("a", "1", "b", "2"), true)); ok {
		t.Fatal("MSETNX wrote with a key present")
	}
	if n := must[int](t)(e.Exists(bs("a"))); n != 0 {
		t.Fatal("MSETNX half-applied")
	}
}

// TestScanSeesEveryKeyOnce: SCAN's cursor walks the hash order; every key
// comes back exactly once, whatever COUNT.
func TestScanSeesEveryKeyOnce(t *testing.T) {
	e, _ := open(t, "", &clock{})
	const n = 1000
	for i := 0; i < n; i++ {
		must[SetResult](t)(e.Set([]byte(fmt.Sprint("key:", i)), []byte("v"), SetOpts{}))
	}
	must[int](t)(e.HSet([]byte("hash"), bs("f", "v"), false))
	for _, count := range []int{1, 7, 100, 5000} {
		seen := map[string]int{}
		var cur uint64
		calls := 0
		for {
			keys, next, err := e.Scan(cur, ScanOpts{Count: count, Match: []byte("key:*"), Type: TypeString})
			if err != nil {
				t.Fatal(err)
			}
			calls++
			for _, k := range keys {
				seen[string(k)]++
			}
			if next == 0 {
				break
			}
			cur = next
		}
		if len(seen) != n {
			t.Fatalf("count %d: %d keys seen", count, len(seen))
		}
		for k, c := range seen {
			if c != 1 {
				t.Fatalf("count %d: %s seen %d times", count, k, c)
			}
		}
		if count == 7 && calls < n/7 {
			t.Fatalf("count 7 took %d calls", calls)
		}
	}
}

// TestConcurrentIncr: INCRs from many goroutines on one key lose nothing
// (a command runs under its key's stripe lock).
func TestConcurrentIncr(t *testing.T) {
	e, _ := open(t, "", &clock{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if _, err := e.IncrBy([]byte("n"), 1); err != nil {
					t.Error(err)
					return
				}
				if _, err := e.HIncrBy([]byte("h"), []byte("f"), 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if v, _, _ := e.Get([]byte("n")); string(v) != "1600" {
		t.Fatalf("n = %s", v)
	}
	if v, _, _ := e.HGet([]byte("h"), []byte("f")); string(v) != "1600" {
		t.Fatalf("h.f = %s", v)
	}
}

// TestReopen: keys, members, TTLs and the key count survive a restart.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	c := &clock{}
	c.ms.Store(5000)
	e, err := Open(Options{Dir: dir, Now: c.now, ReapInterval: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	must[SetResult](t)(e.Set([]byte("s"), []byte("v"), SetOpts{ExpireAt: 9000}))
	must[int](t)(e.HSet([]byte("h"), bs("a", "1", "b", "2"), false))
	e.Close()

	e2, _ := open(t, dir, c)
	if e2.DBSize() != 2 {
		t.Fatalf("keys after reopen: %d", e2.DBSize())
	}
	if ttl := must[int64](t)(e2.TTL([]byte("s"))); ttl != 4000 {
		t.Fatalf("ttl after reopen: %d", ttl)
	}
	if n := must[int64](t)(e2.HLen([]byte("h"))); n != 2 {
		t.Fatalf("hlen after reopen: %d", n)
	}
}

// TestFlushTimerForExpiries: the flush timer writes changed records to
// Pebble only when one of them expires before its next tick (the reaper
// finds keys through Pebble's expiry index) or a SCAN ran lately; records
// without a TTL, or with a far one, otherwise wait for a checkpoint.
func TestFlushTimerForExpiries(t *testing.T) {
	c := &clock{}
	c.ms.Store(1_000_000)
	e, err := Open(Options{Dir: t.TempDir(), Now: c.now, FlushInterval: time.Hour, ReapInterval: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	now := c.ms.Load()
	hour := time.Hour.Milliseconds()
	due := func(step string, want bool) {
		t.Helper()
		if got := e.flushDue(); got != want {
			t.Fatalf("%s: flush due %v, want %v", step, got, want)
		}
	}
	must[SetResult](t)(e.Set([]byte("plain"), []byte("v"), SetOpts{}))
	due("no TTL", false)
	must[SetResult](t)(e.Set([]byte("later"), []byte("v"), SetOpts{ExpireAt: now + 2*hour}))
	due("TTL past the next tick", false)
	must[int](t)(e.HSet([]byte("soon"), bs("f", "v"), false))
	must[bool](t)(e.Expire([]byte("soon"), now+1000, ExpireOpts{}))
	due("EXPIRE before the next tick", true)
	if err := e.flushDirty(); err != nil {
		t.Fatal(err)
	}
	due("after a flush", false)
	if st := e.Stats(); st.UnflushedBytes != 0 {
		t.Fatalf("unflushed after a flush: %d", st.UnflushedBytes)
	}
	must[bool](t)(e.Expire([]byte("plain"), now+3*hour, ExpireOpts{}))
	due("changed, TTL in 3 hours", false)
	c.ms.Add(2 * hour)
	due("the clock an hour from it", true)
	if err := e.flushDirty(); err != nil {
		t.Fatal(err)
	}

	// After a SCAN the timer writes every change for a while, so the next
	// SCAN's own flush stays small.
	must[SetResult](t)(e.Set([]byte("plain"), []byte("v2"), SetOpts{}))
	due("no TTL, no SCAN", false)
	if _, _, err := e.Scan(0, ScanOpts{}); err != nil {
		t.Fatal(err)
	}
	due("after a SCAN, nothing changed", false)
	must[SetResult](t)(e.Set([]byte("plain"), []byte("v3"), SetOpts{}))
	due("changed after a SCAN", true)
	c.ms.Add(scanRecent.Milliseconds())
	due("a SCAN long ago", false)
}

// TestTimerReapsWithoutCheckpoint: with real timers, a key set with a
// short TTL is written to the expiry index by the flush timer and reaped,
// with no checkpoint and no other write.
func TestTimerReapsWithoutCheckpoint(t *testing.T) {
	e, err := Open(Options{Dir: t.TempDir(), FlushInterval: 20 * time.Millisecond, ReapInterval: 10 * time.Millisecond,
		Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	must[SetResult](t)(e.Set([]byte("plain"), []byte("v"), SetOpts{}))
	must[SetResult](t)(e.Set([]byte("soon"), []byte("v"), SetOpts{ExpireAt: time.Now().UnixMilli() + 30}))
	deadline := time.Now().Add(10 * time.Second)
	for e.Stats().Expired != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("not reaped in 10 s: %+v", e.Stats())
		}
		time.Sleep(5 * time.Millisecond) // polls the reaper's count; the background goroutine has no other signal
	}
	if n := e.DBSize(); n != 1 {
		t.Fatalf("keys after the reap: %d, want 1", n)
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"*", "abc", true}, {"a*", "abc", true}, {"a*", "bac", false},
		{"*c", "abc", true}, {"a?c", "abc", true}, {"a?c", "ac", false},
		{"user:*:name", "user:42:name", true}, {"user:*:name", "user:42:age", false},
		{"[abc]x", "bx", true}, {"[abc]x", "dx", false}, {"[^abc]x", "dx", true}, {"[^abc]x", "ax", false},
		{"[a-c]x", "bx", true}, {"[c-a]x", "bx", true}, {"[a-c]x", "dx", false},
		{`\*x`, "*x", true}, {`\*x`, "ax", false},
		// Malformed classes, as Redis 7 answers them (checked against a
		// redis-server): one left open ends with the pattern; a range can
		// end with the ']'.
		{"a[", "a[", false}, {"[a", "a", true}, {"[", "[", false}, {"[^", "x", true}, {"[a-]", "^", true},
		{"[a-]", "-", false}, {`[\a-c]`, "b", false}, {`[\a-c]`, "-", true},
		{"*a*b*c*", "xaxbxcx", true}, {"*a*b*c*", "xaxcxbx", false},
		{"h?llo", "hello", true}, {"h*llo", "heeeello", true},
	}
	for _, tc := range cases {
		if got := Glob([]byte(tc.p), []byte(tc.s)); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

// TestCacheStaysWithinBudget: with a cache far smaller than the data,
// every read is still right (misses go to Pebble) and no shard holds more
// than its budget; overwrites and deletes are seen at once.
func TestCacheStaysWithinBudget(t *testing.T) {
	e, err := Open(Options{InMemory: true, CacheBytes: nStripes * 1024, ReapInterval: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const n = 5000
	for i := 0; i < n; i++ {
		must[SetResult](t)(e.Set([]byte(fmt.Sprint("k", i)), []byte(fmt.Sprint("value-", i)), SetOpts{}))
	}
	for round := 0; round < 2; round++ {
		for i := 0; i < n; i += 7 {
			v, ok, err := e.Get([]byte(fmt.Sprint("k", i)))
			if err != nil || !ok || string(v) != fmt.Sprint("value-", i) {
				t.Fatalf("k%d = %q %v %v", i, v, ok, err)
			}
		}
	}
	must[SetResult](t)(e.Set([]byte("k7"), []byte("new"), SetOpts{}))
	must[int](t)(e.Del(bs("k14")))
	if v, _, _ := e.Get([]byte("k7")); string(v) != "new" {
		t.Fatalf("overwrite not seen: %q", v)
	}
	if _, ok, _ := e.Get([]byte("k14")); ok {
		t.Fatal("deleted key still read")
	}
	// Changed records are held until written to Pebble; after that the
	// budget holds.
	if err := e.flushDirty(); err != nil {
		t.Fatal(err)
	}
	for i := range e.caches {
		sh := &e.caches[i]
		e.stripes[i].Lock()
		over := sh.bytes > sh.budget
		e.stripes[i].Unlock()
		if over {
			t.Fatalf("shard %d holds %d bytes, budget %d", i, sh.bytes, sh.budget)
		}
	}
}

// TestZRemRange: ZREMRANGEBY* remove what the same ZRANGE selects and the
// key goes with its last member; ZMSCORE and SMISMEMBER answer per member.
func TestZRemRange(t *testing.T) {
	e, _ := open(t, "", &clock{})
	z := []byte("z")
	add := func() {
		e.ZAdd(z, ZAddOpts{}, []ScoredMember{{Member: []byte("a"), Score: 1}, {Member: []byte("b"), Score: 2},
			{Member: []byte("c"), Score: 3}, {Member: []byte("d"), Score: 4}})
	}
	add()
	if n, err := e.ZRemRange(z, RangeOpts{By: "score", Min: ScoreBound{Value: 2}, Max: ScoreBound{Value: 3, Exclusive: true}, Count: -1}); err != nil || n != 1 {
		t.Fatalf("remove [2, 3): %d %v", n, err)
	}
	if n, err := e.ZRemRange(z, RangeOpts{By: "index", Start: -2, Stop: -1, Count: -1}); err != nil || n != 2 {
		t.Fatalf("remove the last two by rank: %d %v", n, err)
	}
	if r, err := e.ZRange(z, RangeOpts{By: "index", Start: 0, Stop: -1, Count: -1}); err != nil || len(r) != 1 || string(r[0].Member) != "a" {
		t.Fatalf("left: %v %v", r, err)
	}
	if sc, ok, err := e.ZMScore(z, bs("a", "b")); err != nil || !ok[0] || sc[0] != 1 || ok[1] {
		t.Fatalf("zmscore: %v %v %v", sc, ok, err)
	}
	if n, err := e.ZRemRange(z, RangeOpts{By: "lex", LexMin: LexBound{Inf: -1}, LexMax: LexBound{Inf: 1}, Count: -1}); err != nil || n != 1 {
		t.Fatalf("remove all by lex: %d %v", n, err)
	}
	if n, _ := e.Exists(bs("z")); n != 0 {
		t.Fatal("the key outlived its last member")
	}
	e.SAdd([]byte("s"), bs("x"))
	if in, err := e.SMIsMember([]byte("s"), bs("x", "y")); err != nil || !in[0] || in[1] {
		t.Fatalf("smismember: %v %v", in, err)
	}
	if _, err := e.ZRemRange([]byte("s"), RangeOpts{By: "index", Count: -1}); err != ErrWrongType {
		t.Fatalf("zremrangebyrank of a set: %v", err)
	}
}

// TestCacheGenerations: a record changed again after a flush is dirty in
// the next generation with what Pebble then held, so the second flush
// moves its expiry index entry (a stale one would let the reaper delete
// a live key); a flush leaves no dirty bytes; a cached value is the
// engine's own copy, not the caller's buffer.
func TestCacheGenerations(t *testing.T) {
	c := &clock{}
	c.ms.Store(1_000_000)
	e, st := open(t, "", c)
	now := c.ms.Load()
	k := []byte("k")
	expiries := func() (n int) {
		st.Iterate(store.KeyspaceKV, []byte{'x'}, []byte{'y'}, false, func(_, _ []byte) bool { n++; return true })
		return n
	}
	val := []byte("one")
	must[SetResult](t)(e.Set(k, val, SetOpts{ExpireAt: now + 1000}))
	copy(val, "xxx") // the network's buffer, reused for the next command
	if v, _, _ := e.Get(k); string(v) != "one" {
		t.Fatalf("cached value follows the caller's buffer: %q", v)
	}
	if err := e.flushDirty(); err != nil {
		t.Fatal(err)
	}
	if n := expiries(); n != 1 {
		t.Fatalf("%d expiry entries after the first flush", n)
	}
	// Twice in the next generation: the second change must keep what
	// the first found in Pebble (the entry at now+1000).
	must[SetResult](t)(e.Set(k, []byte("two"), SetOpts{ExpireAt: now + 5000}))
	must[SetResult](t)(e.Set(k, []byte("three"), SetOpts{}))
	if err := e.flushDirty(); err != nil {
		t.Fatal(err)
	}
	if n, d := expiries(), e.dirtyBytes.Load(); n != 0 || d != 0 {
		t.Fatalf("after the second flush: %d expiry entries, %d dirty bytes", n, d)
	}
	c.ms.Add(10_000)
	for n := 1; n > 0; {
		n = must[int](t)(e.Reap())
	}
	if v, ok, _ := e.Get(k); !ok || string(v) != "three" {
		t.Fatalf("k = %q %v after the reaper ran", v, ok)
	}
	// A record flushed clean stays clean: changing it dirties it once.
	must[SetResult](t)(e.Set(k, []byte("four"), SetOpts{}))
	must[SetResult](t)(e.Set(k, []byte("five"), SetOpts{}))
	sh := &e.caches[e.stripeOf(k)]
	if len(sh.dirty) != 1 || e.dirtyBytes.Load() != int64(len("k")+len("five")+cacheEntryOverhead) {
		t.Fatalf("dirty list %q, %d dirty bytes", sh.dirty, e.dirtyBytes.Load())
	}
}
