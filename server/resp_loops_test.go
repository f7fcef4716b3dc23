package server

import "testing"

// TestRESPLoops: the Redis port's loop count is resp_loops if set, else
// loops if set, else half the CPUs, at least one.
func TestRESPLoops(t *testing.T) {
	for _, tc := range []struct {
		respLoops, loops, cpus, want int
	}{
		{0, 0, 1, 1},
		{0, 0, 2, 1},
		{0, 0, 3, 1},
		{0, 0, 8, 4},
		{0, 2, 8, 2},
		{3, 2, 8, 3},
		{5, 0, 2, 5},
	} {
		if got := respLoops(Config{RESPLoops: tc.respLoops, Loops: tc.loops}, tc.cpus); got != tc.want {
			t.Errorf("resp_loops %d, loops %d, %d CPUs: %d loops, want %d", tc.respLoops, tc.loops, tc.cpus, got, tc.want)
		}
	}
}
