package server

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// These tests drive FlowMesh with the official NATS Go client, unchanged:
// the proof of wire compatibility with NATS core.

func natsConnect(t *testing.T, s *Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect("nats://"+s.Addr().String(), append([]nats.Option{nats.Timeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestNATSPubSub(t *testing.T) {
	s := startServer(t, Config{})
	sub, pub := natsConnect(t, s), natsConnect(t, s)
	ch := make(chan *nats.Msg, 100)
	if _, err := sub.ChanSubscribe("orders.>", ch); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := pub.Publish(fmt.Sprintf("orders.eu.%d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		select {
		case m := <-ch:
			if m.Subject != fmt.Sprintf("orders.eu.%d", i) || string(m.Data) != fmt.Sprint(i) {
				t.Fatalf("message %d: %s %q", i, m.Subject, m.Data)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not delivered", i)
		}
	}
}

func TestNATSQueueGroup(t *testing.T) {
	s := startServer(t, Config{})
	const members, msgs = 3, 600
	var total atomic.Int64
	counts := make([]atomic.Int64, members)
	done := make(chan struct{})
	for i := 0; i < members; i++ {
		nc := natsConnect(t, s)
		_, err := nc.QueueSubscribe("jobs", "workers", func(*nats.Msg) {
			counts[i].Add(1)
			if total.Add(1) == msgs {
				close(done)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	pub := natsConnect(t, s)
	for i := 0; i < msgs; i++ {
		if err := pub.Publish("jobs", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("got %d of %d", total.Load(), msgs)
	}
	// Each message went to exactly one member: the total cannot pass msgs.
	// Flush every member's connection to see any extra delivery.
	pub.Flush()
	for i := range counts {
		if counts[i].Load() == 0 {
			t.Errorf("member %d got nothing", i)
		}
	}
	if total.Load() != msgs {
		t.Fatalf("delivered %d, want %d", total.Load(), msgs)
	}
}

func TestNATSRequestReply(t *testing.T) {
	s := startServer(t, Config{})
	svc, client := natsConnect(t, s), natsConnect(t, s)
	if _, err := svc.Subscribe("svc.echo", func(m *nats.Msg) { _ = m.Respond(append([]byte("echo: "), m.Data...)) }); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ { // concurrent requests share nats.go's one inbox subscription
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m, err := client.Request("svc.echo", []byte(fmt.Sprint(i)), 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			if string(m.Data) != fmt.Sprintf("echo: %d", i) {
				errs <- fmt.Errorf("request %d got %q", i, m.Data)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Nobody listens: the no-responders status, not a timeout.
	start := time.Now()
	_, err := client.Request("svc.nobody", []byte("x"), 5*time.Second)
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("err = %v, want no responders", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("no-responders took as long as a timeout")
	}
}

func TestNATSHeaders(t *testing.T) {
	s := startServer(t, Config{})
	sub, pub := natsConnect(t, s), natsConnect(t, s)
	ch := make(chan *nats.Msg, 1)
	if _, err := sub.ChanSubscribe("traced", ch); err != nil {
		t.Fatal(err)
	}
	sub.Flush()
	m := nats.NewMsg("traced")
	m.Header.Set("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")
	m.Header.Set("correlation_id", "order-42")
	m.Header.Add("tags", "eu")
	m.Header.Add("tags", "vip")
	m.Data = []byte("payload")
	if err := pub.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-ch:
		if got.Header.Get("trace_id") != "4bf92f3577b34da6a3ce929d0e0e4736" ||
			got.Header.Get("correlation_id") != "order-42" || len(got.Header.Values("tags")) != 2 ||
			string(got.Data) != "payload" {
			t.Fatalf("got headers %v data %q", got.Header, got.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
}

// TestNATSPublishAnySubject: nats.go connects with pedantic off and
// closes its connection for good on an error it does not know. A publish
// to a wildcard or a malformed subject, which nats-server takes without a
// word, must not cost it the connection (it did: FlowMesh answered
// Invalid Publish Subject).
func TestNATSPublishAnySubject(t *testing.T) {
	s := startServer(t, Config{})
	nc := natsConnect(t, s)
	ch := make(chan *nats.Msg, 8)
	if _, err := nc.ChanSubscribe("orders.>", ch); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"orders.*", "orders..eu", "orders.", "orders.eu"} {
		if err := nc.Publish(subj, []byte(subj)); err != nil {
			t.Fatalf("publish %q: %v", subj, err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatalf("flush after publishing to %q: %v (last error %v)", subj, err, nc.LastError())
		}
	}
	for _, want := range []string{"orders.*", "orders.eu"} { // an empty token reaches nobody
		select {
		case m := <-ch:
			if m.Subject != want {
				t.Fatalf("got %q, want %q", m.Subject, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q not delivered", want)
		}
	}
	if !nc.IsConnected() {
		t.Fatalf("connection lost: %v", nc.LastError())
	}
}

func TestNATSUnsubscribeAndAutoUnsubscribe(t *testing.T) {
	s := startServer(t, Config{})
	nc := natsConnect(t, s)
	var n atomic.Int64
	sub, err := nc.Subscribe("a", func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.AutoUnsubscribe(3); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		nc.Publish("a", nil)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < 3 && time.Now().Before(deadline) {
		nc.Flush() // bounded poll: the callback runs on nats.go's goroutine, with no signal to wait on
	}
	if n.Load() != 3 {
		t.Fatalf("got %d messages, want 3", n.Load())
	}
	if s.subs.Count() != 0 {
		t.Fatalf("server still holds %d subscriptions", s.subs.Count())
	}
}
