package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestVersionAndUsage(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), []string{"version"}, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "flowmesh ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
	if err := run(context.Background(), nil, io.Discard, io.Discard); err == nil {
		t.Fatal("no command accepted")
	}
	if err := run(context.Background(), []string{"nope"}, io.Discard, io.Discard); err == nil {
		t.Fatal("unknown command accepted")
	}
}

func TestConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flowmesh.json")
	os.WriteFile(path, []byte(`{"addr":"127.0.0.1:5000","max_payload":2048,"ping_interval":"30s"}`), 0o644)
	var out strings.Builder
	err := run(context.Background(), []string{"server", "--config", path, "--addr", "127.0.0.1:6000", "--resp-loops", "3", "--check-config"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"addr": "127.0.0.1:6000"`, `"max_payload": 2048`, `"ping_interval": "30s"`, `"resp_loops": 3`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("effective config lacks %s:\n%s", want, out.String())
		}
	}
	os.WriteFile(path, []byte(`{"adr":"typo"}`), 0o644)
	if err := run(context.Background(), []string{"server", "--config", path, "--check-config"}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "unknown field") {
		t.Fatalf("typo in config: %v", err)
	}
	if err := run(context.Background(), []string{"server", "--max-payload", "-1", "--check-config"}, io.Discard, io.Discard); err == nil {
		t.Fatal("negative max payload accepted")
	}
	if err := run(context.Background(), []string{"server", "--resp-loops", "-1", "--check-config"}, io.Discard, io.Discard); err == nil {
		t.Fatal("negative resp_loops accepted")
	}
}

// TestDevStartsAndStops runs `flowmesh dev` as the README says, talks to it
// over the protocol and monitoring ports, and stops it.
func TestDevStartsAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--in-memory", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error"}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	addrRE := regexp.MustCompile(`protocol\s+nats://(\S+)`)
	httpRE := regexp.MustCompile(`monitor\s+(http://\S+)`)
	var addr, httpURL string
	for sc.Scan() && (addr == "" || httpURL == "") {
		if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
		if m := httpRE.FindStringSubmatch(sc.Text()); m != nil {
			httpURL = m[1]
		}
	}
	go io.Copy(io.Discard, pr)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %q: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	br.ReadString('\n') // INFO
	c.Write([]byte("SUB a 1\nPUB a 2\nhi\n"))
	for _, want := range []string{"MSG a 1 2\r\n", "hi\r\n"} {
		if l, _ := br.ReadString('\n'); l != want {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/varz"} {
		resp, err := http.Get(httpURL + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, err, resp)
		}
		resp.Body.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("dev did not stop")
	}
}
