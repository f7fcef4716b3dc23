package subject

import (
	"bytes"
	"sync"
)

const (
	pwc = '*' // partial wildcard: exactly one token
	fwc = '>' // full wildcard: one or more trailing tokens
)

// ValidSubscribe reports whether s is a valid subscription subject:
// non-empty dot-separated tokens without whitespace, wildcards only as whole
// tokens, and `>` only as the last token.
func ValidSubscribe(s []byte) bool { return valid(s, true) }

// ValidPublish reports whether s is a valid publish subject: as
// ValidSubscribe, with no wildcards at all.
func ValidPublish(s []byte) bool { return valid(s, false) }

func valid(s []byte, wildcards bool) bool {
	if len(s) == 0 {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			switch s[i] {
			case ' ', '\t', '\r', '\n', 0:
				return false
			}
			continue
		}
		tok := s[start:i]
		if len(tok) == 0 {
			return false
		}
		if len(tok) == 1 && (tok[0] == pwc || tok[0] == fwc) {
			if !wildcards || tok[0] == fwc && i != len(s) {
				return false
			}
		}
		start = i + 1
	}
	return true
}

// Result is what a subject matches: plain subscribers, each of which gets
// the message, and queue groups, one member of each of which gets it.
type Result[T comparable] struct {
	Plain  []T
	Groups [][]T
}

// Empty reports whether nothing matched.
func (r *Result[T]) Empty() bool { return len(r.Plain) == 0 && len(r.Groups) == 0 }

type node[T comparable] struct {
	next   map[string]*node[T]
	star   *node[T]
	full   *node[T]
	plain  []T
	groups map[string][]T
}

func (n *node[T]) empty() bool {
	return len(n.next) == 0 && n.star == nil && n.full == nil && len(n.plain) == 0 && len(n.groups) == 0
}

// maxCache bounds the match cache; past it the cache is emptied and refilled
// by the subjects in use, a cheap way to keep the hot set without an LRU.
const maxCache = 4096

// List is the subscription trie.
type List[T comparable] struct {
	mu    sync.RWMutex
	root  node[T]
	cache map[string]*Result[T]
	count int
	none  Result[T] // what an unroutable subject matches
}

// NewList returns an empty list.
func NewList[T comparable]() *List[T] {
	return &List[T]{cache: make(map[string]*Result[T])}
}

// Count returns the number of subscriptions held.
func (l *List[T]) Count() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.count
}

// Insert adds item under the (valid) subscription subject subj, in queue
// group queue if queue is not empty.
func (l *List[T]) Insert(subj []byte, queue string, item T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := &l.root
	forTokens(subj, func(tok []byte) {
		n = n.child(tok, true)
	})
	if queue == "" {
		n.plain = append(n.plain, item)
	} else {
		if n.groups == nil {
			n.groups = make(map[string][]T)
		}
		n.groups[queue] = append(n.groups[queue], item)
	}
	l.count++
	clear(l.cache)
}

// Remove deletes item from subj/queue; it reports whether item was there.
func (l *List[T]) Remove(subj []byte, queue string, item T) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	var path [32]*node[T]
	nodes := path[:0]
	n := &l.root
	ok := true
	forTokens(subj, func(tok []byte) {
		if n != nil {
			nodes = append(nodes, n)
			n = n.child(tok, false)
		}
	})
	if n == nil {
		return false
	}
	if queue == "" {
		n.plain, ok = without(n.plain, item)
	} else {
		var members []T
		members, ok = without(n.groups[queue], item)
		if len(members) == 0 {
			delete(n.groups, queue)
		} else {
			n.groups[queue] = members
		}
	}
	if !ok {
		return false
	}
	l.count--
	clear(l.cache)
	l.prune(subj, nodes, n)
	return true
}

// prune unlinks empty nodes from the leaf up, so a churn of unique subjects
// (request inboxes) does not grow the trie.
func (l *List[T]) prune(subj []byte, parents []*node[T], leaf *node[T]) {
	toks := tokens(subj)
	n := leaf
	for i := len(parents) - 1; i >= 0 && n.empty(); i-- {
		p := parents[i]
		tok := toks[i]
		switch {
		case len(tok) == 1 && tok[0] == pwc:
			p.star = nil
		case len(tok) == 1 && tok[0] == fwc:
			p.full = nil
		default:
			delete(p.next, string(tok))
		}
		n = p
	}
}

func without[T comparable](s []T, item T) ([]T, bool) {
	for i, v := range s {
		if v == item {
			s[i] = s[len(s)-1]
			var zero T
			s[len(s)-1] = zero
			return s[:len(s)-1], true
		}
	}
	return s, false
}

func (n *node[T]) child(tok []byte, create bool) *node[T] {
	if len(tok) == 1 && (tok[0] == pwc || tok[0] == fwc) {
		p := &n.star
		if tok[0] == fwc {
			p = &n.full
		}
		if *p == nil && create {
			*p = &node[T]{}
		}
		return *p
	}
	c := n.next[string(tok)]
	if c == nil && create {
		if n.next == nil {
			n.next = make(map[string]*node[T])
		}
		c = &node[T]{}
		n.next[string(tok)] = c
	}
	return c
}

// Match returns the subscriptions subj matches. The result is shared: do not
// modify it. A wildcard in subj is a literal token here (a client that is
// not pedantic may publish to "a.*": a subscription to "a.*" or "a.>" gets
// it, one to "a.b" does not), and a subject with an empty token ("a..b",
// ".a", "a.", "") matches nothing, as in nats-server.
func (l *List[T]) Match(subj []byte) *Result[T] {
	if !routable(subj) {
		return &l.none
	}
	l.mu.RLock()
	r, ok := l.cache[string(subj)]
	l.mu.RUnlock()
	if ok {
		return r
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.cache[string(subj)]; ok {
		return r
	}
	r = &Result[T]{}
	var toks [32][]byte
	groups := map[string][]T{}
	match(&l.root, tokensInto(subj, toks[:0]), r, groups)
	for _, g := range groups {
		r.Groups = append(r.Groups, g)
	}
	if len(l.cache) >= maxCache {
		clear(l.cache)
	}
	l.cache[string(subj)] = r
	return r
}

// routable reports whether subj has no empty token.
func routable(subj []byte) bool {
	return len(subj) > 0 && subj[0] != '.' && subj[len(subj)-1] != '.' && !bytes.Contains(subj, []byte(".."))
}

func match[T comparable](n *node[T], toks [][]byte, r *Result[T], groups map[string][]T) {
	if n == nil {
		return
	}
	if len(toks) == 0 {
		collect(n, r, groups)
		return
	}
	if n.full != nil {
		collect(n.full, r, groups)
	}
	match(n.star, toks[1:], r, groups)
	match(n.next[string(toks[0])], toks[1:], r, groups)
}

func collect[T comparable](n *node[T], r *Result[T], groups map[string][]T) {
	r.Plain = append(r.Plain, n.plain...)
	for q, members := range n.groups {
		groups[q] = append(groups[q], members...)
	}
}

func forTokens(subj []byte, fn func([]byte)) {
	start := 0
	for i := 0; i <= len(subj); i++ {
		if i == len(subj) || subj[i] == '.' {
			fn(subj[start:i])
			start = i + 1
		}
	}
}

func tokens(subj []byte) [][]byte { return tokensInto(subj, nil) }

func tokensInto(subj []byte, dst [][]byte) [][]byte {
	forTokens(subj, func(t []byte) { dst = append(dst, t) })
	return dst
}
