package flowmesh_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
	"github.com/flowmesh/flowmesh/server"
)

// The SDK is tested against a real node in the same process; the SDK
// package itself imports nothing of the server.

func startNode(t *testing.T, addr string) *server.Server {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s := runNode(t, server.Config{Addr: addr, HTTPAddr: "off", InMemory: true})
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s
}

// startNodeDir starts a node keeping its data in dir, on addr; the caller
// shuts it down (tests that restart a node on the same dir and address).
func startNodeDir(t *testing.T, addr, dir string) *server.Server {
	t.Helper()
	return runNode(t, server.Config{Addr: addr, HTTPAddr: "off", DataDir: dir})
}

// runNode builds and starts a node with cfg, logging nowhere.
func runNode(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	s, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func connect(t *testing.T, s *server.Server, opts ...flowmesh.Option) *flowmesh.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fm, err := flowmesh.Connect(ctx, "nats://"+s.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fm.Close() })
	return fm
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPublishSubscribe(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	sub, err := fm.Subscribe(ctx, "orders.>")
	if err != nil {
		t.Fatal(err)
	}
	h := flowmesh.Header{}
	h.Set("trace_id", "abc123")
	h.Add("tags", "eu")
	for i := 0; i < 5; i++ {
		if err := fm.Publish(ctx, fmt.Sprintf("orders.%d", i), []byte(fmt.Sprint(i)), flowmesh.WithHeader(h)); err != nil {
			t.Fatal(err)
		}
	}
	i := 0
	for m, err := range sub.Messages(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != fmt.Sprintf("orders.%d", i) || string(m.Data) != fmt.Sprint(i) ||
			m.Header.Get("trace_id") != "abc123" || m.Header.Get("tags") != "eu" {
			t.Fatalf("message %d: %+v", i, m)
		}
		if i++; i == 5 {
			break
		}
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctx); !errors.Is(err, flowmesh.ErrClosed) {
		t.Fatalf("Next after Unsubscribe: %v", err)
	}
}

func TestQueueGroup(t *testing.T) {
	s := startNode(t, "")
	ctx := ctx5(t)
	a, b, pub := connect(t, s), connect(t, s), connect(t, s)
	sa, _ := a.Subscribe(ctx, "jobs", flowmesh.Queue("w"))
	sb, _ := b.Subscribe(ctx, "jobs", flowmesh.Queue("w"))
	for i := 0; i < 100; i++ {
		_ = pub.Publish(ctx, "jobs", nil)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Each member's connection is flushed, so every delivery has arrived.
	a.Flush(ctx)
	b.Flush(ctx)
	n := 0
	for _, sub := range []*flowmesh.Subscription{sa, sb} {
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		for {
			if _, err := sub.Next(short); err != nil {
				break
			}
			n++
		}
		cancel()
	}
	if n != 100 {
		t.Fatalf("group got %d messages, want 100", n)
	}
}

func TestRequestReply(t *testing.T) {
	s := startNode(t, "")
	ctx := ctx5(t)
	svc, client := connect(t, s), connect(t, s)
	sub, err := svc.Subscribe(ctx, "svc.upper")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for m, err := range sub.Messages(ctx) {
			if err != nil {
				return
			}
			_ = m.Respond(ctx, []byte("re: "+string(m.Data)))
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m, err := client.Request(ctx, "svc.upper", []byte(fmt.Sprint(i)))
			if err != nil || string(m.Data) != fmt.Sprintf("re: %d", i) {
				t.Errorf("request %d: %v %v", i, m, err)
			}
		}(i)
	}
	wg.Wait()
	if _, err := client.Request(ctx, "svc.none", nil); !errors.Is(err, flowmesh.ErrNoResponders) {
		t.Fatalf("no responders: %v", err)
	}
}

