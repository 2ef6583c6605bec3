package webapi_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/plugin"
)

// pluginsDir is a --plugins folder with the README's Python sample and a
// plugin "t" of shell commands:
//
//	t/open     user_perms []: any key (answers like the sample)
//	t/locked   no user_perms: the perm "t/locked" or "plugin"
//	t/ssh      user_perms [ssh]
//	t/mute     never answers
//	t/noisy    prints a line that is not JSON
//	t/screen   a component that is not a command
//	t/caller   calls the server back (ask), with perms for runs and machines
//	t/pubsub   calls the server back, with perms for client events, and
//	           keeps the events it receives (got)
func pluginsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sample, err := filepath.Abs("../examples/plugins/hello-python")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sample, filepath.Join(dir, "hello-python")); err != nil {
		t.Fatal(err)
	}
	tdir := filepath.Join(dir, "t")
	if err := os.Mkdir(tdir, 0o755); err != nil {
		t.Fatal(err)
	}
	hello, err := os.ReadFile(filepath.Join(sample, "hello.py"))
	if err != nil {
		t.Fatal(err)
	}
	for name, script := range map[string]string{
		"hello.py": string(hello),
		"mute":     "#!/bin/sh\nexec sleep 60\n",
		"caller.py": `#!/usr/bin/env python3
# ask {"method", "params"}: calls the server, and answers with its answer.
import json, sys
for line in sys.stdin:
    req = json.loads(line)
    if req.get("method") != "ask":
        continue
    p = req["params"]
    print(json.dumps({"jsonrpc": "2.0", "id": "srv", "method": p["method"], "params": p.get("params", {})}), flush=True)
    answer = json.loads(sys.stdin.readline())
    print(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": answer}), flush=True)
`,
		"noisy": "#!/bin/sh\necho 'Loading config from /etc/app.conf'\nread line\n",
		"pubsub.py": `#!/usr/bin/env python3
# ask {"method", "params"}: calls the server, and answers with its answer;
# got: the client events received so far, as notifications. Seed-style
# messages: no "jsonrpc" member.
import json, sys
got = []
def read():
    while True:
        msg = json.loads(sys.stdin.readline())
        if "id" in msg:
            return msg
        got.append({"name": msg["method"], "data": msg.get("params")})
while True:
    req = read()
    if req.get("method") == "ask":
        p = req["params"]
        print(json.dumps({"id": "srv", "method": p["method"], "params": p.get("params", {})}), flush=True)
        print(json.dumps({"id": req["id"], "result": read()}), flush=True)
    elif req.get("method") == "got":
        print(json.dumps({"id": req["id"], "result": got}), flush=True)
`,
	} {
		if err := os.WriteFile(filepath.Join(tdir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	manifest := `id: t
name: Test commands
components:
  - {id: open, type: cmd, command: hello.py, strategy: singleton, timeout: 1m, user_perms: []}
  - {id: locked, type: cmd, command: hello.py}
  - {id: ssh, type: cmd, command: hello.py, user_perms: ssh}
  - {id: mute, type: cmd, command: mute}
  - {id: noisy, type: cmd, command: noisy}
  - {id: screen, type: screen, name: A screen}
  - {id: caller, type: cmd, command: caller.py, strategy: singleton, timeout: 1m, perms: "run.start[job] run.status machines.list"}
  - {id: mute-caller, type: cmd, command: caller.py, strategy: singleton, timeout: 1m}
  - {id: pubsub, type: cmd, command: pubsub.py, strategy: singleton, timeout: 1m, perms: "event.emit[deploy.step] event.subscribe[deploy.step] event.subscribe[deploy.done]"}
`
	if err := os.WriteFile(filepath.Join(tdir, "manifest.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newPluginServer starts a server on a new pluginsDir, which it returns
// too.
func newPluginServer(t *testing.T, token string) (*testserver.Server, string) {
	t.Helper()
	dir := pluginsDir(t)
	nc := node.Config{PluginsDir: dir, Plugins: plugin.Config{CallTimeout: time.Second, KillGrace: 500 * time.Millisecond},
		EventReplay: 100, EventQueue: 100}
	nc.Web.Token = token
	nc.Scripts = testserver.Exectab(t, "-e=TESTCHILD=exit job EXE 0", "-e=TESTCHILD=exit other EXE 0")
	return testserver.Start(t, nc), dir
}

// pluginCall posts body to path with key, and returns the status and the
// answer.
func pluginCall(t *testing.T, url, key, path, body string) (int, map[string]any) {
	t.Helper()
	code, _, raw := request(t, url, "POST", path, body, "Authorization", "Bearer "+key)
	var a map[string]any
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		t.Fatalf("%s: %d %q is not JSON", path, code, raw)
	}
	return code, a
}

func TestPluginsAPI(t *testing.T) {
	s, _ := newPluginServer(t, "s3cret")
	const admin = "s3cret"

	// The list: no paths.
	code, _, body := request(t, s.URL, "GET", "/plugins/v1", "", "Authorization", "Bearer "+admin)
	if code != 200 || !strings.Contains(body, `"id":"example.hello/hello"`) || !strings.Contains(body, `"id":"t/screen"`) ||
		strings.Contains(body, "hello.py") || strings.Contains(body, "/tmp") {
		t.Fatalf("GET /plugins/v1: %d %s", code, body)
	}

	// A one-shot call, and a session.
	if code, a := pluginCall(t, s.URL, admin, "/plugins/v1/call", `{"component":"example.hello/hello","method":"hello","params":["rexec"]}`); code != 200 || a["result"] != "hello, rexec" {
		t.Fatalf("one-shot call: %d %v", code, a)
	}
	code, a := pluginCall(t, s.URL, admin, "/plugins/v1/start", `{"component":"t/open"}`)
	session, _ := a["session"].(string)
	if code != 200 || len(session) != 32 {
		t.Fatalf("start: %d %v", code, a)
	}
	for i, c := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"method":"add","params":{"a":2,"b":40}}`, 200, `"result":42`},
		{`{"method":"add","params":[1,2]}`, 200, `"result":3`},
		{`{"method":"dir"}`, 200, `"result":["add","dir","hello"]`},
		{`{"method":"nope"}`, 422, `"rpc_error":{"code":-32601,"message":"no method nope"}`},
		{`{"method":"add","params":[1]}`, 422, `"errorcode":"plugin_error"`},
		{`{"method":"add","params":5}`, 400, `must be an array or an object`},
		{`{"params":[]}`, 400, `"method\" is required`},
		{`{"method":"add","component":"t/open"}`, 400, `"component\" is for POST /plugins/v1/call`},
		{`{"method":"add","extra":1}`, 400, `unknown field \"extra\"`},
	} {
		code, _, raw := request(t, s.URL, "POST", "/plugins/v1/call/"+session, c.body, "Authorization", "Bearer "+admin)
		if code != c.status || !strings.Contains(raw, c.want) {
			t.Errorf("call %d %s: %d %s, want %d with %s", i, c.body, code, raw, c.status, c.want)
		}
	}
	if code, a := pluginCall(t, s.URL, admin, "/plugins/v1/stop/"+session, ``); code != 200 || a["success"] != true {
		t.Errorf("stop: %d %v", code, a)
	}
	if code, a := pluginCall(t, s.URL, admin, "/plugins/v1/call/"+session, `{"method":"dir"}`); code != 404 || a["errorcode"] != "invalid_session" {
		t.Errorf("a call after stop: %d %v", code, a)
	}

	// What a command can do wrong.
	for _, c := range []struct {
		body, code string
		status     int
		want       string
	}{
		{`{"component":"t/mute","method":"dir"}`, "plugin_timeout", 504, "did not answer in time"},
		{`{"component":"t/noisy","method":"dir"}`, "plugin_ended", 502, "Loading config from /etc/app.conf"},
		{`{"component":"t/screen","method":"dir"}`, "not_a_command", 400, `of type \"screen\"`},
		{`{"component":"t/nope","method":"dir"}`, "invalid_component", 404, `\"t/nope\"`},
		{`{"method":"dir"}`, "invalid_request", 400, `"component\" is required`},
	} {
		start := time.Now()
		code, _, raw := request(t, s.URL, "POST", "/plugins/v1/call", c.body, "Authorization", "Bearer "+admin)
		if code != c.status || !strings.Contains(raw, `"errorcode":"`+c.code+`"`) || !strings.Contains(raw, c.want) {
			t.Errorf("%s: %d %s, want %d %s with %s", c.body, code, raw, c.status, c.code, c.want)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s took %v", c.body, d)
		}
	}
	if st := s.Plugins.Stats(); st.Sessions != 0 {
		t.Errorf("sessions left after one-shot calls: %+v", st)
	}

	// No credentials: 401, as everywhere.
	if code, _, _ := request(t, s.URL, "GET", "/plugins/v1", ""); code != 401 {
		t.Errorf("no token: %d", code)
	}
}

// Perms: a guest key uses the commands its perms open, and a refusal names
// the perm that is missing. A session is its key's.
func TestPluginPerms(t *testing.T) {
	s, _ := newPluginServer(t, "s3cret")
	guest := func(perms string) string {
		t.Helper()
		code, a := pluginCall(t, s.URL, "s3cret", "/scripts/v1/guest/create", `{"perms":`+perms+`}`)
		info, _ := a["info"].(map[string]any)
		key, _ := info["apikey"].(string)
		if code != 200 || key == "" {
			t.Fatalf("guest/create with perms %s: %d %v", perms, code, a)
		}
		return key
	}
	none := guest(`["settings.view"]`)
	locked := guest(`["t/locked"]`)
	all := guest(`["plugin"]`)
	ssh := guest(`["ssh"]`)
	call := func(key, comp string) (int, map[string]any) {
		return pluginCall(t, s.URL, key, "/plugins/v1/call", fmt.Sprintf(`{"component":%q,"method":"hello"}`, comp))
	}
	for _, c := range []struct {
		who, key, comp string
		status         int
		want           string
	}{
		{"no perm, an open command", none, "t/open", 200, ""},
		{"no perm, the implicit perm", none, "t/locked", 403, `needs the perm \"t/locked\"`},
		{"no perm, user_perms", none, "t/ssh", 403, `needs the perm(s) \"ssh\"`},
		{"the implicit perm", locked, "t/locked", 200, ""},
		{"another command's perm", locked, "t/ssh", 403, `\"ssh\"`},
		{"plugin opens all", all, "t/locked", 200, ""},
		{"plugin opens all", all, "t/ssh", 200, ""},
		{"the user_perms", ssh, "t/ssh", 200, ""},
		{"the user_perms, not the implicit", ssh, "t/locked", 403, `\"t/locked\"`},
	} {
		code, a := call(c.key, c.comp)
		raw, _ := json.Marshal(a)
		if code != c.status || !strings.Contains(string(raw), c.want) {
			t.Errorf("%s (%s): %d %s", c.who, c.comp, code, raw)
		}
	}
	// The list shows a guest only what it may use.
	code, _, body := request(t, s.URL, "GET", "/plugins/v1", "", "Authorization", "Bearer "+locked)
	if code != 200 || !strings.Contains(body, `"t/locked"`) || !strings.Contains(body, `"t/open"`) ||
		strings.Contains(body, `"t/ssh"`) || strings.Contains(body, `"t/screen"`) {
		t.Errorf("a guest's list: %d %s", code, body)
	}
	// A session is its key's.
	code, a := pluginCall(t, s.URL, locked, "/plugins/v1/start", `{"component":"t/open"}`)
	session, _ := a["session"].(string)
	if code != 200 {
		t.Fatalf("start: %d %v", code, a)
	}
	for _, other := range []string{all, "s3cret"} {
		if code, a := pluginCall(t, s.URL, other, "/plugins/v1/call/"+session, `{"method":"dir"}`); code != 404 {
			t.Errorf("another key's call on the session: %d %v", code, a)
		}
		if code, _ := pluginCall(t, s.URL, other, "/plugins/v1/stop/"+session, ``); code != 404 {
			t.Errorf("another key's stop of the session: %d", code)
		}
	}
	if code, a := pluginCall(t, s.URL, locked, "/plugins/v1/call/"+session, `{"method":"dir"}`); code != 200 {
		t.Errorf("the owner's call: %d %v", code, a)
	}
	// Bad perms are refused at creation.
	for _, bad := range []string{`["Bad"]`, `["a b"]`, `["x[]"]`, `[1]`, `"plugin"`} {
		if code, a := pluginCall(t, s.URL, "s3cret", "/scripts/v1/guest/create", `{"perms":`+bad+`}`); code != 400 {
			t.Errorf("perms %s: %d %v", bad, code, a)
		}
	}
	// Guest keys reach /plugins/v1, and still not /process.
	if code, _, _ := request(t, s.URL, "GET", "/process", "", "Authorization", "Bearer "+all); code != 403 {
		t.Errorf("a guest key on /process: %d", code)
	}
}

// A reload (SIGHUP) takes new plugins for new sessions, keeps the old set
// on a bad folder, and cuts no call in flight.
func TestPluginsReload(t *testing.T) {
	s, dir := newPluginServer(t, "")
	var wg sync.WaitGroup
	var code int
	var a map[string]any
	wg.Go(func() {
		// mute never answers: the call runs until its 1 s deadline,
		// across the reload.
		code, a = pluginCall(t, s.URL, "", "/plugins/v1/call", `{"component":"t/mute","method":"dir"}`)
	})
	time.Sleep(200 * time.Millisecond)
	manifest := filepath.Join(dir, "t", "manifest.yaml")
	old, _ := os.ReadFile(manifest)
	if err := os.WriteFile(manifest, []byte("id: t\ncomponents:\n  - {id: open2, type: cmd, command: hello.py, user_perms: []}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if code != 504 {
		t.Errorf("the call in flight across the reload: %d %v (its deadline, not a cut)", code, a)
	}
	if code, a := pluginCall(t, s.URL, "", "/plugins/v1/call", `{"component":"t/open2","method":"hello"}`); code != 200 {
		t.Errorf("a new command after the reload: %d %v", code, a)
	}
	if code, _ := pluginCall(t, s.URL, "", "/plugins/v1/call", `{"component":"t/open","method":"hello"}`); code != 404 {
		t.Errorf("a removed command after the reload: %d", code)
	}
	// A bad manifest: the reload fails, the set in force stays.
	if err := os.WriteFile(manifest, append(old, []byte("  - {id: bad, type: cmd}\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "manifest.yaml:") {
		t.Errorf("a bad reload: %v", err)
	}
	if code, _ := pluginCall(t, s.URL, "", "/plugins/v1/call", `{"component":"t/open2","method":"hello"}`); code != 200 {
		t.Errorf("after a bad reload: %d", code)
	}
}

// A command calls the server back: the methods its perms grant, for the
// scripts they name; anything else is "method not found".
func TestPluginCallbacks(t *testing.T) {
	s, _ := newPluginServer(t, "")
	ask := func(comp, method, params string) map[string]any {
		t.Helper()
		code, a := pluginCall(t, s.URL, "", "/plugins/v1/call",
			fmt.Sprintf(`{"component":%q,"method":"ask","params":{"method":%q,"params":%s}}`, comp, method, params))
		res, _ := a["result"].(map[string]any)
		if code != 200 || res == nil {
			t.Fatalf("%s asks %s: %d %v", comp, method, code, a)
		}
		return res
	}
	errCode := func(res map[string]any) float64 {
		e, _ := res["error"].(map[string]any)
		c, _ := e["code"].(float64)
		return c
	}

	res := ask("t/caller", "run.start", `{"script":"job","args":[]}`)
	run, _ := res["result"].(map[string]any)
	id, _ := run["id"].(string)
	if id == "" || run["name"] != "job" || run["who"] != "plugin:t/caller" {
		t.Fatalf("run.start: %v", res)
	}
	res = ask("t/caller", "run.status", fmt.Sprintf(`{"id":%q}`, id))
	if st, _ := res["result"].(map[string]any); st["id"] != id {
		t.Errorf("run.status: %v", res)
	}
	res = ask("t/caller", "machines.list", `{}`)
	if ms, _ := res["result"].([]any); len(ms) != 1 || !strings.Contains(fmt.Sprint(ms[0]), s.URL) {
		t.Errorf("machines.list: %v", res)
	}
	// Not granted, and not there: the same answer.
	for _, c := range []struct{ comp, method, params string }{
		{"t/caller", "run.start", `{"script":"other"}`},
		{"t/caller", "secrets.read", `{}`},
		{"t/mute-caller", "machines.list", `{}`},
		{"t/mute-caller", "run.start", `{"script":"job"}`},
	} {
		if res := ask(c.comp, c.method, c.params); errCode(res) != -32601 {
			t.Errorf("%s asks %s %s: %v, want method not found", c.comp, c.method, c.params, res)
		}
	}
	// A refusal of the run itself: the API's errorcode in the error's data.
	res = ask("t/caller", "run.start", `{"script":"job","args":["one too many"]}`)
	if e, _ := res["error"].(map[string]any); !strings.Contains(fmt.Sprint(e["data"]), "invalid_args") {
		t.Errorf("a refused run.start: %v", res)
	}
	if res := ask("t/caller", "run.status", `{"id":"nosuch"}`); errCode(res) == 0 {
		t.Errorf("run.status of no run: %v", res)
	}
}
