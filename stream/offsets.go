package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowmesh/flowmesh/kv/store"
)

// ErrGroupActive refuses to delete a group that has live members.
var ErrGroupActive = errors.New("stream: group has live members")

// Target is where a rewind puts a group: Earliest, Latest, an Offset or a
// Time.
type Target struct {
	Kind   TargetKind
	Offset uint64
	Time   time.Time
}

// TargetKind says which field of a Target applies.
type TargetKind uint8

// Target kinds.
const (
	Earliest TargetKind = iota
	Latest
	AtOffset
	AtTime
)

// ParseTarget reads "earliest", "latest", "offset=N" or "time=T" (T an
// RFC 3339 time or Unix milliseconds).
func ParseTarget(s string) (Target, error) {
	switch {
	case s == "earliest":
		return Target{Kind: Earliest}, nil
	case s == "latest":
		return Target{Kind: Latest}, nil
	case strings.HasPrefix(s, "offset="):
		n, err := strconv.ParseUint(s[7:], 10, 64)
		if err != nil {
			return Target{}, fmt.Errorf("%w: %q: offset is not a number", ErrBadConfig, s)
		}
		return Target{Kind: AtOffset, Offset: n}, nil
	case strings.HasPrefix(s, "time="):
		t, err := ParseTime(s[5:])
		if err != nil {
			return Target{}, err
		}
		return Target{Kind: AtTime, Time: t}, nil
	}
	return Target{}, fmt.Errorf("%w: %q: want earliest, latest, offset=N or time=T", ErrBadConfig, s)
}

// ParseTime reads an RFC 3339 time or Unix milliseconds.
func ParseTime(s string) (time.Time, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: time %q: want RFC 3339 or Unix milliseconds", ErrBadConfig, s)
	}
	return t, nil
}

// Resolve returns the offset of partition p that tg names.
func (t *Topic) Resolve(p int, tg Target) (uint64, error) {
	low, high, err := t.Bounds(p)
	if err != nil {
		return 0, err
	}
	switch tg.Kind {
	case Earliest:
		return low, nil
	case Latest:
		return high, nil
	case AtOffset:
		if tg.Offset < low || tg.Offset > high {
			return 0, fmt.Errorf("%w: %s/%d %s, so group offsets can be %d-%d (%d, the high-water mark, leaves nothing to read), not %d",
				ErrOutOfRange, t.name, p, holds(low, high), low, high, high, tg.Offset)
		}
		return tg.Offset, nil
	}
	return t.SeekTime(p, unixNanos(tg.Time))
}

// The times Unix nanoseconds can hold (1678-2262).
var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// unixNanos is t in Unix nanoseconds, clamped to what an int64 holds:
// UnixNano wraps past either end, so a rewind to the year 3000 went to the
// earliest event and one to the year 1000 to the latest.
func unixNanos(t time.Time) int64 {
	switch {
	case t.After(maxNanoTime):
		return math.MaxInt64
	case t.Before(minNanoTime):
		return math.MinInt64
	}
	return t.UnixNano()
}

// Reset rewinds (or fast-forwards) a group's committed offsets to tg, for
// one partition or all (partition < 0), and returns the new offsets. Live
// members continue from there at once; events they had in flight from
// before are no longer counted. This is the groundwork of replay.
func (e *Engine) Reset(topic, group string, partition int, tg Target) (map[int]uint64, error) {
	if err := checkName("group", group); err != nil {
		return nil, err
	}
	t, err := e.Topic(topic, false)
	if err != nil {
		return nil, err
	}
	parts := []int{partition}
	if partition < 0 {
		parts = parts[:0]
		for p := 0; p < t.Partitions(); p++ {
			parts = append(parts, p)
		}
	}
	offs := make(map[int]uint64, len(parts))
	for _, p := range parts {
		if offs[p], err = t.Resolve(p, tg); err != nil {
			return nil, err
		}
	}
	// e.mu is held throughout: a Join that creates the group (loading its
	// offsets from Pebble) or the last member's leave that removes it
	// (writing its last commits) comes wholly before or after the reset.
	// Between the two, a reset written under a group created from the old
	// offsets was lost (TestResetRacingJoin).
	e.mu.RLock()
	defer e.mu.RUnlock()
	g := e.groups[groupKey{topic, group}]
	if g == nil {
		// No live members: the offsets are all there is.
		b := e.opts.Store.NewBatch()
		for p, off := range offs {
			b.Set(store.KeyspaceStream, offsetKey(topic, group, p), binary.LittleEndian.AppendUint64(nil, off))
		}
		if err := b.Commit(); err != nil {
			return nil, fmt.Errorf("stream: reset %s/%s: %w", topic, group, err)
		}
		return offs, nil
	}
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	if err := g.persist(offs); err != nil {
		return nil, err
	}
	g.mu.Lock()
	for p, off := range offs {
		g.committed[p] = int64(off)
		delete(g.toPersist, p)
		g.epoch[p]++
		g.pos[p] = off
		for _, m := range g.members {
			delete(m.processed, p)
		}
	}
	g.mu.Unlock()
	g.kick()
	e.opts.Logger.Info("stream: group reset", "topic", topic, "group", group, "offsets", fmt.Sprint(offs))
	return offs, nil
}

