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
				if n, ok := matchClass(p[px:], s[sx]); ok {
					px += n
					sx++
					continue
				}
				goto backtrack
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

// matchClass matches c against the class at the start of p ("[..."), read
// as Redis reads it, malformed classes included (patterns come from
// clients, who get Redis' answers): "\\x" is x, "a-z" a range in either
// order, a class left open ends with the pattern ("[a" matches "a", "[^"
// any byte, "[" nothing), and a range may take the ']' as its end ("[a-]"
// is the range ']'..'a', left open). n is the class's length in p.
func matchClass(p []byte, c byte) (n int, ok bool) {
	i := 1
	neg := i < len(p) && p[i] == '^'
	if neg {
		i++
	}
	match := false
	for ; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p):
			i++
			match = match || p[i] == c
		case p[i] == ']':
			return i + 1, match != neg
		case i+2 < len(p) && p[i+1] == '-':
			lo, hi := min(p[i], p[i+2]), max(p[i], p[i+2])
			match = match || (c >= lo && c <= hi)
			i += 2
		default:
			match = match || p[i] == c
		}
	}
	return len(p), match != neg
}
