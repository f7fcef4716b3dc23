package store

import "testing"

func TestMaxOpenTables(t *testing.T) {
	for _, tc := range []struct{ limit, want int }{
		{1 << 20, 1000}, // Pebble's default where descriptors are plenty
		{20000, 1000},
		{1024, 128}, // two databases: a quarter of the limit between them
		{256, 32},
		{64, 16},
	} {
		if got := maxOpenTables(tc.limit); got != tc.want {
			t.Errorf("maxOpenTables(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}
