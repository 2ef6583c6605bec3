package webapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/plugin"
	"github.com/rexec/rexec/webapi"
)

// openSSE opens the event stream at path (with its query), as key, after
// the event id last ("" for none), and returns the status and the stream.
// A 200 must be an event stream.
func openSSE(t *testing.T, url, key, path, last string) (int, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequest("GET", url+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode == 200 && ct != "text/event-stream" {
		t.Fatalf("GET %s: 200 with Content-Type %q", path, ct)
	}
	return resp.StatusCode, bufio.NewReader(resp.Body)
}

// ask makes the command comp (of pluginsDir, a singleton) call the server's
// method with params, and returns the server's answer to it.
func ask(t *testing.T, url, key, comp, method, params string) map[string]any {
	t.Helper()
	code, a := pluginCall(t, url, key, "/plugins/v1/call",
		fmt.Sprintf(`{"component":%q,"method":"ask","params":{"method":%q,"params":%s}}`, comp, method, params))
	res, _ := a["result"].(map[string]any)
	if code != 200 || res == nil {
		t.Fatalf("%s asks %s: %d %v", comp, method, code, a)
	}
	return res
}

// received is what the command t/pubsub has received, as it keeps them.
func received(t *testing.T, url, key string) []any {
	t.Helper()
	code, a := pluginCall(t, url, key, "/plugins/v1/call", `{"component":"t/pubsub","method":"got"}`)
	got, ok := a["result"].([]any)
	if code != 200 || !ok {
		t.Fatalf("got: %d %v", code, a)
	}
	return got
}

// TestClientEvents: the seed's pub/sub. A command's event.emit reaches an
// SSE subscriber (and a WebSocket one), and a key's POST /plugins/v1/events
// reaches a command that called event.subscribe; every one receives only
// what its perms let it, and a stream that reconnects gets what it missed.
func TestClientEvents(t *testing.T) {
	s, _ := newPluginServer(t, "s3cret")
	const admin = "s3cret"
	code, steps := openSSE(t, s.URL, admin, "/scripts/v1/events?event=deploy.step", "")
	if code != 200 {
		t.Fatalf("GET /scripts/v1/events?event=deploy.step: %d", code)
	}

	// A command emits, in the seed's form; the subscriber gets it, and
	// who sent it.
	if res := ask(t, s.URL, admin, "t/pubsub", "event.emit", `["deploy.step", {"step": 1, "of": "ünï"}]`); res["result"] != true {
		t.Fatalf("event.emit: %v", res)
	}
	e := readSSE(t, steps)
	if e.event != "client" || e.data["name"] != "deploy.step" || e.data["from"] != "plugin:t/pubsub" || e.data["state"] != "client" ||
		fmt.Sprint(e.data["data"]) != "map[of:ünï step:1]" || e.id == "" || e.data["run"] != nil {
		t.Fatalf("the event of event.emit: %+v", e)
	}
	first := e.id

	// What the command's perms do not grant, and what is not there, is
	// "method not found", whatever the params.
	for _, c := range []struct{ comp, method, params string }{
		{"t/pubsub", "event.emit", `["deploy.done", {}]`},
		{"t/caller", "event.emit", `["deploy.step", {}]`},
		{"t/caller", "event.subscribe", `["deploy.step"]`},
		{"t/pubsub", "event.subscribe", `["other"]`},
		{"t/caller", "event.subscriptions", `[]`},
	} {
		res := ask(t, s.URL, admin, c.comp, c.method, c.params)
		if e, _ := res["error"].(map[string]any); e["code"] != float64(-32601) {
			t.Errorf("%s asks %s %s: %v, want method not found", c.comp, c.method, c.params, res)
		}
	}
	// Bad params, with perms: invalid params, and nothing emitted.
	for _, params := range []string{`[]`, `[1]`, `["bad name!", {}]`, `["deploy.step", [1]]`, `["deploy.step", {}, ["Bad Perm"]]`, `{"data": {}}`} {
		res := ask(t, s.URL, admin, "t/pubsub", "event.emit", params)
		if e, _ := res["error"].(map[string]any); e["code"] != float64(-32602) {
			t.Errorf("event.emit %s: %v, want invalid params", params, res)
		}
	}

	// A key emits; the command that subscribed receives it as a
	// notification, the event's name its method. An event guarded by a
	// perm the command lacks does not reach it.
	for _, name := range []string{"deploy.step", "deploy.done"} {
		if res := ask(t, s.URL, admin, "t/pubsub", "event.subscribe", fmt.Sprintf(`[%q]`, name)); res["result"] != true {
			t.Fatalf("event.subscribe %s: %v", name, res)
		}
	}
	if res := ask(t, s.URL, admin, "t/pubsub", "event.subscriptions", `[]`); fmt.Sprint(res["result"]) != "[deploy.done deploy.step]" {
		t.Errorf("event.subscriptions: %v", res)
	}
	emit := func(key, body string) (int, map[string]any) {
		t.Helper()
		return pluginCall(t, s.URL, key, "/plugins/v1/events", body)
	}
	if code, a := emit(admin, `{"name":"deploy.step","data":{"secret":true},"perms":["deploy.admin"]}`); code != 202 || a["success"] != true {
		t.Fatalf("POST /plugins/v1/events: %d %v", code, a)
	}
	if code, a := emit(admin, `{"name":"deploy.done","data":{"ok":true}}`); code != 202 {
		t.Fatalf("POST /plugins/v1/events: %d %v", code, a)
	}
	deadline := time.Now().Add(10 * time.Second)
	var got []any
	for len(got) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		got = received(t, s.URL, admin)
	}
	if fmt.Sprint(got) != "[map[data:map[ok:true] name:deploy.done]]" {
		t.Fatalf("the command received %v, want deploy.done alone", got)
	}
	// The admin holds every perm: the guarded event reached its stream.
	if e := readSSE(t, steps); e.data["name"] != "deploy.step" || fmt.Sprint(e.data["data"]) != "map[secret:true]" ||
		fmt.Sprint(e.data["perms"]) != "[deploy.admin]" || e.data["from"] != "admin" {
		t.Fatalf("the guarded event: %+v", e)
	}
	if res := ask(t, s.URL, admin, "t/pubsub", "event.unsubscribe", `{"name":"deploy.done"}`); res["result"] != true {
		t.Errorf("event.unsubscribe: %v", res)
	}

	// A guest key receives what its perms let it, and emits only with
	// event.emit.
	code, a := pluginCall(t, s.URL, admin, "/scripts/v1/guest/create",
		`{"perms":["event.subscribe[deploy.step]","event.emit[deploy.step]","deploy.viewer"]}`)
	info, _ := a["info"].(map[string]any)
	guest, _ := info["apikey"].(string)
	if code != 200 || guest == "" {
		t.Fatalf("guest/create: %d %v", code, a)
	}
	for _, q := range []string{"?event=other", "?event=deploy.done", "?event=deploy.step&name=", "?event=bad%20name", "?event=deploy.step&event=*&event=x"} {
		if code, _ := openSSE(t, s.URL, guest, "/scripts/v1/events"+q, ""); code != 403 && code != 400 {
			t.Errorf("a guest's events%s: %d, want 403 or 400", q, code)
		}
	}
	code, gsteps := openSSE(t, s.URL, guest, "/scripts/v1/events?event=*", "")
	if code != 200 {
		t.Fatalf("a guest's events?event=*: %d", code)
	}
	if code, a := emit(guest, `{"name":"deploy.done","data":{}}`); code != 403 || !strings.Contains(fmt.Sprint(a["error"]), "event.emit[deploy.done]") {
		t.Errorf("a guest emits what it may not: %d %v", code, a)
	}
	if code, _ := emit(guest, `{"name":"deploy.step","data":{"n":2},"perms":["deploy.admin"]}`); code != 202 {
		t.Errorf("a guest emits: %d", code)
	}
	if code, _ := emit(guest, `{"name":"deploy.step","data":{"n":3},"perms":["deploy.viewer"]}`); code != 202 {
		t.Errorf("a guest emits: %d", code)
	}
	if e := readSSE(t, gsteps); fmt.Sprint(e.data["data"]) != "map[n:3]" || e.data["from"] == "admin" || e.data["from"] == "" {
		t.Fatalf("the guest received %+v, want n:3 alone (n:2 is guarded by a perm it lacks)", e)
	}

	// Bad events: refused with the field, nothing published.
	for _, c := range []struct{ body, want string }{
		{`{"data":{}}`, "name"},
		{`{"name":"a b"}`, "invalid event name"},
		{`{"name":"*"}`, "invalid event name"},
		{`{"name":"` + strings.Repeat("x", plugin.MaxEventName+1) + `"}`, "1 to 128 bytes"},
		{`{"name":"x","data":[1]}`, "JSON object"},
		{`{"name":"x","data":"text"}`, "JSON object"},
		{`{"name":"x","data":{"big":"` + strings.Repeat("x", plugin.MaxEventData) + `"}}`, "at most 65536 bytes"},
		{`{"name":"x","perms":["Bad"]}`, "invalid perm"},
		{`{"name":"x","perms":` + toJSON(make([]string, plugin.MaxEventPerms+1)) + `}`, "at most 16 perms"},
		{`{"name":"x","extra":1}`, "unknown field"},
		{`[1]`, ""},
	} {
		code, a := emit(admin, c.body)
		if code != 400 || !strings.Contains(fmt.Sprint(a["error"]), c.want) {
			t.Errorf("emit %.60s: %d %v, want 400 with %q", c.body, code, a, c.want)
		}
	}

	// A stream that reconnects after the first event gets every one
	// after it, once.
	_, again := openSSE(t, s.URL, admin, "/scripts/v1/events?event=deploy.step", first)
	var names []string
	for range 3 {
		e := readSSE(t, again)
		names = append(names, fmt.Sprint(e.data["data"]))
	}
	if fmt.Sprint(names) != "[map[secret:true] map[n:2] map[n:3]]" {
		t.Errorf("replayed %v", names)
	}

	// The WebSocket monitor: {"event": name}, with the key's rights.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.URL, "http")+"/scripts/v1/monitor",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + guest}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	read := func() map[string]any {
		t.Helper()
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(data, &m)
		return m
	}
	for _, c2 := range []struct{ msg, want string }{
		{`{"event":"deploy.done"}`, `"errorcode":"forbidden"`},
		{`{"event":"a b"}`, `"success":false`},
		{`{"name":"job"}`, `may not watch runs`},
		{`{"event":"x","name":"y"}`, `"success":false`},
		{`{"event":"deploy.step"}`, `"enabled":true`},
	} {
		if err := c.Write(ctx, websocket.MessageText, []byte(c2.msg)); err != nil {
			t.Fatal(err)
		}
		if ack := toJSON(read()); !strings.Contains(ack, c2.want) {
			t.Errorf("%s answered %s, want %s", c2.msg, ack, c2.want)
		}
	}
	emit(admin, `{"name":"deploy.step","data":{"n":4},"perms":["deploy.admin"]}`)
	emit(admin, `{"name":"deploy.step","data":{"n":5}}`)
	if m := read(); m["state"] != "client" || fmt.Sprint(m["data"]) != "map[n:5]" {
		t.Errorf("the WebSocket received %v, want n:5 alone", m)
	}
}

