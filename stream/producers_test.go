package stream

import (
	"errors"
	"testing"
)

// TestProducerTable drives the idempotent-producer table through its
// cases: a new write, a retry while it is in flight (answered when it
// completes), a retry after (answered at once), a failed write (its retry
// is new), a sequence older than the window and one a window ahead of a
// write still in flight (both refused).
func TestProducerTable(t *testing.T) {
	var ps producers
	id := []byte("p1")
	type answer struct {
		pos Position
		err error
	}
	var got []answer
	cb := func(pos Position, err error) { got = append(got, answer{pos, err}) }
	take := func() []answer { a := got; got = nil; return a }

	pr := ps.begin(id, 1, cb)
	if pr == nil {
		t.Fatal("a new write was not started")
	}
	if ps.begin(id, 1, cb) != nil || len(take()) != 0 {
		t.Fatal("a retry of a write in flight was started or answered before it completed")
	}
	retries := ps.finish(pr, 1, Position{Partition: 2, Offset: 7}, nil)
	if len(retries) != 1 {
		t.Fatalf("%d retries queued behind seq 1, want 1", len(retries))
	}
	retries[0](Position{Partition: 2, Offset: 7, Duplicate: true}, nil)
	if a := take(); len(a) != 1 || !a[0].pos.Duplicate || a[0].pos.Offset != 7 {
		t.Fatalf("queued retry answered %+v", a)
	}
	if ps.begin(id, 1, cb) != nil {
		t.Fatal("a retry of a stored write was started again")
	}
	if a := take(); len(a) != 1 || !a[0].pos.Duplicate || a[0].pos.Partition != 2 || a[0].pos.Offset != 7 || a[0].err != nil {
		t.Fatalf("retry after the write: %+v", a)
	}
	if ps.covered[2] != 8 {
		t.Fatalf("covered[2] = %d, want 8", ps.covered[2])
	}

	// A failed write is forgotten: its retry is stored.
	pr = ps.begin(id, 2, cb)
	ps.finish(pr, 2, Position{}, errors.New("disk full"))
	if pr = ps.begin(id, 2, cb); pr == nil {
		t.Fatal("the retry of a failed write was not started")
	}
	ps.finish(pr, 2, Position{Offset: 9}, nil)

	// Writes in flight up to the window; one more wraps onto a slot still
	// in flight and is refused, as is one older than the window.
	inFlight := map[uint64]*producer{}
	for s := uint64(3); s < 3+dedupWindow; s++ {
		if inFlight[s] = ps.begin(id, s, cb); inFlight[s] == nil {
			t.Fatalf("seq %d refused: %+v", s, take())
		}
	}
	if ps.begin(id, 3+dedupWindow, cb) != nil {
		t.Fatal("a write a window ahead of one in flight was started")
	}
	if a := take(); len(a) != 1 || !errors.Is(a[0].err, ErrOutOfSequence) {
		t.Fatalf("a window ahead: %+v", a)
	}
	for s, pr := range inFlight {
		ps.finish(pr, s, Position{Offset: s}, nil)
	}
	if ps.begin(id, 3+dedupWindow, cb) == nil {
		t.Fatal("the next sequence after the window drained was refused")
	}
	if ps.begin(id, 3, cb) != nil {
		t.Fatal("a sequence older than the window was started")
	}
	if a := take(); len(a) != 1 || !errors.Is(a[0].err, ErrOutOfSequence) {
		t.Fatalf("too old: %+v", a)
	}
}
