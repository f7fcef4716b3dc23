package stream

import (
	"fmt"
	"slices"
	"testing"
)

func TestAssign(t *testing.T) {
	tests := []struct {
		name    string
		parts   int
		members []string
		prev    []string
		want    []string
	}{
		{"no members", 3, nil, nil, []string{"", "", ""}},
		{"one member takes all", 3, []string{"a"}, nil, []string{"a", "a", "a"}},
		{"even split", 4, []string{"a", "b"}, nil, []string{"a", "a", "b", "b"}},
		{"more members than partitions", 2, []string{"a", "b", "c"}, nil, []string{"a", "b"}},
		{"join moves only what it must", 4, []string{"a", "b"}, []string{"a", "a", "a", "a"}, []string{"a", "a", "b", "b"}},
		{"leave keeps the others' partitions", 6, []string{"a", "c"}, []string{"a", "a", "b", "b", "c", "c"}, []string{"a", "a", "a", "c", "c", "c"}},
		{"odd count keeps previous extras", 5, []string{"a", "b"}, []string{"b", "b", "b", "a", "a"}, []string{"b", "b", "b", "a", "a"}},
		{"unbalanced previous is rebalanced", 4, []string{"a", "b"}, []string{"a", "a", "a", "b"}, []string{"a", "a", "b", "b"}},
		{"dead previous owners", 3, []string{"x"}, []string{"a", "b", "c"}, []string{"x", "x", "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := assign(tc.parts, tc.members, tc.prev)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("assign(%d, %v, %v) = %v, want %v", tc.parts, tc.members, tc.prev, got, tc.want)
			}
		})
	}
}

// TestAssignBalanced checks the invariants over many shapes: every
// partition owned by a live member, shares within one of each other, and
// a member that stays keeps at least min(previous, fair share) partitions.
func TestAssignBalanced(t *testing.T) {
	for parts := 1; parts <= 12; parts++ {
		for m := 1; m <= 6; m++ {
			members := make([]string, m)
			for i := range members {
				members[i] = fmt.Sprintf("m%d", i)
			}
			prev := assign(parts, members[:max(1, m-1)], nil) // then one joins
			got := assign(parts, members, prev)
			count := map[string]int{}
			for p, id := range got {
				if !slices.Contains(members, id) {
					t.Fatalf("P=%d M=%d: partition %d owned by %q", parts, m, p, id)
				}
				count[id]++
			}
			lo, hi := parts, 0
			for _, id := range members {
				lo, hi = min(lo, count[id]), max(hi, count[id])
			}
			if parts >= m && hi-lo > 1 || parts < m && hi > 1 {
				t.Fatalf("P=%d M=%d: unbalanced %v", parts, m, got)
			}
			moved := 0
			for p := range got {
				if got[p] != prev[p] {
					moved++
				}
			}
			if fair := parts / m; m > 1 && moved > fair+1 {
				t.Fatalf("P=%d M=%d: a join moved %d partitions (fair share %d): %v -> %v", parts, m, moved, fair, prev, got)
			}
		}
	}
}
