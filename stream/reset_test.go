package stream

import (
	"errors"
	"strings"
	"testing"
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
