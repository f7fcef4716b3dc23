package server

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/protocol"
)

// The parsers have fuzz targets of their own (protocol, protocol/resp);
// these drive whatever a client can send through a real node: parser,
// dispatch, every verb's argument handling and the engines behind them.
// One node serves a whole fuzzing run, so state left by one input (topics,
// queues, keys, subscriptions) meets the next. An input passes when the
// node, given the input on a fresh connection followed by the client's
// end of stream, is still alive and answers a PING on another connection.
// A panic anywhere in the node fails the run, as it would kill the
// process.

// nativeSeeds are the nc transcripts of docs/protocol.md, a few per input,
// and some inputs they do not show.
var nativeSeeds = []string{
	"PING\r\n",
	"CONNECT {\"verbose\":true,\"headers\":true}\r\nPING\r\n",
	"SUB orders.* 1\r\nPUB orders.eu 5\r\nhello\r\nPUB orders.us reply.42 2\r\nhi\r\nUNSUB 1\r\n",
	"SUB jobs workers 2\r\npub jobs 3\r\nabc\r\n",
	"HPUB orders.eu 40 45\r\nNATS/1.0\r\ntrace_id: 4bf92f3577b34da6\r\n\r\nhello\r\n",
	"FROB x\r\nSUB orders..x 3\r\nPUB orders.eu abc\r\n",
	"TCREATE orders.events partitions=2 retention=7d\r\nSWRITE orders.events key=cust-42 14\r\n{\"order\":1001}\r\n",
	"HSWRITE orders.events key=cust-42 40 54\r\nNATS/1.0\r\ntrace_id: 4bf92f3577b34da6\r\n\r\n{\"order\":1002}\r\n",
	"SWRITE orders.events partition=0 producer=app-1 seq=1 5\r\nhello\r\nSWRITE orders.events partition=0 producer=app-1 seq=1 5\r\nhello\r\n",
	"SWRITE orders.events partition=9 2\r\nno\r\nSREAD orders.events 1 0 max=10\r\nSSEEK orders.events 1 latest\r\n",
	"SSUB orders.events billing 1 window=2\r\nSACK 1 2\r\nSCOMMIT 1 1 2\r\nSCOMMIT 1 1 99\r\nSHB 1\r\nSUNSUB 1\r\n",
	"GINFO orders.events billing\r\nGRESET orders.events billing earliest 1\r\nGLIST orders.events\r\nGDELETE orders.events billing\r\n",
	"TALTER orders.events partitions=1\r\nTINFO orders.events\r\nTLIST\r\nTDELETE orders.events\r\n",
	"QCREATE emails.send max_attempts=2 visibility=30s backoff_base=10s\r\nQPUT emails.send 22\r\n{\"to\":\"a@example.com\"}\r\n",
	"HQPUT emails.send key=order-7 priority=5 40 62\r\nNATS/1.0\r\ntrace_id: 4bf92f3577b34da6\r\n\r\n{\"to\":\"b@example.com\"}\r\n",
	"QPUT emails.send delay=1h 5\r\nlater\r\nQWORKER mailer emails.send concurrency=4\r\nQGET emails.send max=5 wait=10ms\r\n",
	"QACK emails.send 1 1\r\nQNACK emails.send 0 1 9\r\nsmtp down\r\nQTOUCH emails.send 1 1\r\nQHB mailer\r\n",
	"QBROWSE emails.send delayed limit=1\r\nQNACK emails.send 0 7 fail 3\r\nbad\r\nQWORKERS\r\nQLIST\r\nQINFO emails.send\r\n",
	"QPAUSE emails.send\r\nQRESUME emails.send\r\nQREDRIVE emails.send all\r\nQPURGE emails.send\r\nQALTER emails.send max_attempts=3\r\nQDELETE emails.send\r\n",
	"QCREATE thumbs visibility=30s\r\nQPUT thumbs 5\r\nimg-1\r\nQSUB thumbs w1 window=2\r\nQACK thumbs 0 1\r\nQNACK thumbs 1 1 delay=1m 7\r\ntimeout\r\nQUNSUB w1\r\n",
	"KV SET user:234 data EX 3600\r\nKV GET user:234\r\nKV TTL user:234\r\nKV GET nobody\r\n",
	"KV HSET user:234:profile name ann plan pro\r\nKV HGETALL user:234:profile\r\nKV ZADD board 30 ann 10 bob\r\nKV ZRANGE board 0 -1 WITHSCORES\r\n",
	"KV INCR user:234\r\nKV SCAN 0 MATCH user:*\r\nKV SADD s a b c\r\nKV SINTER s s\r\nKV EXPIRE s 0\r\n",
	"KVB 38\r\n*3\r\n$3\r\nSET\r\n$4\r\nnote\r\n$9\r\nhas space\r\nKV HGET user:234 name\r\n",
}

