package seeds

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// Run runs fn as a subtest "seed<N>" for each seed from first on: def of
// them, or as many as the environment variable env says if it holds a
// positive integer (anything else is reported and the default used).
func Run(t *testing.T, env string, first, def int, fn func(t *testing.T, seed uint64)) {
	t.Helper()
	n := def
	if v := os.Getenv(env); v != "" {
		if c, err := strconv.Atoi(v); err == nil && c > 0 {
			n = c
		} else {
			t.Logf("%s=%q is not a positive number of seeds; running %d", env, v, def)
		}
	}
	for seed := first; seed < first+n; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { fn(t, uint64(seed)) })
	}
}
