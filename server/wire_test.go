package server

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestTranscript is the session docs/protocol.md shows, typed as with nc.
func TestTranscript(t *testing.T) {
	s := startServer(t, Config{})
	w := dial(t, s)
	w.send("sub greet.* 1\nPUB greet.joe 5\nhello\n")
	w.expect("MSG greet.joe 1 5", "hello")
	w.send("PUB greet.ann reply.x 2\r\nhi\r\nPING\r\n")
	w.expect("MSG greet.ann 1 reply.x 2", "hi", "PONG")
	w.send("HPUB greet.bob 26 31\r\nNATS/1.0\r\ntrace_id: t1\r\n\r\nhello\r\n")
	// This client did not ask for headers in CONNECT, so it gets the
	// payload only, as from nats-server.
	w.expect("MSG greet.bob 1 5", "hello")
	w.send("UNSUB 1\r\nPUB greet.joe 1\r\nx\r\nPING\r\n")
	w.expect("PONG")
}

func TestHeadersDelivered(t *testing.T) {
	s := startServer(t, Config{})
	w := dial(t, s)
	w.send("CONNECT {\"headers\":true,\"verbose\":true}\r\n")
	w.expect("+OK")
	w.send("SUB a 9\r\nHPUB a r 26 31\r\nNATS/1.0\r\ntrace_id: t1\r\n\r\nhello\r\n")
	w.expect("+OK", "HMSG a 9 r 26 31", "NATS/1.0", "trace_id: t1", "", "hello", "+OK")
}

// TestNotPedantic: a client that connects with pedantic off (as every
// NATS client does) may publish to any subject without an error, as with
// nats-server: a wildcard is a literal token, an empty token reaches
// nobody. Subscriptions are checked either way.
func TestNotPedantic(t *testing.T) {
	s := startServer(t, Config{})
	w := dial(t, s)
	w.send("CONNECT {\"pedantic\":false}\r\nSUB a.> 1\r\nSUB a.b 2\r\nSUB * 3\r\n")
	w.send("PUB a.* r.* 1\r\nx\r\nPUB a..b 1\r\ny\r\nPUB .a 1\r\ny\r\nPUB a.b 1\r\nz\r\nPING\r\n")
	w.expect("MSG a.* 1 r.* 1", "x", "MSG a.b 1 1", "z", "MSG a.b 2 1", "z", "PONG")
	w.send("SUB a..b 4\r\n")
	w.expect(`-ERR 'Invalid Subject: "a..b"'`)
	// A queue group name is any token, wildcards and dots included.
	w.send("SUB q.z q.* 5\r\nSUB r.z .x..> 6\r\nPUB q.z 1\r\nv\r\nPUB r.z 1\r\nw\r\nPING\r\n")
	w.expect("MSG q.z 5 1", "v", "MSG r.z 6 1", "w", "PONG")
}

// TestBadInputKeepsSession: errors on complete lines are answered and the
// connection stays usable, as a person in telnet expects.
func TestBadInputKeepsSession(t *testing.T) {
	s := startServer(t, Config{})
	w := dial(t, s)
	cases := []struct{ send, want string }{
		{"FOO bar\r\n", `-ERR 'Unknown Protocol Operation: "FOO"'`},
		{"SUB\r\n", `-ERR 'Invalid Arguments: SUB takes 2 to 3 arguments, got 0'`},
		{"SUB a..b 1\r\n", `-ERR 'Invalid Subject: "a..b"'`},
		{"SUB a.>.b 1\r\n", `-ERR 'Invalid Subject: "a.>.b"'`},
		{"PUB a.* 1\r\nx\r\n", `-ERR 'Invalid Publish Subject: "a.*"'`}, // pedantic until CONNECT says not
		{"PUB a a.> 1\r\nx\r\n", `-ERR 'Invalid Publish Subject: reply subject "a.>"'`},
		{"UNSUB 1 x\r\n", ""}, // unknown sid: ignored like nats-server outside verbose mode
		{"HPUB a 2 2\r\nhi\r\n", `-ERR 'Invalid Header: header block must start with NATS/1.0'`},
		{"CONNECT {nope\r\n", "-ERR 'Invalid CONNECT: invalid character"},
	}
	for _, c := range cases {
		w.send(c.send)
		if c.want != "" {
			if got := w.line(); !strings.HasPrefix(got, c.want) {
				t.Errorf("send %q: got %q, want %q", c.send, got, c.want)
			}
		}
		w.flush()
	}
}

