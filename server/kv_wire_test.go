package server

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestKVWire: the native KV verbs as a person with nc uses them, the
// binary form an SDK uses, and the native error catalog for refused
// commands; the connection stays open throughout.
func TestKVWire(t *testing.T) {
	s := startServer(t, Config{})
	w := dial(t, s)
	w.send("KV SET user:234 data EX 3600\r\n")
	w.expect("RES 5", "+OK", "")
	w.send("KV GET user:234\r\n")
	w.expect("RES 10", "$4", "data", "")
	w.send("KV GET nobody\r\n")
	w.expect("RES 3", "_", "")
	w.send("KV TTL user:234\r\n")
	w.expect("RES 7", ":3600", "")
	w.send("KV HSET h f1 v1 f2 v2\r\nKV HGETALL h\r\n")
	w.expect("RES 4", ":2", "", "RES 36", "%2", "$2", "f1", "$2", "v1", "$2", "f2", "$2", "v2", "")
	w.send("KV ZADD z 1.5 a\r\nKV ZSCORE z a\r\n")
	w.expect("RES 4", ":1", "", "RES 6", ",1.5", "")
	// KVB: a RESP array in the payload; a value with spaces and a CRLF.
	cmd := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8\r\na b\r\nc d\r\n"
	w.send("KVB 34\r\n" + cmd + "\r\nKV GET k\r\n")
	w.expect("RES 5", "+OK", "", "RES 14", "$8", "a b", "c d", "")
	// Refused commands get the native catalog.
	w.send("KV INCR h\r\n")
	w.expect("-ERR 'Wrong Type: Operation against a key holding the wrong kind of value'")
	w.send("KV INCR k\r\n")
	w.expect("-ERR 'Invalid Value: value is not an integer or out of range'")
	w.send("KV RENAME nobody x\r\n")
	w.expect("-ERR 'Not Found: no such key'")
	w.send("KV GET\r\n")
	w.expect(`-ERR 'Invalid Arguments: wrong number of arguments for "get" command'`)
	w.send("KV NOSUCH a\r\n")
	w.expect(`-ERR 'Invalid Arguments: unknown command "NOSUCH", with args beginning with: "a"'`)
	w.send("KV HELLO 3\r\n")
	w.expect("-ERR 'Invalid Arguments: hello is a command of the Redis port, not of KV'")
	w.send("KVB 5\r\nhello\r\n")
	w.expect("-ERR 'Invalid Arguments: KVB payload is not one RESP array of bulk strings'")
	w.flush()
}

// TestKVHeldRepliesThenClose: on a node with its KV on disk (interval),
// replies of KV writes wait for the loop's barrier; a command that closes
// the connection in the same read comes after them, each reply once, on
// both ports: a fatal error on the native port, QUIT on the Redis port.
func TestKVHeldRepliesThenClose(t *testing.T) {
	s := startServer(t, Config{RESPAddr: "127.0.0.1:0", Fsync: "interval"}, func(s *Server) {
		s.cfg.InMemory, s.cfg.DataDir = false, t.TempDir()
	})
	if s.kv.SyncsEach() {
		t.Fatal("the node fsyncs each KV write under interval")
	}
	w := dial(t, s)
	w.send("KV SET a 1\r\nKV INCR n\r\nPUB x 99999999\r\n")
	w.expect("RES 5", "+OK", "", "RES 4", ":1", "")
	w.expectPrefix("-ERR 'Maximum Payload Violation")
	w.expectClosed()

	c, err := net.Dial("tcp", s.RESPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("SET b 2\r\nINCR n\r\nQUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if want := "+OK\r\n:2\r\n+OK\r\n"; err != nil || string(got) != want {
		t.Fatalf("Redis port read %q (%v), want %q", got, err, want)
	}
}
