package kv

// Glob reports whether s matches the Redis-style pattern p: * (any run),
// ? (one byte), [abc], [^abc], [a-z] and \ to take the next byte as it is.
// Backtracking is on the last * only, so a pattern of many stars stays
// linear-ish instead of exponential.
func Glob(p, s []byte) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		if px < len(p) {
			switch p[px] {
			case '*':
				starP, starS = px, sx
				px++
				continue
			case '?':
				px++
				sx++
				continue
			case '[':
				if n, ok := matchClass(p[px:], s[sx]); n > 0 {
					if ok {
						px += n
						sx++
						continue
					}
					goto backtrack
				}
				// An unclosed [ is a literal.
			case '\\':
				if px+1 < len(p) {
					if p[px+1] == s[sx] {
						px += 2
						sx++
						continue
					}
					goto backtrack
				}
			}
			if p[px] == s[sx] {
				px++
				sx++
				continue
			}
		}
	backtrack:
		if starP < 0 {
			return false
		}
		starS++
		px, sx = starP+1, starS
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// matchClass matches c against the class at the start of p ("[...]"); n
// is the class's length, 0 if it is not closed.
func matchClass(p []byte, c byte) (n int, ok bool) {
	i := 1
	neg := i < len(p) && p[i] == '^'
	if neg {
		i++
	}
	match := false
	for i < len(p) {
		if p[i] == ']' {
			return i + 1, match != neg
		}
		lo := p[i]
		if lo == '\\' && i+1 < len(p) {
			i++
			lo = p[i]
		}
		if i+2 < len(p) && p[i+1] == '-' && p[i+2] != ']' {
			hi := p[i+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if c >= lo && c <= hi {
				match = true
			}
			i += 3
			continue
		}
		if c == lo {
			match = true
		}
		i++
	}
	return 0, false
}
