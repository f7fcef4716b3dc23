package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRedisCompat runs one script of commands against FlowMesh's Redis
// port and against a real redis-server (Debian's, started here) and
// compares the replies. scripts/test installs redis-server and sets
// FLOWMESH_REQUIRE_REDIS=1, so in CI this test cannot skip
// (startRedisServer).
func TestRedisCompat(t *testing.T) {
	redis := dialRESP(t, startRedisServer(t), 10*time.Second)

	s := startServer(t, Config{RESPAddr: "127.0.0.1:0"})
	fm := dialRESP(t, s.RESPAddr().String(), 5*time.Second)

	// One database: SELECT of another is an error here (Redis has 16).
	if r := fm.do([]string{"SELECT", "1"}); r != respErr("ERR DB index is out of range") {
		t.Errorf("SELECT 1: %#v", r)
	}
	for i, step := range redisScript {
		args := strings.Fields(step.cmd)
		for j, a := range args {
			args[j] = strings.ReplaceAll(a, "␣", " ")
		}
		want := redis.do(args)
		got := fm.do(args)
		if step.mode != "exact" {
			want, got = normalize(step.mode, want), normalize(step.mode, got)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("step %d: %s\n redis:    %#v\n flowmesh: %#v", i, step.cmd, want, got)
		}
	}
}

