package webapi_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/node"
)

func TestMonitorWebSocket(t *testing.T) {
	s := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=exit job EXE 0", "-e=TESTCHILD=exit other EXE 1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func() *websocket.Conn {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/scripts/v1/monitor", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	read := func(c *websocket.Conn) map[string]any {
		t.Helper()
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("not JSON: %s", data)
		}
		return m
	}
	send := func(c *websocket.Conn, msg string) {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}

	one, all := dial(), dial()
	send(one, `{"name":"job"}`)
	if ack := read(one); ack["success"] != true || ack["name"] != "job" || ack["enabled"] != true {
		t.Fatalf("ack %v", ack)
	}
	send(all, `{"name":""}`)
	if ack := read(all); ack["success"] != true || ack["name"] != "" {
		t.Fatalf("ack %v", ack)
	}
	send(all, `not json`)
	if ack := read(all); ack["success"] != false {
		t.Fatalf("bad request answered %v", ack)
	}

	s.submit(t, map[string]any{"name": "other"})
	id := s.submit(t, map[string]any{"name": "job"})
	for _, want := range []string{"queued", "running", "done"} {
		if e := read(one); e["state"] != want || e["run"] != id {
			t.Fatalf("monitor of job: %v, want %s", e, want)
		}
	}
	// The monitor of every script sees both, each in order.
	seen := map[string][]string{}
	for len(seen["job"]) < 3 || len(seen["other"]) < 3 {
		e := read(all)
		seen[e["name"].(string)] = append(seen[e["name"].(string)], e["state"].(string))
	}
	if strings.Join(seen["job"], ",") != "queued,running,done" || strings.Join(seen["other"], ",") != "queued,running,done" {
		t.Fatalf("all: %v", seen)
	}
	// Adding a name to a monitor.
	send(one, `{"name":"other"}`)
	read(one)
	s.submit(t, map[string]any{"name": "other"})
	if e := read(one); e["name"] != "other" || e["state"] != "queued" {
		t.Fatalf("after adding other: %v", e)
	}
}

// TestSlowMonitorIsDisconnected: a monitor that stops reading is dropped when
// its queue is full, while another one keeps receiving everything.
func TestSlowMonitorIsDisconnected(t *testing.T) {
	s := newDetachedNode(t, node.Config{EventReplay: 10, EventQueue: 4}, "-e=TESTCHILD=exit job EXE 0")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func() *websocket.Conn {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/scripts/v1/monitor", nil)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadLimit(1 << 20)
		t.Cleanup(func() { c.CloseNow() })
		c.Write(ctx, websocket.MessageText, []byte(`{"name":""}`))
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
		return c
	}
	slow, fast := dial(), dial()

	const n = 400 // of 64 KiB each: far more than the sockets between them hold
	big := strings.Repeat("x", 64<<10)
	// In lockstep with the fast monitor: it is never more than one event
	// behind, while the slow one reads nothing.
	for i := range n {
		s.node.Events.Publish(feed.Event{Name: "job", State: "done", Run: strconv.Itoa(i), Args: []string{big}})
		_, data, err := fast.Read(ctx)
		if err != nil {
			t.Fatalf("the fast monitor lost its stream at event %d: %v", i, err)
		}
		var e map[string]any
		json.Unmarshal(data, &e)
		if e["run"] != strconv.Itoa(i) {
			t.Fatalf("the fast monitor got %v, want event %d", e["run"], i)
		}
	}
	// The slow one was dropped: reading what was buffered ends in an error.
	for {
		if _, _, err := slow.Read(ctx); err != nil {
			if ctx.Err() != nil {
				t.Fatal("the slow monitor was never disconnected")
			}
			break
		}
	}
}
