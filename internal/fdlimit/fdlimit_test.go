package fdlimit

import (
	"os"
	"syscall"
	"testing"
)

func TestFree(t *testing.T) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Skip(err)
	}
	if Limit() != int(r.Cur) && r.Cur < 1<<31 {
		t.Fatalf("Limit %d, rlimit %d", Limit(), r.Cur)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if got := Free(fd); got != Limit()-fd-1 || got <= 0 {
		t.Fatalf("Free(%d) = %d with limit %d", fd, got, Limit())
	}
}