// respSeeds are commands as redis-cli sends them, and inline ones.
var respSeeds = []string{
	"*1\r\n$4\r\nPING\r\n",
	"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
	"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*4\r\n$4\r\nZADD\r\n$1\r\nz\r\n$1\r\n1\r\n$1\r\na\r\n",
	"SET k 1 EX 10\r\nINCRBY k 5\r\nGETEX k PERSIST\r\nTYPE k\r\nRENAME k k2\r\n",
	"HSET h f v\r\nHINCRBY h n 2\r\nHSCAN h 0 COUNT 1\r\nSADD s a\r\nSSCAN s 0\r\n",
	"ZADD z GT CH 2 a\r\nZRANGE z (1 +inf BYSCORE LIMIT 0 1 WITHSCORES\r\nZRANGE z [a + BYLEX REV\r\nZPOPMIN z 2\r\n",
	"SCAN 0 MATCH * COUNT 10 TYPE string\r\nKEYS *\r\nDBSIZE\r\nINFO\r\nCLIENT SETNAME x\r\nCOMMAND COUNT\r\n",
	"MULTI\r\nSELECT 1\r\nFLUSHDB\r\nECHO hi\r\nQUIT\r\n",
}

// fuzzNode is one node per test binary run, shared by the inputs.
var fuzzNode struct {
	once sync.Once
	srv  *Server
}

// fuzzServer starts the node on first use. It is not stopped with f (the
// next fuzz target of the run uses it too); the process ends it. Its log
// is discarded: the fuzzing engine forbids f.Log inside the target.
func fuzzServer(f *testing.F) *Server {
	fuzzNode.once.Do(func() {
		cfg := Config{Addr: "127.0.0.1:0", HTTPAddr: "off", RESPAddr: "127.0.0.1:0", InMemory: true, MaxPayload: 64 << 10}
		s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil {
			err = s.Start()
		}
		if err != nil {
			f.Fatal(err)
		}
		fuzzNode.srv = s
	})
	return fuzzNode.srv
}

func FuzzNativeSession(f *testing.F) {
	for _, s := range nativeSeeds {
		f.Add([]byte(s))
	}
	fuzzPort(f, (*Server).Addr, "PONG", asIs)
}

func FuzzRESPSession(f *testing.F) {
	for _, s := range respSeeds {
		f.Add([]byte(s))
	}
	fuzzPort(f, (*Server).RESPAddr, "+PONG", asIs)
}

// fuzzPort runs each input, turned into bytes by build, on a new
// connection to one port of the shared node, then checks on another
// that the port still answers PING with pong.
func fuzzPort(f *testing.F, port func(*Server) net.Addr, pong string, build func([]byte) []byte) {
	addr := port(fuzzServer(f)).String()
	f.Fuzz(func(t *testing.T, in []byte) {
		feed(t, addr, build(in))
		alive(t, addr, "PING\r\n", pong)
	})
}

func asIs(in []byte) []byte { return in }

// feed sends in on a new connection, ends the client's side and reads
// until the node closes the connection or goes quiet. Whatever the node
// answers is fine; the connection must not hang the node.
func feed(t testing.TB, addr string, in []byte) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(in); err != nil {
		return // the node closed the connection on a bad frame: fine
	}
	_ = c.(*net.TCPConn).CloseWrite()
	// Read briefly: a blocking verb (QGET wait=, a subscription) keeps the
	// connection open, and the node must cope with the client going away.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _ = io.Copy(io.Discard, c)
}

// alive checks, on a new connection, that the node still answers.
func alive(t testing.TB, addr, ping, want string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("node gone after the input: dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(ping)); err != nil {
		t.Fatalf("node gone after the input: %v", err)
	}
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("node did not answer %q after the input: %v", strings.TrimSpace(ping), err)
		}
		if strings.HasPrefix(line, want) {
			return
		}
	}
}

// FuzzNativeCommands builds well-formed commands from the fuzzer's bytes,
// so that every verb's argument handling sees odd values (negative,
// huge, non-numeric, unknown options, names of things that do not exist
// or were just deleted) more often than byte mutation would make them:
// each byte picks a verb, an argument count, arguments from a dictionary,
// or a payload size.
func FuzzNativeCommands(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("streams and queues and keys"))
	f.Add([]byte{200, 17, 33, 90, 1, 1, 1, 250, 3, 77, 12, 5, 5, 9, 100, 140})
	fuzzPort(f, (*Server).Addr, "PONG", commandsFrom)
}

// fuzzVerbs are the verbs a client sends, with the arguments they take
// before the payload size (sized) and the KV commands to follow KV.
var fuzzVerbs = func() []protocol.Spec {
	var out []protocol.Spec
	for _, set := range [][]protocol.Spec{protocol.CoreServerSpecs(), protocol.StreamSpecs(), protocol.QueueSpecs(), protocol.KVSpecs()} {
		for _, s := range set {
			if s.Name != "CONNECT" { // raw JSON: the plain fuzzer covers it
				out = append(out, s)
			}
		}
	}
	return out
}()