// GroupPartition is one partition's state in a group.
type GroupPartition struct {
	Partition int    `json:"partition"`
	Committed int64  `json:"committed"` // -1: none yet
	High      uint64 `json:"high"`
	Lag       uint64 `json:"lag"` // high - committed (or - low, with no commit)
	Owner     string `json:"owner,omitempty"`
	Position  uint64 `json:"position,omitempty"` // next to deliver, while owned
}

// GroupMember is one live member.
type GroupMember struct {
	ID         string `json:"id"`
	Partitions []int  `json:"partitions"`
	InFlight   int    `json:"in_flight"`
	Window     int    `json:"window"`
	Delivered  uint64 `json:"delivered"`
	LastSeenMs int64  `json:"last_seen_ms"` // ago
}

// GroupInfo describes a group: its members and, per partition, the
// committed offset and lag.
type GroupInfo struct {
	Topic      string           `json:"topic"`
	Group      string           `json:"group"`
	Generation uint64           `json:"generation"`
	Members    []GroupMember    `json:"members"`
	Partitions []GroupPartition `json:"partitions"`
	Lag        uint64           `json:"lag"`
}

// GroupInfo describes a group, live or with committed offsets only.
func (e *Engine) GroupInfo(topic, group string) (GroupInfo, error) {
	t, err := e.Topic(topic, false)
	if err != nil {
		return GroupInfo{}, err
	}
	gi := GroupInfo{Topic: topic, Group: group, Members: []GroupMember{}}
	e.mu.RLock()
	g := e.groups[groupKey{topic, group}]
	e.mu.RUnlock()
	committed := make([]int64, t.Partitions())
	for p := range committed {
		committed[p] = -1
	}
	owners := make([]string, len(committed))
	positions := make([]uint64, len(committed))
	if g != nil {
		now := e.opts.Now()
		g.mu.Lock()
		gi.Generation = g.gen
		copy(committed, g.committed)
		for p, m := range g.owner {
			if m != nil && p < len(owners) {
				owners[p], positions[p] = m.id, g.pos[p]
			}
		}
		for _, m := range g.members {
			gi.Members = append(gi.Members, GroupMember{ID: m.id, Partitions: slices.Clone(m.assigned), InFlight: len(m.flights),
				Window: m.o.Window, Delivered: m.delivered, LastSeenMs: now.Sub(m.lastSeen).Milliseconds()})
		}
		g.mu.Unlock()
		slices.SortFunc(gi.Members, func(a, b GroupMember) int { return strings.Compare(a.ID, b.ID) })
	} else {
		found := false
		for p := range committed {
			v, err := e.opts.Store.Get(store.KeyspaceStream, offsetKey(topic, group, p))
			if err == nil && len(v) == 8 {
				committed[p] = int64(binary.LittleEndian.Uint64(v))
				found = true
			}
		}
		if !found {
			return GroupInfo{}, fmt.Errorf("%w: %q on %q", ErrGroupNotFound, group, topic)
		}
	}
	for p := range committed {
		low, high, _ := t.Bounds(p)
		from := low
		if committed[p] >= 0 {
			from = uint64(committed[p])
		}
		lag := uint64(0)
		if high > from {
			lag = high - from
		}
		gi.Partitions = append(gi.Partitions, GroupPartition{Partition: p, Committed: committed[p], High: high, Lag: lag,
			Owner: owners[p], Position: positions[p]})
		gi.Lag += lag
	}
	return gi, nil
}

// Groups lists the groups of a topic: live ones and those with committed
// offsets.
func (e *Engine) Groups(topic string) ([]string, error) {
	if _, err := e.Topic(topic, false); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	e.mu.RLock()
	for k := range e.groups {
		if k.topic == topic {
			set[k.group] = true
		}
	}
	e.mu.RUnlock()
	err := e.opts.Store.Scan(store.KeyspaceStream, []byte("o/"+topic+"\x00"), func(k, _ []byte) bool {
		rest := k[len("o/"+topic+"\x00"):]
		if i := strings.IndexByte(string(rest), 0); i > 0 {
			set[string(rest[:i])] = true
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("stream: list groups of %q: %w", topic, err)
	}
	out := slices.AppendSeq(make([]string, 0, len(set)), maps.Keys(set)) // [] not null in JSON when empty
	slices.Sort(out)
	return out, nil
}

// DeleteGroup forgets a group's committed offsets. It must have no live
// members.
func (e *Engine) DeleteGroup(topic, group string) error {
	if _, err := e.Topic(topic, false); err != nil {
		return err
	}
	// Under e.mu, as Reset: a Join must not load the offsets being deleted.
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.groups[groupKey{topic, group}] != nil {
		return fmt.Errorf("%w: %q on %q", ErrGroupActive, group, topic)
	}
	b := e.opts.Store.NewBatch()
	b.DeletePrefix(store.KeyspaceStream, []byte("o/"+topic+"\x00"+group+"\x00"))
	if err := b.Commit(); err != nil {
		return fmt.Errorf("stream: delete group %s/%s: %w", topic, group, err)
	}
	return nil
}