// TestClientEventsWithoutScripts: a server with plugins and no scripts has
// the event feed of client events; one with neither says it has none.
func TestClientEventsWithoutScripts(t *testing.T) {
	s := testserver.Start(t, node.Config{PluginsDir: pluginsDir(t)})
	code, stream := openSSE(t, s.URL, "", "/scripts/v1/events?event=*", "")
	if code != 200 {
		t.Fatalf("events: %d", code)
	}
	if code, a := pluginCall(t, s.URL, "", "/plugins/v1/events", `{"name":"hello"}`); code != 202 {
		t.Fatalf("emit: %d %v", code, a)
	}
	if e := readSSE(t, stream); e.data["name"] != "hello" || fmt.Sprint(e.data["data"]) != "map[]" {
		t.Fatalf("%+v", e)
	}
	// Its streams of runs' events would never carry one: refused.
	for _, q := range []string{"", "?name=", "?name=&event=*"} {
		if code, _, body := request(t, s.URL, "GET", "/scripts/v1/events"+q, ""); code != 404 || !strings.Contains(body, `"no_scripts"`) {
			t.Errorf("events%s on a server without scripts: %d %s", q, code, body)
		}
	}

	bare := testserver.Start(t, node.Config{})
	if code, a := pluginCall(t, bare.URL, "", "/plugins/v1/events", `{"name":"hello"}`); code != 404 || a["errorcode"] != "no_events" {
		t.Errorf("emit on a server without a feed: %d %v", code, a)
	}
	if code, _ := openSSE(t, bare.URL, "", "/scripts/v1/events?event=*", ""); code != 404 {
		t.Errorf("events on a server without a feed: %d", code)
	}
}