// redisScript is the comparison. Modes: exact; sorted (an array's
// elements in any order); pairs (a map or flat field-value array in any
// order); scan (SCAN's keys, cursor ignored); kind (only the reply's type).
var redisScript = []struct{ cmd, mode string }{
	{"PING", "exact"},
	{"PING hello", "exact"},
	{"ECHO hi", "exact"},
	{"SELECT 0", "exact"},
	{"FLUSHDB", "exact"},
	{"DBSIZE", "exact"},
	// Strings.
	{"SET k v", "exact"},
	{"GET k", "exact"},
	{"GET missing", "exact"},
	{"SET k v2 NX", "exact"},
	{"SET k v3 XX", "exact"},
	{"SET nx v XX", "exact"},
	{"SET k v4 GET", "exact"},
	{"SET k v5 EX 1000", "exact"},
	{"TTL k", "exact"},
	{"SET k v6 KEEPTTL", "exact"},
	{"TTL k", "exact"},
	{"SET k v7", "exact"},
	{"TTL k", "exact"},
	{"SET past v", "exact"},
	{"SET past v2 EXAT 1 GET", "exact"},
	{"EXISTS past", "exact"},
	{"SET past v NX PXAT 1", "exact"},
	{"EXISTS past", "exact"},
	{"SET k v EX 0", "exact"},
	{"SET k v EX -1", "exact"},
	{"SET k v EX abc", "exact"},
	{"SET k v PX 100 EX 100", "exact"},
	{"SET k v NX XX", "exact"},
	{"SET k v BOGUS", "exact"},
	{"SETNX k other", "exact"},
	{"SETNX fresh one", "exact"},
	{"GETDEL fresh", "exact"},
	{"GETDEL fresh", "exact"},
	{"GETEX k EX 500", "exact"},
	{"TTL k", "exact"},
	{"GETEX k PERSIST", "exact"},
	{"TTL k", "exact"},
	{"MSET a 1 b 2 c 3", "exact"},
	{"MGET a b c missing", "exact"},
	{"MSET a", "exact"},
	{"MSETNX a 9 z 9", "exact"},
	{"MSETNX y 9 z 9", "exact"},
	{"INCR a", "exact"},
	{"INCRBY a 10", "exact"},
	{"DECR a", "exact"},
	{"DECRBY a 5", "exact"},
	{"INCR k", "exact"},
	{"INCRBY a x", "exact"},
	{"SET big 9223372036854775807", "exact"},
	{"INCR big", "exact"},
	{"INCRBYFLOAT f 1.5", "exact"},
	{"INCRBYFLOAT f 0.25", "exact"},
	{"INCRBYFLOAT f abc", "exact"},
	{"APPEND s hello", "exact"},
	{"APPEND s ␣world", "exact"},
	{"GET s", "exact"},
	{"STRLEN s", "exact"},
	{"STRLEN missing", "exact"},
	{"GET", "exact"},
	{"SET onlykey", "exact"},
	// Keys.
	{"EXISTS a b missing a", "exact"},
	{"DEL a b missing", "exact"},
	{"EXISTS a", "exact"},
	{"TYPE c", "exact"},
	{"TYPE missing", "exact"},
	{"RENAME c c2", "exact"},
	{"GET c2", "exact"},
	{"RENAME missing x", "exact"},
	{"RENAMENX c2 s", "exact"},
	{"EXPIRE c2 100", "exact"},
	{"TTL c2", "exact"},
	{"EXPIRE c2 200 NX", "exact"},
	{"EXPIRE c2 200 XX", "exact"},
	{"EXPIRE c2 100 GT", "exact"},
	{"EXPIRE c2 300 GT", "exact"},
	{"EXPIRE c2 50 LT", "exact"},
	{"TTL c2", "exact"},
	{"PERSIST c2", "exact"},
	{"PERSIST c2", "exact"},
	{"TTL c2", "exact"},
	{"TTL missing", "exact"},
	{"PTTL missing", "exact"},
	{"PEXPIRE c2 100000", "exact"},
	{"EXPIRE c2 abc", "exact"},
	{"EXPIRE missing 10", "exact"},
	{"EXPIRE c2 10 NX XX", "exact"},
	{"EXPIREAT c2 1", "exact"},
	{"EXISTS c2", "exact"},
	{"SET gone v PX 1", "exact"},
	// Hashes.
	{"HSET h f1 v1 f2 v2", "exact"},
	{"HSET h f1 v1b f3 v3", "exact"},
	{"HGET h f1", "exact"},
	{"HGET h nope", "exact"},
	{"HGET missing f", "exact"},
	{"HMGET h f1 nope f3", "exact"},
	{"HLEN h", "exact"},
	{"HEXISTS h f2", "exact"},
	{"HEXISTS h nope", "exact"},
	{"HGETALL h", "pairs"},
	{"HKEYS h", "sorted"},
	{"HVALS h", "sorted"},
	{"HDEL h f2 nope", "exact"},
	{"HINCRBY h n 5", "exact"},
	{"HINCRBY h f1 1", "exact"},
	{"HINCRBYFLOAT h fl 2.5", "exact"},
	{"HSETNX h f1 x", "exact"},
	{"HSETNX h f9 x", "exact"},
	{"HMSET h a 1 b 2", "exact"},
	{"HSET h f1", "exact"},
	{"HGET s f", "exact"},
	{"HDEL h f1 f3 n fl f9 a b", "exact"},
	{"EXISTS h", "exact"},
	{"TYPE h", "exact"},
	// Sets.
	{"SADD s1 a b c", "exact"},
	{"SADD s1 a d", "exact"},
	{"SADD s2 c d e", "exact"},
	{"SCARD s1", "exact"},
	{"SISMEMBER s1 a", "exact"},
	{"SISMEMBER s1 z", "exact"},
	{"SMEMBERS s1", "sorted"},
	{"SINTER s1 s2", "sorted"},
	{"SUNION s1 s2", "sorted"},
	{"SDIFF s1 s2", "sorted"},
	{"SINTER s1 missing", "sorted"},
	{"SREM s1 a z", "exact"},
	{"SADD s hello", "exact"},
	{"TYPE s1", "exact"},
	{"SMEMBERS missing", "exact"},
	// Sorted sets.
	{"ZADD z 1 a 2 b 3 c", "exact"},
	{"ZADD z 1.5 a", "exact"},
	{"ZADD z CH 2 a 4 d", "exact"},
	{"ZADD z NX 9 a", "exact"},
	{"ZADD z XX 10 zz", "exact"},
	{"ZADD z GT 1 a", "exact"},
	{"ZADD z GT CH 5 a", "exact"},
	{"ZADD z LT CH 0.5 a", "exact"},
	{"ZADD z INCR 2 a", "exact"},
	{"ZADD z NX XX 1 a", "exact"},
	{"ZADD z GT LT 1 a", "exact"},
	{"ZADD z INCR 1 a 2 b", "exact"},
	{"ZADD z 1", "exact"},
	{"ZADD z x a", "exact"},
	{"ZSCORE z a", "exact"},
	{"ZSCORE z nope", "exact"},
	{"ZINCRBY z 0.1 b", "exact"},
	{"ZCARD z", "exact"},
	{"ZRANK z c", "exact"},
	{"ZREVRANK z c", "exact"},
	{"ZRANK z nope", "exact"},
	{"ZRANGE z 0 -1", "exact"},
	{"ZRANGE z 0 -1 WITHSCORES", "exact"},
	{"ZRANGE z 1 2", "exact"},
	{"ZRANGE z -2 -1", "exact"},
	{"ZRANGE z 5 10", "exact"},
	{"ZRANGE z 0 -1 REV", "exact"},
	{"ZRANGE z (2 4 BYSCORE", "exact"},
	{"ZRANGE z 4 (2 BYSCORE REV WITHSCORES", "exact"},
	{"ZRANGE z -inf +inf BYSCORE LIMIT 1 2", "exact"},
	{"ZRANGE z 0 -1 LIMIT 0 1", "exact"},
	{"ZREVRANGE z 0 1", "exact"},
	{"ZRANGEBYSCORE z 2 +inf WITHSCORES", "exact"},
	{"ZRANGEBYSCORE z a b", "exact"},
	{"ZREVRANGEBYSCORE z +inf 2", "exact"},
	{"ZCOUNT z 2 3", "exact"},
	{"ZCOUNT z (2 +inf", "exact"},
	{"ZADD lex 0 apple 0 banana 0 cherry 0 date", "exact"},
	{"ZRANGEBYLEX lex [banana (date", "exact"},
	{"ZRANGEBYLEX lex - +", "exact"},
	{"ZRANGE lex + [c BYLEX REV", "exact"},
	{"ZRANGEBYLEX lex a b", "exact"},
	{"ZREVRANGEBYLEX lex + -", "exact"},
	{"ZPOPMIN z", "exact"},
	{"ZPOPMAX z 2", "exact"},
	{"ZPOPMIN z -1", "exact"},
	{"ZREM z b nope", "exact"},
	{"ZRANGE z 0 -1 WITHSCORES", "exact"},
	{"ZADD s 1 a", "exact"},
	{"ZADD neg -1 a -2.5 b 0 c", "exact"},
	{"ZRANGE neg 0 -1 WITHSCORES", "exact"},
	// Scans.
	{"FLUSHDB", "exact"},
	{"MSET user:1 a user:2 b other c", "exact"},
	{"HSET user:h f v", "exact"},
	{"SCAN 0 COUNT 100", "scan"},
	{"SCAN 0 MATCH user:* COUNT 100", "scan"},
	{"SCAN 0 TYPE hash COUNT 100", "scan"},
	{"SCAN 0 COUNT 100 TYPE string MATCH user:?", "scan"},
	{"KEYS user:*", "sorted"},
	{"KEYS *", "sorted"},
	{"KEYS u[sx]er:[^2]", "sorted"},
	{"ZADD zinf +inf hi -inf lo 1.5 mid", "exact"},
	{"ZSCAN zinf 0", "scan"}, // scores as Redis prints them: inf, -inf
	{"HSET hs f v", "exact"},
	{"HSCAN hs 0", "scan"},
	{"HSCAN user:h 0", "scan"},
	{"SCAN x", "exact"},
	// Bad input.
	{"NOSUCHCOMMAND a b", "exact"},
	{"GET a b", "exact"},
	{"HGETALL", "exact"},
	{"ZRANGE z", "exact"},
	{"DBSIZE", "exact"},
	// RESP3.
	{"HELLO 3", "kind"},
	{"GET missing", "exact"},
	{"HGETALL user:h", "exact"},
	{"SMEMBERS missing", "exact"},
	{"ZADD z3 1 a 2 b", "exact"},
	{"ZSCORE z3 a", "exact"},
	{"ZRANGE z3 0 -1 WITHSCORES", "exact"},
	{"ZPOPMIN z3 1", "exact"},
	{"HELLO 2", "kind"},
	{"HELLO 4", "exact"},
}