// TestFatalInputClosesOnlyThatConnection: a payload length that cannot be
// trusted ends that connection, and no other client notices.
func TestFatalInputClosesOnlyThatConnection(t *testing.T) {
	s := startServer(t, Config{MaxPayload: 1024, MaxPending: 1 << 20})
	other := dial(t, s)
	other.send("SUB x 1\r\n")
	other.flush()
	cases := []struct{ send, want string }{
		{"PUB x abc\r\n", `-ERR 'Invalid Payload Size: PUB: size "abc" is not a number'`},
		{"PUB x 2000\r\n", `-ERR 'Maximum Payload Violation: 2000 bytes, max 1024'`},
		{"PUB x 3\r\nabcdef\r\n", `-ERR 'Invalid Payload Size: PUB: payload of 3 bytes not followed by a line end'`},
		{"SUB " + strings.Repeat("a", 5000) + " 1\r\n", `-ERR 'Maximum Control Line Exceeded`},
	}
	for _, c := range cases {
		w := dial(t, s)
		w.send(c.send)
		if got := w.line(); !strings.HasPrefix(got, c.want) {
			t.Errorf("send %q: got %q, want %q", c.send, got, c.want)
		}
		w.expectClosed()
	}
	other.send("PUB x 2\r\nok\r\n")
	other.expect("MSG x 1 2", "ok")
}

// TestDisconnectMidPayload: a client that goes away halfway through a
// payload publishes nothing.
func TestDisconnectMidPayload(t *testing.T) {
	s := startServer(t, Config{})
	sub := dial(t, s)
	sub.send("SUB x 1\r\n")
	sub.flush()
	w := dial(t, s)
	w.send("PUB x 10\r\nhel")
	w.c.Close()
	p := dial(t, s)
	p.send("PUB x 4\r\nnext\r\n")
	sub.expect("MSG x 1 4", "next")
}

func TestQueueGroupDeliversToOne(t *testing.T) {
	s := startServer(t, Config{})
	const members, msgs = 3, 300
	var ws []*wire
	for i := 0; i < members; i++ {
		w := dial(t, s)
		w.send(fmt.Sprintf("SUB jobs.* workers %d\r\n", i))
		w.flush()
		ws = append(ws, w)
	}
	plain := dial(t, s)
	plain.send("SUB jobs.* 99\r\n")
	plain.flush()
	pub := dial(t, s)
	var b strings.Builder
	for i := 0; i < msgs; i++ {
		fmt.Fprintf(&b, "PUB jobs.x 1\r\n%d\r\n", i%10)
	}
	pub.send(b.String())
	pub.flush()
	for i := 0; i < msgs; i++ { // the plain subscriber gets every message
		plain.line()
		plain.line()
	}
	total := 0
	for i, w := range ws {
		w.send("PING\r\n")
		n := 0
		for {
			l := w.line()
			if l == "PONG" {
				break
			}
			w.line()
			n++
		}
		if n == 0 {
			t.Errorf("member %d got nothing of %d", i, msgs)
		}
		total += n
	}
	if total != msgs {
		t.Fatalf("group got %d messages, want exactly %d", total, msgs)
	}
}

func TestUnsubMax(t *testing.T) {
	s := startServer(t, Config{})
	w := dial(t, s)
	w.send("SUB a 1\r\nUNSUB 1 2\r\nPUB a 1\r\nx\r\nPUB a 1\r\ny\r\nPUB a 1\r\nz\r\nPING\r\n")
	w.expect("MSG a 1 1", "x", "MSG a 1 1", "y", "PONG")
	if n := s.subs.Count(); n != 0 {
		t.Fatalf("subscription still held after max: %d", n)
	}
}

func TestEchoOff(t *testing.T) {
	s := startServer(t, Config{})
	w := dial(t, s)
	w.send("CONNECT {\"echo\":false}\r\nSUB a 1\r\nPUB a 1\r\nx\r\nPING\r\n")
	w.expect("PONG")
}

func TestNoResponders(t *testing.T) {
	s := startServer(t, Config{})
	w := dial(t, s)
	w.send("CONNECT {\"headers\":true,\"no_responders\":true}\r\nSUB _INBOX.x.* 1\r\nPUB svc _INBOX.x.1 2\r\nhi\r\n")
	w.expect("HMSG _INBOX.x.1 1 16 16", "NATS/1.0 503", "", "")
}

// TestCrossLoopOrder: messages from one publisher reach a subscriber on the
// other event loop complete and in order, through the per-loop batches.
func TestCrossLoopOrder(t *testing.T) {
	s := startServer(t, Config{Loops: 2})
	sub := dial(t, s)
	sub.send("SUB o 1\r\n")
	sub.flush()
	pubs := []*wire{dial(t, s), dial(t, s)} // round-robin: at least one is on the other loop
	const n = 5000
	for _, p := range pubs {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "PUB o %d\r\n%d\r\n", len(fmt.Sprint(i)), i)
		}
		p.send(b.String())
		p.flush()
		for i := 0; i < n; i++ {
			sub.line()
			if got := sub.line(); got != fmt.Sprint(i) {
				t.Fatalf("message %d: got %q", i, got)
			}
		}
	}
}

func TestMaxConnections(t *testing.T) {
	s := startServer(t, Config{MaxConns: 2})
	dial(t, s)
	dial(t, s)
	c := dial0(t, s)
	if got := c.line(); got != "-ERR 'Maximum Connections Exceeded'" {
		t.Fatalf("third connection got %q", got)
	}
	c.expectClosed()
}

