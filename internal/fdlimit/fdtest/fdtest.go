package fdtest

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// DialLast dials addr with the process's open-file limit lowered so that
// the client's socket takes the last descriptor: the server's accept in
// this process finds none. The limit stays low until stopped is closed
// (the server noticed) or 10 s passed, then is restored. The dial may
// fail (reset as the server gives up); its connection, if any, is closed
// when the test ends. Skips the test where the limit cannot be changed.
// Nothing else in the process may open descriptors meanwhile: call it
// once the server has served a request (its event loops and the runtime's
// poller hold theirs).
func DialLast(t testing.TB, addr string, stopped <-chan struct{}) {
	t.Helper()
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Skip(err)
	}
	probe, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	next := probe.Fd() // the lowest free descriptor
	probe.Close()
	low := orig
	low.Cur = uint64(next) + 1
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		t.Cleanup(func() { c.Close() })
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
}
