package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/flowmesh/flowmesh/kv/store"
)

// Consumer groups.
//
// A group shares its topic's partitions among its live members (assign),
// one owner per partition, and pushes each member the events of its
// partitions from the group's position, at most Window unacknowledged
// events at a time. A member acknowledges events in delivery order (Ack);
// that returns window and, with auto-commit, the group commits the
// acknowledged offsets every CommitEvery events or CommitInterval. Commit
// sets an offset explicitly. Committed offsets ("the next offset to
// consume", as in Kafka) are durable in Pebble; a partition that changes
// owner resumes from its committed offset, so events that were delivered
// but not committed are delivered again: at-least-once. A member leaves by
// Leave, by its connection closing, or by missing heartbeats for its
// SessionTimeout.
//
// Each partition has an epoch that changes whenever its owner or position
// does (rebalance, rewind); an acknowledgement of an event delivered in an
// older epoch is ignored, so a former owner cannot commit over the new
// one's progress.
//
// One goroutine per group with members does all reading and delivery; the
// Sink calls Deliver and Assigned come from it, in order. Join, Ack,
// Heartbeat and Leave only change state under the group's lock and wake it.

// Sink is where a member's events go (the server: a connection).
type Sink interface {
	// Deliver hands over events, in order per partition. The events and
	// their bytes are valid only during the call (the group reuses its read
	// buffers): copy what must be kept. It must not block for long: it runs
	// on the group's goroutine.
	Deliver(evs []Event)
	// Assigned tells the member its partitions after a rebalance.
	Assigned(generation uint64, partitions []int)
	// Closed ends the membership from the server's side (topic deleted,
	// session expired, shutdown). Not called after Leave.
	Closed(err error)
}

// JoinOptions configure a member. Zero values take the defaults noted.
type JoinOptions struct {
	Name   string // member id prefix, for humans; default "member"
	Window int    // unacknowledged events in flight; default 256
	// ManualCommit turns auto-commit off: only Commit moves offsets.
	ManualCommit   bool
	CommitEvery    int           // auto-commit after this many acks; default 100
	CommitInterval time.Duration // or after this long; default 1s
	// SessionTimeout expels a member that neither acks nor heartbeats for
	// this long; 0 (default): the member lives as long as its connection.
	SessionTimeout time.Duration
	// StartLatest makes a partition without a committed offset start at
	// the high-water mark; the default is the earliest retained event.
	StartLatest bool
}

// Group is a consumer group's live state.
type Group struct {
	e    *Engine
	t    *Topic
	name string

	// commitMu serialises commits and rewinds with their Pebble writes, and
	// rebalances with them: it is taken before mu, after the engine's mu.
	commitMu sync.Mutex

	mu        sync.Mutex
	members   map[string]*Member
	gen       uint64
	owner     []*Member
	epoch     []uint64
	pos       []uint64 // next offset to deliver, per partition
	committed []int64  // -1: none
	retryAt   []time.Time
	readers   []*partReader  // grown under mu; each used by the delivery goroutine only
	toPersist map[int]uint64 // commits decided (rebalance) but not yet written
	latest    bool
	closed    bool
	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
}

// Member is one member of a group.
type Member struct {
	g        *Group
	id       string
	sink     Sink
	o        JoinOptions
	lastSeen time.Time

	// Guarded by g.mu.
	flights    []flight
	processed  map[int]uint64 // acked, not yet committed: next offset per partition
	acked      int            // acks since the last commit
	lastCommit time.Time
	assigned   []int
	notify     bool // Assigned must be sent
	gone       bool
	delivered  uint64
}

type flight struct {
	part  int
	off   uint64
	epoch uint64
}

// ID is the member's id within its group.
func (m *Member) ID() string { return m.id }

func offsetKey(topic, group string, p int) []byte {
	return []byte("o/" + topic + "\x00" + group + "\x00" + strconv.Itoa(p))
}

