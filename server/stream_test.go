package server

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStreamWire is the nc session of docs/protocol.md's streams section:
// topics, writes with keys and headers, reads, seeks, a consumer group with
// its window, acks, commits, lag and rewind — and the errors.
func TestStreamWire(t *testing.T) {
	s := startServer(t, Config{MaxPayload: 1024})
	w := dial(t, s)
	w.send("TCREATE orders.events partitions=2 retention=7d\r\n")
	w.expect("+OK 2")
	w.send("TCREATE orders.events\r\n")
	w.expect("-ERR 'Already Exists: \"orders.events\"'")
	w.send("TCREATE bad/name\r\n")
	w.expectPrefix("-ERR 'Invalid Arguments: topic")
	w.send("TCREATE t2 partitions=0\r\n")
	w.expectPrefix("-ERR 'Invalid Arguments: partitions must be in [1, 1024]")
	w.send("SWRITE orders.events key=c1 5\r\nhello\r\n")
	w.expect("+OK 1 0")
	w.send("HSWRITE orders.events key=c1 26 31\r\nNATS/1.0\r\ntrace_id: 7\r\n\r\nworld\r\n")
	w.expect("+OK 1 1")
	w.send("SWRITE orders.events partition=0 3\r\nabc\r\n")
	w.expect("+OK 0 0")
	w.send("SWRITE orders.events partition=5 3\r\nabc\r\n")
	w.expectPrefix("-ERR 'Not Found: partition not found: \"orders.events\" has partitions")
	w.send("SWRITE orders.events producer=p1 seq=1 3\r\nidm\r\n")
	first := w.line()
	w.send("SWRITE orders.events producer=p1 seq=1 3\r\nidm\r\n")
	w.expect(first + " duplicate")
	w.send("SWRITE orders.events 2000\r\n")
	w.expectPrefix("-ERR 'Maximum Payload Violation")
	w.expectClosed()

	w = dial(t, s)
	w.send("SREAD orders.events 1 0\r\n")
	evt := regexp.MustCompile(`^EVT - orders.events 1 0 \d+ c1 5$`)
	if l := w.line(); !evt.MatchString(l) {
		t.Fatalf("SREAD event line %q", l)
	}
	w.expect("hello")
	if l := w.line(); !strings.HasPrefix(l, "HEVT - orders.events 1 1 ") || !strings.HasSuffix(l, " c1 26 31") {
		t.Fatalf("SREAD header event line %q", l)
	}
	w.expect("NATS/1.0", "trace_id: 7", "", "world")
	// The producer's unkeyed write may have landed on partition 1 too.
	for l := w.line(); !strings.HasPrefix(l, "+OK "); l = w.line() {
		readPayload(t, w, l)
	}
	w.send("SREAD orders.events 1 99\r\n")
	w.expectPrefix("-ERR 'Offset Out Of Range")
	w.send("SREAD orders.events 1 0 max=0\r\nSREAD orders.events 1 0 max_bytes=-1\r\nSREAD orders.events 1 0 limit=5\r\n")
	w.expect("-ERR 'Invalid Arguments: SREAD max must be positive, got 0'")
	w.expectPrefix("-ERR 'Invalid Arguments: ")
	w.expect("-ERR 'Invalid Arguments: unknown SREAD option \"limit=5\" (max=N, max_bytes=N)'")
	w.send("SSEEK orders.events 0 latest\r\nSSEEK orders.events 0 earliest\r\nSSEEK orders.events 0 time=0\r\n")
	w.expect("+OK 1", "+OK 0", "+OK 0")
	w.send("SSEEK nope 0 latest\r\n")
	w.expect("-ERR 'Not Found: topic not found: \"nope\"'")

	// A group member with a window of 1 gets one event until it acks.
	c := dial(t, s)
	c.send("CONNECT {\"verbose\":false}\r\nSSUB orders.events billing 9 window=1\r\n")
	got := map[string]bool{}
	var member string
	for len(got) < 1 || member == "" {
		l := c.line()
		switch {
		case strings.HasPrefix(l, "+OK "):
			member = l[4:]
		case strings.HasPrefix(l, "SASSIGN 9 "):
			if l != "SASSIGN 9 1 0,1" {
				t.Fatalf("assignment %q", l)
			}
		case strings.HasPrefix(l, "EVT 9 "), strings.HasPrefix(l, "HEVT 9 "):
			got[l] = true
			readPayload(t, c, l)
		default:
			t.Fatalf("unexpected %q", l)
		}
	}
	c.send("PING\r\n")
	c.expect("PONG") // nothing else came: the window is full
	for total := 1; total < 4; total++ {
		c.send("SACK 9\r\n")
		readPayload(t, c, c.line())
	}
	c.send("SACK 9\r\nSCOMMIT 9 0 1\r\nSCOMMIT 9 0 99\r\nSCOMMIT 9 7 0\r\nSCOMMIT 77 0 0\r\n")
	c.expect("+OK")
	c.expectPrefix("-ERR 'Offset Out Of Range")
	c.expectPrefix("-ERR 'Not Found: partition not found: \"orders.events\" has partitions")
	c.expect("-ERR 'Invalid Subscription ID: \"77\"'")

	w.send("GINFO orders.events billing\r\n")
	var gi struct {
		Members    []struct{ ID string }
		Partitions []struct {
			Committed int64
			Lag       uint64
		}
	}
	if err := json.Unmarshal(readRes(t, w), &gi); err != nil {
		t.Fatal(err)
	}
	if len(gi.Members) != 1 || gi.Members[0].ID != member || gi.Partitions[0].Committed != 1 {
		t.Fatalf("GINFO = %+v", gi)
	}
	w.send("GLIST orders.events\r\n")
	if b := readRes(t, w); string(b) != `["billing"]` {
		t.Fatalf("GLIST = %s", b)
	}
	w.send("GDELETE orders.events billing\r\n")
	w.expectPrefix("-ERR 'Invalid Arguments: group has live members")
	// Rewind while the member is live: it gets partition 0 from the start.
	w.send("GRESET orders.events billing earliest 0\r\n")
	w.expect("+OK 1")
	l := c.line()
	if !strings.HasPrefix(l, "EVT 9 orders.events 0 0 ") {
		t.Fatalf("after rewind: %q", l)
	}
	readPayload(t, c, l)
	c.send("SUNSUB 9\r\n")
	c.expect("+OK")
	w.send("TLIST\r\n")
	if b := readRes(t, w); string(b) != `["orders.events"]` {
		t.Fatalf("TLIST = %s", b)
	}
	w.send("TALTER orders.events partitions=1\r\n")
	w.expectPrefix("-ERR 'Invalid Arguments: partitions can grow but not shrink")
	w.send("TALTER orders.events partitions=3 compression=zstd fsync=always\r\nTINFO orders.events\r\n")
	w.expect("+OK")
	var ti struct {
		Config struct {
			Partitions int
			Fsync      string
		}
	}
	json.Unmarshal(readRes(t, w), &ti)
	if ti.Config.Partitions != 3 || ti.Config.Fsync != "always" {
		t.Fatalf("TINFO after TALTER = %+v", ti)
	}
	w.send("TDELETE orders.events\r\nTINFO orders.events\r\n")
	w.expect("+OK", "-ERR 'Not Found: topic not found: \"orders.events\"'")
}

