package netpoll

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestLoops: a port reports the loops it runs, one per CPU when the config
// leaves it at 0 (what the node logs at start).
func TestLoops(t *testing.T) {
	for _, tc := range []struct{ cfg, want int }{{0, runtime.NumCPU()}, {1, 1}, {3, 3}} {
		s, err := Listen(Config{Addr: "127.0.0.1:0", Loops: tc.cfg, PingInterval: -1}, &echoBarrier{})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Loops(); got != tc.want {
			t.Errorf("Loops with Config.Loops %d = %d, want %d", tc.cfg, got, tc.want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
	}
}