// Join adds a member to group on topic (creating the group if needed) and
// starts delivery. The topic must exist.
func (e *Engine) Join(topic, group string, o JoinOptions, sink Sink) (*Member, error) {
	if err := checkName("group", group); err != nil {
		return nil, err
	}
	if o.Window <= 0 {
		o.Window = 256
	}
	if o.CommitEvery <= 0 {
		o.CommitEvery = 100
	}
	if o.CommitInterval <= 0 {
		o.CommitInterval = time.Second
	}
	if o.Name == "" {
		o.Name = "member"
	}
	t, err := e.Topic(topic, false)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if e.topics[topic] != t { // deleted (or deleted and re-created) meanwhile
		return nil, fmt.Errorf("%w: %q", ErrTopicNotFound, topic)
	}
	k := groupKey{topic, group}
	g := e.groups[k]
	if g == nil {
		g, err = e.newGroup(t, group)
		if err != nil {
			return nil, err
		}
		e.groups[k] = g
		go g.run()
	}
	now := e.opts.Now()
	m := &Member{g: g, id: fmt.Sprintf("%s-%08x", o.Name, rand.Uint32()), sink: sink, o: o,
		lastSeen: now, lastCommit: now, processed: make(map[int]uint64)}
	g.commitMu.Lock()
	g.mu.Lock()
	g.members[m.id] = m
	g.latest = o.StartLatest
	g.rebalance()
	g.mu.Unlock()
	g.commitMu.Unlock()
	e.opts.Logger.Info("stream: member joined", "topic", topic, "group", group, "member", m.id)
	return m, nil
}

// newGroup loads a group's committed offsets. Called with e.mu held.
func (e *Engine) newGroup(t *Topic, name string) (*Group, error) {
	g := &Group{e: e, t: t, name: name, members: make(map[string]*Member), toPersist: make(map[int]uint64),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	g.resize()
	for p := range g.committed {
		v, err := e.opts.Store.Get(store.KeyspaceStream, offsetKey(t.name, name, p))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil || len(v) != 8 {
			return nil, fmt.Errorf("stream: load offset of %s/%s/%d: %v", t.name, name, p, err)
		}
		g.committed[p] = int64(binary.LittleEndian.Uint64(v))
	}
	return g, nil
}

// resize grows the per-partition state to the topic's partition count.
func (g *Group) resize() {
	for len(g.owner) < g.t.Partitions() {
		g.owner = append(g.owner, nil)
		g.epoch = append(g.epoch, 0)
		g.pos = append(g.pos, 0)
		g.committed = append(g.committed, -1)
		g.retryAt = append(g.retryAt, time.Time{})
		g.readers = append(g.readers, &partReader{})
	}
}

// topicChanged picks up new partitions.
func (g *Group) topicChanged() {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.resize()
		g.rebalance()
	}
}

// startPos is where partition p starts for a new owner. g.mu held.
func (g *Group) startPos(p int) uint64 {
	low, high, _ := g.t.Bounds(p)
	switch {
	case g.committed[p] >= 0:
		return uint64(g.committed[p])
	case g.latest:
		return high
	}
	return low
}

// rebalance reassigns partitions among the live members. g.commitMu and
// g.mu held.
func (g *Group) rebalance() {
	ids := slices.Sorted(maps.Keys(g.members))
	prev := make([]string, len(g.owner))
	for p, m := range g.owner {
		if m != nil {
			prev[p] = m.id
		}
	}
	next := assign(len(g.owner), ids, prev)
	changed := false
	for p := range next {
		if next[p] == prev[p] {
			continue
		}
		changed = true
		if old := g.owner[p]; old != nil {
			g.revoke(old, p)
			old.notify = true
		}
		g.owner[p] = g.members[next[p]] // nil if unowned
		g.epoch[p]++
		g.pos[p] = g.startPos(p)
		if m := g.owner[p]; m != nil {
			m.notify = true
		}
	}
	if !changed {
		return
	}
	g.gen++
	for _, m := range g.members {
		m.assigned = m.assigned[:0]
	}
	for p, m := range g.owner {
		if m != nil {
			m.assigned = append(m.assigned, p)
		}
	}
	g.kick()
}

