package stream

// assign shares partitions among members (their ids, sorted) and returns
// the owner of each partition. It is sticky: a partition stays with its
// previous owner (prev, "" for none) as long as that keeps the shares
// balanced, so a rebalance moves as few partitions as it can, and each
// member gets either floor(P/M) or one more. With no members every
// partition is unowned. Pure: the same input gives the same output.
func assign(partitions int, members []string, prev []string) []string {
	out := make([]string, partitions)
	m := len(members)
	if m == 0 {
		return out
	}
	base, extra := partitions/m, partitions%m
	count := make(map[string]int, m)
	for _, id := range members {
		count[id] = 0
	}
	live := func(id string) bool { _, ok := count[id]; return ok && id != "" }
	// Keep up to base partitions per previous owner.
	for p := 0; p < partitions; p++ {
		if p < len(prev) && live(prev[p]) && count[prev[p]] < base {
			out[p] = prev[p]
			count[prev[p]]++
		}
	}
	// Then let previous owners keep one more while extra shares remain.
	for p := 0; p < partitions && extra > 0; p++ {
		if out[p] == "" && p < len(prev) && live(prev[p]) && count[prev[p]] == base {
			out[p] = prev[p]
			count[prev[p]]++
			extra--
		}
	}
	// Hand out the rest: first to members under base, then the extras, in
	// member order.
	next := 0
	for p := 0; p < partitions; p++ {
		if out[p] != "" {
			continue
		}
		for {
			id := members[next%m]
			if count[id] < base || count[id] == base && extra > 0 && !underBase(members, count, base) {
				if count[id] == base {
					extra--
				}
				out[p] = id
				count[id]++
				break
			}
			next++
		}
	}
	return out
}

func underBase(members []string, count map[string]int, base int) bool {
	for _, id := range members {
		if count[id] < base {
			return true
		}
	}
	return false
}
