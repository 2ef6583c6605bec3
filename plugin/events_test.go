package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/creachadair/jrpc2"

	"github.com/rexec/rexec/feed"
)

// eventHost is a Host with a real feed and nothing else.
type eventHost struct{ hub *feed.Hub }

var errNoRuns = errors.New("no runs here")

func (eventHost) StartRun(context.Context, string, []string, string) (json.RawMessage, error) {
	return nil, errNoRuns
}
func (eventHost) RunStatus(context.Context, string) (string, json.RawMessage, error) {
	return "", nil, errNoRuns
}
func (eventHost) Machines(context.Context) (json.RawMessage, error) { return nil, errNoRuns }
func (h eventHost) Emit(e feed.Event)                               { h.hub.Publish(e) }
func (h eventHost) ClientEvents() feed.Subscription {
	s, _ := h.hub.Subscribe(0, feed.ClientEvents(feed.AllClientEvents))
	return s
}

// newEventManager is a manager of a singleton fake command with perms, whose
// calls go to an eventHost on a feed with queues of queue events.
func newEventManager(t *testing.T, queue int, perms string) (*Manager, *feed.Hub, *syncBuffer) {
	t.Helper()
	hub := feed.NewHub(100, queue)
	t.Cleanup(hub.Close)
	comp := fakeComponent("cmd", "serve", Singleton, time.Minute)
	for _, p := range strings.Fields(perms) {
		pp, err := ParsePerm(p)
		if err != nil {
			t.Fatal(err)
		}
		comp.Perms = append(comp.Perms, pp)
	}
	cfg := Config{CallTimeout: 2 * time.Second, Callback: func(c Component, peer Peer) jrpc2.Handler {
		return Callbacks(eventHost{hub}, c, peer)
	}}
	m, log := newTestManager(t, cfg, comp)
	return m, hub, log
}

// call makes the command call the server's method with params, and returns
// the server's answer.
func callBack(t *testing.T, m *Manager, s, method, params string) string {
	t.Helper()
	res, err := m.Call(context.Background(), s, "", "call", json.RawMessage(fmt.Sprintf(`[%q,%s]`, method, params)))
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return string(res)
}

// A command emits and subscribes with the seed's calls: what it emits is on
// the feed, with who sent it; what it subscribed to, and may receive,
// comes to it as a notification.
func TestClientEventsOfACommand(t *testing.T) {
	m, hub, _ := newEventManager(t, 100, "event.emit event.subscribe[a] event.subscribe[b] seen")
	watch, _ := hub.Subscribe(0, feed.ClientEvents(feed.AllClientEvents))
	defer watch.Close()
	s := mustStart(t, m, "test/cmd")

	if res := callBack(t, m, s, "event.emit", `["a", {"n": 1}, {"perms": ["seen"], "context": "x"}]`); !strings.Contains(res, `"result":true`) {
		t.Fatalf("event.emit: %s", res)
	}
	e := <-watch.Events()
	if e.Name != "a" || string(e.Data) != `{"n":1}` || e.From != "plugin:test/cmd" || fmt.Sprint(e.Perms) != "[seen[x]]" {
		t.Fatalf("emitted %+v", e)
	}
	for _, c := range []struct{ method, params, want string }{
		{"event.subscribe", `["a"]`, `"result":true`},
		{"event.subscribe", `{"name":"b"}`, `"result":true`},
		{"event.subscribe", `["c"]`, `"code":-32601`},
		{"event.subscribe", `["*"]`, `"result":true`},
		{"event.subscribe", `[]`, `"code":-32602`},
		{"event.subscriptions", `[]`, `"result":["*","a","b"]`},
		{"event.unsubscribe", `["*"]`, `"result":true`},
		{"event.unsubscribe", `["*"]`, `"result":false`},
	} {
		if res := callBack(t, m, s, c.method, c.params); !strings.Contains(res, c.want) {
			t.Errorf("%s %s: %s, want %s", c.method, c.params, res, c.want)
		}
	}
	for _, e := range []feed.Event{
		{Name: "a", State: feed.StateClient, Data: []byte(`{"to":"a"}`)},
		{Name: "c", State: feed.StateClient, Data: []byte(`{"to":"c"}`)},                                           // not subscribed
		{Name: "b", State: feed.StateClient, Data: []byte(`{"to":"b","guarded":1}`), Perms: []string{"unseen[y]"}}, // a perm it lacks
		{Name: "b", State: feed.StateClient, Data: []byte(`{"to":"b"}`), Perms: []string{"seen[z]"}},               // "seen" covers every context
	} {
		hub.Publish(e)
	}
	var got string
	waitFor(t, "the events received", func() bool {
		res, err := m.Call(context.Background(), s, "", "got", nil)
		got = string(res)
		return err == nil && strings.Count(got, `"method"`) >= 2
	})
	if got != `[{"method":"a","params":{"to":"a"}},{"method":"b","params":{"to":"b"}}]` {
		t.Errorf("the command received %s", got)
	}
}

// A command that does not read its stdin cannot hold the server: the feed
// drops its subscriptions (with a warning), and its end, by the deadline of
// a call, ends the writes to it that were blocked.
func TestClientEventsToADeafCommand(t *testing.T) {
	m, hub, log := newEventManager(t, 4, "event.subscribe")
	s := mustStart(t, m, "test/cmd")
	if res := callBack(t, m, s, "event.subscribe", `["*"]`); !strings.Contains(res, `"result":true`) {
		t.Fatalf("event.subscribe: %s", res)
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.Call(context.Background(), s, "", "sleep", json.RawMessage(`[60000]`))
		done <- err
	}()
	big := []byte(`{"pad":"` + strings.Repeat("x", 60<<10) + `"}`)
	for range 40 { // 2.4 MB: far more than a pipe holds
		hub.Publish(feed.Event{Name: "flood", State: feed.StateClient, Data: big})
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrDeadline) {
			t.Fatalf("the sleeping call: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call past its deadline did not end")
	}
	waitFor(t, "the subscriptions dropped", func() bool { return strings.Contains(log.String(), "subscriptions to events are dropped") })
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked behind a write to a process that is gone")
	}
}
