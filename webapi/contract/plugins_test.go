package contract_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/plugin"
)

// The plugin commands of the walk (/plugins/v1): real processes, a Python
// JSON-RPC responder and shell scripts, in plugin folders of the test's own.

// contractRPC is the walk's plugin command: it answers each method as its
// name says, or misbehaves as asked.
const contractRPC = `import json, os, sys, time

def reply(req, **kw):
    kw.update(jsonrpc="2.0", id=req["id"])
    print(json.dumps(kw), flush=True)

for line in sys.stdin:
    req = json.loads(line)
    if "method" not in req:
        continue
    m, p = req["method"], req.get("params")
    if m == "echo":
        reply(req, result=p)
    elif m == "pid":
        reply(req, result=os.getpid())
    elif m == "none":
        reply(req, result=None)
    elif m == "fail":
        reply(req, error={"code": 7, "message": "it failed", "data": {"params": p}})
    elif m == "bare":
        # The seed's relaxed message: no "jsonrpc", an error without a message.
        print(json.dumps({"id": req["id"], "error": {"code": 3}}), flush=True)
    elif m == "noisy":
        print("debug: not JSON", flush=True)
    elif m == "exit":
        sys.exit(3)
    elif m == "sleep":
        time.sleep(60)
    else:
        reply(req, error={"code": -32601, "message": "no method " + m})
`

// contractManifest is the walk's plugin "contract": commands for every
// strategy and perm, one whose executable goes away,
// and a component that is no command.
const contractManifest = `id: contract
name: The walk's commands
version: 1.0.0
description: Commands the contract test calls.
components:
  - id: cmd
    name: Implicit perm only
    type: cmd
    command: rpc.py
    timeout: 1m
  - id: open
    name: Open to every key
    type: cmd
    command: rpc.py
    strategy: singleton
    timeout: 1m
    user_perms: []
  - id: gated
    name: Needs perms
    type: cmd
    command: rpc.py
    timeout: 1500ms
    user_perms: ["ops.read", "ops.write[db]"]
  - id: once
    name: One call a process
    type: cmd
    command: rpc.py
  - id: gone
    name: Its executable goes away
    type: cmd
    command: gone.sh
  - id: screen
    name: A screen
    type: screen
    file: screen.html
`

// otherManifest is a plugin none of the walk's guest keys may use.
const otherManifest = `id: other
name: Another
version: "2"
components:
  - id: cmd
    type: cmd
    command: rpc.sh
`

// contractPluginsDir writes the walk's plugin folders into a new folder and
// returns it, and the path of the executable to remove once they are
// loaded (gone.sh).
func contractPluginsDir(t *testing.T) (dir, gone string) {
	t.Helper()
	python, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Fatalf("the walk's plugins need python3: %v", err)
	}
	dir = t.TempDir()
	files := map[string]string{
		"contract/manifest.yaml": contractManifest,
		"contract/rpc.py":        "#!" + strings.TrimSpace(string(python)) + "\n" + contractRPC,
		"contract/gone.sh":       "#!/bin/sh\nexit 0\n",
		"other/manifest.yaml":    otherManifest,
		"other/rpc.sh":           "#!/bin/sh\nexit 0\n",
	}
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, filepath.Join(dir, "contract/gone.sh")
}

// newPluginsNode starts a node without scripts and without a token that
// runs the walk's plugins with pc: the server of the plugins' limits.
func newPluginsNode(t *testing.T, pc plugin.Config) *walkServer {
	t.Helper()
	dir, _ := contractPluginsDir(t)
	n := testserver.Start(t, node.Config{PluginsDir: dir, Plugins: pc})
	return &walkServer{url: n.URL}
}

// contractPluginLimits are the settings of the walk's main server's
// plugins: a short deadline, and a breaker that the walk's misbehaving
// calls never open.
var contractPluginLimits = plugin.Config{CallTimeout: 3 * time.Second, KillGrace: time.Second, BreakerFailures: 1000}

// isPlugins reports whether path is of the /plugins/v1 API.
func isPlugins(path string) bool {
	return path == "/plugins/v1" || strings.HasPrefix(path, "/plugins/v1/")
}

