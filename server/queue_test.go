package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestQueueWire is the nc session of docs/protocol.md's queue section.
func TestQueueWire(t *testing.T) {
	s := startServer(t, Config{MaxPayload: 1024})
	w := dial(t, s)
	w.send("QCREATE emails.send max_attempts=2 visibility=30s backoff_base=0s\r\n")
	w.expect("+OK")
	w.send("QCREATE emails.send\r\n")
	w.expect("-ERR 'Already Exists: \"emails.send\"'")
	w.send("QPUT emails.send 5\r\nhello\r\n")
	w.expect("+OK 0")
	w.send("HQPUT emails.send key=order-7 priority=5 26 29\r\nNATS/1.0\r\ntrace_id: 7\r\n\r\nabc\r\n")
	w.expect("+OK 1")
	w.send("QPUT emails.send key=order-7 3\r\nabc\r\n")
	w.expect("+OK 1 duplicate")
	w.send("QPUT emails.send delay=1h 5\r\nlater\r\n")
	w.expect("+OK 2")
	w.send("QPUT emails.send delay=-1s 1\r\nx\r\n")
	w.expectPrefix("-ERR 'Invalid Arguments: delay=")
	w.send("QGET emails.send max=5\r\n")
	w.expectPrefix("HJOB emails.send 1 1 ") // priority first
	w.expect("NATS/1.0", "trace_id: 7", "", "abc")
	w.expectPrefix("JOB emails.send 0 1 ")
	w.expect("hello", "+OK 2")
	w.send("QACK emails.send 1 1\r\nQACK emails.send 1 1\r\nQACK emails.send 0 7\r\n")
	w.expect("+OK")
	w.expectPrefix("-ERR 'Not Found: job not found: 1")
	w.expectPrefix("-ERR 'Job Not Reserved: job 0 is in_flight at attempt 1, not in flight at attempt 7")
	w.send("QNACK emails.send 0 1 9\r\nsmtp down\r\n")
	w.expect("+OK ready") // backoff_base=0s: retried at once
	w.send("QGET emails.send\r\n")
	w.expectPrefix("JOB emails.send 0 2 ")
	w.expect("hello", "+OK 1")
	w.send("QNACK emails.send 0 2 10\r\nstill down\r\n")
	w.expect("+OK dead") // max_attempts=2
	w.send("QBROWSE emails.send dead\r\n")
	var page struct {
		Jobs []struct {
			ID        uint64
			State     string
			Attempts  int
			LastError string `json:"last_error"`
			Payload   []byte
		}
	}
	if err := json.Unmarshal(readRes(t, w), &page); err != nil || len(page.Jobs) != 1 || page.Jobs[0].LastError != "still down" ||
		string(page.Jobs[0].Payload) != "hello" || page.Jobs[0].Attempts != 2 {
		t.Fatalf("browse dead: %+v %v", page, err)
	}
	w.send("QREDRIVE emails.send all\r\nQINFO emails.send\r\n")
	w.expect("+OK 1")
	var info struct {
		Ready, Delayed, Dead int
		InFlight             int `json:"in_flight"`
	}
	json.Unmarshal(readRes(t, w), &info)
	if info.Ready != 1 || info.Delayed != 1 || info.Dead != 0 {
		t.Fatalf("QINFO after redrive: %+v", info)
	}
	w.send("QWORKER mailer emails.send concurrency=4\r\n")
	w.expectPrefix("+OK mailer-")
	w.send("QPAUSE emails.send\r\nQGET emails.send\r\nQRESUME emails.send\r\nQGET emails.send wait=1s\r\n")
	w.expect("+OK", "+OK 0", "+OK")
	w.expectPrefix("JOB emails.send 0 1 ")
	w.expect("hello", "+OK 1")
	w.send("QACK emails.send 0 1\r\n")
	w.expect("+OK") // worker counters move when the ack is durable
	w.send("QWORKERS\r\n")
	if b := string(readRes(t, w)); !strings.Contains(b, `"name":"mailer"`) || !strings.Contains(b, `"processed":1`) {
		t.Fatalf("QWORKERS = %s", b)
	}
	w.send("QGET nosuch\r\nQPUT emails.send 2000\r\n")
	w.expect("-ERR 'Not Found: queue not found: \"nosuch\"'")
	w.expectPrefix("-ERR 'Maximum Payload Violation")
	w.expectClosed()
	w = dial(t, s)
	w.send("QPURGE emails.send\r\nQDELETE emails.send\r\nQLIST\r\n")
	w.expect("+OK 1", "+OK")
	if b := string(readRes(t, w)); b != "[]" {
		t.Fatalf("QLIST after delete: %s", b)
	}
}