// revoke takes partition p from m: with auto-commit, what m acknowledged
// becomes the group's position (written by the goroutine soon after).
// g.mu held.
func (g *Group) revoke(m *Member, p int) {
	if off, ok := m.processed[p]; ok {
		delete(m.processed, p)
		if !m.o.ManualCommit {
			g.committed[p] = int64(off)
			g.toPersist[p] = off
		}
	}
}

func (g *Group) kick() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Heartbeat keeps the member alive under its SessionTimeout.
func (m *Member) Heartbeat() {
	g := m.g
	g.mu.Lock()
	m.lastSeen = g.e.opts.Now()
	g.mu.Unlock()
}

// Ack acknowledges the next n delivered events, in delivery order: they
// leave the window and, with auto-commit, their offsets will be committed.
func (m *Member) Ack(n int) error {
	g := m.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.gone {
		return ErrMemberGone
	}
	if n < 1 || n > len(m.flights) {
		return fmt.Errorf("%w: ack of %d events, %d in flight", ErrOutOfRange, n, len(m.flights))
	}
	for _, f := range m.flights[:n] {
		if g.epoch[f.part] == f.epoch && g.owner[f.part] == m {
			m.processed[f.part] = f.off + 1
		}
	}
	m.flights = m.flights[:copy(m.flights, m.flights[n:])]
	m.acked += n
	m.lastSeen = g.e.opts.Now()
	g.kick() // room in the window: more can go out (acks come in batches, so this is cheap)
	return nil
}

// Commit sets partition p's committed offset to off (the next offset to
// consume). The member must own p; off may not pass the high-water mark.
func (m *Member) Commit(p int, off uint64) error {
	g := m.g
	// commitMu is held throughout, and every rebalance takes it: one that
	// moved p between the owner check and the write revoked p with the
	// member's acknowledged offset, which reached Pebble after this
	// commit while this commit's stayed in memory
	// (TestCommitRacingRebalance).
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	g.mu.Lock()
	if m.gone {
		g.mu.Unlock()
		return ErrMemberGone
	}
	if p < 0 || p >= len(g.owner) {
		g.mu.Unlock()
		return fmt.Errorf("%w: %q has partitions 0-%d, not %d", ErrPartitionNotFound, g.t.name, len(g.owner)-1, p)
	}
	if g.owner[p] != m {
		g.mu.Unlock()
		return fmt.Errorf("%w: partition %d of %s/%s", ErrNotOwner, p, g.t.name, g.name)
	}
	g.mu.Unlock()
	if _, high, _ := g.t.Bounds(p); off > high {
		return fmt.Errorf("%w: commit of %d past the high-water mark %d of %s/%d", ErrOutOfRange, off, high, g.t.name, p)
	}
	if err := g.persist(map[int]uint64{p: off}); err != nil {
		return err
	}
	g.mu.Lock()
	g.committed[p] = int64(off)
	if done, ok := m.processed[p]; ok && done <= off {
		delete(m.processed, p)
	}
	g.mu.Unlock()
	return nil
}

// Leave removes the member; its partitions go to the others. With
// auto-commit, what it acknowledged is committed first; what it did not
// acknowledge is delivered again to the next owner.
func (m *Member) Leave() { m.g.remove(m, nil) }

