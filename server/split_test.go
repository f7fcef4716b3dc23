package server

import (
	"testing"
	"time"
)

// TestFrameSplitAcrossReads sends a frame the way a person at nc does: the
// control line, then (after a pause, so it is a separate read) the
// payload, with bare LF line ends. The first read consumes nothing; the
// frame must survive until the rest comes.
func TestFrameSplitAcrossReads(t *testing.T) {
	s := startServer(t, Config{})
	w := dial(t, s)
	w.send("CONNECT {\"headers\":true}\nSUB a 1\n")
	w.flush()
	for _, part := range []string{"PUB a 5\n", "hel", "lo\n", "HPUB a 12 ", "14\nNATS/1.0\r\n\r\nhi\n"} {
		w.send(part)
		// No signal exists for "the server has read this": a pause makes
		// each part its own read, which is what the test is about.
		time.Sleep(30 * time.Millisecond)
	}
	w.expect("MSG a 1 5", "hello", "HMSG a 1 12 14", "NATS/1.0", "", "hi")
}
