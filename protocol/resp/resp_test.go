package resp

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func strs(args [][]byte) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}

func TestParse(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
		n, need  int
		err      bool
	}{
		{name: "array", in: "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", want: []string{"GET", "k"}, n: 20},
		{name: "binary bulk", in: "*1\r\n$4\r\na\r\nb\r\n", want: []string{"a\r\nb"}, n: 14},
		{name: "empty bulk", in: "*2\r\n$3\r\nSET\r\n$0\r\n\r\n", want: []string{"SET", ""}, n: 19},
		{name: "two commands: the first", in: "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", want: []string{"PING"}, n: 14},
		{name: "partial count", in: "*2", want: []string{}},
		{name: "partial bulk", in: "*1\r\n$10\r\nabc", want: []string{}, need: 21},
		{name: "partial element", in: "*2\r\n$3\r\nGET\r\n", want: []string{}},
		{name: "zero args", in: "*0\r\n", want: []string{}, n: 4},
		{name: "inline", in: "SET k v\r\n", want: []string{"SET", "k", "v"}, n: 9},
		{name: "inline LF", in: "PING\n", want: []string{"PING"}, n: 5},
		{name: "inline quotes", in: "SET \"a b\" 'c d'\r\n", want: []string{"SET", "a b", "c d"}, n: 17},
		{name: "inline escapes", in: "SET k \"x\\n\\x41\\\"\"\r\n", want: []string{"SET", "k", "x\nA\""}, n: 19},
		{name: "inline empty line", in: "\r\n", want: []string{}, n: 2},
		{name: "inline partial", in: "SET k", want: []string{}},
		{name: "unbalanced quotes", in: "SET \"a\r\n", err: true},
		{name: "bad count", in: "*x\r\n", err: true},
		{name: "negative bulk", in: "*1\r\n$-5\r\n", err: true},
		{name: "no $", in: "*1\r\n+OK\r\n", err: true},
		{name: "bulk without CRLF", in: "*1\r\n$1\r\nab\r\n", err: true},
		{name: "count line without CR", in: "*1\n$1\r\na\r\n", err: true},
		{name: "huge count", in: "*99999999999\r\n", err: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args, n, need, err := Parse([]byte(tc.in), nil, Limits{})
			if tc.err {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("err = %v, want a protocol error", err)
				}
				return
			}
			if err != nil || n != tc.n || need != tc.need || strings.Join(strs(args), "|") != strings.Join(tc.want, "|") {
				t.Fatalf("Parse = %q n=%d need=%d err=%v; want %q n=%d need=%d", strs(args), n, need, err, tc.want, tc.n, tc.need)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	if _, _, _, err := Parse([]byte("*1\r\n$100\r\n"), nil, Limits{MaxBulk: 10}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("oversize bulk: %v", err)
	}
	if _, _, _, err := Parse([]byte("*5\r\n"), nil, Limits{MaxArgs: 4}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("too many args: %v", err)
	}
	if _, _, _, err := Parse([]byte(strings.Repeat("a", 100)), nil, Limits{MaxInline: 10}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("long inline: %v", err)
	}
}

func TestWriter(t *testing.T) {
	for _, v3 := range []bool{false, true} {
		w := Writer{RESP3: v3}
		w.Null()
		w.Map(1)
		w.BulkString("a")
		w.Double(1.5)
		w.Set(1)
		w.Bool(true)
		w.Double(math.Inf(-1))
		w.Error("ERR bad\r\nline")
		w.IntBool(false)
		want := "$-1\r\n*2\r\n$1\r\na\r\n$3\r\n1.5\r\n*1\r\n:1\r\n$4\r\n-inf\r\n-ERR bad  line\r\n:0\r\n"
		if v3 {
			want = "_\r\n%1\r\n$1\r\na\r\n,1.5\r\n~1\r\n#t\r\n,-inf\r\n-ERR bad  line\r\n:0\r\n"
		}
		if string(w.B) != want {
			t.Errorf("RESP3=%v: %q, want %q", v3, w.B, want)
		}
	}
	if got := string(AppendFloat(nil, 0.1)); got != "0.10000000000000001" {
		t.Errorf("0.1 = %s (Redis prints %%.17g)", got)
	}
	if got := string(AppendFloat(nil, 3)); got != "3" {
		t.Errorf("3 = %s", got)
	}
}

// FuzzParse: any input parses to a command, waits for more, or is a
// protocol error; never a panic, never a command whose arguments lie
// outside what was consumed, and feeding the input in two pieces gives
// the same first command.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "SET \"a b\" 'c'\r\n", "*1\r\n$0\r\n\r\n", "\r\n", "*-1\r\n", "PING\n"} {
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		lim := Limits{MaxBulk: 1 << 16, MaxArgs: 1 << 10, MaxInline: 1 << 12}
		whole := append([]byte(nil), in...)
		args, n, _, err := Parse(whole, nil, lim)
		if err != nil {
			return
		}
		if n < 0 || n > len(in) {
			t.Fatalf("consumed %d of %d", n, len(in))
		}
		if n == 0 {
			return
		}
		first := strs(args)
		// The same command arrives in two pieces: the first piece is never
		// a different command.
		if cut < 0 {
			cut = -cut
		}
		cut %= n
		part := append([]byte(nil), in[:cut]...)
		pargs, pn, _, perr := Parse(part, nil, lim)
		if perr == nil && pn > 0 && strings.Join(strs(pargs), "\x00") != strings.Join(first, "\x00") && in[0] == '*' {
			t.Fatalf("prefix %q parsed as %q, whole as %q", part, strs(pargs), first)
		}
	})
}
