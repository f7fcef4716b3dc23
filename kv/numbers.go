package kv

import (
	"bytes"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Redis reads floats with C's strtod (scores, score increments) and
// strtold (INCRBYFLOAT, HINCRBYFLOAT), and does INCRBYFLOAT's arithmetic in
// long double, which on x86-64 is the x87 80-bit format: a 64-bit
// significand. Clients see the difference: 0.1 + 0.2 is "0.3" in Redis,
// "0.30000000000000004" in float64. This file reproduces both: the syntax
// strtod accepts, and long double sums as big.Floats of 64 bits rounded to
// nearest even (what the x87 does), printed as Redis prints them.

// floatSyntax checks s against what strtod would consume whole: an
// optional sign, then "inf" or "infinity" (any case), or a decimal
// mantissa with an optional exponent, or a hexadecimal one ("0x") with an
// optional binary exponent ("p"). No spaces, no digit separators, no NaN
// (Redis refuses it). nonzero reports a mantissa digit other than 0, which
// tells an underflow from a written zero.
func floatSyntax(s string) (ok, hex, inf, nonzero bool) {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	if rest := s[i:]; strings.EqualFold(rest, "inf") || strings.EqualFold(rest, "infinity") {
		return true, false, true, false
	}
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	expMark := byte('e')
	if len(s)-i > 2 && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') {
		hex, expMark, i = true, 'p', i+2
		digit = func(c byte) bool {
			return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
		}
	}
	digits := 0
	for ; i < len(s) && (digit(s[i]) || s[i] == '.'); i++ {
		if s[i] == '.' {
			if digits < 0 { // a second point
				return false, false, false, false
			}
			digits = -digits - 1 // negative from here on: the point was seen
			continue
		}
		if digits < 0 {
			digits--
		} else {
			digits++
		}
		nonzero = nonzero || s[i] != '0'
	}
	if digits == 0 || digits == -1 { // no mantissa digit
		return false, false, false, false
	}
	if i < len(s) && (s[i]|0x20) == expMark {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false, false, false, false
		}
	}
	return i == len(s), hex, false, nonzero
}

// ParseFloat reads a float as Redis reads a score or a float argument
// (strtod, then refusing NaN, overflow and an underflow to zero):
// "1e3", "0x1p4", "-inf", "Infinity"; not " 1", "1_0" or "nan".
func ParseFloat(b []byte) (float64, error) {
	ok, hex, inf, nonzero := floatSyntax(string(b))
	if !ok {
		return 0, ErrNotFloat
	}
	if inf {
		if b[0] == '-' {
			return math.Inf(-1), nil
		}
		return math.Inf(1), nil
	}
	f, err := parseDouble(string(b), hex)
	if err != nil || (f == 0 && nonzero) {
		return 0, ErrNotFloat
	}
	return f, nil
}

// ParseScoreBound reads a score range's end after its '(' as ZRANGEBYSCORE
// and ZCOUNT do: strtod with nothing left over, so leading spaces and the
// empty string (0) pass, and an overflow is an infinity.
func ParseScoreBound(b []byte) (float64, bool) {
	s := strings.TrimLeft(string(b), " \t\n\v\f\r")
	if s == "" {
		return 0, len(b) == 0 // strtod of "" consumes nothing and ends there; of "  " it consumes nothing
	}
	ok, hex, inf, _ := floatSyntax(s)
	if !ok {
		return 0, false
	}
	if inf {
		if s[0] == '-' {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	}
	f, _ := parseDouble(s, hex) // ErrRange: f is ±Inf or 0, as strtod's
	return f, true
}

// parseDouble converts what floatSyntax accepted. Go wants a binary
// exponent on hexadecimal floats; strtod does not.
func parseDouble(s string, hex bool) (float64, error) {
	if hex && !strings.ContainsAny(s, "pP") {
		s += "p0"
	}
	return strconv.ParseFloat(s, 64)
}

// x87 extended precision: a 64-bit significand; as a big.Float mantissa in
// [0.5, 1), exponents up to 16384 are finite, and below -16444 even a
// denormal is zero.
const (
	ldPrec   = 64
	ldMaxExp = 16384
	ldMinExp = -16444
)

// parseLongDouble reads b as Redis' string2ld does (strtold, refusing
// spaces, NaN, overflow and an underflow to zero). inf reports an
// infinity, which has no big.Float arithmetic worth doing here.
func parseLongDouble(b []byte) (f *big.Float, inf bool, ok bool) {
	s := string(b)
	ok, hex, inf, nonzero := floatSyntax(s)
	if !ok || len(s) >= maxLongDoubleChars {
		return nil, false, false
	}
	if inf {
		return nil, true, true
	}
	base := 10
	if hex {
		base = 0 // big.ParseFloat takes "0x" prefixes with base 0 only
	}
	f, _, err := big.ParseFloat(s, base, ldPrec, big.ToNearestEven)
	if err != nil {
		return nil, false, false
	}
	if f.Sign() != 0 {
		if e := f.MantExp(nil); e > ldMaxExp || e < ldMinExp {
			return nil, false, false
		}
	} else if nonzero {
		return nil, false, false
	}
	return f, false, true
}

// maxLongDoubleChars is Redis' bound on a long double's text, in and out.
const maxLongDoubleChars = 5 * 1024

// addLongDouble adds two long doubles; ok is false if the sum is out of
// the format's range (an infinity to the x87).
func addLongDouble(a, b *big.Float) (*big.Float, bool) {
	z := new(big.Float).SetPrec(ldPrec).SetMode(big.ToNearestEven).Add(a, b)
	if z.Sign() != 0 && z.MantExp(nil) > ldMaxExp {
		return nil, false
	}
	return z, true
}

// formatLongDouble prints f as Redis' ld2string in its human mode:
// printf("%.17Lf"), trailing zeros and point removed, "-0" as "0".
func formatLongDouble(f *big.Float) []byte {
	b := f.Append(nil, 'f', 17) // always with a point and 17 decimals
	b = bytes.TrimSuffix(bytes.TrimRight(b, "0"), []byte("."))
	if string(b) == "-0" {
		return []byte("0")
	}
	return b
}

// ParseInt reads an integer as Redis' string2ll does, for arguments and
// for stored values alike: decimal digits with an optional '-', no '+',
// no leading zeros (so "007" and "-0" are not integers), no spaces, and
// within int64.
func ParseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	digits := b
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] < '1' || digits[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64) // digits only from here on but for the sign
	if err != nil {
		return 0, false
	}
	return n, true
}
