package kv

import "testing"

// globRef is a second, plain implementation of Glob for FuzzGlob: the
// pattern cut into tokens the way Glob reads it, then matched by dynamic
// programming over (token, byte) instead of Glob's one-star backtracking.
func globRef(p, s []byte) bool {
	type token struct {
		star bool
		one  func(c byte) bool
	}
	var toks []token
	for i := 0; i < len(p); {
		switch c := p[i]; {
		case c == '*':
			toks = append(toks, token{star: true})
			i++
		case c == '?':
			toks = append(toks, token{one: func(byte) bool { return true }})
			i++
		case c == '[':
			n, _ := matchClass(p[i:], 0)
			class := p[i : i+n]
			toks = append(toks, token{one: func(b byte) bool { _, ok := matchClass(class, b); return ok }})
			i += n
		case c == '\\' && i+1 < len(p):
			lit := p[i+1]
			toks = append(toks, token{one: func(b byte) bool { return b == lit }})
			i += 2
		default:
			toks = append(toks, token{one: func(b byte) bool { return b == c }})
			i++
		}
	}
	// m[j]: the tokens from i on match s[j:]; filled from the last token.
	m := make([]bool, len(s)+1)
	m[len(s)] = true
	for i := len(toks) - 1; i >= 0; i-- {
		next := m
		m = make([]bool, len(s)+1)
		for j := len(s); j >= 0; j-- {
			if toks[i].star {
				m[j] = next[j] || (j < len(s) && m[j+1])
			} else {
				m[j] = j < len(s) && toks[i].one(s[j]) && next[j+1]
			}
		}
	}
	return m[0]
}

// FuzzGlob: Glob, which patterns from clients reach (SCAN MATCH, KEYS,
// CONFIG GET), agrees with the reference on every pattern and string. The
// reference shares Glob's reading of classes (matchClass): what it checks
// is the matching, the one-star backtracking above all.
func FuzzGlob(f *testing.F) {
	for _, seed := range [][2]string{
		{"h?llo", "hello"}, {"h*llo", "heeeello"}, {"h[ae]llo", "hallo"}, {"h[^e]llo", "hbllo"},
		{"h[a-b]llo", "hbllo"}, {"a*b*c*d", "aXbYcZd"}, {`\*x`, "*x"}, {"[abc", "a"}, {"[a-]", "^"}, {"[^", "x"}, {"*", ""},
		{"[]]", "]"}, {`[\]]`, "]"}, {"a\\", "a\\"}, {"[z-a]", "m"}, {"**a**", "bab"},
	} {
		f.Add([]byte(seed[0]), []byte(seed[1]))
	}
	f.Fuzz(func(t *testing.T, p, s []byte) {
		if len(p) > 64 || len(s) > 256 {
			return
		}
		if got, want := Glob(p, s), globRef(p, s); got != want {
			t.Fatalf("Glob(%q, %q) = %v, reference says %v", p, s, got, want)
		}
	})
}
