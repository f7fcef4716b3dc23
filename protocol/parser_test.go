package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

var testTable = NewTable(CoreServerSpecs()...)

// render prints a frame compactly so table tests compare strings.
func render(f *Frame) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", f.Verb)
	for _, a := range f.Args {
		fmt.Fprintf(&b, " %q", a)
	}
	if f.Header != nil {
		fmt.Fprintf(&b, " hdr=%q", f.Header)
	}
	if f.Payload != nil {
		fmt.Fprintf(&b, " payload=%q", f.Payload)
	}
	return b.String()
}

// parseAll parses every frame in in, recording frames and error codes.
func parseAll(p *Parser, in []byte) (out []string, rest int, fatal *Error) {
	var f Frame
	for len(in) > 0 {
		n, need, err := p.Next(in, &f)
		if err != nil {
			if err.Fatal() {
				return out, len(in), err
			}
			out = append(out, "ERR "+err.Code.Info().Title)
			in = in[n:]
			continue
		}
		if n == 0 {
			if need <= len(in) {
				panic(fmt.Sprintf("need %d <= len %d", need, len(in)))
			}
			return out, len(in), nil
		}
		out = append(out, render(&f))
		in = in[n:]
	}
	return out, 0, nil
}

func TestParser(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []string
		rest  int
		fatal Code
	}{
		{"ping crlf", "PING\r\n", []string{"1"}, 0, 0},
		{"ping lf lower", "ping\n", []string{"1"}, 0, 0},
		{"mixed case", "PiNg\r\npOnG\r\n", []string{"1", "2"}, 0, 0},
		{"blank lines skipped", "\r\n\n\r\nPING\r\n", []string{"1"}, 0, 0},
		{"pub", "PUB foo 5\r\nhello\r\n", []string{`5 "foo" payload="hello"`}, 0, 0},
		{"pub bare lf", "PUB foo 5\nhello\n", []string{`5 "foo" payload="hello"`}, 0, 0},
		{"pub reply", "pub foo bar 2\r\nhi\r\n", []string{`5 "foo" "bar" payload="hi"`}, 0, 0},
		{"pub empty", "PUB foo 0\r\n\r\n", []string{`5 "foo" payload=""`}, 0, 0},
		{"pub tabs and spaces", "PUB\tfoo   3 \r\nabc\r\n", []string{`5 "foo" payload="abc"`}, 0, 0},
		{"payload with crlf inside", "PUB a 4\r\n\r\n\r\n\r\n", []string{`5 "a" payload="\r\n\r\n"`}, 0, 0},
		{"hpub", "HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", []string{`6 "foo" hdr="NATS/1.0\r\n\r\n" payload="hi"`}, 0, 0},
		{"hpub reply", "HPUB foo r 12 12\r\nNATS/1.0\r\n\r\n\r\n", []string{`6 "foo" "r" hdr="NATS/1.0\r\n\r\n" payload=""`}, 0, 0},
		{"sub", "SUB foo 1\r\nSUB foo q 2\r\n", []string{`7 "foo" "1"`, `7 "foo" "q" "2"`}, 0, 0},
		{"unsub", "UNSUB 1 5\r\n", []string{`8 "1" "5"`}, 0, 0},
		{"connect raw", "CONNECT {\"verbose\": false}\r\n", []string{`3 "{\"verbose\": false}"`}, 0, 0},
		{"unknown verb keeps going", "FOO bar\r\nPING\r\n", []string{"ERR Unknown Protocol Operation", "1"}, 0, 0},
		{"bad arg count keeps going", "SUB foo\r\nPING\r\n", []string{"ERR Invalid Arguments", "1"}, 0, 0},
		{"pub without size", "PUB\r\nPING\r\n", []string{"ERR Invalid Arguments", "1"}, 0, 0},
		{"bad header keeps going", "HPUB a 2 2\r\nhi\r\nPING\r\n", []string{"ERR Invalid Header", "1"}, 0, 0},
		{"partial line", "PUB foo 5", nil, 9, 0},
		{"partial payload", "PUB foo 5\r\nhel", nil, 14, 0},
		{"partial line end", "PUB foo 5\r\nhello\r", nil, 17, 0},
		{"non-numeric size", "PUB foo abc\r\nabc\r\n", nil, 18, CodeBadSize},
		{"negative size", "PUB foo -1\r\n", nil, 12, CodeBadSize},
		{"payload too long for size", "PUB foo 2\r\nhello\r\n", nil, 18, CodeBadSize},
		{"hdr larger than total", "HPUB foo 9 2\r\n", nil, 14, CodeBadSize},
		{"max payload", "PUB foo 2000000\r\n", nil, 17, CodeMaxPayload},
		{"digits overflow", "PUB foo 99999999999999999999\r\n", nil, 30, CodeBadSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewParser(testTable, Limits{})
			got, rest, fatal := parseAll(p, []byte(tt.in))
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("frames\n got %q\nwant %q", got, tt.want)
			}
			if rest != tt.rest {
				t.Errorf("rest = %d, want %d", rest, tt.rest)
			}
			var code Code
			if fatal != nil {
				code = fatal.Code
			}
			if code != tt.fatal {
				t.Errorf("fatal = %v, want %v", fatal, tt.fatal)
			}
		})
	}
}