func (w *wire) expectPrefix(prefix string) {
	w.t.Helper()
	if l := w.line(); !strings.HasPrefix(l, prefix) {
		w.t.Fatalf("got %q, want a line starting %q", l, prefix)
	}
}

// readPayload reads the payload line(s) of an EVT/HEVT line.
func readPayload(t *testing.T, w *wire, head string) {
	t.Helper()
	f := strings.Fields(head)
	if len(f) < 8 {
		t.Fatalf("not an event frame: %q", head)
	}
	var n int
	if _, err := fmtSscan(f[len(f)-1], &n); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, n+2)
	if _, err := ioReadFull(w.br, buf); err != nil {
		t.Fatal(err)
	}
}

// readRes reads a RES frame and returns its payload.
func readRes(t *testing.T, w *wire) []byte {
	t.Helper()
	l := w.line()
	if !strings.HasPrefix(l, "RES ") {
		t.Fatalf("want RES, got %q", l)
	}
	var n int
	fmtSscan(l[4:], &n)
	buf := make([]byte, n+2)
	if _, err := ioReadFull(w.br, buf); err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// TestMaxInflightHoldsReads: a client that pipelines writes faster than the
// disk takes them is held at max_inflight outstanding replies (its socket
// is not read), and every write is still answered, in order.
func TestMaxInflightHoldsReads(t *testing.T) {
	s := startServer(t, Config{MaxInflight: 8, Fsync: "always"})
	w := dial(t, s)
	var b strings.Builder
	const n = 2000
	for i := 0; i < n; i++ {
		b.WriteString("SWRITE held partition=0 3\r\nabc\r\n")
	}
	w.send(b.String())
	for i := 0; i < n; i++ {
		if got, want := w.line(), "+OK 0 "+strconv.Itoa(i); got != want {
			t.Fatalf("reply %d = %q, want %q", i, got, want)
		}
	}
	if st := s.Stats(); st.Holds == 0 {
		t.Fatalf("no hold with %d writes pipelined against max_inflight 8: %+v", n, st)
	}
}

// TestStreamMemberVanishes: a member whose connection drops with events in
// flight loses its partitions at once, and the other member gets those
// uncommitted events again; a member that stops heartbeating is expelled
// with SCLOSED.
func TestStreamMemberVanishes(t *testing.T) {
	s := startServer(t, Config{})
	w := dial(t, s)
	w.send("TCREATE ev partitions=2\r\n")
	w.expect("+OK 2")
	for i := 0; i < 10; i++ {
		w.send("SWRITE ev partition=" + strconv.Itoa(i%2) + " 1\r\n" + strconv.Itoa(i) + "\r\n")
		w.expectPrefix("+OK ")
	}
	a := dial(t, s)
	a.send("SSUB ev g 1 window=100\r\n")
	a.expectPrefix("+OK ")
	a.expect("SASSIGN 1 1 0,1")
	for i := 0; i < 10; i++ {
		readPayload(t, a, a.line())
	}
	b := dial(t, s)
	b.send("SSUB ev g 2 window=100\r\n")
	b.expectPrefix("+OK ")
	b.expectPrefix("SASSIGN 2 2 ") // one partition, moved from a; a acked nothing
	for i := 0; i < 5; i++ {
		readPayload(t, b, b.line())
	}
	a.c.Close() // gone without SUNSUB, nothing acknowledged
	b.expect("SASSIGN 2 3 0,1")
	values := map[string]bool{}
	for len(values) < 5 {
		head := b.line()
		f := strings.Fields(head)
		if len(f) != 8 || f[0] != "EVT" {
			t.Fatalf("want an EVT, got %q", head)
		}
		values[b.line()] = true
	}
	// Expiry: a member with a session timeout and no heartbeat.
	c := dial(t, s)
	c.send("SSUB ev quiet 7 session_timeout=100ms\r\n")
	c.expectPrefix("+OK ")
	for {
		l := c.line()
		if strings.HasPrefix(l, "SCLOSED 7 ") {
			if !strings.Contains(l, "no heartbeat for 100ms") {
				t.Fatalf("close reason %q", l)
			}
			break
		}
		if strings.HasPrefix(l, "EVT ") {
			c.line()
		}
	}
	c.send("SACK 7\r\nPING\r\n")
	c.expect("PONG") // acks for a closed membership are dropped, not answered
}

// TestVarzShowsPolicies: the fsync policy in force is visible per topic
// and queue on the monitoring port's /varz, beside the node's default.
func TestVarzShowsPolicies(t *testing.T) {
	s := startServer(t, Config{Fsync: "interval"})
	w := dial(t, s)
	w.send("TCREATE t1 fsync=always\r\nQCREATE q1 fsync=none\r\n")
	w.expect("+OK 4", "+OK")
	b, _ := json.Marshal(s.Varz())
	var v struct {
		Fsync  string
		Topics []struct {
			Name   string
			Config struct{ Fsync string }
		}
		Queues []struct {
			Name   string
			Config struct{ Fsync string }
		}
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Fsync != "interval" || len(v.Topics) != 1 || v.Topics[0].Config.Fsync != "always" ||
		len(v.Queues) != 1 || v.Queues[0].Config.Fsync != "none" {
		t.Fatalf("varz: %s", b)
	}
}

// TestIntervalSyncShared: the node's partitions and queues share one
// interval syncer; a write that reaches many partitions at once is made
// durable by one syncfs for all of them, not an fsync each. The interval
// is long so that every partition is written before the round.
func TestIntervalSyncShared(t *testing.T) {
	s := startServer(t, Config{Fsync: "interval", FsyncInterval: Duration(300 * time.Millisecond)})
	w := dial(t, s)
	w.send("TCREATE wide partitions=8\r\n")
	w.expect("+OK 8")
	var b strings.Builder
	for i := 0; i < 64; i++ {
		fmt.Fprintf(&b, "SWRITE wide key=k%d 1\r\nx\r\n", i)
	}
	w.send(b.String())
	for i := 0; i < 64; i++ {
		if l := w.line(); !strings.HasPrefix(l, "+OK ") {
			t.Fatalf("write %d: %q", i, l)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Metrics().SyncGroup
		if st.Syncfs > 0 && st.Covered >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no shared syncfs for 8 written partitions after 10 s: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A group's committed offsets (Pebble, written without a sync under
	// interval) are fsynced an interval later too.
	w.send("GRESET wide billing earliest\r\n")
	w.line()
	for s.store.IntervalSyncs() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("committed offsets not fsynced 10 s after GRESET under interval")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