// The Go sample of examples/go-plugin, built as its README says: a
// one_for_one command whose sessions each have a process of their own, and
// whose announce emits a client event that an SSE subscriber receives.
func TestGoExamplePlugin(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hello-go")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile("../examples/go-plugin/manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.yaml"), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "hello"), "../examples/go-plugin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	s := testserver.Start(t, node.Config{PluginsDir: filepath.Dir(dir), EventReplay: 100, EventQueue: 100,
		Web: webapi.Config{Token: "s3cret"}})
	const admin = "s3cret"
	code, events := openSSE(t, s.URL, admin, "/scripts/v1/events?event=deploy.step", "")
	if code != 200 {
		t.Fatalf("events: %d", code)
	}
	pids := map[string]bool{}
	for range 2 {
		_, a := pluginCall(t, s.URL, admin, "/plugins/v1/start", `{"component":"example.hello-go/hello"}`)
		session, _ := a["session"].(string)
		var pid any
		for i := range 2 {
			code, a := pluginCall(t, s.URL, admin, "/plugins/v1/call/"+session, `{"method":"pid"}`)
			if code != 200 || (i > 0 && a["result"] != pid) {
				t.Fatalf("pid %d of a session: %d %v (before: %v)", i, code, a, pid)
			}
			pid = a["result"]
		}
		pids[fmt.Sprint(pid)] = true
		code, a = pluginCall(t, s.URL, admin, "/plugins/v1/call/"+session,
			`{"method":"announce","params":{"event":"deploy.step","data":{"step":1}}}`)
		if code != 200 || a["result"] != true {
			t.Fatalf("announce: %d %v", code, a)
		}
		if e := readSSE(t, events); e.data["from"] != "plugin:example.hello-go/hello" || fmt.Sprint(e.data["data"]) != "map[step:1]" {
			t.Fatalf("the announced event: %+v", e)
		}
		pluginCall(t, s.URL, admin, "/plugins/v1/stop/"+session, "")
	}
	if len(pids) != 2 {
		t.Errorf("two one_for_one sessions shared a process: %v", pids)
	}
}
