package resp

import (
	"bytes"
	"errors"
	"fmt"
)

// Limits bound what the parser accepts.
type Limits struct {
	MaxBulk   int // largest bulk string, default 512 MiB
	MaxArgs   int // most arguments, default 1M
	MaxInline int // longest inline command, default 64 KiB
}

func (l *Limits) defaults() {
	if l.MaxBulk <= 0 {
		l.MaxBulk = 512 << 20
	}
	if l.MaxArgs <= 0 {
		l.MaxArgs = 1 << 20
	}
	if l.MaxInline <= 0 {
		l.MaxInline = 64 << 10
	}
}

// ErrProtocol is a malformed command: the stream cannot be trusted after
// it, so the connection is closed after the error reply (as Redis does).
var ErrProtocol = errors.New("Protocol error")

func protoErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, a...))
}

// Parse reads one command from buf into args (reused; the result points
// into buf). n is the bytes consumed; 0 with no error means buf holds no
// complete command yet, and need is then the total length worth waiting
// for (0: unknown). An empty inline line is consumed and yields no args.
func Parse(buf []byte, args [][]byte, lim Limits) (out [][]byte, n, need int, err error) {
	lim.defaults()
	out = args[:0]
	if len(buf) == 0 {
		return out, 0, 0, nil
	}
	if buf[0] != '*' {
		return parseInline(buf, out, lim)
	}
	count, p, ok, err := readInt(buf, 1, "invalid multibulk length")
	if err != nil || !ok {
		return out, 0, 0, err
	}
	if count > int64(lim.MaxArgs) {
		return out, 0, 0, protoErr("invalid multibulk length")
	}
	if count <= 0 {
		return out, p, 0, nil // *0 and *-1: nothing to do
	}
	for i := int64(0); i < count; i++ {
		if p >= len(buf) {
			return out[:0], 0, 0, nil
		}
		if buf[p] != '$' {
			return out[:0], 0, 0, protoErr("expected '$', got '%c'", buf[p])
		}
		l, q, ok, err := readInt(buf, p+1, "invalid bulk length")
		if err != nil {
			return out[:0], 0, 0, err
		}
		if !ok {
			return out[:0], 0, 0, nil
		}
		if l < 0 || l > int64(lim.MaxBulk) {
			return out[:0], 0, 0, protoErr("invalid bulk length")
		}
		end := q + int(l)
		if end+2 > len(buf) {
			return out[:0], 0, end + 2, nil
		}
		if buf[end] != '\r' || buf[end+1] != '\n' {
			return out[:0], 0, 0, protoErr("bulk string not followed by CRLF")
		}
		out = append(out, buf[q:end])
		p = end + 2
	}
	return out, p, 0, nil
}

// readInt reads the number of a "*N\r\n" or "$N\r\n" line from buf[p:];
// bad is the error's text if it is not a number (Redis' words).
func readInt(buf []byte, p int, bad string) (v int64, next int, ok bool, err error) {
	i := bytes.IndexByte(buf[p:], '\n')
	if i < 0 {
		if len(buf)-p > 32 {
			return 0, 0, false, protoErr("invalid length line")
		}
		return 0, 0, false, nil
	}
	line := buf[p : p+i]
	if len(line) == 0 || line[len(line)-1] != '\r' {
		return 0, 0, false, protoErr("length line not ended by CRLF")
	}
	line = line[:len(line)-1]
	neg := len(line) > 0 && line[0] == '-'
	if neg {
		line = line[1:]
	}
	if len(line) == 0 || len(line) > 18 {
		return 0, 0, false, protoErr("%s", bad)
	}
	for _, c := range line {
		if c < '0' || c > '9' {
			return 0, 0, false, protoErr("%s", bad)
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, p + i + 1, true, nil
}

// parseInline splits a line on spaces, with "double" and 'single' quotes
// as redis-cli and Redis' inline parser understand them.
func parseInline(buf []byte, out [][]byte, lim Limits) ([][]byte, int, int, error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) > lim.MaxInline {
			return out, 0, 0, protoErr("too big inline request")
		}
		return out, 0, 0, nil
	}
	line := buf[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	args, err := splitInline(line, out)
	if err != nil {
		return out[:0], 0, 0, err
	}
	return args, i + 1, 0, nil
}

func splitInline(line []byte, out [][]byte) ([][]byte, error) {
	p := 0
	for {
		for p < len(line) && (line[p] == ' ' || line[p] == '\t') {
			p++
		}
		if p >= len(line) {
			return out, nil
		}
		switch q := line[p]; q {
		case '"', '\'':
			// Quoted: the unquoted text is written over the line in place
			// (it is never longer), so the argument stays a subslice.
			start, w := p, p
			p++
			closed := false
			for p < len(line) {
				c := line[p]
				if c == q {
					closed = true
					p++
					break
				}
				if c == '\\' && p+1 < len(line) {
					if q == '"' {
						c, p = unescape(line, p)
						line[w] = c
						w++
						continue
					}
					if line[p+1] == '\'' {
						p++
						c = '\''
					}
				}
				line[w] = c
				w++
				p++
			}
			if !closed || (p < len(line) && line[p] != ' ' && line[p] != '\t') {
				return nil, protoErr("unbalanced quotes in request")
			}
			out = append(out, line[start:w])
		default:
			start := p
			for p < len(line) && line[p] != ' ' && line[p] != '\t' {
				p++
			}
			out = append(out, line[start:p])
		}
	}
}

// unescape reads the escape at line[p] ('\\') inside double quotes.
func unescape(line []byte, p int) (byte, int) {
	c := line[p+1]
	switch c {
	case 'n':
		return '\n', p + 2
	case 'r':
		return '\r', p + 2
	case 't':
		return '\t', p + 2
	case 'b':
		return '\b', p + 2
	case 'a':
		return '\a', p + 2
	case 'x':
		if p+3 < len(line) {
			if h, ok := hex(line[p+2]); ok {
				if l, ok := hex(line[p+3]); ok {
					return h<<4 | l, p + 4
				}
			}
		}
	}
	return c, p + 2
}

func hex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
