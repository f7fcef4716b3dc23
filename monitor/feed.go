package monitor

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// The live feed: a WebSocket at /api/v1/feed that sends the node's stats
// about once a second and, with them, the events found by comparing each
// snapshot with the one before: jobs dead-lettered, consumer-group
// rebalances, slow consumers cut off. Deriving events from counters keeps
// the engines free of any feed code; an event is at most a second late.

// FeedMessage is one message of the feed.
type FeedMessage struct {
	Type  string     `json:"type"` // "stats" or "event"
	Time  int64      `json:"time"` // Unix ms
	Stats *FeedStats `json:"stats,omitempty"`
	Event *FeedEvent `json:"event,omitempty"`
}

// FeedStats is the once-a-second picture.
type FeedStats struct {
	Connections int64          `json:"connections"`
	BytesIn     uint64         `json:"bytes_in"`
	BytesOut    uint64         `json:"bytes_out"`
	Queues      []FeedQueue    `json:"queues"`
	Groups      []FeedGroup    `json:"groups"`
	KVKeys      int64          `json:"kv_keys"`
	Workers     map[string]int `json:"workers"` // by state
}

// FeedQueue is a queue's line of the feed.
type FeedQueue struct {
	Name         string  `json:"name"`
	Ready        int     `json:"ready"`
	Delayed      int     `json:"delayed"`
	InFlight     int     `json:"in_flight"`
	Dead         int     `json:"dead"`
	OldestMs     int64   `json:"oldest_ready_ms"`
	EnqueuedRate float64 `json:"enqueued_per_s"`
	AckedRate    float64 `json:"acked_per_s"`
}

// FeedGroup is a consumer group's line.
type FeedGroup struct {
	Topic      string `json:"topic"`
	Group      string `json:"group"`
	Members    int    `json:"members"`
	Lag        uint64 `json:"lag"`
	Generation uint64 `json:"generation"`
}

// FeedEvent is something that happened since the last message.
type FeedEvent struct {
	Kind  string `json:"kind"` // dead_letter, rebalance, slow_consumer
	Queue string `json:"queue,omitempty"`
	Topic string `json:"topic,omitempty"`
	Group string `json:"group,omitempty"`
	Count uint64 `json:"count,omitempty"`
	Text  string `json:"text"`
	// A dead_letter event of one job (count 1) names it.
	JobID    *uint64 `json:"job_id,omitempty"`
	Attempts int     `json:"attempts,omitempty"`
	Error    string  `json:"error,omitempty"`
	TraceID  string  `json:"trace_id,omitempty"`
}

// maxJobEvents bounds the dead_letter events of single jobs in one tick;
// the rest of a burst is told as a count per queue.
//
// DeadLetterWindow is how many of the latest dead letters a snapshot
// carries (Snapshot.DeadLetters).
const (
	maxJobEvents     = 20
	DeadLetterWindow = 256
)

// feedInterval is how often the feed sends its stats.
var feedInterval = time.Second

func feedHandler(node Metered) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{})
		if err != nil {
			return // Accept wrote the error
		}
		defer c.CloseNow()
		// The client sends nothing; reading notices its close. Its context
		// must not be the request's: a read whose context ends drops the
		// connection, and the request's ends at shutdown, which should
		// close the feed cleanly instead.
		gone := c.CloseRead(context.Background())
		shutdown := r.Context().Done()
		// Writes get a context of their own: a write cut short by the
		// shutdown would drop the connection instead of closing it cleanly.
		write := func(m FeedMessage) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return wsjson.Write(ctx, c, m)
		}
		var prev *Snapshot
		tick := time.NewTicker(feedInterval)
		defer tick.Stop()
		for {
			s := node.Metrics()
			now := time.Now().UnixMilli()
			if prev != nil {
				for _, ev := range feedEvents(prev, &s) {
					if write(FeedMessage{Type: "event", Time: now, Event: &ev}) != nil {
						return
					}
				}
			}
			if write(FeedMessage{Type: "stats", Time: now, Stats: feedStats(&s)}) != nil {
				return
			}
			prev = &s
			select {
			case <-tick.C:
			case <-gone.Done():
				return
			case <-shutdown:
				c.Close(websocket.StatusGoingAway, "server shutting down")
				return
			}
		}
	}
}