// TestPipelinedFlush: many goroutines' calls share the connection and each
// gets its own reply.
func TestPipelinedFlush(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fm.Flush(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestBadInputFailsLocally(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	if err := fm.Publish(ctx, "a.*", nil); !errors.Is(err, flowmesh.ErrBadSubject) {
		t.Errorf("wildcard publish: %v", err)
	}
	if _, err := fm.Subscribe(ctx, "a..b"); !errors.Is(err, flowmesh.ErrBadSubject) {
		t.Errorf("bad subscribe: %v", err)
	}
	if err := fm.Publish(ctx, "a", make([]byte, fm.MaxPayload()+1)); !errors.Is(err, flowmesh.ErrMaxPayload) {
		t.Errorf("oversize publish: %v", err)
	}
	// A header that would end its line early (and forge another header
	// for every reader) is refused, whichever call carries it.
	for _, h := range []flowmesh.Header{
		{"tags": {"a\r\nInjected: 1"}}, {"tags": {"a\nb"}}, {"bad key": {"v"}}, {"k:": {"v"}}, {"": {"v"}},
	} {
		if err := fm.Publish(ctx, "a", nil, flowmesh.WithHeader(h)); !errors.Is(err, flowmesh.ErrBadHeader) {
			t.Errorf("publish with header %q: %v", h, err)
		}
		if _, err := fm.Stream.Write(ctx, "hdr", nil, flowmesh.EventHeader(h)); !errors.Is(err, flowmesh.ErrBadHeader) {
			t.Errorf("stream write with header %q: %v", h, err)
		}
		if _, err := fm.Queue.Enqueue(ctx, "hdr", nil, flowmesh.JobHeader(h)); !errors.Is(err, flowmesh.ErrBadHeader) {
			t.Errorf("enqueue with header %q: %v", h, err)
		}
	}
	if err := fm.Publish(ctx, "a", nil, flowmesh.WithHeader(flowmesh.Header{"tags": {"a\tb ok"}})); err != nil {
		t.Errorf("a header value with a tab and a space: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := fm.Flush(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled flush: %v", err)
	}
	if err := fm.Flush(ctx); err != nil {
		t.Errorf("flush after a cancelled one: %v", err)
	}
	// A write with a done ctx is not sent, even with a write slot free.
	if err := fm.Stream.CreateTopic(ctx, "t", flowmesh.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := fm.Stream.Write(cancelled, "t", []byte("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("write with a cancelled ctx: %v", err)
		}
	}
	// Writes to one partition are stored in order: had one of them gone
	// out, this one would not be first.
	if pos, err := fm.Stream.Write(ctx, "t", []byte("y")); err != nil || pos.Offset != 0 {
		t.Fatalf("first write after the cancelled ones: %+v %v", pos, err)
	}
}

// A call whose context ends before its reply leaves the reply to arrive
// unread; the replies after it still reach their own calls.
func TestAbandonedReplyKeepsOrder(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	if err := fm.Queue.Create(ctx, "empty", flowmesh.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	// The server answers this long poll after 300 ms; the caller leaves
	// after 30.
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := fm.Queue.Reserve(short, "empty", 1, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("reserve past its context: %v", err)
	}
	id, err := fm.Queue.Enqueue(ctx, "empty", []byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := fm.Queue.Reserve(ctx, "empty", 1, time.Second)
	if err != nil || len(jobs) != 1 || jobs[0].ID != id || string(jobs[0].Payload) != "after" {
		t.Fatalf("reserve after the abandoned one: %v %v", jobs, err)
	}
}

// TestReconnect: the node goes away and comes back on the same address; the
// SDK reconnects, subscribes again and delivers what is published after.
func TestReconnect(t *testing.T) {
	s := startNode(t, "")
	addr := s.Addr().String()
	reconnected := make(chan struct{}, 1)
	fm := connect(t, s, flowmesh.ReconnectBackoff(10*time.Millisecond, 100*time.Millisecond),
		flowmesh.OnReconnect(func() { reconnected <- struct{}{} }))
	ctx := ctx5(t)
	sub, err := fm.Subscribe(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := startNode(t, addr)
	select {
	case <-reconnected:
	case <-ctx.Done():
		t.Fatal("no reconnect")
	}
	if err := fm.Flush(ctx); err != nil { // the SUB went out before this PING
		t.Fatal(err)
	}
	pub := connect(t, s2)
	if err := pub.Publish(ctx, "r", []byte("after")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.Next(ctx)
	if err != nil || string(m.Data) != "after" {
		t.Fatalf("after reconnect: %v %v", m, err)
	}
}

func TestConnectErrors(t *testing.T) {
	ctx := ctx5(t)
	if _, err := flowmesh.Connect(ctx, "http://x"); err == nil {
		t.Error("http scheme accepted")
	}
	if _, err := flowmesh.Connect(ctx, "127.0.0.1:1", flowmesh.DialTimeout(time.Second)); err == nil {
		t.Error("connect to a closed port succeeded")
	}
}

// TestConnectBadOptions: settings that would break the Conn later are
// refused by Connect, naming the option, against a live node.
func TestConnectBadOptions(t *testing.T) {
	s := startNode(t, "")
	ctx := ctx5(t)
	for _, tc := range []struct {
		opt  flowmesh.Option
		want string
	}{
		{flowmesh.DialTimeout(0), "DialTimeout"},
		{flowmesh.DialTimeout(-time.Second), "DialTimeout"},
		{flowmesh.ReconnectBackoff(0, time.Second), "ReconnectBackoff"},
		{flowmesh.ReconnectBackoff(-time.Second, time.Second), "ReconnectBackoff"},
		{flowmesh.ReconnectBackoff(time.Second, time.Millisecond), "ReconnectBackoff"},
		{flowmesh.MaxBuffered(0), "MaxBuffered"},
		{flowmesh.SubscriptionPending(0), "SubscriptionPending"},
	} {
		fm, err := flowmesh.Connect(ctx, s.Addr().String(), tc.opt)
		if err == nil {
			fm.Close()
			t.Errorf("option for %s accepted", tc.want)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("option for %s: error %q does not name it", tc.want, err)
		}
	}
}

// TestSubscribeNotSent: a subscription whose SUB could not be buffered is
// forgotten, not subscribed again by the next reconnect.
func TestSubscribeNotSent(t *testing.T) {
	s := startNode(t, "")
	ctx := ctx5(t)
	fm, err := flowmesh.Connect(ctx, s.Addr().String(), flowmesh.MaxBuffered(32))
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	if _, err := fm.Subscribe(ctx, "a.subject.longer.than.the.output.buffer"); !errors.Is(err, flowmesh.ErrBufferFull) {
		t.Fatalf("Subscribe = %v, want ErrBufferFull", err)
	}
	if n := flowmesh.Subscriptions(fm); n != 0 {
		t.Fatalf("%d subscriptions kept after a SUB that was not sent", n)
	}
}

// A Conn that runs out of reconnect attempts closes itself: calls waiting
// for a reply and calls made afterwards fail with ErrClosed, and Close
// returns.
func TestReconnectGivesUp(t *testing.T) {
	s := startNode(t, "")
	// A short dial timeout: the freed port may be taken meanwhile by
	// another test's listener (packages run in parallel) that never
	// answers; a reconnect attempt there must not use up the test's 5 s.
	fm := connect(t, s, flowmesh.ReconnectBackoff(time.Millisecond, 2*time.Millisecond), flowmesh.MaxReconnects(2),
		flowmesh.DialTimeout(time.Second))
	ctx := ctx5(t)
	if err := fm.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Queued while the connection is down, this waits through the
	// reconnect attempts and must end when they run out.
	done := make(chan error, 1)
	go func() { done <- fm.Flush(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, flowmesh.ErrClosed) && !errors.Is(err, flowmesh.ErrConnectionLost) {
			t.Fatalf("flush after giving up: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("a call waited forever after the reconnects ran out")
	}
	if err := fm.Flush(ctx); !errors.Is(err, flowmesh.ErrClosed) {
		t.Fatalf("flush on a given-up conn: %v", err)
	}
	closed := make(chan struct{})
	go func() { fm.Close(); close(closed) }()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close hangs after the reconnects ran out")
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	if bytes.Contains(buf, []byte("(*Conn).readLoop")) {
		t.Fatalf("the reader outlived Close:\n%s", buf)
	}
}

// Close ends a call that is still waiting for its reply (a long-poll
// reserve the server holds) with ErrClosed, context or not.
func TestCloseFailsPendingCalls(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	if err := fm.Queue.Create(ctx, "held", flowmesh.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, c := range []context.Context{context.Background(), ctx} {
		go func() { _, err := fm.Queue.Reserve(c, "held", 1, time.Minute); errs <- err }()
	}
	for flowmesh.PendingCalls(fm) < 2 { // both reserves made, neither answered
		if ctx.Err() != nil {
			t.Fatal("the reserves were not made")
		}
		runtime.Gosched()
	}
	fm.Close()
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, flowmesh.ErrClosed) {
				t.Fatalf("reserve pending at Close: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("a call pending at Close still waits")
		}
	}
}
