package server

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
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
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		feed(t, srv.Addr().String(), in)
		alive(t, srv.Addr().String(), "PING\r\n", "PONG")
	})
}

func FuzzRESPSession(f *testing.F) {
	for _, s := range respSeeds {
		f.Add([]byte(s))
	}
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		feed(t, srv.RESPAddr().String(), in)
		alive(t, srv.RESPAddr().String(), "PING\r\n", "+PONG")
	})
}

// feed sends in on a new connection, ends the client's side and reads
// until the node closes the connection or goes quiet. Whatever the node
// answers is fine; the connection must not hang the node.
func feed(t *testing.T, addr string, in []byte) {
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
func alive(t *testing.T, addr, ping, want string) {
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
