package kv

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/kv/aof"
	"github.com/flowmesh/flowmesh/kv/store"
)

// crash stops e as a kill would after its last barrier: no checkpoint,
// no flush of Pebble's memtables (the engine's Pebble has no WAL, so what
// they held is gone), no write of records appended after the barrier.
func (e *Engine) crash() {
	close(e.stop)
	e.done.Wait()
	if f := e.aof.Load(); f != nil {
		f.CloseUnwritten()
	}
	e.st.Close()
}

// dump reads the state of keys through the engine, without changing it
// (no SCAN: that writes the changed records to Pebble first).
func dump(t *testing.T, e *Engine, keys []string) string {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		key := []byte(k)
		tp := must[Type](t)(e.TypeOf(key))
		ttl := must[int64](t)(e.TTL(key))
		fmt.Fprintf(&b, "%s %v ttl=%d ", k, tp, ttl)
		switch tp {
		case TypeString:
			v, _, _ := e.Get(key)
			fmt.Fprintf(&b, "%q", v)
		case TypeHash:
			fmt.Fprintf(&b, "%q len=%d", must[[][]byte](t)(e.HGetAll(key, true, true)), must[int64](t)(e.HLen(key)))
		case TypeSet:
			ms := must[[][]byte](t)(e.SMembers(key))
			slices.SortFunc(ms, func(a, b []byte) int { return strings.Compare(string(a), string(b)) })
			fmt.Fprintf(&b, "%q card=%d", ms, must[int64](t)(e.SCard(key)))
		case TypeZSet:
			fmt.Fprintf(&b, "%v card=%d", must[[]ScoredMember](t)(e.ZRange(key, RangeOpts{By: "index", Start: 0, Stop: -1})),
				must[int64](t)(e.ZCard(key)))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "dbsize=%d\n", e.DBSize())
	return b.String()
}

// TestCrashReplay: commands of every kind, some before a checkpoint and
// some after, then a crash; the reopened engine (replaying the
// append-only file over what Pebble kept) reads exactly what the crashed
// one did, and the replayed segments are gone after its checkpoint.
//
// Under the always policy (SyncEach) a checkpoint keeps the removed
// segment as a spare and the next one writes into it: the second
// checkpoint below makes the crashed segment a recycled file, whose old
// records must not replay.
func TestCrashReplay(t *testing.T) {
	for _, always := range []bool{false, true} {
		t.Run(fmt.Sprintf("always=%v", always), func(t *testing.T) { testCrashReplay(t, always) })
	}
}