// remove takes m out of the group; err != nil tells its sink why.
func (g *Group) remove(m *Member, err error) {
	e := g.e
	e.mu.Lock()
	g.commitMu.Lock()
	g.mu.Lock()
	if m.gone {
		g.mu.Unlock()
		g.commitMu.Unlock()
		e.mu.Unlock()
		return
	}
	m.gone = true
	delete(g.members, m.id)
	g.rebalance() // revokes m's partitions, queuing its acknowledged offsets
	last := len(g.members) == 0 && !g.closed
	if last {
		g.closed = true
	}
	g.mu.Unlock()
	g.commitMu.Unlock()
	if last {
		// Stop the goroutine and write the last commits before the group
		// leaves the registry, under e.mu: a Join that comes next loads
		// its offsets from Pebble and must see these.
		close(g.stop)
		<-g.done
		g.flushCommits()
		if e.groups[groupKey{g.t.name, g.name}] == g {
			delete(e.groups, groupKey{g.t.name, g.name})
		}
	}
	e.mu.Unlock()
	if err != nil {
		m.sink.Closed(err)
	}
	e.opts.Logger.Info("stream: member left", "topic", g.t.name, "group", g.name, "member", m.id, "reason", err)
}

// shutdown ends every membership (topic deleted, engine closing).
func (g *Group) shutdown(err error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	members := make([]*Member, 0, len(g.members))
	for _, m := range g.members {
		members = append(members, m)
		for p := range m.processed {
			g.revoke(m, p)
		}
		m.gone = true
	}
	g.members = map[string]*Member{}
	g.mu.Unlock()
	close(g.stop)
	<-g.done
	if !g.t.deleted.Load() {
		g.flushCommits()
	}
	for _, m := range members {
		m.sink.Closed(err)
	}
}

// persist writes committed offsets to Pebble in one batch.
func (g *Group) persist(offs map[int]uint64) error {
	if len(offs) == 0 {
		return nil
	}
	b := g.e.opts.Store.NewBatch()
	for p, off := range offs {
		b.Set(store.KeyspaceStream, offsetKey(g.t.name, g.name, p), binary.LittleEndian.AppendUint64(nil, off))
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("stream: commit offsets of %s/%s: %w", g.t.name, g.name, err)
	}
	return nil
}

// flushCommits writes the commits that are due (or all, at the end).
func (g *Group) flushCommits() {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	now := g.e.opts.Now()
	g.mu.Lock()
	offs := g.toPersist
	g.toPersist = make(map[int]uint64)
	for _, m := range g.members {
		if m.o.ManualCommit || len(m.processed) == 0 {
			continue
		}
		if m.acked < m.o.CommitEvery && now.Sub(m.lastCommit) < m.o.CommitInterval && !g.closed {
			continue
		}
		for p, off := range m.processed {
			offs[p] = off
			g.committed[p] = int64(off)
		}
		clear(m.processed)
		m.acked, m.lastCommit = 0, now
	}
	g.mu.Unlock()
	if err := g.persist(offs); err != nil {
		g.e.opts.Logger.Error("stream: auto-commit failed; will retry", "err", err)
		g.mu.Lock()
		for p, off := range offs {
			if _, newer := g.toPersist[p]; !newer {
				g.toPersist[p] = off
			}
		}
		g.mu.Unlock()
	}
}

// run is the group's delivery goroutine.
func (g *Group) run() {
	defer close(g.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		g.expire()
		g.flushCommits()
		tail := g.t.tail.wait() // before reading high-water marks: no lost wake-up
		if g.deliver() {
			select {
			case <-g.stop:
				return
			default:
				continue
			}
		}
		timer.Reset(g.nextDeadline())
		select {
		case <-g.wake:
		case <-tail:
		case <-timer.C:
		case <-g.stop:
			return
		}
	}
}

// expire removes members whose session timed out.
func (g *Group) expire() {
	now := g.e.opts.Now()
	var dead []*Member
	g.mu.Lock()
	for _, m := range g.members {
		if m.o.SessionTimeout > 0 && now.Sub(m.lastSeen) > m.o.SessionTimeout {
			dead = append(dead, m)
		}
	}
	g.mu.Unlock()
	for _, m := range dead {
		// remove waits for this goroutine if m is the last member; run it
		// elsewhere so it can.
		go g.remove(m, fmt.Errorf("%w: no heartbeat for %v", ErrMemberGone, m.o.SessionTimeout))
	}
}

