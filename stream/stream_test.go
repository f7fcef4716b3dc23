package stream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/kv/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func defaults(parts int) Config {
	return Config{Partitions: parts, Fsync: "interval", Compression: "s2", MaxEventBytes: 1 << 20}
}

type node struct {
	dir, meta string
	st        *store.Store
	e         *Engine
}

func openNode(t *testing.T, dir string) *node {
	t.Helper()
	st, err := store.Open(dir+"/meta", store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(Options{Dir: dir + "/streams", Store: st, Defaults: defaults(4), AutoCreate: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return &node{dir: dir, st: st, e: e}
}

func (n *node) close(t *testing.T) {
	if err := n.e.Close(); err != nil {
		t.Fatal(err)
	}
	n.st.Close()
}

func write(t *testing.T, tp *Topic, w Write) Position {
	t.Helper()
	pos, err := tryWrite(tp, w)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	return pos
}

// tryWrite writes w and waits for its outcome.
func tryWrite(tp *Topic, w Write) (Position, error) {
	type res struct {
		pos Position
		err error
	}
	ch := make(chan res, 1)
	tp.Write(&w, func(p Position, err error) { ch <- res{p, err} })
	r := <-ch
	return r.pos, r.err
}

func TestWriteReadKeysAndRestart(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, dir)
	tp, err := n.e.Topic("orders.events", true)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]int{}
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("customer-%d", i%7)
		pos := write(t, tp, Write{Key: []byte(key), Header: []byte("NATS/1.0\r\ntrace_id: t1\r\n\r\n"), Value: []byte(fmt.Sprint(i)), Partition: -1})
		if p, ok := byKey[key]; ok && p != pos.Partition {
			t.Fatalf("key %s went to partitions %d and %d", key, p, pos.Partition)
		}
		byKey[key] = pos.Partition
	}
	n.close(t)

	n = openNode(t, dir)
	defer n.close(t)
	tp, err = n.e.Topic("orders.events", false)
	if err != nil {
		t.Fatalf("topic gone after restart: %v", err)
	}
	total := 0
	for p := 0; p < tp.Partitions(); p++ {
		evs, next, err := tp.Read(p, 0, 1000, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		last := -1
		for _, ev := range evs {
			var i int
			fmt.Sscan(string(ev.Value), &i)
			if i <= last {
				t.Fatalf("partition %d out of order: %d after %d", p, i, last)
			}
			last = i
			if byKey[string(ev.Key)] != p || string(ev.Header) != "NATS/1.0\r\ntrace_id: t1\r\n\r\n" {
				t.Fatalf("event %+v on partition %d", ev, p)
			}
		}
		total += len(evs)
		if _, high, _ := tp.Bounds(p); next != high {
			t.Fatalf("next %d, high %d", next, high)
		}
	}
	if total != 200 {
		t.Fatalf("read %d events after restart, wrote 200", total)
	}
	if _, _, err := tp.Read(9, 0, 1, 1); !errors.Is(err, ErrPartitionNotFound) {
		t.Fatalf("read of partition 9: %v", err)
	}
	if _, _, err := tp.Read(0, 1e9, 1, 1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("read past high water: %v", err)
	}
	var w Write = Write{Value: make([]byte, 2<<20), Partition: -1}
	tp.Write(&w, func(_ Position, err error) {
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("oversize event: %v", err)
		}
	})
}

func TestIdempotentProducer(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, dir)
	tp, _ := n.e.Topic("pay", true)
	first := write(t, tp, Write{Value: []byte("a"), Partition: -1, Producer: []byte("p1"), Seq: 1})
	again := write(t, tp, Write{Value: []byte("a"), Partition: -1, Producer: []byte("p1"), Seq: 1})
	if !again.Duplicate || again.Partition != first.Partition || again.Offset != first.Offset {
		t.Fatalf("retry: %+v, first %+v", again, first)
	}
	for s := uint64(2); s < 2+dedupWindow+5; s++ {
		write(t, tp, Write{Value: []byte("b"), Partition: 0, Producer: []byte("p1"), Seq: s})
	}
	w := Write{Value: []byte("a"), Partition: -1, Producer: []byte("p1"), Seq: 1}
	var gotErr error
	tp.Write(&w, func(_ Position, err error) { gotErr = err })
	if !errors.Is(gotErr, ErrOutOfSequence) {
		t.Fatalf("retry beyond the window: %v", gotErr)
	}
	n.close(t)
	// After a restart (snapshot on close) and after a crash (no snapshot:
	// rebuilt from the records), a retry is still recognised.
	for _, crash := range []bool{false, true} {
		n = openNode(t, dir)
		tp, _ = n.e.Topic("pay", false)
		last := uint64(2 + dedupWindow + 4)
		r := write(t, tp, Write{Value: []byte("b"), Partition: 0, Producer: []byte("p1"), Seq: last})
		if !r.Duplicate {
			t.Fatalf("crash=%v: retry of seq %d stored again: %+v", crash, last, r)
		}
		if crash {
			n.st.Delete(store.KeyspaceStream, producerKey("pay"))
		}
		n.close(t)
		if crash {
			break
		}
		// Simulate a crash: drop the snapshot the clean close wrote.
		st, _ := store.Open(dir+"/meta", store.Options{Logger: quiet})
		st.Delete(store.KeyspaceStream, producerKey("pay"))
		st.Close()
	}
}

