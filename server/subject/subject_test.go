package subject

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestValid(t *testing.T) {
	tests := []struct {
		s        string
		sub, pub bool
	}{
		{"foo", true, true},
		{"foo.bar.baz", true, true},
		{"foo.*", true, false},
		{"foo.>", true, false},
		{">", true, false},
		{"*.*", true, false},
		{"foo*.bar", true, true}, // '*' inside a token is a literal
		{"foo.>.bar", false, false},
		{"", false, false},
		{"foo..bar", false, false},
		{".foo", false, false},
		{"foo.", false, false},
		{"foo bar", false, false},
		{"foo\tbar", false, false},
	}
	for _, tt := range tests {
		if got := ValidSubscribe([]byte(tt.s)); got != tt.sub {
			t.Errorf("ValidSubscribe(%q) = %v", tt.s, got)
		}
		if got := ValidPublish([]byte(tt.s)); got != tt.pub {
			t.Errorf("ValidPublish(%q) = %v", tt.s, got)
		}
	}
}

func TestMatch(t *testing.T) {
	l := NewList[string]()
	subs := []struct{ subj, queue, id string }{
		{"foo.bar", "", "exact"},
		{"foo.*", "", "star"},
		{"foo.>", "", "full"},
		{">", "", "all"},
		{"*.bar", "", "starbar"},
		{"foo.bar.baz", "", "deep"},
		{"foo.bar", "workers", "w1"},
		{"foo.*", "workers", "w2"},
		{"foo.bar", "other", "o1"},
	}
	for _, s := range subs {
		l.Insert([]byte(s.subj), s.queue, s.id)
	}
	tests := []struct {
		subj   string
		plain  []string
		groups []string
	}{
		{"foo.bar", []string{"all", "exact", "full", "star", "starbar"}, []string{"o1", "w1,w2"}},
		{"foo.baz", []string{"all", "full", "star"}, []string{"w2"}},
		{"foo.bar.baz", []string{"all", "deep", "full"}, nil},
		{"foo", []string{"all"}, nil},
		{"x.bar", []string{"all", "starbar"}, nil},
		// Published by a client that is not pedantic (nats-server's
		// answers): a wildcard is a literal token, an empty token
		// reaches nobody.
		{"foo.*", []string{"all", "full", "star"}, []string{"w2"}},
		{"foo.>", []string{"all", "full", "star"}, []string{"w2"}},
		{"foo..bar", nil, nil}, {".foo", nil, nil}, {"foo.", nil, nil}, {"", nil, nil}, {".", nil, nil},
	}
	for _, tt := range tests {
		for round := 0; round < 2; round++ { // second round hits the cache
			r := l.Match([]byte(tt.subj))
			plain := slices.Clone(r.Plain)
			slices.Sort(plain)
			var groups []string
			for _, g := range r.Groups {
				g = slices.Clone(g)
				slices.Sort(g)
				groups = append(groups, fmt.Sprint(joinComma(g)))
			}
			slices.Sort(groups)
			if !slices.Equal(plain, tt.plain) || !slices.Equal(groups, tt.groups) {
				t.Errorf("Match(%q) round %d = %v %v, want %v %v", tt.subj, round, plain, groups, tt.plain, tt.groups)
			}
		}
	}
	if !l.Remove([]byte("foo.*"), "", "star") || l.Remove([]byte("foo.*"), "", "star") {
		t.Fatal("remove once must succeed, twice must fail")
	}
	if r := l.Match([]byte("foo.baz")); slices.Contains(r.Plain, "star") {
		t.Fatal("removed subscription still matched: stale cache")
	}
	for _, s := range subs {
		l.Remove([]byte(s.subj), s.queue, s.id)
	}
	if l.Count() != 0 || !l.root.empty() {
		t.Fatalf("count %d, root empty %v after removing all", l.Count(), l.root.empty())
	}
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}

func TestConcurrent(t *testing.T) {
	l := NewList[int]()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				subj := []byte(fmt.Sprintf("s.%d.%d", g, i%10))
				l.Insert(subj, "", g*1000+i)
				l.Match([]byte(fmt.Sprintf("s.%d.%d", (g+1)%4, i%10)))
				l.Remove(subj, "", g*1000+i)
			}
		}(g)
	}
	wg.Wait()
	if l.Count() != 0 {
		t.Fatalf("count = %d", l.Count())
	}
}

func BenchmarkMatchCached(b *testing.B) {
	l := NewList[int]()
	for i := 0; i < 1000; i++ {
		l.Insert([]byte(fmt.Sprintf("orders.%d.created", i)), "", i)
	}
	l.Insert([]byte("orders.*.created"), "", -1)
	subj := []byte("orders.42.created")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if l.Match(subj).Empty() {
			b.Fatal("no match")
		}
	}
}