// contractPluginsAPI walks /plugins/v1 on s (the walk's server, with its
// guest keys) and the limits of the plugins on lim (one process, two
// sessions, a breaker that opens at the first failure; no token).
func contractPluginsAPI(t *testing.T, c *contract, s, lim *walkServer, g *contractKeys) {
	// send sends key's request; the document takes it as valid when it
	// succeeds or when what refuses it is the plugin or a limit.
	send := func(t *testing.T, base, key, op, path, body string, status int, header ...string) *exchange {
		t.Helper()
		valid := status < 300 || status == 422 || status == 429 || status >= 502
		return c.do(t, base, call{op: op, path: path, body: body, header: header, key: key, valid: valid}, status)
	}
	start := func(t *testing.T, base, key, comp string, status int, header ...string) *exchange {
		t.Helper()
		return send(t, base, key, "POST /plugins/v1/start", "/plugins/v1/start", js(map[string]any{"component": comp}), status, header...)
	}
	session := func(t *testing.T, base, key, comp string) string {
		t.Helper()
		a := start(t, base, key, comp, 200).json()
		if a["component"] != comp {
			t.Errorf("start %s: %v", comp, a)
		}
		return a["session"].(string)
	}
	callOn := func(t *testing.T, base, key, id, body string, status int, header ...string) *exchange {
		t.Helper()
		return send(t, base, key, "POST /plugins/v1/call/{session}", "/plugins/v1/call/"+id, body, status, header...)
	}
	once := func(t *testing.T, base, key, body string, status int, header ...string) *exchange {
		t.Helper()
		return send(t, base, key, "POST /plugins/v1/call", "/plugins/v1/call", body, status, header...)
	}
	stop := func(t *testing.T, base, key, id string, status int) *exchange {
		t.Helper()
		return send(t, base, key, "POST /plugins/v1/stop/{session}", "/plugins/v1/stop/"+id, "", status)
	}
	// refused checks an error answer's code, and that its message says
	// what it should.
	refused := func(t *testing.T, ex *exchange, code, says string) {
		t.Helper()
		if e := ex.json(); e["errorcode"] != code || !strings.Contains(e["error"].(string), says) {
			t.Errorf("%s %s: %s, want %s saying %q", ex.op, ex.body, ex.body, code, says)
		}
	}
	result := func(t *testing.T, ex *exchange) string {
		t.Helper()
		return js(ex.json()["result"])
	}

	t.Run("the list, by key", func(t *testing.T) {
		listed := func(t *testing.T, key string) (map[string][]string, map[string]map[string]any) {
			t.Helper()
			plugins := map[string][]string{}
			comps := map[string]map[string]any{}
			for _, p := range send(t, s.url, key, "GET /plugins/v1", "/plugins/v1", "", 200).json()["plugins"].([]any) {
				p := p.(map[string]any)
				plugins[p["id"].(string)] = []string{}
				for _, comp := range p["components"].([]any) {
					comp := comp.(map[string]any)
					plugins[p["id"].(string)] = append(plugins[p["id"].(string)], comp["id"].(string))
					comps[comp["id"].(string)] = comp
				}
			}
			return plugins, comps
		}
		every := []string{"contract/cmd", "contract/open", "contract/gated", "contract/once", "contract/gone"}
		for _, k := range []struct {
			who, key string
			want     map[string][]string
		}{
			{"the admin", adminToken, map[string][]string{"contract": append(every, "contract/screen"), "other": {"other/cmd"}}},
			{"a key with the perm plugin", g.every, map[string][]string{"contract": every, "other": {"other/cmd"}}},
			{"a key with contract/cmd and ops.read", g.plug, map[string][]string{"contract": {"contract/cmd", "contract/open"}}},
			{"a key with ops.read and ops.write[db]", g.gated, map[string][]string{"contract": {"contract/open", "contract/gated"}}},
			{"a key without perms", g.all, map[string][]string{"contract": {"contract/open"}}},
		} {
			if got, _ := listed(t, k.key); js(got) != js(k.want) {
				t.Errorf("%s sees %v, want %v", k.who, got, k.want)
			}
		}
		_, comps := listed(t, adminToken)
		for id, want := range map[string]string{
			"contract/cmd":    `{"id":"contract/cmd","name":"Implicit perm only","strategy":"one_for_one","timeout":60,"type":"cmd","user_perms":null}`,
			"contract/open":   `{"id":"contract/open","name":"Open to every key","strategy":"singleton","timeout":60,"type":"cmd","user_perms":[]}`,
			"contract/gated":  `{"id":"contract/gated","name":"Needs perms","strategy":"one_for_one","timeout":1.5,"type":"cmd","user_perms":["ops.read","ops.write[db]"]}`,
			"contract/once":   `{"id":"contract/once","name":"One call a process","strategy":"one_for_one","timeout":0,"type":"cmd","user_perms":null}`,
			"contract/screen": `{"id":"contract/screen","name":"A screen","type":"screen"}`,
		} {
			if got := js(comps[id]); got != want {
				t.Errorf("%s listed as %s, want %s", id, got, want)
			}
		}
		// In the URL, a key is for /scripts/v1 only.
		c.do(t, s.url, call{op: "GET /plugins/v1", path: "/plugins/v1?apikey=" + g.plug}, 401)
	})

	t.Run("sessions", func(t *testing.T) {
		id := session(t, s.url, adminToken, "contract/cmd")
		for body, want := range map[string]string{
			`{"method":"echo","params":{"a":[1,"x"],"b":null}}`: `{"a":[1,"x"],"b":null}`,
			`{"method":"echo","params":[1,2.5,"3"]}`:            `[1,2.5,"3"]`,
			`{"method":"echo","params":[]}`:                     `[]`,
			`{"method":"echo"}`:                                 `null`,
			`{"method":"none","params":{}}`:                     `null`,
		} {
			if got := result(t, callOn(t, s.url, adminToken, id, body, 200)); got != want {
				t.Errorf("%s: result %s, want %s", body, got, want)
			}
		}
		// params null counts as none (the document leaves null out).
		if ex := c.do(t, s.url, call{op: "POST /plugins/v1/call/{session}", path: "/plugins/v1/call/" + id,
			body: `{"method":"echo","params":null}`, key: adminToken}, 200); result(t, ex) != "null" {
			t.Errorf("params null: %s", ex.body)
		}
		// One process serves the session's calls; another session of a
		// one_for_one command has its own; a singleton's sessions share one.
		pid := result(t, callOn(t, s.url, adminToken, id, `{"method":"pid"}`, 200))
		if again := result(t, callOn(t, s.url, adminToken, id, `{"method":"pid"}`, 200)); again != pid {
			t.Errorf("a session's process: %s, then %s", pid, again)
		}
		other := session(t, s.url, adminToken, "contract/cmd")
		if pid2 := result(t, callOn(t, s.url, adminToken, other, `{"method":"pid"}`, 200)); pid2 == pid {
			t.Errorf("two sessions of a one_for_one command share the process %s", pid)
		}
		stop(t, s.url, adminToken, other, 200)
		s1, s2 := session(t, s.url, g.plug, "contract/open"), session(t, s.url, g.plug, "contract/open")
		if p1, p2 := result(t, callOn(t, s.url, g.plug, s1, `{"method":"pid"}`, 200)), result(t, callOn(t, s.url, g.plug, s2, `{"method":"pid"}`, 200)); p1 != p2 {
			t.Errorf("the sessions of a singleton: processes %s and %s", p1, p2)
		}
		stop(t, s.url, g.plug, s1, 200)
		stop(t, s.url, g.plug, s2, 200)

		// The plugin's errors: 422 with the JSON-RPC error, to X-APIKey too;
		// an error without a message is told by its code.
		for body, want := range map[string]struct{ rpcError, says string }{
			`{"method":"fail","params":[1]}`: {`{"code":7,"data":{"params":[1]},"message":"it failed"}`, "the plugin answered an error: it failed"},
			`{"method":"bare"}`:              {`{"code":3}`, "the plugin answered an error: code 3, without a message"},
			`{"method":"nosuch"}`:            {`{"code":-32601,"message":"no method nosuch"}`, "the plugin answered an error: no method nosuch"},
		} {
			ex := callOn(t, s.url, adminToken, id, body, 422)
			if e := ex.json(); e["errorcode"] != "plugin_error" || js(e["rpc_error"]) != want.rpcError || e["error"] != want.says {
				t.Errorf("%s: %s, want the rpc_error %s saying %q", body, ex.body, want.rpcError, want.says)
			}
		}
		if e := callOn(t, s.url, "", id, `{"method":"fail"}`, 422, "X-APIKey", adminToken).json(); e["errorcode"] != "plugin_error" {
			t.Errorf("a plugin's error, with X-APIKey: %v", e)
		}

		// A session is its key's.
		refused(t, callOn(t, s.url, g.every, id, `{"method":"echo"}`, 404), "invalid_session", id)
		refused(t, stop(t, s.url, g.every, id, 404), "invalid_session", id)
		stop(t, s.url, adminToken, id, 200)
		refused(t, callOn(t, s.url, adminToken, id, `{"method":"echo"}`, 404), "invalid_session", "it was stopped")
		stop(t, s.url, adminToken, id, 404)
		callOn(t, s.url, adminToken, "nosuch", `{"method":"echo"}`, 404)
		// X-APIKey on /plugins/v1: rexec's statuses and codes (the Cloud
		// Storage Server's convention is the /scripts API's only).
		if e := c.do(t, s.url, call{op: "POST /plugins/v1/stop/{session}", path: "/plugins/v1/stop/nosuch", header: []string{"X-APIKey", adminToken}}, 404).json(); e["errorcode"] != "invalid_session" {
			t.Errorf("stop of no session, with X-APIKey: %v", e)
		}
		refused(t, callOn(t, s.url, "", "nosuch", `{"method":"echo"}`, 404, "X-APIKey", adminToken), "invalid_session", "nosuch")
		callOn(t, s.url, "", "x", `{"method":1}`, 400, "X-APIKey", adminToken)

		// Refused calls: the body is read before the session is looked for.
		for _, body := range []string{`{}`, `{"method":""}`, `{"method":"echo","params":1}`, `{"method":"echo","params":"x"}`,
			`{"method":"echo","component":"contract/cmd"}`, `{"method":"echo","nosuch":1}`, `[1]`, `{"method":`} {
			callOn(t, s.url, adminToken, "x", body, 400)
		}
		callOn(t, s.url, adminToken, "x", js(map[string]any{"method": "echo", "params": []string{strings.Repeat("x", 70<<10)}}), 413)
		contractBodyTimeout(t, c, s.url, "POST /plugins/v1/call/{session}", "/plugins/v1/call/x", adminToken)
	})

	t.Run("processes that fail", func(t *testing.T) {
		// A line that is not JSON on stdout ends the process: 502, and the
		// session is gone, saying why.
		id := session(t, s.url, adminToken, "contract/cmd")
		callOn(t, s.url, adminToken, id, `{"method":"echo"}`, 200)
		refused(t, callOn(t, s.url, adminToken, id, `{"method":"noisy"}`, 502), "plugin_ended", `the line starts "debug: not JSON"`)
		refused(t, callOn(t, s.url, adminToken, id, `{"method":"echo"}`, 404), "invalid_session",
			`no such plugin session: "`+id+`": the plugin's process has ended: plugin protocol error: `)
		stop(t, s.url, adminToken, id, 404)
		id = session(t, s.url, adminToken, "contract/cmd")
		refused(t, callOn(t, s.url, adminToken, id, `{"method":"exit"}`, 502), "plugin_ended", "exit status 3")
		refused(t, callOn(t, s.url, adminToken, id, `{"method":"echo"}`, 404), "invalid_session",
			`no such plugin session: "`+id+`": the plugin's process has ended: exit status 3`)
		// A command without a timeout: its session ends with its one call.
		id = session(t, s.url, adminToken, "contract/once")
		callOn(t, s.url, adminToken, id, `{"method":"pid"}`, 200)
		refused(t, callOn(t, s.url, adminToken, id, `{"method":"pid"}`, 404), "invalid_session",
			`no such plugin session: "`+id+`": the plugin's process has ended: it served its one call (the command has no timeout: start a session for each call)`)
		stop(t, s.url, adminToken, id, 404)
		id = session(t, s.url, adminToken, "contract/once")
		refused(t, callOn(t, s.url, adminToken, id, `{"method":"fail"}`, 422), "plugin_error", "it failed")
		refused(t, callOn(t, s.url, adminToken, id, `{"method":"echo"}`, 404), "invalid_session", "it served its one call")
		// No answer within --plugin-timeout: 504, the process killed.
		id = session(t, s.url, adminToken, "contract/cmd")
		refused(t, callOn(t, s.url, adminToken, id, `{"method":"sleep"}`, 504), "plugin_timeout", "killed")
		stop(t, s.url, adminToken, session(t, s.url, adminToken, "contract/cmd"), 200)
	})

	t.Run("starts refused", func(t *testing.T) {
		for _, body := range []string{`{}`, `{"component":""}`, `{"component":1}`, `[1]`, `{"component":"contract/cmd","method":"echo"}`} {
			send(t, s.url, adminToken, "POST /plugins/v1/start", "/plugins/v1/start", body, 400)
		}
		refused(t, start(t, s.url, adminToken, "contract/screen", 400), "not_a_command", `of type "screen"`)
		refused(t, start(t, s.url, "", "contract/screen", 400, "X-APIKey", adminToken), "not_a_command", "screen")
		refused(t, start(t, s.url, adminToken, "contract/nosuch", 404), "invalid_component", "contract/nosuch")
		refused(t, start(t, s.url, adminToken, "nosuch", 404), "invalid_component", "nosuch")
		// A command that cannot start: 502, naming the command, not its path.
		ex := start(t, s.url, adminToken, "contract/gone", 502)
		refused(t, ex, "plugin_start_failed", "the plugin's command could not start: contract/gone (the server's log says why)")
		if strings.Contains(string(ex.body), "gone.sh") {
			t.Errorf("a start that failed names the command's path: %s", ex.body)
		}
		// Perms: the message names the one missing.
		refused(t, start(t, s.url, g.all, "contract/cmd", 403), "forbidden", `needs the perm "contract/cmd"`)
		refused(t, start(t, s.url, g.plug, "contract/gated", 403), "forbidden", `"ops.write[db]"`)
		refused(t, start(t, s.url, g.plug, "other/cmd", 403), "forbidden", `"other/cmd"`)
		refused(t, start(t, s.url, "", "contract/cmd", 403, "X-APIKey", g.all), "forbidden", `needs the perm "contract/cmd"`)
		refused(t, start(t, s.url, "", "contract/nosuch", 404, "X-APIKey", adminToken), "invalid_component", "contract/nosuch")
		refused(t, start(t, s.url, "", "contract/gone", 502, "X-APIKey", adminToken), "plugin_start_failed", "contract/gone")
		send(t, s.url, "", "POST /plugins/v1/start", "/plugins/v1/start", `[1]`, 400, "X-APIKey", adminToken)
		stop(t, s.url, g.gated, session(t, s.url, g.gated, "contract/gated"), 200)
		stop(t, s.url, g.plug, session(t, s.url, g.plug, "contract/cmd"), 200)
		stop(t, s.url, g.all, session(t, s.url, g.all, "contract/open"), 200)
		stop(t, s.url, g.every, session(t, s.url, g.every, "contract/gated"), 200)
		start(t, s.url, adminToken, strings.Repeat("x", 70<<10), 413)
		contractBodyTimeout(t, c, s.url, "POST /plugins/v1/start", "/plugins/v1/start", adminToken)
	})

	t.Run("one-shot calls", func(t *testing.T) {
		if r := result(t, once(t, s.url, adminToken, `{"component":"contract/cmd","method":"echo","params":["x"]}`, 200)); r != `["x"]` {
			t.Errorf("a one-shot echo: %s", r)
		}
		once(t, s.url, g.plug, `{"component":"contract/open","method":"pid"}`, 200)
		once(t, s.url, g.every, `{"component":"contract/once","method":"pid","params":{}}`, 200)
		refused(t, once(t, s.url, adminToken, `{"component":"contract/once","method":"fail"}`, 422), "plugin_error", "it failed")
		refused(t, once(t, s.url, adminToken, `{"component":"contract/once","method":"noisy"}`, 502), "plugin_ended", "not JSON")
		refused(t, once(t, s.url, adminToken, `{"component":"contract/once","method":"sleep"}`, 504), "plugin_timeout", "in time")
		for _, body := range []string{`{"method":"echo"}`, `{"component":"contract/cmd"}`, `{"component":"contract/cmd","method":"echo","params":1}`,
			`{"component":"contract/cmd","method":"echo","nosuch":1}`, `[1]`} {
			once(t, s.url, adminToken, body, 400)
		}
		refused(t, once(t, s.url, adminToken, `{"component":"contract/screen","method":"echo"}`, 400), "not_a_command", "screen")
		refused(t, once(t, s.url, adminToken, `{"component":"contract/nosuch","method":"echo"}`, 404), "invalid_component", "nosuch")
		if ex := once(t, s.url, adminToken, `{"component":"contract/gone","method":"echo"}`, 502); !strings.Contains(string(ex.body), "gone.sh") {
			refused(t, ex, "plugin_start_failed", "the plugin's command could not start: contract/gone (the server's log says why)")
		} else {
			t.Errorf("a one-shot call whose start failed names the command's path: %s", ex.body)
		}
		refused(t, once(t, s.url, "", `{"component":"contract/cmd","method":"echo"}`, 403, "X-APIKey", g.all), "forbidden", "contract/cmd")
		refused(t, once(t, s.url, "", `{"component":"contract/once","method":"noisy"}`, 502, "X-APIKey", adminToken), "plugin_ended", "not JSON")
		refused(t, once(t, s.url, g.all, `{"component":"contract/cmd","method":"echo"}`, 403), "forbidden", "contract/cmd")
		refused(t, once(t, s.url, g.plug, `{"component":"contract/gated","method":"echo"}`, 403), "forbidden", "ops.write[db]")
		once(t, s.url, adminToken, js(map[string]any{"component": "contract/cmd", "method": "echo", "params": []string{strings.Repeat("x", 70<<10)}}), 413)
		contractBodyTimeout(t, c, s.url, "POST /plugins/v1/call", "/plugins/v1/call", adminToken)
	})

	t.Run("X-APIKey closes the connection", func(t *testing.T) {
		// A request that carries X-APIKey is answered as any other on
		// /plugins/v1, and its connection is closed after the answer (the
		// Cloud Storage Server SDK sends its key only on a connection's
		// first request); one with its key as a bearer token is kept.
		for _, r := range []struct {
			op, path string
			status   int
			code     string
			header   []string
			closes   bool
		}{
			{"GET /plugins/v1", "/plugins/v1", 200, "", []string{"X-APIKey", adminToken}, true},
			{"GET /plugins/v1", "/plugins/v1", 200, "", []string{"X-APIKey", g.plug}, true},
			{"GET /plugins/v1", "/plugins/v1", 200, "", []string{"Authorization", "Bearer " + adminToken}, false},
			{"GET /plugins/v1", "/plugins/v1", 401, "unauthorized", []string{"X-APIKey", "nosuch"}, true},
			{"POST /plugins/v1/stop/{session}", "/plugins/v1/stop/nosuch", 404, "invalid_session", []string{"X-APIKey", adminToken}, true},
			{"POST /plugins/v1/stop/{session}", "/plugins/v1/stop/nosuch", 404, "invalid_session", []string{"Authorization", "Bearer " + adminToken}, false},
		} {
			method, _, _ := strings.Cut(r.op, " ")
			conn := dialRaw(t, s.url)
			head := method + " " + r.path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + r.header[0] + ": " + r.header[1] + "\r\n\r\n"
			if _, err := io.WriteString(conn, head); err != nil {
				t.Fatal(err)
			}
			resp, body := conn.Response(t)
			if resp.StatusCode != r.status {
				t.Fatalf("%s %s with %s: status %d, want %d: %s", method, r.path, r.header[0], resp.StatusCode, r.status, body)
			}
			req, _ := http.NewRequest(method, s.url+r.path, nil)
			ex := &exchange{call: call{op: r.op, path: r.path}, req: req, resp: resp, head: resp.Header, body: []byte(body), t: t}
			c.validateResponse(t, ex, true)
			if r.code != "" {
				refused(t, ex, r.code, "")
			}
			if resp.Close != r.closes || r.closes && !conn.Closed(t) {
				t.Errorf("%s %s with %s: Connection: close %v, want %v", method, r.path, r.header[0], resp.Close, r.closes)
			}
		}
	})

	t.Run("client events", func(t *testing.T) { contractClientEvents(t, c, s, lim, g) })

	t.Run("limits and the breaker", func(t *testing.T) {
		// lim: at most two sessions, one process.
		a, b := session(t, lim.url, "", "contract/open"), session(t, lim.url, "", "contract/open")
		refused(t, start(t, lim.url, "", "contract/open", 429), "too_many_sessions", "at most 2")
		refused(t, once(t, lim.url, "", `{"component":"contract/open","method":"echo"}`, 429), "too_many_sessions", "at most 2")
		stop(t, lim.url, "", b, 200)
		refused(t, start(t, lim.url, "", "contract/cmd", 503), "too_many_plugin_procs", "at most 1")
		refused(t, once(t, lim.url, "", `{"component":"contract/cmd","method":"echo"}`, 503), "too_many_plugin_procs", "at most 1")
		// The singleton's process ends before it answers any call: with a
		// breaker of one failure, its command's starts are refused.
		refused(t, callOn(t, lim.url, "", a, `{"method":"exit"}`, 502), "plugin_ended", "exit status 3")
		refused(t, start(t, lim.url, "", "contract/open", 503), "plugin_failing", "ended before answering")
		refused(t, once(t, lim.url, "", `{"component":"contract/open","method":"echo"}`, 503), "plugin_failing", "refused until")
		// Another command is not refused.
		once(t, lim.url, "", `{"component":"contract/cmd","method":"echo"}`, 200)
	})
}