// sink records what a member is given.
type sink struct {
	mu      sync.Mutex
	evs     []Event
	parts   []int
	closed  error
	changed chan struct{}
}

func newSink() *sink { return &sink{changed: make(chan struct{}, 1000)} }

func (s *sink) Deliver(evs []Event) {
	s.mu.Lock()
	for _, ev := range evs { // valid only during the call
		ev.Key, ev.Header, ev.Value = bytes.Clone(ev.Key), bytes.Clone(ev.Header), bytes.Clone(ev.Value)
		s.evs = append(s.evs, ev)
	}
	s.mu.Unlock()
	s.changed <- struct{}{}
}
func (s *sink) Assigned(_ uint64, parts []int) {
	s.mu.Lock()
	s.parts = parts
	s.mu.Unlock()
	s.changed <- struct{}{}
}
func (s *sink) Closed(err error) {
	s.mu.Lock()
	s.closed = err
	s.mu.Unlock()
	s.changed <- struct{}{}
}

// waitFor waits until cond holds, checking at each sink change.
func (s *sink) waitFor(t *testing.T, what string, cond func(s *sink) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		ok := cond(s)
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestGroupDeliveryRebalanceAndRedelivery(t *testing.T) {
	n := openNode(t, t.TempDir())
	defer n.close(t)
	tp, _ := n.e.Create("clicks", defaults(4))
	for i := 0; i < 40; i++ {
		write(t, tp, Write{Value: []byte(fmt.Sprint(i)), Partition: i % 4})
	}
	a := newSink()
	ma, err := n.e.Join("clicks", "billing", JoinOptions{Name: "a", Window: 8, CommitEvery: 1}, a)
	if err != nil {
		t.Fatal(err)
	}
	// The window holds deliveries to 8 until acks come.
	a.waitFor(t, "8 events", func(s *sink) bool { return len(s.evs) == 8 })
	if err := ma.Ack(8); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, "16 events", func(s *sink) bool { return len(s.evs) == 16 })
	if err := ma.Ack(20); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("ack past what was delivered: %v", err)
	}

	// A second member takes half the partitions.
	b := newSink()
	mb, err := n.e.Join("clicks", "billing", JoinOptions{Name: "b", Window: 100}, b)
	if err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "b's assignment", func(s *sink) bool { return len(s.parts) == 2 })
	a.waitFor(t, "a's new assignment", func(s *sink) bool { return len(s.parts) == 2 })

	// b vanishes with events in flight and nothing acked: its partitions go
	// back to a, which gets them again from the committed offset.
	b.waitFor(t, "b's events", func(s *sink) bool { return len(s.evs) > 0 })
	mb.g.remove(mb, ErrMemberGone)
	a.waitFor(t, "all partitions back", func(s *sink) bool { return len(s.parts) == 4 })
	// a acknowledges everything it gets until the group has no lag.
	acked := 8
	for deadline := time.Now().Add(10 * time.Second); ; {
		a.mu.Lock()
		pending := len(a.evs) - acked
		a.mu.Unlock()
		if pending > 0 {
			if err := ma.Ack(pending); err != nil {
				t.Fatal(err)
			}
			acked += pending
		}
		if gi, _ := n.e.GroupInfo("clicks", "billing"); gi.Lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			gi, _ := n.e.GroupInfo("clicks", "billing")
			t.Fatalf("lag never reached 0: %+v", gi)
		}
		select {
		case <-a.changed:
		case <-time.After(50 * time.Millisecond): // the commit lands after the ack
		}
	}
	seen := map[string]int{}
	a.mu.Lock()
	for _, ev := range a.evs {
		seen[string(ev.Value)]++
	}
	a.mu.Unlock()
	if len(seen) != 40 {
		t.Fatalf("a saw %d distinct events, want all 40", len(seen))
	}
	// Commit rules.
	if err := ma.Commit(0, 1e6); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("commit past high water: %v", err)
	}
	if err := mb.Commit(0, 1); !errors.Is(err, ErrMemberGone) {
		t.Fatalf("commit by a member that left: %v", err)
	}
	ma.Leave()
	gi, err := n.e.GroupInfo("clicks", "billing")
	if err != nil || gi.Lag != 0 || len(gi.Members) != 0 {
		t.Fatalf("after leave: %+v %v", gi, err)
	}
	// Rewind to the start, then a new member gets everything again.
	if _, err := n.e.Reset("clicks", "billing", -1, Target{Kind: Earliest}); err != nil {
		t.Fatal(err)
	}
	c := newSink()
	mc, _ := n.e.Join("clicks", "billing", JoinOptions{Name: "c", Window: 100}, c)
	c.waitFor(t, "replay of 40", func(s *sink) bool { return len(s.evs) == 40 })
	mc.Leave()
	if err := n.e.Delete("clicks"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.e.GroupInfo("clicks", "billing"); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("group of a deleted topic: %v", err)
	}
}

