package dirs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLock: a second lock of a held directory fails with ErrInUse naming
// the holder's pid; once released, the directory can be locked again.
// (flock locks belong to open files, so two in one process conflict as two
// processes would.)
func TestLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "node")
	release, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock(dir)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Lock = %v, want ErrInUse naming pid %d", err, os.Getpid())
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	release, err = Lock(dir)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	release()
}
