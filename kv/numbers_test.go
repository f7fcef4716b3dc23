package kv

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// TestIncrByFloatAsRedis: INCRBYFLOAT's sums and texts are Redis' (7.0 on
// x86-64, long double arithmetic): each row's answer was read from a real
// redis-server. float64 arithmetic gives "0.30000000000000004" for the
// first row and loses the 1e18 + 0.5 and 1e4000 rows.
func TestIncrByFloatAsRedis(t *testing.T) {
	for _, tc := range []struct{ start, incr, want string }{
		{"0.1", "0.2", "0.3"},
		{"10.5", "0.1", "10.6"},
		{"5.0e3", "2.0e2", "5200"},
		{"9223372036854775807", "-0.2", "9223372036854775807"},
		{"0x1p3", "0x1.8", "9.5"},
		{"3", "-3", "0"},
		{"-0.0", "-0.0", "0"},
		{"1e-10", "1", "1.0000000001"},
		{"0.1", "-0.1000000000000000055511151231257827", "-0.00000000000000001"},
		{"2", "1e-20", "2"},
		{"18446744073709551616", "1", "18446744073709551616"},
		{"1e18", "0.5", "1000000000000000000.5"},
		{"007", "1", "8"},
		{"-7", "+1", "-6"},
		{"1.5e308", "1.5e308", "299999999999999999999802952978936936062033681930121889934267370842360212133382092073513329456432044063805856741044049928681709165013290418975721613155792350350455287355122225755520606513477793033688249842856870392034430282663023473578541488576654642706081008486842868180099693230377808905266593729023699845120"},
	} {
		e, _ := open(t, "", &clock{})
		if _, err := e.Set([]byte("k"), []byte(tc.start), SetOpts{}); err != nil {
			t.Fatal(err)
		}
		got, err := e.IncrByFloat([]byte("k"), []byte(tc.incr))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s + %s = %q, %v; Redis says %s", tc.start, tc.incr, got, err, tc.want)
		}
	}
	big, err := func() ([]byte, error) {
		e, _ := open(t, "", &clock{})
		return e.IncrByFloat([]byte("k"), []byte("1e4000"))
	}()
	if err != nil || len(big) != 4000 || !strings.HasPrefix(string(big), "99999999999999999999654638730996237849324925835069576313015083330432619433063423554818") {
		t.Errorf("0 + 1e4000 = %.80s... (%d digits), %v", big, len(big), err)
	}

	e, _ := open(t, "", &clock{})
	e.Set([]byte("inf"), []byte("inf"), SetOpts{})
	e.ZAdd([]byte("z"), ZAddOpts{}, []ScoredMember{{Member: []byte("m"), Score: 1}})
	for _, tc := range []struct {
		key, incr string
		want      error
	}{
		{"inf", "1", ErrFloatOverflow},
		{"n", "1e5000", ErrNotFloat},    // overflow: strtold's HUGE_VAL
		{"n", "1e-5000", ErrNotFloat},   // underflow to zero
		{"n", "1_0", ErrNotFloat},       // no digit separators
		{"n", "0b1", ErrNotFloat},       // no binary
		{"n", " 1", ErrNotFloat},        // no spaces
		{"n", "nan", ErrNotFloat},       //
		{"n", "-inf", ErrFloatOverflow}, // a valid float, an infinite sum
		{"z", "abc", ErrWrongType},      // the type is checked first
	} {
		if v, err := e.IncrByFloat([]byte(tc.key), []byte(tc.incr)); !errors.Is(err, tc.want) {
			t.Errorf("INCRBYFLOAT %s %q = %q, %v; want %v", tc.key, tc.incr, v, err, tc.want)
		}
	}
	if v, err := e.HIncrByFloat([]byte("h"), []byte("f"), []byte("0.1")); err != nil || string(v) != "0.1" {
		t.Fatal(v, err)
	}
	if v, err := e.HIncrByFloat([]byte("h"), []byte("f"), []byte("0.2")); err != nil || string(v) != "0.3" {
		t.Errorf("HINCRBYFLOAT 0.1 + 0.2 = %q, %v", v, err)
	}
	if _, err := e.HIncrByFloat([]byte("z"), []byte("f"), []byte("inf")); err == nil || err.Error() != "value is NaN or Infinity" {
		t.Errorf("HINCRBYFLOAT of inf on a zset: %v (Redis reads the increment first)", err)
	}
}

