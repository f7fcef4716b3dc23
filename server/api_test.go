package server

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/flowmesh/flowmesh/monitor"
)

// TestRESTAPI: the monitoring port's JSON API answers for queues (with a
// page of jobs), topics, groups, workers, KV and config, 404 for names
// that do not exist and 400 for bad arguments.
func TestRESTAPI(t *testing.T) {
	s := startServer(t, Config{HTTPAddr: "127.0.0.1:0"})
	w := dial(t, s)
	w.send("QPUT emails.send 2\r\nhi\r\nQPUT emails.send delay=1h 5\r\nlater\r\nTCREATE orders partitions=1\r\nQWORKER mailer emails.send\r\n")
	w.expect("+OK 0", "+OK 1", "+OK 1")
	w.line()
	w.send("SWRITE orders 3\r\none\r\nGRESET orders billing earliest\r\nKV SET k v\r\n")
	w.expect("+OK 0 0")
	w.line()
	w.expect("RES 5", "+OK", "")
	base := "http://" + s.HTTPAddr().String()
	get := func(path string, code int, into any) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != code {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, code)
		}
		if into != nil {
			if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
		}
	}
	var queues []struct {
		Name           string
		Ready, Delayed int
	}
	get("/api/v1/queues", 200, &queues)
	if len(queues) != 1 || queues[0].Name != "emails.send" || queues[0].Ready != 1 || queues[0].Delayed != 1 {
		t.Fatalf("queues: %+v", queues)
	}
	var page struct {
		Jobs []struct {
			ID      uint64
			State   string
			Payload []byte
		}
		Next *uint64
	}
	get("/api/v1/queues/emails.send/jobs?state=delayed", 200, &page)
	if len(page.Jobs) != 1 || string(page.Jobs[0].Payload) != "later" || page.Jobs[0].State != "delayed" || page.Next != nil {
		t.Fatalf("delayed page: %+v", page)
	}
	var topic struct {
		Name   string
		Events int
	}
	get("/api/v1/topics/orders", 200, &topic)
	if topic.Name != "orders" || topic.Events != 1 {
		t.Fatalf("topic: %+v", topic)
	}
	var group struct {
		Group string
		Lag   int
	}
	get("/api/v1/topics/orders/groups/billing", 200, &group)
	if group.Group != "billing" || group.Lag != 1 {
		t.Fatalf("group: %+v", group)
	}
	var groups []any
	get("/api/v1/topics/orders/groups", 200, &groups)
	var workers []struct{ Name string }
	get("/api/v1/workers", 200, &workers)
	if len(groups) != 1 || len(workers) != 1 || workers[0].Name != "mailer" {
		t.Fatalf("groups %v, workers %+v", groups, workers)
	}
	var kvInfo struct {
		Keys int
		Ops  map[string]int
	}
	get("/api/v1/kv", 200, &kvInfo)
	if kvInfo.Keys != 1 || kvInfo.Ops["set"] != 1 {
		t.Fatalf("kv: %+v", kvInfo)
	}
	var cfg struct {
		HTTPAddr string `json:"http_addr"`
	}
	get("/api/v1/config", 200, &cfg)
	if cfg.HTTPAddr != "127.0.0.1:0" {
		t.Fatalf("config: %+v", cfg)
	}
	for path, code := range map[string]int{
		"/api/v1/queues/nope":                      404,
		"/api/v1/queues/nope/jobs":                 404,
		"/api/v1/topics/nope":                      404,
		"/api/v1/topics/orders/groups/nope":        404,
		"/api/v1/queues/emails.send/jobs?state=x":  400,
		"/api/v1/queues/emails.send/jobs?limit=0":  400,
		"/api/v1/queues/emails.send/jobs?from=abc": 400,
	} {
		var e struct{ Error string }
		get(path, code, &e)
		if e.Error == "" {
			t.Fatalf("%s: no error text", path)
		}
	}
}

// TestFeed: the WebSocket feed sends stats at once, then a dead_letter
// event naming the job (id, attempts, last error) within a tick of it
// failing for good; shutting the node down ends the feed.
func TestFeed(t *testing.T) {
	s := startServer(t, Config{HTTPAddr: "127.0.0.1:0"})
	w := dial(t, s)
	w.send("QPUT jobs 1\r\nx\r\n")
	w.expect("+OK 0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+s.HTTPAddr().String()+"/api/v1/feed", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var m monitor.FeedMessage
	if err := wsjson.Read(ctx, c, &m); err != nil || m.Type != "stats" || len(m.Stats.Queues) != 1 || m.Stats.Queues[0].Ready != 1 {
		t.Fatalf("first message: %+v %v", m, err)
	}
	w.send("QGET jobs\r\n")
	w.line()
	w.line()
	w.expect("+OK 1")
	w.send("QNACK jobs 0 1 fail 4\r\nboom\r\n")
	w.expect("+OK dead")
	for {
		var m monitor.FeedMessage
		if err := wsjson.Read(ctx, c, &m); err != nil {
			t.Fatalf("no dead_letter event: %v", err)
		}
		if m.Type == "event" && m.Event.Kind == "dead_letter" {
			if ev := m.Event; ev.Queue != "jobs" || ev.Count != 1 || ev.JobID == nil || *ev.JobID != 0 ||
				ev.Attempts != 1 || ev.Error != "boom" {
				t.Fatalf("dead_letter event %+v", ev)
			}
			break
		}
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := s.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	for {
		if err := wsjson.Read(ctx, c, &m); err != nil {
			if websocket.CloseStatus(err) != websocket.StatusGoingAway {
				t.Fatalf("feed ended with %v, want going away", err)
			}
			return
		}
	}
}