func TestKeepalive(t *testing.T) {
	s := startServer(t, Config{PingInterval: Duration(50 * time.Millisecond), MaxPingsOut: 2})
	alive := dial(t, s)
	// The live client answers every PING, on its own goroutine.
	pings := make(chan int, 1)
	go func() {
		n := 0
		_ = alive.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			l, err := alive.br.ReadString('\n')
			if err != nil {
				pings <- -1
				return
			}
			if strings.TrimSpace(l) == "PING" {
				n++
				if _, err := alive.c.Write([]byte("PONG\r\n")); err != nil {
					pings <- -1
					return
				}
				if n == 4 {
					pings <- n
					return
				}
			}
		}
	}()
	// The silent client reads but never answers: two PINGs, then it is stale.
	silent := dial(t, s)
	silent.expect("PING", "PING", "-ERR 'Stale Connection'")
	silent.expectClosed()
	if n := <-pings; n != 4 {
		t.Fatalf("live client was cut after answering PINGs (%d)", n)
	}
	alive.flush()
	if st := s.Stats(); st.StaleConns != 1 {
		t.Fatalf("stale count = %d, want 1", st.StaleConns)
	}
}

// TestSlowConsumer: a subscriber that stops reading is cut once its
// outbound data passes max_pending, and the publisher is unaffected.
func TestSlowConsumer(t *testing.T) {
	s := startServer(t, Config{MaxPayload: 1024, MaxPending: 64 << 10, MaxStall: Duration(20 * time.Millisecond)})
	slow := dial(t, s)
	slow.send("SUB s 1\r\n")
	slow.flush()
	pub := dial(t, s)
	payload := strings.Repeat("x", 1000)
	frame := "PUB s 1000\r\n" + payload + "\r\n"
	batch := strings.Repeat(frame, 100)
	for i := 0; i < 1000 && s.Stats().SlowConsumers == 0; i++ { // at most ~100 MB
		pub.send(batch)
	}
	pub.flush()
	if st := s.Stats(); st.SlowConsumers != 1 {
		t.Fatalf("slow consumers = %d, want 1", st.SlowConsumers)
	}
	// The slow client finds EOF after the messages it had. The -ERR is
	// best effort: it is queued behind a full socket buffer, and the close
	// may cut it, as with nats-server.
	_ = slow.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		l, err := slow.br.ReadString('\n')
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("slow consumer not closed: %v", err)
			}
			break
		}
		if strings.HasPrefix(l, "-ERR") && strings.TrimSpace(l) != "-ERR 'Slow Consumer'" {
			t.Fatalf("unexpected error %q", l)
		}
	}
}

// TestShutdownFlushes: on a graceful stop, what was published before it
// reaches the subscriber before the connection closes.
func TestShutdownFlushes(t *testing.T) {
	s := startServer(t, Config{})
	sub := dial(t, s)
	sub.send("SUB d 1\r\n")
	sub.flush()
	pub := dial(t, s)
	pub.send(strings.Repeat("PUB d 3\r\nabc\r\n", 1000))
	pub.flush()
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		sub.expect("MSG d 1 3", "abc")
	}
	sub.expectClosed()
}

// TestStallKeepsSlowReader: a subscriber that reads, but slower than its
// publisher writes, is not cut: the publisher is paused while it catches
// up, and every message arrives.
func TestStallKeepsSlowReader(t *testing.T) {
	s := startServer(t, Config{MaxPayload: 1024, MaxPending: 512 << 10, MaxStall: Duration(10 * time.Second)})
	sub := dial(t, s)
	sub.send("SUB s 1\r\n")
	sub.flush()
	const msgs = 20000 // 20 MB, 40 times MaxPending
	got := make(chan int, 1)
	go func() {
		n := 0
		buf := make([]byte, 4096)
		_ = sub.c.SetReadDeadline(time.Now().Add(60 * time.Second))
		total := msgs * len("MSG s 1 1000\r\n"+strings.Repeat("x", 1000)+"\r\n")
		for n < total {
			k, err := sub.br.Read(buf)
			if err != nil {
				break
			}
			n += k
			time.Sleep(50 * time.Microsecond) // a reader slower than the publisher, by design
		}
		got <- n
	}()
	pub := dial(t, s)
	frame := "PUB s 1000\r\n" + strings.Repeat("x", 1000) + "\r\n"
	batch := strings.Repeat(frame, 100)
	for i := 0; i < msgs/100; i++ {
		pub.send(batch)
	}
	pub.flush()
	want := msgs * len("MSG s 1 1000\r\n"+strings.Repeat("x", 1000)+"\r\n")
	if n := <-got; n != want {
		t.Fatalf("subscriber read %d bytes, want %d", n, want)
	}
	st := s.Stats()
	if st.SlowConsumers != 0 || st.Stalls == 0 {
		t.Fatalf("slow consumers %d (want 0), stalls %d (want > 0)", st.SlowConsumers, st.Stalls)
	}
}
