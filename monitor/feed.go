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
}

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

// feedEvents compares two snapshots.
func feedEvents(prev, cur *Snapshot) []FeedEvent {
	var out []FeedEvent
	dead := map[string]uint64{}
	for _, q := range prev.Queues {
		dead[q.Name] = q.Counters.DeadLettered
	}
	for _, q := range cur.Queues {
		if before, ok := dead[q.Name]; ok && q.Counters.DeadLettered > before {
			n := q.Counters.DeadLettered - before
			out = append(out, FeedEvent{Kind: "dead_letter", Queue: q.Name, Count: n,
				Text: strconv.FormatUint(n, 10) + " job(s) of " + q.Name + " dead-lettered"})
		}
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