func testCrashReplay(t *testing.T, always bool) {
	dir := t.TempDir()
	c := &clock{}
	c.ms.Store(1_000_000)
	o := Options{Dir: dir, Now: c.now, ReapInterval: time.Hour, FlushInterval: time.Hour, Logger: quiet, SyncEach: always}
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	now := c.ms.Load()
	keys := []string{"s", "t", "n", "h", "z", "set", "gone", "moved", "retyped", "dropped"}
	step := func(phase int) {
		p := fmt.Sprint(phase)
		must[SetResult](t)(e.Set([]byte("s"), []byte("v"+p), SetOpts{}))
		must[SetResult](t)(e.Set([]byte("t"), []byte("ttl"+p), SetOpts{ExpireAt: now + 60_000}))
		must[int64](t)(e.IncrBy([]byte("n"), 5))
		must[int](t)(e.HSet([]byte("h"), bs("a"+p, "1", "b", p), false))
		must[int](t)(e.HDel([]byte("h"), bs("a0")))
		must[int](t)(func() (int, error) {
			n, _, _, err := e.ZAdd([]byte("z"), ZAddOpts{}, []ScoredMember{{[]byte("m" + p), float64(phase)}, {[]byte("x"), -1}})
			return n, err
		}())
		must[int](t)(e.SAdd([]byte("set"), bs("a", p)))
		must[int](t)(e.SRem([]byte("set"), bs("0")))
		must[SetResult](t)(e.Set([]byte("gone"), []byte("x"), SetOpts{}))
		must[int](t)(e.Del(bs("gone")))
		must[SetResult](t)(e.Set([]byte("src"+p), []byte("moving"), SetOpts{}))
		must[bool](t)(e.Rename([]byte("src"+p), []byte("moved"), false))
		// A string that becomes a hash, and a hash that is deleted.
		must[SetResult](t)(e.Set([]byte("retyped"), []byte("str"), SetOpts{}))
		must[int](t)(e.Del(bs("retyped")))
		must[int](t)(e.HSet([]byte("retyped"), bs("f", p), false))
		must[int](t)(e.HSet([]byte("dropped"), bs("f", p), false))
		must[bool](t)(e.Expire([]byte("dropped"), now+30_000, ExpireOpts{}))
		must[int](t)(e.Del(bs("dropped")))
		if err := e.Barrier(); err != nil {
			t.Fatal(err)
		}
	}
	step(0)
	for i := range 200 { // a first segment longer than the crashed one will be: it becomes its stale tail
		must[SetResult](t)(e.Set([]byte(fmt.Sprint("filler", i)), []byte(strings.Repeat("f", 100)), SetOpts{}))
	}
	if st := e.Stats(); st.UnflushedBytes == 0 || st.AOFBytes == 0 {
		t.Fatalf("stats after writes: %+v", st)
	}
	if err := e.checkpoint(true); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.UnflushedBytes != 0 || st.AOFBytes != 0 {
		t.Fatalf("stats after a checkpoint: %+v", st)
	}
	step(0)
	if err := e.checkpoint(true); err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(dir, "aof", "spare.v2.aof"))
	if always != (err == nil) {
		t.Fatalf("spare segment after two checkpoints: %v (always %v)", err, always)
	}
	step(1)
	e.flushDirty() // some changed records reach Pebble's memtable, and are lost with it
	step(2)
	want := dump(t, e, keys)
	e.crash()

	e2, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if got := dump(t, e2, keys); got != want {
		t.Fatalf("after the crash:\n%s\nbefore:\n%s", got, want)
	}
	// The replayed segments went with the checkpoint Open made.
	segs, _ := filepath.Glob(filepath.Join(dir, "aof", "[0-9]*.aof"))
	if len(segs) != 1 {
		t.Fatalf("segments after recovery: %v", segs)
	}
	var start uint64
	fmt.Sscanf(filepath.Base(segs[0]), "%d.", &start)
	if n, err := aof.Replay(filepath.Join(dir, "aof"), start, func([]byte) error { return nil }); err != nil || n != start {
		t.Fatalf("the new segment holds records already (they end at %d, it starts at %d; %v)", n, start, err)
	}
	if fi, _ := os.Stat(segs[0]); !always && fi.Size() != 0 {
		t.Fatalf("the new segment holds %d bytes already", fi.Size())
	}
	// And the reaper still finds t's expiry (in the index after replay).
	c.ms.Add(60_000)
	if n := must[int](t)(e2.Reap()); n != 1 {
		t.Fatalf("reap after replay handled %d index entries, want 1 (t)", n)
	}
}

// TestFlushDBReplay: FLUSHDB is a record too; keys written after it are
// all that a crash leaves.
func TestFlushDBReplay(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, FlushInterval: time.Hour, ReapInterval: time.Hour, Logger: quiet}
	e, _ := Open(o)
	must[SetResult](t)(e.Set([]byte("a"), []byte("1"), SetOpts{}))
	must[int](t)(e.HSet([]byte("h"), bs("f", "v"), false))
	e.checkpoint(true)
	if err := e.FlushDB(); err != nil {
		t.Fatal(err)
	}
	must[SetResult](t)(e.Set([]byte("b"), []byte("2"), SetOpts{}))
	e.Barrier()
	e.crash()
	e2, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	keys := must[[][]byte](t)(e2.Keys([]byte("*")))
	if len(keys) != 1 || string(keys[0]) != "b" || e2.DBSize() != 1 {
		t.Fatalf("keys after FLUSHDB and a crash: %q (dbsize %d)", keys, e2.DBSize())
	}
}

