package server

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRedisDifferential sends the same random command sequences to
// FlowMesh's Redis port and to a real redis-server and compares the
// replies: a generated complement to TestRedisCompat's hand-written
// script, on a key space small enough that commands keep meeting each
// other's keys (wrong types, missing keys, overwritten values) and with
// argument pools full of edge cases (empty strings, integer limits,
// infinities, exclusive and lexical bounds). Errors are compared by their
// code (the first word: ERR, WRONGTYPE, ...), since the texts are not part
// of Redis' contract; everything else exactly, but for the order of
// unordered replies. FLOWMESH_RESP_DIFF_SEED and FLOWMESH_RESP_DIFF_N
// replay or lengthen a run.
func TestRedisDifferential(t *testing.T) {
	redisAddr := startRedisServer(t)
	s := startServer(t, Config{RESPAddr: "127.0.0.1:0"})

	seed := uint64(1)
	if v := os.Getenv("FLOWMESH_RESP_DIFF_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	n := 3000
	if v := os.Getenv("FLOWMESH_RESP_DIFF_N"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for _, run := range []struct {
		proto string
		batch int // commands sent in one write before the replies are read
	}{{"2", 1}, {"3", 1}, {"2", 64}} {
		proto := run.proto
		t.Run(fmt.Sprintf("RESP%s/pipeline%d", proto, run.batch), func(t *testing.T) {
			redis := dialRESP(t, redisAddr, 10*time.Second)
			fm := dialRESP(t, s.RESPAddr().String(), 5*time.Second)
			for _, c := range []*redisConn{redis, fm} {
				if r := c.do([]string{"HELLO", proto}); reflect.TypeOf(r) == reflect.TypeOf(respErr("")) {
					t.Fatalf("HELLO %s: %v", proto, r)
				}
				if r := c.do([]string{"FLUSHDB"}); r != "OK" {
					t.Fatalf("FLUSHDB: %v", r)
				}
			}
			diffRun(t, redis, fm, seed, n, run.batch)
		})
	}
}

// diffRun sends n commands drawn with seed to both servers, batch at a
// time in one write (pipelined), and reports the replies that differ,
// with the commands that led to them.
func diffRun(t *testing.T, redis, fm *redisConn, seed uint64, n, batch int) {
	rng := rand.New(rand.NewPCG(seed, 0))
	var history []string
	fails := 0
	for i := 0; i < n; i += batch {
		cmds := make([][]string, min(batch, n-i))
		for j := range cmds {
			cmds[j] = diffCommand(rng)
		}
		want, got := redis.doAll(cmds), fm.doAll(cmds)
		for j, args := range cmds {
			history = append(history, strings.Join(args, " "))
			mode := diffModes[strings.ToLower(args[0])]
			if reflect.DeepEqual(diffNormalize(mode, got[j]), diffNormalize(mode, want[j])) {
				continue
			}
			fails++
			from := max(0, len(history)-30)
			t.Errorf("seed %d, command %d: %q\n redis:    %s\n flowmesh: %s\n last commands:\n  %s",
				seed, i+j, args, showReply(want[j]), showReply(got[j]), strings.Join(history[from:], "\n  "))
			if fails == 10 {
				t.Fatal("stopping after 10 differences")
			}
		}
	}
}

// startRedisServer starts Debian's redis-server without persistence and
// returns its address (startPeer).
func startRedisServer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	return startPeer(t, "redis-server", "FLOWMESH_REQUIRE_REDIS", "apt-get install redis-server", func(port int) []string {
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no"}
	})
}

// startPeer starts bin, a real server to compare FlowMesh with, with
// args(port) on a free port, stops it when the test ends, and returns its
// address once it accepts connections. Without bin on PATH the test
// skips (install says how to get it), unless the environment variable
// require is set: scripts/test sets it, so in CI these tests cannot skip.
func startPeer(t *testing.T, bin, require, install string, args func(port int) []string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		if os.Getenv(require) != "" {
			t.Fatalf("%s required (%s) but not on PATH", bin, require)
		}
		t.Skipf("%s not installed (%s)", bin, install)
	}
	port := freeTCPPort(t)
	cmd := exec.Command(path, args(port)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", bin, err)
		}
		time.Sleep(20 * time.Millisecond) // a child process's only readiness signal is its port
	}
}