// TestQueueSubWire is the nc session of docs/protocol.md's consumer part:
// jobs pushed into a window, each outcome bringing the next, QUNSUB, and
// QCLOSED when the queue goes.
func TestQueueSubWire(t *testing.T) {
	s := startServer(t, Config{})
	w := dial(t, s)
	w.send("QCREATE jobs\r\nQPUT jobs 1\r\na\r\nQPUT jobs 1\r\nb\r\nQPUT jobs 1\r\nc\r\n")
	w.expect("+OK", "+OK 0", "+OK 1", "+OK 2")
	w.send("QSUB jobs s1 window=0\r\nQSUB nosuch s1\r\nQSUB jobs s1 size=3\r\n")
	w.expectPrefix("-ERR 'Invalid Arguments: window")
	w.expect("-ERR 'Not Found: queue not found: \"nosuch\"'")
	w.expectPrefix("-ERR 'Invalid Arguments: unknown QSUB option")
	w.send("QSUB jobs s1 window=2\r\n")
	w.expect("+OK")
	w.expectPrefix("QMSG s1 jobs 0 1 ")
	w.expect("a")
	w.expectPrefix("QMSG s1 jobs 1 1 ")
	w.expect("b")
	w.send("QSUB jobs s1\r\n")
	w.expectPrefix("-ERR 'Invalid Subscription ID: \"s1\" is in use")
	// The window is full: job 2 waits for an outcome, then rides with its reply.
	w.send("QACK jobs 0 1\r\n")
	w.expect("+OK")
	w.expectPrefix("QMSG s1 jobs 2 1 ")
	w.expect("c")
	w.send("QNACK jobs 1 1 delay=1h 4\r\nslow\r\n")
	w.expect("+OK delayed")
	// A push is not a reply: it may come before or after the QPUT's.
	w.send("QPUT jobs 1\r\nd\r\n")
	// Job IDs are log offsets, and the job states written since (the
	// reservations, the ack, the nack) took some: d's ID is what its
	// reply says.
	got := []string{w.line(), w.line(), w.line()}
	if strings.HasPrefix(got[0], "+OK ") {
		got = append(got[1:], got[0])
	}
	d := strings.TrimPrefix(got[2], "+OK ")
	if !strings.HasPrefix(got[2], "+OK ") || !strings.HasPrefix(got[0], "QMSG s1 jobs "+d+" 1 ") || got[1] != "d" {
		t.Fatalf("after QPUT with a free place: %q", got)
	}
	// After QUNSUB nothing is pushed; held jobs are still acked.
	w.send("QUNSUB s1\r\nQUNSUB s1\r\nQPUT jobs 1\r\ne\r\nQACK jobs 2 1\r\nQACK jobs " + d + " 1\r\nQGET jobs wait=5s\r\n")
	w.expect("+OK")
	w.expectPrefix("-ERR 'Invalid Subscription ID: no QSUB")
	e := w.line()
	if !strings.HasPrefix(e, "+OK ") {
		t.Fatalf("QPUT: %q", e)
	}
	w.expect("+OK", "+OK")
	w.expectPrefix("JOB jobs " + strings.TrimPrefix(e, "+OK ") + " 1 ")
	w.expect("e", "+OK 1")
	// Deleting the queue closes its consumers.
	w.send("QSUB jobs s2\r\n")
	w.expect("+OK")
	o := dial(t, s)
	o.send("QDELETE jobs\r\n")
	o.expect("+OK")
	w.expect("QCLOSED s2 Not Found: queue not found: \"jobs\" was deleted")
	w.send("QUNSUB s2\r\n")
	w.expectPrefix("-ERR 'Invalid Subscription ID: no QSUB")
}

// waitInflight waits until n deferred replies are outstanding; the
// server's count is the only sign that a long poll has been taken or
// ended.
func waitInflight(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := int(s.inflight.n.Load())
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d replies outstanding, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A long poll left by a closed connection ends then, not at its deadline;
// a node's shutdown answers the long polls still waiting (+OK 0, as when
// the wait runs out) instead of waiting for them until its own deadline.
func TestLongPollsEndAtCloseAndShutdown(t *testing.T) {
	s := startServer(t, Config{})
	left, idle := dial(t, s), dial(t, s)
	left.send("QCREATE mail\r\n")
	left.expect("+OK")
	left.send("QGET mail wait=10m\r\n")
	idle.send("QGET mail wait=10m\r\n")
	waitInflight(t, s, 2)
	left.c.Close()
	waitInflight(t, s, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil || ctx.Err() != nil {
		t.Fatalf("shutdown with a worker long-polling: %v (deadline passed: %v)", err, ctx.Err())
	}
	idle.expect("+OK 0")
}