// TestExpiryIndexAfterFlush: the expiry index Pebble gets from flushes
// has one entry per key with a TTL, at its current time, however often
// the TTL changed or the key went between flushes.
func TestExpiryIndexAfterFlush(t *testing.T) {
	e, st := open(t, "", &clock{})
	entries := func() (out []string) {
		t.Helper()
		if err := e.flushDirty(); err != nil {
			t.Fatal(err)
		}
		st.Iterate('K', []byte{'x'}, []byte{'y'}, false, func(k, _ []byte) bool {
			out = append(out, fmt.Sprintf("%d:%s", int64(binary.BigEndian.Uint64(k[1:9])), k[9:]))
			return true
		})
		return out
	}
	must[SetResult](t)(e.Set([]byte("a"), []byte("1"), SetOpts{ExpireAt: 100}))
	must[SetResult](t)(e.Set([]byte("b"), []byte("1"), SetOpts{ExpireAt: 100}))
	if got := fmt.Sprint(entries()); got != "[100:a 100:b]" {
		t.Fatalf("index %s", got)
	}
	must[bool](t)(e.Expire([]byte("a"), 200, ExpireOpts{}))
	must[bool](t)(e.Expire([]byte("a"), 300, ExpireOpts{}))
	must[bool](t)(e.Persist([]byte("b")))
	must[bool](t)(e.Expire([]byte("b"), 400, ExpireOpts{}))
	must[int](t)(e.HSet([]byte("h"), bs("f", "v"), false))
	must[bool](t)(e.Expire([]byte("h"), 500, ExpireOpts{}))
	must[int](t)(e.Del(bs("h")))
	if got := fmt.Sprint(entries()); got != "[300:a 400:b]" {
		t.Fatalf("index %s", got)
	}
	must[int](t)(e.Del(bs("a")))
	must[bool](t)(e.Persist([]byte("b")))
	if got := fmt.Sprint(entries()); got != "[]" {
		t.Fatalf("index %s", got)
	}
}