// diffTemplates are the commands the differential test draws from. In an
// argument: K a key, V a value, N an integer, X a float, F a field, M a
// member, S a score, B a score bound, L a lex bound, T an expiry in
// seconds and Q one in milliseconds (far enough that no key expires
// during a run), P a glob
// pattern, O a type name.
//
// Left out: EXPIRE's GT and LT, whose answer for an equal time depends on
// whether a millisecond passed since the last EXPIRE (TestRedisCompat has
// them), and lex ranges on keys whose scores differ (undefined in Redis).
var diffTemplates = []string{
	"SET K V", "SET K V NX", "SET K V XX", "SET K V GET", "SET K V EX T", "SET K V KEEPTTL", "SET K V PX Q",
	"GET K", "GETDEL K", "GETEX K", "GETEX K EX T", "GETEX K PERSIST", "GETSET K V", "SETNX K V",
	"MGET K K K", "MSET K V K V", "MSETNX K V K V",
	"INCR K", "DECR K", "INCRBY K N", "DECRBY K N", "INCRBYFLOAT K X", "APPEND K V", "STRLEN K",
	"DEL K", "DEL K K", "EXISTS K K", "TYPE K", "RENAME K K", "RENAMENX K K",
	"EXPIRE K T", "PEXPIRE K Q", "EXPIRE K T NX", "EXPIRE K T XX",
	"TTL K", "PTTL K", "PERSIST K", "EXPIRE K N",
	"HSET K F V", "HSET K F V F V", "HSETNX K F V", "HGET K F", "HMGET K F F", "HDEL K F", "HDEL K F F",
	"HGETALL K", "HKEYS K", "HVALS K", "HINCRBY K F N", "HINCRBYFLOAT K F X", "HLEN K", "HEXISTS K F",
	"SADD K M", "SADD K M M M", "SREM K M", "SREM K M M", "SMEMBERS K", "SISMEMBER K M", "SCARD K",
	"SINTER K K", "SUNION K K", "SDIFF K K", "SINTER K",
	"ZADD K S M", "ZADD K S M S M", "ZADD K NX S M", "ZADD K XX S M", "ZADD K GT CH S M", "ZADD K LT CH S M",
	"ZADD K INCR S M", "ZADD K CH S M S M", "ZREM K M", "ZREM K M M", "ZSCORE K M", "ZINCRBY K X M",
	"ZCARD K", "ZRANK K M", "ZREVRANK K M",
	"ZRANGE K N N", "ZRANGE K N N WITHSCORES", "ZRANGE K N N REV", "ZREVRANGE K N N WITHSCORES",
	"ZRANGE K B B BYSCORE", "ZRANGE K B B BYSCORE LIMIT N N", "ZRANGE K B B BYSCORE REV WITHSCORES",
	// lx holds only 0 scores: lex ranges are defined on it.
	"ZADD lx 0 M", "ZADD lx 0 M 0 M", "ZREM lx M", "ZRANGE lx L L BYLEX", "ZRANGE lx L L BYLEX REV LIMIT N N",
	"ZRANGEBYLEX lx L L", "ZREVRANGEBYLEX lx L L", "ZRANGEBYLEX lx L L LIMIT N N",
	"ZRANGEBYSCORE K B B", "ZRANGEBYSCORE K B B WITHSCORES LIMIT N N", "ZREVRANGEBYSCORE K B B",
	"ZCOUNT K B B", "ZREMRANGEBYRANK K N N", "ZREMRANGEBYSCORE K B B", "ZMSCORE K M M M", "SMISMEMBER K M M",
	"ZREMRANGEBYLEX lx L L", "ZLEXCOUNT lx L L", "ZPOPMIN K", "ZPOPMAX K N", "ZPOPMIN K N",
	"DBSIZE", "SETEX K T V", "PSETEX K Q V", "EXPIREAT K N", "PEXPIREAT K N", "HMSET K F V F V",
	"KEYS P", "SCAN 0 MATCH P COUNT 1000", "SCAN 0 TYPE O COUNT 1000", "HSCAN K 0 MATCH P COUNT 1000",
	"SSCAN K 0 MATCH P COUNT 1000", "ZSCAN K 0 MATCH P COUNT 1000",
	"GET", "SET K", "NOSUCHCOMMAND K", "HSET K F", "ZADD K S", "SADD K", "MSET K", "EXISTS",
}

