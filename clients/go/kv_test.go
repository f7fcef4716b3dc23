package flowmesh_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
)

// TestKV drives the cache API end to end: strings with TTLs and binary
// values, counters, hashes, sets, sorted sets, scans, type errors and Do.
func TestKV(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	kv := fm.KV

	data := []byte("bin\r\n\x00data")
	if ok, err := kv.Set(ctx, "user:234", data, flowmesh.TTL(time.Hour)); err != nil || !ok {
		t.Fatalf("set: %v %v", ok, err)
	}
	if v, ok, err := kv.Get(ctx, "user:234"); err != nil || !ok || string(v) != string(data) {
		t.Fatalf("get: %q %v %v", v, ok, err)
	}
	if _, ok, err := kv.Get(ctx, "nobody"); err != nil || ok {
		t.Fatalf("get of a missing key: %v %v", ok, err)
	}
	if ttl, err := kv.TTL(ctx, "user:234"); err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("ttl: %v %v", ttl, err)
	}
	if ok, err := kv.Set(ctx, "user:234", []byte("x"), flowmesh.IfAbsent()); err != nil || ok {
		t.Fatalf("set if absent over a present key: %v %v", ok, err)
	}
	if n, err := kv.Incr(ctx, "hits"); err != nil || n != 1 {
		t.Fatalf("incr: %d %v", n, err)
	}
	if f, err := kv.IncrByFloat(ctx, "temp", 1.5); err != nil || f != 1.5 {
		t.Fatalf("incrbyfloat: %v %v", f, err)
	}
	if _, err := kv.Incr(ctx, "user:234"); err == nil {
		t.Fatal("INCR of binary data succeeded")
	}
	if err := kv.MSet(ctx, map[string][]byte{"a": []byte("1"), "b": []byte("2")}); err != nil {
		t.Fatal(err)
	}
	if vs, err := kv.MGet(ctx, "a", "nobody", "b"); err != nil || string(vs[0]) != "1" || vs[1] != nil || string(vs[2]) != "2" {
		t.Fatalf("mget: %q %v", vs, err)
	}
	if n, err := kv.HSet(ctx, "h", map[string][]byte{"f1": []byte("v1"), "f2": []byte("v2")}); err != nil || n != 2 {
		t.Fatalf("hset: %d %v", n, err)
	}
	if m, err := kv.HGetAll(ctx, "h"); err != nil || len(m) != 2 || string(m["f2"]) != "v2" {
		t.Fatalf("hgetall: %q %v", m, err)
	}
	if _, err := kv.SAdd(ctx, "h", "x"); !errors.Is(err, flowmesh.ErrWrongType) {
		t.Fatalf("SADD on a hash: %v", err)
	}
	if n, err := kv.HIncrBy(ctx, "h", "n", 5); err != nil || n != 5 {
		t.Fatalf("hincrby: %d %v", n, err)
	}
	kv.SAdd(ctx, "s", "b", "a", "c", "a")
	if ms, err := kv.SMembers(ctx, "s"); err != nil || !slices.Equal(ms, []string{"a", "b", "c"}) {
		t.Fatalf("smembers: %v %v", ms, err)
	}
	if ok, _ := kv.SIsMember(ctx, "s", "b"); !ok {
		t.Fatal("sismember")
	}
	kv.ZAdd(ctx, "board", flowmesh.Z{Member: "ann", Score: 30}, flowmesh.Z{Member: "bob", Score: 10}, flowmesh.Z{Member: "cid", Score: 20})
	if zs, err := kv.ZRange(ctx, "board", 0, -1); err != nil || len(zs) != 3 || zs[0].Member != "bob" || zs[2].Score != 30 {
		t.Fatalf("zrange: %v %v", zs, err)
	}
	if zs, err := kv.ZRangeByScore(ctx, "board", "(10", "+inf"); err != nil || len(zs) != 2 || zs[0].Member != "cid" {
		t.Fatalf("zrangebyscore: %v %v", zs, err)
	}
	kv.ZAdd(ctx, "window", flowmesh.Z{Member: "r1", Score: 100}, flowmesh.Z{Member: "r2", Score: 200}, flowmesh.Z{Member: "r3", Score: 300})
	if n, err := kv.ZRemRangeByScore(ctx, "window", "-inf", "(300"); err != nil || n != 2 {
		t.Fatalf("zremrangebyscore: %d %v", n, err)
	}
	if n, err := kv.ZCard(ctx, "window"); err != nil || n != 1 {
		t.Fatalf("zcard after zremrangebyscore: %d %v", n, err)
	}
	if r, ok, err := kv.ZRank(ctx, "board", "ann"); err != nil || !ok || r != 2 {
		t.Fatalf("zrank: %d %v %v", r, ok, err)
	}
	if f, err := kv.ZIncrBy(ctx, "board", 15, "bob"); err != nil || f != 25 {
		t.Fatalf("zincrby: %v %v", f, err)
	}
	if f, ok, err := kv.ZScore(ctx, "board", "bob"); err != nil || !ok || f != 25 {
		t.Fatalf("zscore: %v %v %v", f, ok, err)
	}
	for i := 0; i < 25; i++ {
		kv.Set(ctx, fmt.Sprint("page:", i), []byte("p"))
	}
	n := 0
	for key, err := range kv.Scan(ctx, "page:*", 4) {
		if err != nil {
			t.Fatal(err)
		}
		if key[:5] != "page:" {
			t.Fatalf("scan returned %q", key)
		}
		n++
	}
	if n != 25 {
		t.Fatalf("scan saw %d keys", n)
	}
	if typ, err := kv.Type(ctx, "board"); err != nil || typ != "zset" {
		t.Fatalf("type: %q %v", typ, err)
	}
	if err := kv.Rename(ctx, "board", "board2"); err != nil {
		t.Fatal(err)
	}
	if ok, err := kv.Expire(ctx, "board2", time.Minute); err != nil || !ok {
		t.Fatalf("expire: %v %v", ok, err)
	}
	if ok, err := kv.Persist(ctx, "board2"); err != nil || !ok {
		t.Fatalf("persist: %v %v", ok, err)
	}
	if n, err := kv.Del(ctx, "board2", "nobody"); err != nil || n != 1 {
		t.Fatalf("del: %d %v", n, err)
	}
	if v, err := kv.Do(ctx, "STRLEN", "user:234"); err != nil || v != int64(len(data)) {
		t.Fatalf("do strlen: %v %v", v, err)
	}
	if _, err := kv.Do(ctx, "NOSUCH"); err == nil {
		t.Fatal("unknown command accepted")
	}
}