// contractClientEvents walks the client events: POST /plugins/v1/events,
// and their monitors (GET /scripts/v1/events?event=, {"event":...} on GET
// /scripts/v1/monitor), on s (scripts, plugins, a token, --monitor-names 2)
// and on lim (plugins and no scripts, no token).
func contractClientEvents(t *testing.T, c *contract, s, lim *walkServer, g *contractKeys) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	emit := func(t *testing.T, base, key, body string, status int, header ...string) *exchange {
		t.Helper()
		return c.do(t, base, call{op: "POST /plugins/v1/events", path: "/plugins/v1/events", body: body, header: header,
			key: key, valid: status < 300}, status)
	}
	events := func(t *testing.T, base, key, query string, status int) *exchange {
		t.Helper()
		ex := c.open(t, ctx, base, call{op: "GET /scripts/v1/events", path: "/scripts/v1/events" + query, key: key, valid: status < 300}, status)
		if status >= 300 {
			c.finish(t, ex)
		}
		return ex
	}
	code := func(t *testing.T, ex *exchange, want, says string) {
		t.Helper()
		if e := ex.json(); e["errorcode"] != want || !strings.Contains(e["error"].(string), says) {
			t.Errorf("%s %s: %s, want %s saying %q", ex.op, ex.path, ex.body, want, says)
		}
	}
	// next reads the stream's next event: a client event, whose data it
	// returns.
	next := func(t *testing.T, ex *exchange, br *bufio.Reader) map[string]any {
		t.Helper()
		e, data := c.readEvent(t, ex, br)
		if e["event"] != "client" || data["state"] != "client" || e["id"] != strconv.FormatFloat(data["id"].(float64), 'f', -1, 64) {
			t.Fatalf("%s: %v %v, want a client event", ex.path, e, data)
		}
		return data
	}

	// The admin's stream of deploy.step, and a guest key's of every client
	// event it may receive; the admin's of runs and of deploy.step.
	admin := events(t, s.url, adminToken, "?event=deploy.step", 200)
	adminEvents := bufio.NewReader(admin.resp.Body)
	guest := events(t, s.url, g.events, "?event=*", 200)
	guestEvents := bufio.NewReader(guest.resp.Body)
	both := events(t, s.url, adminToken, "?name=echo&event=deploy.step", 200)
	bothEvents := bufio.NewReader(both.resp.Body)

	a := emit(t, s.url, adminToken, `{"name":"deploy.step","data":{"step":1,"of":"ünï"},"perms":["deploy.admin"]}`, 202).json()
	if a["name"] != "deploy.step" {
		t.Errorf("emit: %v", a)
	}
	emit(t, s.url, g.events, `{"name":"deploy.step","data":{"step":2},"perms":["deploy.view"]}`, 202)
	emit(t, s.url, "", `{"name":"deploy.step"}`, 202, "X-APIKey", adminToken)
	emit(t, s.url, adminToken, `{"name":"deploy.other","data":{}}`, 202) // no one here watches it

	// The admin holds every perm: all three, in order, saying who emitted
	// each; the guest key only those its perms let it receive.
	for i, want := range []struct{ data, from, perms string }{
		{`{"of":"ünï","step":1}`, "admin", `["deploy.admin"]`},
		{`{"step":2}`, g.eventsID, `["deploy.view"]`},
		{`{}`, "admin", `null`},
	} {
		for _, stream := range []struct {
			ex *exchange
			br *bufio.Reader
		}{{admin, adminEvents}, {both, bothEvents}} {
			d := next(t, stream.ex, stream.br)
			if d["name"] != "deploy.step" || js(d["data"]) != want.data || d["from"] != want.from || js(d["perms"]) != want.perms {
				t.Errorf("%s: client event %d: %v, want data %s from %s guarded by %s", stream.ex.path, i, d, want.data, want.from, want.perms)
			}
		}
	}
	if d := next(t, guest, guestEvents); js(d["data"]) != `{"step":2}` || d["from"] != g.eventsID {
		t.Errorf("the guest key received %v first, want step 2 (step 1 is guarded by deploy.admin, which it lacks)", d)
	}
	if d := next(t, guest, guestEvents); js(d["data"]) != `{}` {
		t.Errorf("the guest key received %v, want the event without data", d)
	}
	// The stream of runs and client events has both.
	id := c.do(t, s.url, call{op: "POST /scripts/v1/run", path: "/scripts/v1/run", body: `{"name":"echo","args":["ev"]}`,
		key: adminToken, valid: true}, 200).json()["id"].(string)
	if e, data := c.readEvent(t, both, bothEvents); e["event"] != "queued" || data["run"] != id {
		t.Errorf("the stream of runs and client events: %v %v, want %s queued", e, data, id)
	}
	for _, ex := range []*exchange{admin, guest, both} {
		ex.resp.Body.Close()
	}

	// What a guest key may not emit, or ask for; what is no event.
	code(t, emit(t, s.url, g.events, `{"name":"deploy.done"}`, 403), "forbidden", "event.emit[deploy.done]")
	code(t, emit(t, s.url, "", `{"name":"deploy.done"}`, 403, "X-APIKey", g.plug), "forbidden", "event.emit[deploy.done]")
	code(t, emit(t, s.url, g.plug, `{"name":"bad name"}`, 400), "invalid_request", "invalid event name") // the body first
	for body, says := range map[string]string{
		`{"data":{}}`:                  "1 to 128 bytes",
		`{"name":""}`:                  "1 to 128 bytes",
		`{"name":"*"}`:                 "invalid event name",
		`{"name":"a b"}`:               "invalid event name",
		`{"name":"x","data":[1]}`:      "JSON object",
		`{"name":"x","data":"text"}`:   "JSON object",
		`{"name":"x","perms":["Bad"]}`: "invalid perm",
		`{"name":"x","perms":"p"}`:     "perms",
		`{"name":"x","nosuch":1}`:      "nosuch",
		`[1]`:                          "",
		`{"name":"x",`:                 "",
		js(map[string]any{"name": "x", "perms": perms65[:17]}):                 "at most 16 perms",
		js(map[string]any{"name": strings.Repeat("x", plugin.MaxEventName+1)}): "1 to 128 bytes",
	} {
		code(t, emit(t, s.url, adminToken, body, 400), "invalid_request", says)
	}
	code(t, emit(t, s.url, "", `{"name":"x","nosuch":1}`, 400, "X-APIKey", adminToken), "invalid_request", "nosuch")
	emit(t, s.url, adminToken, js(map[string]any{"name": "x", "data": map[string]string{"big": strings.Repeat("x", 70<<10)}}), 413)
	contractBodyTimeout(t, c, s.url, "POST /plugins/v1/events", "/plugins/v1/events", adminToken)
	// A key in the URL is not read on /plugins/v1.
	c.do(t, s.url, call{op: "POST /plugins/v1/events", path: "/plugins/v1/events?apikey=" + g.events, body: `{"name":"deploy.step"}`}, 401)

	code(t, events(t, s.url, g.events, "?event=deploy.done", 403), "forbidden", "event.subscribe[deploy.done]")
	code(t, events(t, s.url, g.plug, "?event=*", 403), "forbidden", "event.subscribe")
	code(t, events(t, s.url, g.events, "", 403), "forbidden", "")                         // runs: the monitor right
	code(t, events(t, s.url, g.events, "?event=deploy.step&name=", 403), "forbidden", "") // runs too
	code(t, events(t, s.url, adminToken, "?event=bad%20name", 400), "invalid_request", "invalid event name")
	code(t, events(t, s.url, adminToken, "?event=a&event=b&event=c", 400), "invalid_request", "--monitor-names")

	// The WebSocket: {"event": name} with the key's perms.
	w := c.dialWS(t, ctx, s.url, "GET /scripts/v1/monitor", "/scripts/v1/monitor", http.Header{"Authorization": {"Bearer " + g.events}})
	for _, r := range []struct {
		msg  string
		raw  bool // not a watch request of the document
		want map[string]any
	}{
		{`{"event":"deploy.done"}`, false, map[string]any{"success": false, "event": "deploy.done", "errorcode": "forbidden"}},
		{`{"event":"a b"}`, true, map[string]any{"success": false, "event": "a b", "errorcode": "invalid_request"}},
		{`{"name":"echo","event":"deploy.step"}`, true, map[string]any{"success": false}},
		{`{"name":"echo"}`, false, map[string]any{"success": false, "name": "echo", "errorcode": "forbidden"}},
		{`{"event":"deploy.step"}`, false, map[string]any{"success": true, "event": "deploy.step", "enabled": true}},
	} {
		if r.raw {
			w.sendRaw(r.msg)
		} else {
			w.send(r.msg)
		}
		m := w.receive()
		for k, v := range r.want {
			if m[k] != v {
				t.Errorf("%s answered %v, want %s %v", r.msg, m, k, v)
			}
		}
	}
	emit(t, s.url, adminToken, `{"name":"deploy.step","data":{"n":1},"perms":["deploy.admin"]}`, 202)
	emit(t, s.url, adminToken, `{"name":"deploy.step","data":{"n":2},"perms":["deploy.view"]}`, 202)
	if m := w.receive(); m["state"] != "client" || js(m["data"]) != `{"n":2}` || m["from"] != "admin" {
		t.Errorf("the WebSocket received %v, want n 2 alone", m)
	}
	// A key without the monitor right and without event.subscribe: no
	// monitor at all.
	c.do(t, s.url, call{op: "GET /scripts/v1/monitor", path: "/scripts/v1/monitor", key: g.plug}, 403)

	// A server with plugins and no scripts has the feed of client events.
	ev := events(t, lim.url, "", "?event=*", 200)
	evs := bufio.NewReader(ev.resp.Body)
	ws := c.dialWS(t, ctx, lim.url, "GET /scripts/v1/monitor", "/scripts/v1/monitor", nil)
	ws.send(`{"event":"*"}`)
	if m := ws.receive(); m["success"] != true || m["event"] != "*" {
		t.Errorf("watch * on a server without scripts: %v", m)
	}
	// Runs' events there: no_scripts.
	ws.send(`{"name":""}`)
	if m := ws.receive(); m["success"] != false || m["errorcode"] != "no_scripts" {
		t.Errorf("watch every script on a server without scripts: %v", m)
	}
	for _, query := range []string{"", "?name=", "?name=echo&event=hello"} {
		code(t, events(t, lim.url, "", query, 404), "no_scripts", "runs no scripts")
	}
	emit(t, lim.url, "", `{"name":"hello","data":{"x":[1]}}`, 202)
	if d := next(t, ev, evs); d["name"] != "hello" || d["from"] != "admin" || js(d["data"]) != `{"x":[1]}` {
		t.Errorf("a client event on a server without scripts: %v", d)
	}
	if m := ws.receive(); m["name"] != "hello" || m["state"] != "client" {
		t.Errorf("the WebSocket on a server without scripts received %v", m)
	}
	ev.resp.Body.Close()
}
