package fdlimit

import (
	"math"
	"syscall"
)

// limit is the soft RLIMIT_NOFILE, read once: Go raises it to the hard
// limit before main runs (Go 1.19+), and FlowMesh does not change it.
var limit = func() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(r.Cur)
}()

// Limit is the number of descriptors the process may have open.
func Limit() int { return limit }

// Free is how many descriptors are left after fd was just opened, at
// most: the kernel hands out the lowest free number (POSIX), so every
// number below a new fd is in use, and a new fd near the limit means the
// process is nearly out.
func Free(fd int) int { return limit - fd - 1 }