var (
	diffKeys    = []string{"a", "b", "c", "d"}
	diffValues  = []string{"1", "-5", "0", "10.5", "abc", "", "9223372036854775807", "-9223372036854775808", "1e3", "007", " 1", "3.0", "x y"}
	diffInts    = []string{"0", "1", "-1", "2", "3", "-3", "10", "9223372036854775807", "-9223372036854775808", "1.5", "x", ""}
	diffFloats  = []string{"0.1", "-0.2", "1", "1e3", "inf", "-inf", "nan", "abc", "0", "1.5e308", "3"}
	diffFields  = []string{"f1", "f2", "f3", ""}
	diffMembers = []string{"m1", "m2", "m3", "m4", "", "a"}
	diffScores  = []string{"1", "2", "2.5", "-1", "0", "+inf", "-inf", "1e3", "nan", "x", "3"}
	diffBounds  = []string{"-inf", "+inf", "0", "1", "(1", "2.5", "(2.5", "-1", "x", "(", "3"}
	diffLex     = []string{"-", "+", "[m1", "(m1", "[m3", "(m4", "[a", "m1", "[", "("}
	diffTTLs    = []string{"1000", "2000", "5000", "0", "-1", "x"}
	diffPTTLs   = []string{"1000000", "2000000", "5000000", "0", "-1", "x"}
	diffGlobs   = []string{"*", "a*", "?", "[a-b]", "[^a]", "\\a", "m*", "*1", "[", "f?", "*[a]*", "", "[a", "[^", "[a-]", "[m-"}
	diffTypes   = []string{"string", "hash", "set", "zset", "list", "nosuch"}
)

func diffCommand(rng *rand.Rand) []string {
	tmpl := strings.Fields(diffTemplates[rng.IntN(len(diffTemplates))])
	pick := func(pool []string) string { return pool[rng.IntN(len(pool))] }
	args := make([]string, len(tmpl))
	for i, w := range tmpl {
		switch {
		case i == 0:
			args[i] = w
		case w == "K":
			args[i] = pick(diffKeys)
		case w == "V":
			args[i] = pick(diffValues)
		case w == "N":
			args[i] = pick(diffInts)
		case w == "X":
			args[i] = pick(diffFloats)
		case w == "F":
			args[i] = pick(diffFields)
		case w == "M":
			args[i] = pick(diffMembers)
		case w == "S":
			args[i] = pick(diffScores)
		case w == "B":
			args[i] = pick(diffBounds)
		case w == "L":
			args[i] = pick(diffLex)
		case w == "T":
			args[i] = pick(diffTTLs)
		case w == "Q":
			args[i] = pick(diffPTTLs)
		case w == "P":
			args[i] = pick(diffGlobs)
		case w == "O":
			args[i] = pick(diffTypes)
		default:
			args[i] = w
		}
	}
	return args
}

// diffModes say how a command's reply is compared; absent: exactly.
var diffModes = map[string]string{
	"smembers": "sorted", "sinter": "sorted", "sunion": "sorted", "sdiff": "sorted",
	"hkeys": "sorted", "hvals": "sorted", "hgetall": "pairs",
	"ttl": "ttl", "pttl": "ttl", "keys": "sorted", "scan": "scan", "sscan": "scan",
	"hscan": "scanpairs", "zscan": "scanpairs",
}

// diffNormalize reduces a reply to what is compared: an error to its
// code, a remaining time to its sign, unordered arrays sorted.
func diffNormalize(mode string, v any) any {
	if e, ok := v.(respErr); ok {
		code, _, _ := strings.Cut(string(e), " ")
		return respErr(code)
	}
	switch mode {
	case "ttl":
		if n, ok := v.(int64); ok && n > 0 {
			return "positive"
		}
		return v
	case "sorted", "pairs", "scan":
		return normalize(mode, v)
	case "scanpairs":
		if arr, ok := v.([]any); ok && len(arr) == 2 {
			return normalize("pairs", arr[1])
		}
	}
	return v
}

// showReply prints a reply with its strings readable.
func showReply(v any) string {
	switch x := v.(type) {
	case []byte:
		return strconv.Quote(string(x))
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = showReply(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case respErr:
		return "error " + strconv.Quote(string(x))
	}
	return fmt.Sprintf("%#v", v)
}