var fuzzKVCommands = strings.Fields(`SET GET GETDEL GETEX DEL EXISTS INCR INCRBY INCRBYFLOAT DECR DECRBY APPEND
	STRLEN MGET MSET SETNX HSET HGET HMGET HDEL HGETALL HKEYS HVALS HINCRBY HLEN HEXISTS SADD SREM SMEMBERS
	SISMEMBER SCARD SINTER SUNION SDIFF ZADD ZREM ZSCORE ZINCRBY ZCARD ZRANK ZREVRANK ZRANGE ZRANGEBYSCORE
	ZCOUNT ZPOPMIN ZPOPMAX TYPE RENAME EXPIRE PEXPIRE EXPIREAT TTL PTTL PERSIST SCAN HSCAN SSCAN ZSCAN KEYS
	DBSIZE FLUSHDB ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREMRANGEBYLEX ZLEXCOUNT ZMSCORE SMISMEMBER HINCRBYFLOAT
	NOSUCH`)

var fuzzArgs = strings.Fields(`t1 t2 q1 q2 k k2 h z s g w1 orders.* > a.b 1 2 3 4 5 0 -1 -5 16 1000 100000
	18446744073709551615 9223372036854775807 -9223372036854775808 99999999999999999999 1.5 -0.0 nan inf -inf 1e400
	0x10 0x1p-1074 1e4000 007 +1 (1 ( [a - + partitions=2 partitions=0 partitions=100000 retention=1h retention=-1s retention_bytes=1 max=5 max=0
	max=-1 max=100000000 max_bytes=1 wait=10ms wait=-1s window=2 window=0 window=-3 delay=1s delay=-1s delay=1y
	run_at=0 priority=9 priority=-1 key=x partition=0 partition=9 partition=-1 producer=p seq=1 seq=0
	visibility=1s visibility=0s max_attempts=1 max_attempts=0 backoff_base=1ms dedup=1m limit=1 limit=0 offset=0
	concurrency=0 concurrency=4 earliest latest ready delayed inflight dead all fail 2026-01-01T00:00:00Z
	@0 @-1 WITHSCORES REV BYSCORE BYLEX LIMIT EX PX EXAT KEEPTTL NX XX GT LT CH INCR MATCH COUNT TYPE
	GET PERSIST ( (1 [a + - * ? [ ] = ==`)

// choices hands out the fuzz input's bytes one at a time, each as a
// choice among n; 0 once the input is spent.
type choices []byte

func (c *choices) next(n int) int {
	if len(*c) == 0 {
		return 0
	}
	b := int((*c)[0])
	*c = (*c)[1:]
	return b % n
}

// commandsFrom turns fuzz bytes into a run of commands.
func commandsFrom(in []byte) []byte {
	c := choices(in)
	var out []byte
	for len(c) > 0 {
		s := fuzzVerbs[c.next(len(fuzzVerbs))]
		out = append(out, s.Name...)
		nargs := s.MinArgs
		if span := s.MaxArgs - s.MinArgs; span > 0 {
			nargs += c.next(min(span, 6) + 1)
		}
		for i := 0; i < nargs; i++ {
			out = append(out, ' ')
			if s.Name == "KV" && i == 0 {
				out = append(out, fuzzKVCommands[c.next(len(fuzzKVCommands))]...)
				continue
			}
			out = append(out, fuzzArgs[c.next(len(fuzzArgs))]...)
		}
		if s.Shape == protocol.Sized {
			n := c.next(40)
			payload := strings.Repeat("p", n)
			if s.Name == "KVB" && n%2 == 0 {
				payload = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
			}
			out = fmt.Appendf(out, " %d\r\n%s", len(payload), payload)
		}
		out = append(out, "\r\n"...)
	}
	return out
}

// FuzzRESPCommands is FuzzNativeCommands for the Redis port: each
// command a RESP array of a command name (the KV commands and the
// port's own) and arguments from the dictionary.
func FuzzRESPCommands(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("sorted sets and hashes"))
	fuzzPort(f, (*Server).RESPAddr, "+PONG", respCommandsFrom)
}

// fuzzRESPNames are the Redis port's command names: the KV commands and
// the port's own.
var fuzzRESPNames = append(slices.Clone(fuzzKVCommands), strings.Fields(`PING ECHO SELECT HELLO CLIENT INFO COMMAND QUIT MULTI`)...)

func respCommandsFrom(in []byte) []byte {
	c := choices(in)
	var out []byte
	for len(c) > 0 {
		args := []string{fuzzRESPNames[c.next(len(fuzzRESPNames))]}
		for n := c.next(7); n > 0; n-- {
			args = append(args, fuzzArgs[c.next(len(fuzzArgs))])
		}
		out = fmt.Appendf(out, "*%d\r\n", len(args))
		for _, a := range args {
			out = fmt.Appendf(out, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	return out
}