// nextDeadline is how long the goroutine may sleep: until the next
// auto-commit, session expiry or read retry.
func (g *Group) nextDeadline() time.Duration {
	now := g.e.opts.Now()
	d := time.Hour
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.members {
		if !m.o.ManualCommit && len(m.processed) > 0 {
			d = min(d, m.lastCommit.Add(m.o.CommitInterval).Sub(now))
		}
		if m.o.SessionTimeout > 0 {
			d = min(d, m.lastSeen.Add(m.o.SessionTimeout).Sub(now)+time.Millisecond)
		}
	}
	for _, t := range g.retryAt {
		if !t.IsZero() {
			d = min(d, t.Sub(now))
		}
	}
	return max(d, time.Millisecond)
}

type readJob struct {
	pr    *partReader
	m     *Member
	p     int
	off   uint64
	epoch uint64
	max   int
	evs   []Event
	next  uint64
	err   error
}

// maxReadBytes bounds one read for one member's partition.
const maxReadBytes = 1 << 20

// deliver reads what each member has room for and hands it over. It
// reports whether anything was delivered.
func (g *Group) deliver() bool {
	now := g.e.opts.Now()
	var jobs []*readJob
	type note struct {
		m     *Member
		gen   uint64
		parts []int
	}
	var notes []note
	g.mu.Lock()
	for _, m := range g.members {
		if m.notify {
			m.notify = false
			notes = append(notes, note{m, g.gen, slices.Clone(m.assigned)})
		}
		free := m.o.Window - len(m.flights)
		if free <= 0 || len(m.assigned) == 0 {
			continue
		}
		share := max(1, free/len(m.assigned))
		for _, p := range m.assigned {
			if free <= 0 {
				break
			}
			if !g.retryAt[p].IsZero() && now.Before(g.retryAt[p]) {
				continue
			}
			_, high, _ := g.t.Bounds(p)
			if g.pos[p] >= high {
				continue
			}
			n := min(share, free)
			jobs = append(jobs, &readJob{pr: g.readers[p], m: m, p: p, off: g.pos[p], epoch: g.epoch[p], max: n})
			free -= n
		}
	}
	g.mu.Unlock()
	for _, n := range notes {
		n.m.sink.Assigned(n.gen, n.parts)
	}
	for _, j := range jobs {
		// One job per partition per round, so each partition's reader
		// buffers hold until the round's Deliver calls are done.
		j.evs, j.next, j.err = g.t.readInto(j.pr, j.p, j.off, j.max, maxReadBytes)
	}
	out := make(map[*Member][]Event)
	g.mu.Lock()
	for _, j := range jobs {
		if g.epoch[j.p] != j.epoch || g.pos[j.p] != j.off || g.owner[j.p] != j.m || j.m.gone {
			continue // rebalanced or rewound while reading
		}
		if j.err != nil {
			low, _, _ := g.t.Bounds(j.p)
			if errors.Is(j.err, ErrOutOfRange) && j.off < low {
				// Retention deleted events this group had not consumed:
				// go on from the oldest retained one, and say so.
				g.e.opts.Logger.Warn("stream: group fell behind retention; skipping to the earliest event",
					"topic", g.t.name, "group", g.name, "partition", j.p, "from", j.off, "to", low)
				g.pos[j.p] = low
				continue
			}
			g.e.opts.Logger.Error("stream: read for delivery failed; retrying in 1s",
				"topic", g.t.name, "group", g.name, "partition", j.p, "offset", j.off, "err", j.err)
			g.retryAt[j.p] = now.Add(time.Second)
			continue
		}
		g.retryAt[j.p] = time.Time{}
		for _, ev := range j.evs {
			j.m.flights = append(j.m.flights, flight{part: j.p, off: ev.Offset, epoch: j.epoch})
		}
		g.pos[j.p] = j.next
		j.m.delivered += uint64(len(j.evs))
		out[j.m] = append(out[j.m], j.evs...)
	}
	g.mu.Unlock()
	for m, evs := range out {
		m.sink.Deliver(evs)
	}
	return len(out) > 0
}