func TestSessionTimeoutAndTopicDelete(t *testing.T) {
	n := openNode(t, t.TempDir())
	defer n.close(t)
	n.e.Create("t1", defaults(2))
	s := newSink()
	if _, err := n.e.Join("t1", "g", JoinOptions{SessionTimeout: 50 * time.Millisecond}, s); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "expiry", func(s *sink) bool { return errors.Is(s.closed, ErrMemberGone) })
	s2 := newSink()
	n.e.Join("t1", "g", JoinOptions{}, s2)
	n.e.Delete("t1")
	s2.waitFor(t, "close on delete", func(s *sink) bool { return errors.Is(s.closed, ErrTopicNotFound) })
	if _, err := n.e.Join("t1", "g", JoinOptions{}, newSink()); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("join of a deleted topic: %v", err)
	}
	if _, err := n.e.Create("../etc", defaults(1)); !errors.Is(err, ErrBadName) {
		t.Fatalf("path-like topic name: %v", err)
	}
	if _, err := n.e.Create("ok", Config{Partitions: 0}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("zero partitions: %v", err)
	}
}

func TestRecordHeaderRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		prod []byte
		seq  uint64
		hdr  []byte
	}{{nil, 0, nil}, {nil, 0, []byte("NATS/1.0\r\n\r\n")}, {[]byte("p"), 7, nil}, {[]byte("prod-1"), 1 << 40, []byte("NATS/1.0\r\na: b\r\n\r\n")}} {
		b := encodeRecordHeader(nil, tc.prod, tc.seq, tc.hdr)
		p, s, h, err := decodeRecordHeader(b)
		if err != nil || string(p) != string(tc.prod) || s != tc.seq || string(h) != string(tc.hdr) {
			t.Fatalf("%+v -> %q -> %q %d %q %v", tc, b, p, s, h, err)
		}
	}
	if _, _, _, err := decodeRecordHeader([]byte{flagProducer, 50, 'x'}); err == nil {
		t.Fatal("truncated producer id accepted")
	}
}

// FuzzRecordHeader feeds arbitrary bytes to the record-header decoder (it
// reads what is on disk) and checks that what decodes re-encodes the same.
func FuzzRecordHeader(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeRecordHeader(nil, []byte("p1"), 7, []byte("NATS/1.0\r\n\r\n")))
	f.Add(encodeRecordHeader(nil, nil, 0, []byte("NATS/1.0\r\na: b\r\n\r\n")))
	f.Add([]byte{flagProducer, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		prod, seq, hdr, err := decodeRecordHeader(b)
		if err != nil {
			return
		}
		if len(b) > 0 && b[0]&flagProducer != 0 && prod == nil {
			prod = []byte{} // an empty producer id is still a producer
		}
		again := encodeRecordHeader(nil, prod, seq, hdr)
		p2, s2, h2, err := decodeRecordHeader(again)
		if err != nil || string(p2) != string(prod) || s2 != seq || string(h2) != string(hdr) {
			t.Fatalf("%q -> (%q %d %q) -> %q -> (%q %d %q %v)", b, prod, seq, hdr, again, p2, s2, h2, err)
		}
	})
}

// TestDeleteRacingAutoCreate: a topic deleted while producers keep writing
// to it is created again by the next write; that new topic must be whole
// (its directory and records are not the ones the delete removes), so
// after a restart it holds every event it held.
func TestDeleteRacingAutoCreate(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, dir)
	defer func() { n.close(t) }()
	for round := range 20 {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				tp, err := n.e.Topic("churn", true)
				if err != nil {
					continue
				}
				ch := make(chan error, 1)
				tp.Write(&Write{Partition: -1, Value: []byte("x")}, func(_ Position, err error) { ch <- err })
				<-ch
			}
		}()
		time.Sleep(time.Millisecond) // let the producer create the topic; no event to wait on
		if err := n.e.Delete("churn"); err != nil && !errors.Is(err, ErrTopicNotFound) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		close(stop)
		<-done
		tp, err := n.e.Topic("churn", false)
		if err != nil {
			continue
		}
		events := tp.Info().Events
		n.close(t)
		n = openNode(t, dir)
		tp, err = n.e.Topic("churn", false)
		if err != nil {
			t.Fatalf("round %d: the topic created again after the delete (%d events) is gone after a restart: %v", round, events, err)
		}
		if got := tp.Info().Events; got != events {
			t.Fatalf("round %d: %d events after a restart, %d before", round, got, events)
		}
	}
}
