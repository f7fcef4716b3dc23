package flowmesh_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
	"github.com/flowmesh/flowmesh/protocol"
	"github.com/flowmesh/flowmesh/server"
)

func TestStreamWriteReadDescribe(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	if err := fm.Stream.CreateTopic(ctx, "orders.events", flowmesh.TopicConfig{Partitions: 3, Compression: "zstd"}); err != nil {
		t.Fatal(err)
	}
	var fe *flowmesh.Error
	if err := fm.Stream.CreateTopic(ctx, "orders.events", flowmesh.TopicConfig{}); !errors.As(err, &fe) || fe.Code != protocol.CodeExists {
		t.Fatalf("second create: %v", err)
	}
	h := flowmesh.Header{}
	h.Set("trace_id", "abc")
	pos, err := fm.Stream.Write(ctx, "orders.events", []byte("first"), flowmesh.Key("cust-1"), flowmesh.EventHeader(h))
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]flowmesh.Record, 50)
	for i := range recs {
		recs[i] = flowmesh.Record{Key: "cust-1", Value: []byte(fmt.Sprint(i))}
	}
	ps, err := fm.Stream.WriteBatch(ctx, "orders.events", recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range ps {
		if p.Partition != pos.Partition || p.Offset != pos.Offset+1+uint64(i) {
			t.Fatalf("record %d at %+v; the key's first event at %+v", i, p, pos)
		}
	}
	evs, next, err := fm.Stream.Read(ctx, "orders.events", pos.Partition, pos.Offset, 10)
	if err != nil || len(evs) != 10 || next != pos.Offset+10 {
		t.Fatalf("read: %d events, next %d, %v", len(evs), next, err)
	}
	if string(evs[0].Value) != "first" || evs[0].Key != "cust-1" || evs[0].Header.Get("trace_id") != "abc" || string(evs[1].Value) != "0" {
		t.Fatalf("read back %+v / %+v", evs[0], evs[1])
	}
	if off, err := fm.Stream.Seek(ctx, "orders.events", pos.Partition, "latest"); err != nil || off != pos.Offset+51 {
		t.Fatalf("seek latest = %d %v", off, err)
	}
	ti, err := fm.Stream.Describe(ctx, "orders.events")
	if err != nil || ti.Events != 51 || len(ti.Partitions) != 3 || ti.Config.Compression != "zstd" {
		t.Fatalf("describe = %+v %v", ti, err)
	}
	if _, err := fm.Stream.Write(ctx, "orders.events", []byte("x"), flowmesh.Key("has space")); !errors.Is(err, flowmesh.ErrBadKey) {
		t.Fatalf("bad key: %v", err)
	}
	bad := []flowmesh.Record{{Value: []byte("ok")}, {Key: "has space", Value: []byte("x")}, {Value: []byte("after")}}
	if ps, err := fm.Stream.WriteBatch(ctx, "orders.events", bad); !errors.Is(err, flowmesh.ErrBadKey) ||
		!strings.Contains(err.Error(), "record 1 of the batch") {
		t.Fatalf("batch with a bad key: %v %v", ps, err)
	}
	if ti, err := fm.Stream.Describe(ctx, "orders.events"); err != nil {
		t.Fatal(err)
	} else if ti.Events != 52 {
		t.Fatalf("after a batch refused at its second record: %d events, want 51 + its first", ti.Events)
	}
	if _, err := fm.Stream.Write(ctx, "orders.events", []byte("x"), flowmesh.ToPartition(7)); !errors.As(err, &fe) || fe.Code != protocol.CodeNotFound {
		t.Fatalf("missing partition: %v", err)
	}
	if _, err := fm.Stream.Write(ctx, "orders.events", make([]byte, fm.MaxPayload()+1)); !errors.Is(err, flowmesh.ErrMaxPayload) {
		t.Fatalf("event over max_payload: %v", err)
	}
	if err := fm.Flush(ctx); err != nil {
		t.Fatalf("connection broken by a refused event: %v", err)
	}
	if err := fm.Stream.DeleteTopic(ctx, "orders.events"); err != nil {
		t.Fatal(err)
	}
	if topics, err := fm.Stream.Topics(ctx); err != nil || len(topics) != 0 {
		t.Fatalf("topics after delete: %v %v", topics, err)
	}
}