func feedStats(s *Snapshot) *FeedStats {
	fs := &FeedStats{Connections: s.Conns, BytesIn: s.BytesIn, BytesOut: s.BytesOut, KVKeys: s.KV.Keys,
		Queues: []FeedQueue{}, Groups: []FeedGroup{}, Workers: map[string]int{"idle": 0, "busy": 0, "gone": 0}}
	for _, q := range s.Queues {
		fs.Queues = append(fs.Queues, FeedQueue{Name: q.Name, Ready: q.Ready, Delayed: q.Delayed, InFlight: q.InFlight,
			Dead: q.Dead, OldestMs: q.OldestMs, EnqueuedRate: q.Rates.Enqueued, AckedRate: q.Rates.Acked})
	}
	for _, g := range s.Groups {
		fs.Groups = append(fs.Groups, FeedGroup{Topic: g.Topic, Group: g.Group, Members: len(g.Members), Lag: g.Lag,
			Generation: g.Generation})
	}
	for _, w := range s.Workers {
		fs.Workers[w.State]++
	}
	return fs
}

// feedEvents compares two snapshots. Each job dead-lettered in between
// gets an event (up to maxJobEvents) with its id, attempts, last error and
// trace; the rest of a burst is told as a count per queue.
func feedEvents(prev, cur *Snapshot) []FeedEvent {
	var out []FeedEvent
	seen := uint64(0)
	if n := len(prev.DeadLetters); n > 0 {
		seen = prev.DeadLetters[n-1].Seq
	}
	var more []string // queues with untold jobs, in order of first
	untold := map[string]uint64{}
	for _, d := range cur.DeadLetters {
		if d.Seq <= seen {
			continue
		}
		if len(out) == maxJobEvents {
			if untold[d.Queue] == 0 {
				more = append(more, d.Queue)
			}
			untold[d.Queue]++
			continue
		}
		id := d.ID
		text := "job " + strconv.FormatUint(d.ID, 10) + " of " + d.Queue + " dead-lettered after " +
			strconv.Itoa(d.Attempts) + " attempt(s)"
		if d.Error != "" {
			text += ": " + d.Error
		}
		out = append(out, FeedEvent{Kind: "dead_letter", Queue: d.Queue, Count: 1, Text: text,
			JobID: &id, Attempts: d.Attempts, Error: d.Error, TraceID: d.TraceID})
	}
	for _, q := range more {
		n := untold[q]
		out = append(out, FeedEvent{Kind: "dead_letter", Queue: q, Count: n,
			Text: strconv.FormatUint(n, 10) + " more job(s) of " + q + " dead-lettered"})
	}
	if n := len(cur.DeadLetters); n > 0 && cur.DeadLetters[0].Seq > seen+1 {
		// The window moved past jobs no snapshot showed.
		lost := cur.DeadLetters[0].Seq - seen - 1
		out = append(out, FeedEvent{Kind: "dead_letter", Count: lost,
			Text: strconv.FormatUint(lost, 10) + " more job(s) dead-lettered (too many to list)"})
	}
	gens := map[[2]string]uint64{}
	for _, g := range prev.Groups {
		gens[[2]string{g.Topic, g.Group}] = g.Generation
	}
	for _, g := range cur.Groups {
		if before, ok := gens[[2]string{g.Topic, g.Group}]; ok && g.Generation != before {
			out = append(out, FeedEvent{Kind: "rebalance", Topic: g.Topic, Group: g.Group, Count: g.Generation,
				Text: "group " + g.Group + " of " + g.Topic + " rebalanced: generation " + strconv.FormatUint(g.Generation, 10) +
					", " + strconv.Itoa(len(g.Members)) + " member(s)"})
		}
	}
	if cur.SlowConsumers > prev.SlowConsumers {
		n := cur.SlowConsumers - prev.SlowConsumers
		out = append(out, FeedEvent{Kind: "slow_consumer", Count: n,
			Text: strconv.FormatUint(n, 10) + " slow consumer(s) disconnected"})
	}
	return out
}