// TestMigrateLegacy: KV data in the node's shared database (where the
// engine kept it before it had its own) is moved on Open and gone from
// there.
func TestMigrateLegacy(t *testing.T) {
	dir := t.TempDir()
	legacy, err := store.Open(filepath.Join(dir, "meta"), store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer legacy.Close()
	b := legacy.NewBatch()
	str := meta{typ: TypeString, val: []byte("old value")}
	b.Set(store.KeyspaceKV, metaKey([]byte("s")), str.encode())
	h := meta{typ: TypeHash, count: 1}
	b.Set(store.KeyspaceKV, metaKey([]byte("h")), h.encode())
	b.Set(store.KeyspaceKV, memberKey([]byte("h"), []byte("f")), []byte("v"))
	b.Set(store.KeyspaceQueue, []byte("not ours"), []byte("kept"))
	if err := b.CommitSync(true); err != nil {
		t.Fatal(err)
	}
	e, err := Open(Options{Dir: filepath.Join(dir, "kv"), Legacy: legacy, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if v, ok, _ := e.Get([]byte("s")); !ok || string(v) != "old value" {
		t.Fatalf("s after the move: %q %v", v, ok)
	}
	if v, ok, _ := e.HGet([]byte("h"), []byte("f")); !ok || string(v) != "v" || e.DBSize() != 2 {
		t.Fatalf("h.f after the move: %q %v, dbsize %d", v, ok, e.DBSize())
	}
	left := 0
	legacy.Scan(store.KeyspaceKV, nil, func(_, _ []byte) bool { left++; return true })
	if v, err := legacy.Get(store.KeyspaceQueue, []byte("not ours")); left != 0 || err != nil || string(v) != "kept" {
		t.Fatalf("legacy database after the move: %d KV records left, queue record %q %v", left, v, err)
	}
}

// FuzzApplyRecord: replay decodes records that passed their CRC but were
// written by an older or damaged engine; any bytes give an error or a
// batch, never a panic, and a record the engine writes decodes whole.
func FuzzApplyRecord(f *testing.F) {
	st, err := store.Open("", store.Options{InMemory: true, Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	b := &batch{}
	b.op(opSet, []byte("k"), []byte("v"))
	b.op(opDelete, []byte("k"))
	b.op(opDeleteRange, []byte("a"), []byte("b"))
	b.op(opDeleteAll)
	m := meta{typ: TypeString, val: []byte("value"), expireAt: 7}
	b.put([]byte("key"), &m, meta{}, false)
	whole := st.NewBatch()
	if err := applyRecord(whole, b.rec); err != nil {
		f.Fatalf("a record the engine wrote: %v", err)
	}
	whole.Discard()
	f.Add(b.rec)
	f.Add([]byte{opSet, 5, 'a'})
	f.Add([]byte{'?'})
	f.Fuzz(func(t *testing.T, rec []byte) {
		pb := st.NewBatch()
		defer pb.Discard()
		_ = applyRecord(pb, rec)
	})
}

// TestIntervalSync: under the interval policy a write is fsynced within
// SyncInterval without another write to push it, also after the engine
// sat idle (the fsync timer is armed by the first change after the last
// fsync; there is no ticker).
func TestIntervalSync(t *testing.T) {
	e, err := Open(Options{Dir: t.TempDir(), SyncInterval: 2 * time.Millisecond, FlushInterval: time.Hour,
		ReapInterval: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	f := e.aof.Load()
	synced := func(what string) {
		t.Helper()
		pos := e.Position()
		deadline := time.Now().Add(10 * time.Second)
		for f.Synced() < pos {
			if time.Now().After(deadline) {
				t.Fatalf("%s: position %d not fsynced after 10 s (synced %d)", what, pos, f.Synced())
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := 0; i < 3; i++ {
		must[SetResult](t)(e.Set([]byte(fmt.Sprint("k", i)), []byte("v"), SetOpts{}))
		synced(fmt.Sprint("write ", i))
		time.Sleep(10 * time.Millisecond) // idle for a few intervals
	}
}

// TestAfterDurable: under the always policy every waiter is called once,
// after its writes are fsynced (many writers, few fsyncs); after Close a
// waiter is still answered.
func TestAfterDurable(t *testing.T) {
	e, err := Open(Options{Dir: t.TempDir(), SyncEach: true, FlushInterval: time.Hour, ReapInterval: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if !e.SyncsEach() {
		t.Fatal("SyncsEach is false under SyncEach")
	}
	const writers, each = 8, 50
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		go func() {
			for i := 0; i < each; i++ {
				if _, err := e.Set([]byte(fmt.Sprint("k", w, ":", i)), []byte("v"), SetOpts{}); err != nil {
					errs <- err
					continue
				}
				pos := e.Position()
				e.AfterDurable(pos, func(err error) {
					if err == nil && !e.Durable(pos) {
						err = fmt.Errorf("called before position %d was durable", pos)
					}
					errs <- err
				})
			}
		}()
	}
	for i := 0; i < writers*each; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	must[SetResult](t)(e.Set([]byte("last"), []byte("v"), SetOpts{}))
	pos := e.Position()
	e.Close()
	called := false
	e.AfterDurable(pos, func(err error) { called = err == nil })
	if !called {
		t.Fatal("a waiter after Close was not answered at once")
	}
}

// TestTornTailReopen: a crash in the middle of writing the last record
// (the command was never acknowledged) leaves the engine as it was before
// that command, at every cut inside the record.
func TestTornTailReopen(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, FlushInterval: time.Hour, ReapInterval: time.Hour, Logger: quiet}
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	must[SetResult](t)(e.Set([]byte("kept"), []byte("1"), SetOpts{}))
	must[int](t)(e.HSet([]byte("h"), bs("a", "1"), false))
	if err := e.Barrier(); err != nil {
		t.Fatal(err)
	}
	before := e.Position()
	must[int](t)(e.HSet([]byte("h"), bs("b", "2", "c", "3"), false)) // the torn one
	must[SetResult](t)(e.Set([]byte("kept"), []byte("2"), SetOpts{}))
	e.Barrier()
	e.crash()
	segs, _ := filepath.Glob(filepath.Join(dir, "aof", "[0-9]*.aof"))
	last := segs[len(segs)-1]
	whole, _ := os.ReadFile(last)
	var start uint64
	fmt.Sscanf(filepath.Base(last), "%d.aof", &start)
	cutFrom := int(before - start) // where the torn record begins in the file
	snapshot := t.TempDir()
	for cut := cutFrom + 1; cut < cutFrom+40; cut += 7 {
		// Each attempt from the same crashed state.
		os.RemoveAll(snapshot)
		copyDir(t, dir, snapshot)
		os.WriteFile(filepath.Join(snapshot, "aof", filepath.Base(last)), whole[:cut], 0o644)
		o2 := o
		o2.Dir = snapshot
		e2, err := Open(o2)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		v, _, _ := e2.Get([]byte("kept"))
		all := must[[][]byte](t)(e2.HGetAll([]byte("h"), true, true))
		n := must[int64](t)(e2.HLen([]byte("h")))
		e2.Close()
		if string(v) != "1" || len(all) != 2 || n != 1 {
			t.Fatalf("cut at %d: kept=%q, h=%q (len %d), want the state before the torn command", cut, v, all, n)
		}
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