// TestConsumerGroup: two consumers share a topic's partitions, every event
// is processed once, offsets are committed, a consumer that comes back
// resumes after what was committed, and a rewind replays.
func TestConsumerGroup(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fm.Stream.CreateTopic(ctx, "orders.events", flowmesh.TopicConfig{Partitions: 4})
	const n = 400
	recs := make([]flowmesh.Record, n)
	for i := range recs {
		recs[i] = flowmesh.Record{Key: fmt.Sprintf("k%d", i%13), Value: []byte(fmt.Sprint(i))}
	}
	if _, err := fm.Stream.WriteBatch(ctx, "orders.events", recs); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := connect(t, s)
			for ev, err := range conn.Stream.Consumer(cctx, "orders.events", "billing", flowmesh.Window(16)) {
				if err != nil {
					return // ctx cancelled
				}
				mu.Lock()
				seen[string(ev.Value)]++
				done := len(seen) == n
				mu.Unlock()
				if done {
					stop()
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("processed %d distinct events of %d", len(seen), n)
	}
	// Leaving commits what was processed: the lag drains to zero.
	for {
		gi, err := fm.Stream.Group(ctx, "orders.events", "billing")
		if err != nil {
			t.Fatal(err)
		}
		if gi.Lag == 0 && len(gi.Members) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("lag stays at %d: %+v", gi.Lag, gi)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// New events only are delivered to a returning member; and the event of
	// the iteration that broke was not processed, so the next member gets
	// it again.
	fm.Stream.Write(ctx, "orders.events", []byte("late"))
	for _, who := range []string{"a returning member", "the member after a break"} {
		for ev, err := range fm.Stream.Consumer(ctx, "orders.events", "billing") {
			if err != nil {
				t.Fatal(err)
			}
			if string(ev.Value) != "late" {
				t.Fatalf("%s got %q, want only \"late\"", who, ev.Value)
			}
			break
		}
	}
	// Rewind: everything again, with manual commits.
	if err := fm.Stream.Rewind(ctx, "orders.events", "billing", "earliest", -1); err != nil {
		t.Fatal(err)
	}
	got := 0
	for ev, err := range fm.Stream.Consumer(ctx, "orders.events", "billing", flowmesh.ManualCommit()) {
		if err != nil {
			t.Fatal(err)
		}
		if err := ev.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if got++; got == n+1 {
			break
		}
	}
	gi, _ := fm.Stream.Group(ctx, "orders.events", "billing")
	if gi.Lag != 0 {
		t.Fatalf("after replaying and committing all: %+v", gi)
	}
	// A consumer of a topic that is deleted under it ends with an error.
	cs, err := fm.Stream.Join(ctx, "orders.events", "other")
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	fm.Stream.DeleteTopic(ctx, "orders.events")
	var fe *flowmesh.Error
	for {
		ev, err := cs.Next(ctx)
		if err == nil {
			cs.Done(ev) // events delivered before the delete
			continue
		}
		if !errors.As(err, &fe) || fe.Code != protocol.CodeNotFound {
			t.Fatalf("consumer of a deleted topic ended with %v", err)
		}
		break
	}
}

// TestConcurrentWritesOneConn: many goroutines writing through one Conn
// (more than the server's dedup window in flight in total) all succeed:
// sequence numbers reach the server in the order they were given out.
func TestConcurrentWritesOneConn(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	fm.Stream.CreateTopic(ctx, "many", flowmesh.TopicConfig{Partitions: 2})
	recs := make([]flowmesh.Record, 500)
	for i := range recs {
		recs[i] = flowmesh.Record{Value: []byte("v")}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3; i++ {
				if _, err := fm.Stream.WriteBatch(ctx, "many", recs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if ti, err := fm.Stream.Describe(ctx, "many"); err != nil || ti.Events != 8*3*500 {
		t.Fatalf("stored %+v, %v; want %d events", ti, err, 8*3*500)
	}
}

// TestConsumerSurvivesRestart: a consumer whose server restarts joins
// again by itself and goes on with the events written after the restart.
func TestConsumerSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	start := func(addr string) *server.Server { return startNodeDir(t, addr, dir) }
	s := start("127.0.0.1:0")
	addr := s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fm, err := flowmesh.Connect(ctx, addr, flowmesh.ReconnectBackoff(10*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	fm.Stream.CreateTopic(ctx, "r", flowmesh.TopicConfig{Partitions: 1})
	fm.Stream.Write(ctx, "r", []byte("before"))
	cs, err := fm.Stream.Join(ctx, "r", "g", flowmesh.ManualCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ev, err := cs.Next(ctx)
	if err != nil || string(ev.Value) != "before" {
		t.Fatalf("first event: %v %v", ev, err)
	}
	if err := ev.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	cs.Done(ev)
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s = start(addr)
	defer s.Shutdown(context.Background())
	if _, err := fm.Stream.Write(ctx, "r", []byte("after")); err != nil { // waits out the reconnect
		t.Fatal(err)
	}
	ev, err = cs.Next(ctx)
	if err != nil || string(ev.Value) != "after" {
		t.Fatalf("after the restart: %v %v (the committed event must not come again)", ev, err)
	}
}

// TestConsumerSessionTimeoutOff: SessionTimeout(0) turns the server's
// session timeout off, and with it the consumer's heartbeats (a ticker of
// a third of it would have panicked); a negative one is refused.
func TestConsumerSessionTimeoutOff(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	if _, err := fm.Stream.Write(ctx, "st.off", []byte("one")); err != nil {
		t.Fatal(err)
	}
	cs, err := fm.Stream.Join(ctx, "st.off", "g", flowmesh.SessionTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := cs.Next(ctx)
	if err != nil || string(ev.Value) != "one" {
		t.Fatalf("Next = %v, %v", ev, err)
	}
	cs.Done(ev)
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := fm.Stream.Join(ctx, "st.off", "g", flowmesh.SessionTimeout(-time.Second)); err == nil {
		t.Fatal("a negative session timeout was accepted")
	}
}

// TestRecycledWritesUnderCancellation: synchronous writes recycle their
// call objects; many goroutines on one connection, some leaving before
// their reply (a context that ends at once), must each get their own
// write's position: every position answered is distinct and holds the
// value that write sent.
func TestRecycledWritesUnderCancellation(t *testing.T) {
	s := startNode(t, "")
	fm := connect(t, s)
	ctx := ctx5(t)
	if err := fm.Stream.CreateTopic(ctx, "recycled", flowmesh.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	type got struct {
		value string
		pos   flowmesh.Position
	}
	var mu sync.Mutex
	var answered []got
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				v := fmt.Sprintf("g%d-%d", g, i)
				wctx, cancel := ctx, context.CancelFunc(func() {})
				if i%5 == 0 {
					wctx, cancel = context.WithTimeout(ctx, time.Duration(i%3)*20*time.Microsecond)
				}
				pos, err := fm.Stream.Write(wctx, "recycled", []byte(v))
				cancel()
				if err != nil {
					if errors.Is(err, context.DeadlineExceeded) {
						continue
					}
					t.Error(err)
					return
				}
				mu.Lock()
				answered = append(answered, got{v, pos})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]string{}
	for _, a := range answered {
		if prev, ok := seen[a.pos.Offset]; ok {
			t.Fatalf("offset %d answered to %q and to %q", a.pos.Offset, prev, a.value)
		}
		seen[a.pos.Offset] = a.value
	}
	evs, _, err := fm.Stream.Read(ctx, "recycled", 0, 0, 16*200)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[uint64]string{}
	for _, ev := range evs {
		stored[ev.Offset] = string(ev.Value)
	}
	for off, v := range seen {
		if stored[off] != v {
			t.Fatalf("offset %d answered to the write of %q holds %q", off, v, stored[off])
		}
	}
	if len(answered) < 16*200*3/4 {
		t.Fatalf("only %d of %d writes answered", len(answered), 16*200)
	}
}
