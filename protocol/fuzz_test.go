package protocol

import (
	"strings"
	"testing"
)

// FuzzParser checks, for arbitrary input, that the parser never panics, that
// every "need" is beyond what it was given, and that the input parsed whole
// and the same input split at any point give the same frames: the property
// a restartable parser over a TCP stream must have.
func FuzzParser(f *testing.F) {
	seeds := []string{
		"PING\r\n", "pong\n", "PUB foo 5\r\nhello\r\n", "PUB foo 5\nhello\n",
		"HPUB foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", "SUB foo.* q 1\r\nUNSUB 1 10\r\n",
		"CONNECT {\"verbose\":true}\r\n", "PUB foo 99999999999\r\n", "\r\n\r\nFOO\r\n",
		"HPUB a 2 1\r\n", "PUB a 3\r\nabcX", "SUB " + strings.Repeat("a ", 20) + "\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		p := NewParser(testTable, Limits{MaxControlLine: 256, MaxPayload: 1024, MaxHeader: 128})
		whole, wrest, wfatal := parseAll(p, in)
		split := int(cut) % (len(in) + 1)
		got, rest, fatal := parseAll(p, in[:split])
		consumed := split - rest
		if fatal == nil {
			more, rest2, fatal2 := parseAll(p, in[consumed:])
			got, rest, fatal = append(got, more...), rest2, fatal2
		}
		if strings.Join(got, "|") != strings.Join(whole, "|") {
			t.Fatalf("split at %d changed frames:\nwhole %q\nsplit %q", split, whole, got)
		}
		if (fatal == nil) != (wfatal == nil) || rest != wrest && fatal == nil {
			t.Fatalf("split at %d: fatal %v rest %d vs whole fatal %v rest %d", split, fatal, rest, wfatal, wrest)
		}
	})
}