// reply is a decoded RESP value: string (simple), respErr, int64, []byte
// (bulk), nil, []any (array, set, push), respMap, float64, bool.
type respErr string

type respMap []any // flat: key, value, ...

type redisConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRESP(t *testing.T, addr string, within time.Duration) *redisConn {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return &redisConn{t: t, c: c, br: bufio.NewReader(c)}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // a child process's only readiness signal is its port
	}
}

func (r *redisConn) do(args []string) any { return r.doAll([][]string{args})[0] }

// doAll sends the commands in one write and reads their replies.
func (r *redisConn) doAll(cmds [][]string) []any {
	r.t.Helper()
	var b strings.Builder
	for _, args := range cmds {
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	r.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.c.Write([]byte(b.String())); err != nil {
		r.t.Fatal(err)
	}
	out := make([]any, len(cmds))
	for i, args := range cmds {
		v, err := readReply(r.br)
		if err != nil {
			r.t.Fatalf("%v: %v", args, err)
		}
		out[i] = v
	}
	return out
}

func readReply(br *bufio.Reader) (any, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("bad reply line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return respErr(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '_':
		return nil, nil
	case '#':
		return body == "t", nil
	case ',':
		return strconv.ParseFloat(strings.Replace(body, "inf", "Inf", 1), 64)
	case '$', '=':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, err
		}
		return buf[:n], nil
	case '*', '~', '%', '>':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		if kind == '%' {
			n *= 2
		}
		out := make([]any, 0, n)
		for i := 0; i < n; i++ {
			v, err := readReply(br)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		if kind == '%' {
			return respMap(out), nil
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", line)
}

func normalize(mode string, v any) any {
	str := func(x any) string { return fmt.Sprintf("%q", x) }
	switch mode {
	case "kind":
		return fmt.Sprintf("%T", v)
	case "sorted":
		arr, ok := v.([]any)
		if !ok {
			return v
		}
		out := make([]string, len(arr))
		for i, x := range arr {
			out[i] = str(x)
		}
		slices.Sort(out)
		return out
	case "pairs":
		var arr []any
		switch x := v.(type) {
		case []any:
			arr = x
		case respMap:
			arr = x
		default:
			return v
		}
		var out []string
		for i := 0; i+1 < len(arr); i += 2 {
			out = append(out, str(arr[i])+"="+str(arr[i+1]))
		}
		slices.Sort(out)
		return out
	case "scan":
		arr, ok := v.([]any)
		if !ok || len(arr) != 2 {
			return v
		}
		return normalize("sorted", arr[1])
	}
	return v
}

func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