// TestParseAsRedis: scores and float arguments follow strtod as Redis
// checks it, score range ends strtod alone, integers string2ll.
func TestParseAsRedis(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"1", 1, true}, {"-2.5", -2.5, true}, {".5", .5, true}, {"5.", 5, true}, {"1e3", 1000, true},
		{"0x10", 16, true}, {"0x1.8", 1.5, true}, {"0X1P4", 16, true}, {"+inf", math.Inf(1), true},
		{"-Infinity", math.Inf(-1), true}, {"INF", math.Inf(1), true}, {"0e-5000", 0, true},
		{"1_0", 0, false}, {" 1", 0, false}, {"1 ", 0, false}, {"", 0, false}, {"nan", 0, false},
		{"1e", 0, false}, {"1e+", 0, false}, {".", 0, false}, {"0x", 0, false}, {"0x.", 0, false},
		{"1e999", 0, false}, {"1e-400", 0, false}, {"0b1", 0, false}, {"infinit", 0, false},
		{"1.2.3", 0, false}, {"--1", 0, false}, {"+", 0, false},
	} {
		got, err := ParseFloat([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseFloat(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"", 0, true}, {" 1", 1, true}, {"1e999", math.Inf(1), true}, {"-1e999", math.Inf(-1), true},
		{"1e-400", 0, true}, {"2.5", 2.5, true}, {" ", 0, false}, {"x", 0, false}, {"nan", 0, false},
		{"1 ", 0, false},
	} {
		got, ok := ParseScoreBound([]byte(tc.in))
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseScoreBound(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"-5", -5, true}, {"9223372036854775807", math.MaxInt64, true},
		{"-9223372036854775808", math.MinInt64, true}, {"9223372036854775808", 0, false},
		{"007", 0, false}, {"-0", 0, false}, {"+1", 0, false}, {" 1", 0, false}, {"1.0", 0, false},
		{"", 0, false}, {"-", 0, false}, {"1_000", 0, false},
	} {
		got, ok := ParseInt([]byte(tc.in))
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseInt(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestRedisEdgeCases: found by TestRedisDifferential (server package)
// against a real redis-server; each failed before its fix.
func TestRedisEdgeCases(t *testing.T) {
	e, _ := open(t, "", &clock{})
	// APPEND of "" to a missing key makes an empty string, which MGET must
	// not report as missing.
	if n, err := e.Append([]byte("s"), nil); err != nil || n != 0 {
		t.Fatal(n, err)
	}
	if vs, err := e.MGet(bs("s", "missing")); err != nil || vs[0] == nil || vs[1] != nil {
		t.Errorf("MGET of an empty string and a missing key: %q, %v", vs, err)
	}
	// -0 is kept as 0.
	e.ZAdd([]byte("z"), ZAddOpts{}, []ScoredMember{{Member: []byte("a"), Score: math.Copysign(0, -1)}})
	if f, _, err := e.ZScore([]byte("z"), []byte("a")); err != nil || math.Signbit(f) {
		t.Errorf("ZSCORE of -0: %v, %v; Redis says 0", f, err)
	}
	// A negative LIMIT offset selects nothing, but the key's type is
	// checked first.
	e.Set([]byte("str"), []byte("v"), SetOpts{})
	if _, err := e.ZRange([]byte("str"), RangeOpts{By: "score", Min: ScoreBound{Value: math.Inf(-1)}, Max: ScoreBound{Value: math.Inf(1)}, Offset: -1, Count: 1}); !errors.Is(err, ErrWrongType) {
		t.Errorf("ZRANGE BYSCORE LIMIT -1 1 of a string: %v, want WRONGTYPE", err)
	}
	if r, err := e.ZRange([]byte("z"), RangeOpts{By: "score", Min: ScoreBound{Value: math.Inf(-1)}, Max: ScoreBound{Value: math.Inf(1)}, Offset: -1, Count: 1}); err != nil || len(r) != 0 {
		t.Errorf("ZRANGE BYSCORE LIMIT -1 1: %v, %v; want nothing", r, err)
	}
}
