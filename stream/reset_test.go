package stream

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/kv/store"
)

// TestResetWithoutMembers: a group with no live member (never joined, or
// all gone) is rewound in its stored offsets, and GroupInfo shows them.
func TestResetWithoutMembers(t *testing.T) {
	n := openNode(t, t.TempDir())
	defer n.close(t)
	tp, err := n.e.Create("r", defaults(2))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		write(t, tp, Write{Partition: 0, Value: []byte("x")})
	}
	offs, err := n.e.Reset("r", "g", -1, Target{Kind: Latest})
	if err != nil || offs[0] != 3 || offs[1] != 0 {
		t.Fatalf("Reset latest = %v, %v; want 0:3 1:0", offs, err)
	}
	gi, err := n.e.GroupInfo("r", "g")
	if err != nil {
		t.Fatal(err)
	}
	if c := gi.Partitions[0].Committed; c != 3 || gi.Lag != 0 {
		t.Fatalf("after Reset latest: partition 0 committed %d, lag %d; want 3, 0", c, gi.Lag)
	}
	// Out of range: the error says which offsets the partition holds (the
	// high-water mark is the next one, not one it holds).
	for p, want := range map[int]string{0: "holds offsets 0-2, so group offsets can be 0-3", 1: "holds no events (next offset 0)"} {
		_, err := n.e.Reset("r", "g", p, Target{Kind: AtOffset, Offset: 9})
		if !errors.Is(err, ErrOutOfRange) || !strings.Contains(err.Error(), want) {
			t.Errorf("Reset partition %d to 9: %v, want %q in it", p, err, want)
		}
	}
}

// TestResetRacingJoin: a Reset of a group with no live member and a Join
// that creates the group at the same moment. Whichever comes first, the
// member must start from the reset offset: a group created from the
// offsets stored before the reset, with the reset written under it, would
// deliver from the old offset and commit over the reset.
func TestResetRacingJoin(t *testing.T) {
	n := openNode(t, t.TempDir())
	defer n.close(t)
	tp, err := n.e.Create("race", defaults(1))
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		write(t, tp, Write{Partition: 0, Value: []byte("x")})
	}
	for i := range 300 {
		if _, err := n.e.Reset("race", "g", 0, Target{Kind: AtOffset, Offset: 8}); err != nil {
			t.Fatal(err)
		}
		s := newSink()
		joined := make(chan *Member, 1)
		go func() {
			m, err := n.e.Join("race", "g", JoinOptions{ManualCommit: true}, s)
			if err != nil {
				t.Error(err)
			}
			joined <- m
		}()
		if _, err := n.e.Reset("race", "g", 0, Target{Kind: AtOffset, Offset: 3}); err != nil {
			t.Fatal(err)
		}
		m := <-joined
		if m == nil {
			return
		}
		// Delivery may begin at 8 before the reset moves it to 3 (the join
		// came first); what must hold is that offsets 3-9 are delivered.
		got := func(s *sink) bool {
			return slices.ContainsFunc(s.evs, func(ev Event) bool { return ev.Offset == 3 }) &&
				slices.ContainsFunc(s.evs, func(ev Event) bool { return ev.Offset == 9 })
		}
		deadline := time.After(10 * time.Second)
		for done := false; !done; {
			s.mu.Lock()
			done = got(s)
			var offs []uint64
			for _, ev := range s.evs {
				offs = append(offs, ev.Offset)
			}
			s.mu.Unlock()
			if done {
				break
			}
			select {
			case <-s.changed:
			case <-deadline:
				gi, _ := n.e.GroupInfo("race", "g")
				t.Fatalf("round %d: delivered %v, never offset 3 and 9: the reset was lost (group %+v)", i, offs, gi.Partitions)
			}
		}
		m.Leave()
	}
}

// TestResetToTimesPastTheClock: a rewind to a time after the year 2262 or
// before 1678 (out of the nanosecond clock's range) lands at the latest or
// the earliest offset, not wherever the wrapped time points.
func TestResetToTimesPastTheClock(t *testing.T) {
	n := openNode(t, t.TempDir())
	defer n.close(t)
	tp, err := n.e.Create("far", defaults(1))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		write(t, tp, Write{Partition: 0, Value: []byte("x")})
	}
	for _, c := range []struct {
		at   time.Time
		want uint64
	}{
		{time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), 5},
		{time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 5},
		{time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), 0},
	} {
		offs, err := n.e.Reset("far", "g", 0, Target{Kind: AtTime, Time: c.at})
		if err != nil || offs[0] != c.want {
			t.Errorf("reset to %v: %v %v, want offset %d", c.at, offs, err, c.want)
		}
	}
}

// TestCommitRacingRebalance: a member commits an offset of a partition
// while a join moves that partition to another member. Whichever wins,
// the group's committed offset in memory (what GroupInfo shows and the
// next owner resumes from) and the one in Pebble (what a restart resumes
// from) must end up the same. Before commits waited for rebalances, the
// revoke's offset reached Pebble after the commit's and the commit's
// stayed in memory.
func TestCommitRacingRebalance(t *testing.T) {
	n := openNode(t, t.TempDir())
	defer n.close(t)
	tp, err := n.e.Create("cr", defaults(2))
	if err != nil {
		t.Fatal(err)
	}
	for p := range 2 {
		for range 10 {
			write(t, tp, Write{Partition: p, Value: []byte("x")})
		}
	}
	lazy := JoinOptions{CommitEvery: 1 << 30, CommitInterval: time.Hour}
	for round := range 1000 {
		if _, err := n.e.Reset("cr", "g", -1, Target{Kind: Earliest}); err != nil {
			t.Fatal(err)
		}
		sa := newSink()
		a, err := n.e.Join("cr", "g", lazy, sa)
		if err != nil {
			t.Fatal(err)
		}
		sa.waitFor(t, "a's 20 events", func(s *sink) bool { return len(s.evs) == 20 })
		if err := a.Ack(20); err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		var b *Member
		joined := make(chan struct{})
		go func() {
			<-start
			var err error
			if b, err = n.e.Join("cr", "g", lazy, newSink()); err != nil {
				t.Error(err)
			}
			close(joined)
		}()
		close(start)
		for p := range 2 {
			if err := a.Commit(p, 4); err != nil && !errors.Is(err, ErrNotOwner) {
				t.Fatalf("round %d: commit of partition %d: %v", round, p, err)
			}
		}
		<-joined
		n.e.mu.RLock()
		g := n.e.groups[groupKey{"cr", "g"}]
		n.e.mu.RUnlock()
		g.flushCommits() // the revoke's offset, if any, reaches Pebble
		gi, err := n.e.GroupInfo("cr", "g")
		if err != nil {
			t.Fatal(err)
		}
		for p := range 2 {
			v, err := n.st.Get(store.KeyspaceStream, offsetKey("cr", "g", p))
			if err != nil {
				t.Fatalf("round %d: stored offset of partition %d: %v", round, p, err)
			}
			if stored, shown := int64(binary.LittleEndian.Uint64(v)), gi.Partitions[p].Committed; stored != shown {
				t.Fatalf("round %d: partition %d committed %d in memory, %d in Pebble", round, p, shown, stored)
			}
		}
		a.Leave()
		if b != nil {
			b.Leave()
		}
	}
}
