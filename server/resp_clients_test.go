package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestGoRedis drives the Redis port with github.com/redis/go-redis, unchanged
// (it speaks RESP3 through HELLO 3, pipelines, and reads Redis errors).
func TestGoRedis(t *testing.T) {
	s := startServer(t, Config{RESPAddr: "127.0.0.1:0"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: s.RESPAddr().String()})
	defer rdb.Close()

	if err := rdb.Set(ctx, "user:234", "data", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, "user:234").Result(); err != nil || v != "data" {
		t.Fatalf("get: %q %v", v, err)
	}
	if ttl, err := rdb.TTL(ctx, "user:234").Result(); err != nil || ttl < 59*time.Minute {
		t.Fatalf("ttl: %v %v", ttl, err)
	}
	if _, err := rdb.Get(ctx, "missing").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("missing key: %v", err)
	}
	if err := rdb.HSet(ctx, "h", map[string]any{"a": "1", "b": "2"}).Err(); err != nil {
		t.Fatal(err)
	}
	if m, err := rdb.HGetAll(ctx, "h").Result(); err != nil || m["a"] != "1" || m["b"] != "2" || len(m) != 2 {
		t.Fatalf("hgetall: %v %v", m, err)
	}
	if err := rdb.ZAdd(ctx, "z", redis.Z{Score: 2, Member: "b"}, redis.Z{Score: 1, Member: "a"}).Err(); err != nil {
		t.Fatal(err)
	}
	zs, err := rdb.ZRangeWithScores(ctx, "z", 0, -1).Result()
	if err != nil || len(zs) != 2 || zs[0].Member != "a" || zs[1].Score != 2 {
		t.Fatalf("zrange withscores: %v %v", zs, err)
	}
	if f, err := rdb.ZScore(ctx, "z", "b").Result(); err != nil || f != 2 {
		t.Fatalf("zscore: %v %v", f, err)
	}
	if ok, err := rdb.SIsMember(ctx, "nope", "x").Result(); err != nil || ok {
		t.Fatalf("sismember: %v %v", ok, err)
	}
	if err := rdb.Incr(ctx, "h").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		t.Fatalf("INCR of a hash: %v", err)
	}
	// A pipeline of 100 commands.
	pipe := rdb.Pipeline()
	for i := 0; i < 100; i++ {
		pipe.Set(ctx, fmt.Sprint("p:", i), i, 0)
	}
	incr := pipe.IncrBy(ctx, "p:7", 3)
	if _, err := pipe.Exec(ctx); err != nil || incr.Val() != 10 {
		t.Fatalf("pipeline: %v, incr %d", err, incr.Val())
	}
	// SCAN through the iterator.
	n := 0
	iter := rdb.Scan(ctx, 0, "p:*", 7).Iterator()
	for iter.Next(ctx) {
		n++
	}
	if err := iter.Err(); err != nil || n != 100 {
		t.Fatalf("scan: %d keys, %v", n, err)
	}
	if size, err := rdb.DBSize(ctx).Result(); err != nil || size != 103 {
		t.Fatalf("dbsize: %d %v", size, err)
	}
	if err := rdb.Do(ctx, "NOSUCH").Err(); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
}

