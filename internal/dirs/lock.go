package dirs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrInUse is returned by Lock when another process holds the directory.
var ErrInUse = errors.New("in use by another process")

// LockName is the lock file Lock keeps in the directory.
const LockName = "flowmesh.lock"

// Lock takes an exclusive lock on dir for this process (flock(2) on
// dir/flowmesh.lock, which holds the owner's pid), creating dir if need
// be. Two nodes on one data directory would each recover and append to
// the same logs; each store has a lock of its own, but the first one a
// second node meets answered "resource temporarily unavailable", which
// did not say what was wrong. The lock goes when release is called or
// the process ends, however it ends.
func Lock(dir string) (release func() error, err error) {
	if err := MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	name := filepath.Join(dir, LockName)
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			owner := "unknown pid"
			if b, rerr := os.ReadFile(name); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
				owner = "pid " + strings.TrimSpace(string(b))
			}
			return nil, fmt.Errorf("data directory %s is %w (%s, %s): one node per data directory", dir, ErrInUse, owner, name)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	// The pid is for the message above only; a stale one in a file nobody
	// holds locked means nothing.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f.Close, nil // closing the file releases the lock
}