func TestParserControlLineLimit(t *testing.T) {
	p := NewParser(testTable, Limits{MaxControlLine: 16})
	var f Frame
	if _, _, err := p.Next([]byte("SUB a-very-long-subject 1\r\n"), &f); err == nil || err.Code != CodeControlLineTooLong {
		t.Fatalf("long line: err = %v", err)
	}
	// No line end yet, but already over the limit: fail now, not after
	// buffering without bound.
	if _, _, err := p.Next(bytes.Repeat([]byte("x"), 16), &f); err == nil || err.Code != CodeControlLineTooLong {
		t.Fatalf("unterminated long line: err = %v", err)
	}
	if n, _, err := p.Next([]byte("PING\r\n"), &f); err != nil || n != 6 {
		t.Fatalf("short line after: n=%d err=%v", n, err)
	}
}

func TestParserHeaderLimit(t *testing.T) {
	p := NewParser(testTable, Limits{MaxHeader: 8})
	var f Frame
	n, _, err := p.Next([]byte("HPUB a 12 12\r\nNATS/1.0\r\n\r\n\r\n"), &f)
	if err == nil || err.Code != CodeBadHeader || n == 0 {
		t.Fatalf("n=%d err=%v, want a non-fatal header error that consumed the frame", n, err)
	}
}

// TestParserByteAtATime feeds a stream one byte more at a time, as a slow
// network would, and checks that the frames equal the whole-buffer parse.
func TestParserByteAtATime(t *testing.T) {
	in := []byte("PING\r\nSUB foo 1\nPUB foo r 5\r\nhello\r\nHPUB x 12 15\r\nNATS/1.0\r\n\r\nabc\nUNSUB 1\r\n")
	p := NewParser(testTable, Limits{})
	want, _, _ := parseAll(p, in)
	var got []string
	var f Frame
	start := 0
	for end := 1; end <= len(in); end++ {
		for start < end {
			n, need, err := p.Next(in[start:end], &f)
			if err != nil {
				t.Fatalf("at %d: %v", end, err)
			}
			if n == 0 {
				if need <= end-start {
					t.Fatalf("need %d not beyond %d", need, end-start)
				}
				break
			}
			got = append(got, render(&f))
			start += n
		}
	}
	if strings.Join(got, "|") != strings.Join(want, "|") || len(want) != 5 {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestParserNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	p := NewParser(testTable, Limits{})
	in := []byte("pub foo.bar reply 11\r\nhello world\r\nHPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\nSUB a q 1\r\n")
	var f Frame
	allocs := testing.AllocsPerRun(100, func() {
		b := in
		for len(b) > 0 {
			n, _, err := p.Next(b, &f)
			if err != nil || n == 0 {
				panic("parse failed")
			}
			b = b[n:]
		}
	})
	if allocs != 0 {
		t.Fatalf("parser allocates %.1f times per run", allocs)
	}
}

func TestErrorCatalog(t *testing.T) {
	for _, c := range Codes() {
		info := c.Info()
		if info.Title == "" || info.Doc == "" {
			t.Errorf("code %d has no title or doc", c)
		}
		if c != CodeUnknown && CodeOf(info.Title+": detail") != c {
			t.Errorf("CodeOf(%q) != %d", info.Title, c)
		}
	}
	e := Errorf(CodeMaxPayload, "%d bytes", 5)
	var pe *Error
	if !errors.As(fmt.Errorf("wrap: %w", e), &pe) || !pe.Fatal() {
		t.Fatal("max payload must be a fatal *Error")
	}
	got := string(AppendError(nil, Errorf(CodeBadArgs, "it's\r\nbad")))
	if got != "-ERR 'Invalid Arguments: it\"s  bad'\r\n" {
		t.Fatalf("AppendError = %q", got)
	}
}

func TestEncodersRoundTrip(t *testing.T) {
	ct := NewTable(ClientSpecs()...)
	var b []byte
	b = AppendMsg(b, []byte("foo"), []byte("1"), nil, nil, []byte("hi"))
	b = AppendMsg(b, []byte("foo"), []byte("2"), []byte("_INBOX.x"), AppendHeader(nil, "", "trace_id", "abc"), []byte("p"))
	b = AppendRes(b, [][]byte{[]byte("7")}, nil, []byte("value"))
	b = AppendOK(b, []byte("3"))
	b = AppendErr(b, "Not Found: x")
	p := NewParser(ct, Limits{})
	got, rest, fatal := parseAll(p, b)
	if rest != 0 || fatal != nil || len(got) != 5 {
		t.Fatalf("got %q rest=%d fatal=%v", got, rest, fatal)
	}
	if got[1] != `10 "foo" "2" "_INBOX.x" hdr="NATS/1.0\r\ntrace_id: abc\r\n\r\n" payload="p"` {
		t.Fatalf("hmsg = %s", got[1])
	}
	hdr := AppendHeader(nil, "503", "A", "1", "trace_id", " xyz ")
	if string(HeaderStatus(hdr)) != "503" || string(HeaderValue(hdr, "TRACE_ID")) != "xyz" || HeaderValue(hdr, "nope") != nil {
		t.Fatalf("header helpers on %q", hdr)
	}
}

func BenchmarkParsePub(b *testing.B) {
	p := NewParser(testTable, Limits{})
	in := []byte("PUB foo.bar 16\r\n0123456789abcdef\r\n")
	var f Frame
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if n, _, _ := p.Next(in, &f); n != len(in) {
			b.Fatal("short parse")
		}
	}
}

// TestDocsErrorTable: docs/protocol.md lists every catalog entry with its
// "closes" column right, so the docs cannot drift from the code.
func TestDocsErrorTable(t *testing.T) {
	b, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, c := range Codes()[1:] {
		info := c.Info()
		closes := "no"
		if info.Fatal {
			closes = "yes"
		}
		row := "| " + info.Title + " | " + closes + " |"
		if !strings.Contains(doc, row) {
			t.Errorf("docs/protocol.md has no row starting %q", row)
		}
	}
}