// TestRedisTools runs redis-cli and redis-benchmark against the port.
// scripts/test installs them (Debian's redis-tools, with redis-server).
func TestRedisTools(t *testing.T) {
	cli, err1 := exec.LookPath("redis-cli")
	bench, err2 := exec.LookPath("redis-benchmark")
	if err1 != nil || err2 != nil {
		if os.Getenv("FLOWMESH_REQUIRE_REDIS") != "" {
			t.Fatal("redis-cli and redis-benchmark required but not on PATH")
		}
		t.Skip("redis-tools not installed")
	}
	s := startServer(t, Config{RESPAddr: "127.0.0.1:0"})
	port := strconv.Itoa(s.RESPAddr().(*net.TCPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(bin string, args ...string) string {
		out, err := exec.CommandContext(ctx, bin, append([]string{"-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
		}
		return string(out)
	}
	if out := run(cli, "SET", "greeting", "hello world"); strings.TrimSpace(out) != "OK" {
		t.Fatalf("redis-cli SET: %q", out)
	}
	if out := run(cli, "GET", "greeting"); strings.TrimSpace(out) != "hello world" {
		t.Fatalf("redis-cli GET: %q", out)
	}
	if out := run(cli, "-3", "HELLO", "3"); !strings.Contains(out, "proto") {
		t.Fatalf("redis-cli HELLO 3: %q", out)
	}
	if out := run(cli, "--scan", "--pattern", "greet*"); strings.TrimSpace(out) != "greeting" {
		t.Fatalf("redis-cli --scan: %q", out)
	}
	// CONFIG GET answers what clients check, in Redis' terms (job
	// libraries warn unless nothing is evicted).
	if out := run(cli, "CONFIG", "GET", "maxmemory*"); strings.Fields(out)[0] != "maxmemory" ||
		!strings.Contains(out, "maxmemory-policy\nnoeviction") {
		t.Fatalf("redis-cli CONFIG GET maxmemory*: %q", out)
	}
	if out := run(cli, "CONFIG", "GET", "appendonly", "save"); out != "appendonly\nno\nsave\n\n" { // in memory
		t.Fatalf("redis-cli CONFIG GET appendonly save: %q", out)
	}
	if out := run(cli, "CONFIG", "GET"); !strings.Contains(out, "wrong number of arguments") {
		t.Fatalf("redis-cli CONFIG GET without a pattern: %q", out)
	}
	out := run(bench, "-t", "set,get,incr,hset,zadd", "-n", "2000", "-c", "10", "-P", "4", "-q")
	for _, cmd := range []string{"SET", "GET", "INCR", "HSET", "ZADD"} {
		if !strings.Contains(out, cmd+": ") || !strings.Contains(out, "requests per second") {
			t.Fatalf("redis-benchmark did not run %s:\n%s", cmd, out)
		}
	}
	if strings.Contains(out, "Could not fetch server CONFIG") {
		t.Fatalf("redis-benchmark could not read the settings it checks:\n%s", out)
	}
}

// TestRESPAlwaysFsyncsBeforeReply: under fsync=always a Redis-port reply
// leaves only once the write it acknowledges is fsynced (the loop's
// barrier fsyncs), for single commands and for pipelines.
func TestRESPAlwaysFsyncsBeforeReply(t *testing.T) {
	s := startServer(t, Config{RESPAddr: "127.0.0.1:0", Fsync: "always"}, func(s *Server) {
		s.cfg.InMemory, s.cfg.DataDir = false, t.TempDir()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: s.RESPAddr().String()})
	defer rdb.Close()
	// One client writing: when its reply arrives, the file ends at its
	// last write.
	for i := range 100 {
		if err := rdb.Set(ctx, fmt.Sprint("k", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if pos := s.kv.Position(); !s.kv.Durable(pos) {
			t.Fatalf("SET %d answered before its write (file position %d) was fsynced", i, pos)
		}
		pipe := rdb.Pipeline()
		for j := range 10 {
			pipe.Incr(ctx, fmt.Sprint("n", j))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if pos := s.kv.Position(); !s.kv.Durable(pos) {
			t.Fatalf("pipeline %d answered before its writes (file position %d) were fsynced", i, pos)
		}
	}
}

// TestRESPAlwaysHeldReplies: under fsync=always the Redis port holds each
// read's replies until the fsync of its writes, behind the replies before
// them. Pipelines from many clients get every reply, in order (INCRs count
// up one by one, each GET sees the INCR before it), big replies (GETs of
// a big value) included. Two loops, so that both write and fsync the one
// append-only file.
func TestRESPAlwaysHeldReplies(t *testing.T) {
	s := startServer(t, Config{RESPAddr: "127.0.0.1:0", RESPLoops: 2, Fsync: "always"}, func(s *Server) {
		s.cfg.InMemory, s.cfg.DataDir = false, t.TempDir()
	})
	if !s.kv.SyncsEach() {
		t.Fatal("the node does not fsync each KV write")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const clients, rounds, depth = 8, 20, 50
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		go func() {
			rdb := redis.NewClient(&redis.Options{Addr: s.RESPAddr().String()})
			defer rdb.Close()
			key := fmt.Sprint("counter:", c)
			want := int64(0)
			for r := 0; r < rounds; r++ {
				pipe := rdb.Pipeline()
				incrs := make([]*redis.IntCmd, depth)
				gets := make([]*redis.StringCmd, depth)
				for i := range depth {
					incrs[i] = pipe.Incr(ctx, key)
					gets[i] = pipe.Get(ctx, key)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					errs <- err
					return
				}
				for i := range depth {
					want++
					if n := incrs[i].Val(); n != want {
						errs <- fmt.Errorf("%s: INCR answered %d, want %d", key, n, want)
						return
					}
					if v := gets[i].Val(); v != strconv.FormatInt(want, 10) {
						errs <- fmt.Errorf("%s: GET after INCR %d answered %q", key, want, v)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for c := 0; c < clients; c++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	// Writes and reads in separate packets, never waiting for a reply: a
	// read that arrives while the write before it waits for its fsync is
	// answered after it.
	nc, err := net.Dial("tcp", s.RESPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const n = 300
	go func() {
		for i := 0; i < n; i++ {
			nc.Write([]byte("INCR seq\r\n"))
			nc.Write([]byte("GET seq\r\n"))
		}
	}()
	nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(nc)
	for i := 1; i <= n; i++ {
		incr, _ := br.ReadString('\n')
		size, _ := br.ReadString('\n')
		val, err := br.ReadString('\n')
		want := strconv.Itoa(i)
		if err != nil || incr != ":"+want+"\r\n" || size != fmt.Sprintf("$%d\r\n", len(want)) || val != want+"\r\n" {
			t.Fatalf("round %d: INCR %q, GET %q %q (%v)", i, incr, size, val, err)
		}
	}

	rdb := redis.NewClient(&redis.Options{Addr: s.RESPAddr().String()})
	defer rdb.Close()
	big := strings.Repeat("v", 256<<10)
	if err := rdb.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	pipe := rdb.Pipeline()
	set := pipe.Set(ctx, "marker", "1", 0)
	gets := make([]*redis.StringCmd, 12) // 3 MiB of replies behind one write
	for i := range gets {
		gets[i] = pipe.Get(ctx, "big")
	}
	after := pipe.Incr(ctx, "marker")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if set.Val() != "OK" || after.Val() != 2 {
		t.Fatalf("SET %q, INCR after it %d", set.Val(), after.Val())
	}
	for i, g := range gets {
		if g.Val() != big {
			t.Fatalf("GET %d of the big value: %d bytes", i, len(g.Val()))
		}
	}
}
