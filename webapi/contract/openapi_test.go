package contract_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/console"
	"github.com/rexec/rexec/internal/buildinfo"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/plugin"
	"github.com/rexec/rexec/webapi"
)

// The contract of GET /openapi.json (openapi.json) against the real server.
// TestOpenAPIContract loads the document the server serves with
// kin-openapi, validates it, compares it with the routing table, then walks
// a real server (real processes, sockets and SQLite) through every
// documented operation: the answers that succeed and the errors a request
// can reach. Each request the walk sends as valid is validated against the
// document, and each answer against the operation it answers: its status,
// headers, media type, body (every line of NDJSON, every Server-Sent Event
// and its data, every WebSocket message) and trailers (x-trailers). It fails
// for a route the document lacks, an operation it has that no route serves,
// an answer that does not match, and a documented answer that the walk never
// saw and that contractUnreachable does not name with a reason.

const adminToken = "admin-token"

// contractScripts is the exectab of the walk's server.
var contractScripts = []string{
	"-e=TESTCHILD=echo echo EXE @@1",
	"-e=TESTCHILD=hang -s=4 hang EXE",
	"-e=TESTCHILD=hang single EXE",
	"-e=TESTCHILD=cat -i withstdin EXE",
	"--tty -i -e=TESTCHILD=tty term EXE",
	"-e=TESTCHILD=hang -m=1 capped EXE",
	"-e=TESTCHILD=echo --memory=64MiB --pids=32 limited EXE @@1",
	"-n notify @@1",
	"tok /bin/sh -c 'env | grep ^REX.C_RUN_TOKEN=; exec sleep 60'", // (exectab() replaces E-X-E)
}

// perms65 is one perm too many for a guest key.
var perms65 = func() []string {
	p := make([]string, 65)
	for i := range p {
		p[i] = "p" + strconv.Itoa(i)
	}
	return p
}()

// contractUnreachable are the documented answers the walk cannot make the
// server give, and why. Anything else the document lists must be seen.
var contractUnreachable = []unreached{
	{"*", "500", "*", "an internal fault: no request makes the server have one"},
	{"GET /healthz", "503", "*", "out of file descriptors (the shed answer)"},
	{"GET /process", "503", "*", "out of file descriptors, or a guest key the store cannot check (it reads while locked)"},
	{"DELETE /process/{alias}", "503", "*", "the broker shut down under a live server; out of file descriptors"},
	{"GET /process/attach", "503", "*", "out of file descriptors, or a session opened while the server shuts down (the walk's servers stay up)"},
	{"GET /metrics", "503", "*", "more than 4 scrapes at once, a scrape over 10 s, out of file descriptors"},
	{"GET /metrics", "404", "*", "a node always keeps metrics"},
	{"GET /openapi.json", "503", "*", "out of file descriptors, or a guest key the store cannot check"},
	{"GET /", "503", "*", "out of file descriptors (the page needs no key to check)"},
	{"GET /console/{file}", "503", "*", "out of file descriptors (the files need no key to check)"},
	{"POST /scripts/v1/cancel/{id}", "503", "*", "a cancelled run's end the store cannot take is kept in memory: the cancel succeeds"},
	{"GET /scripts/v1/status", "503", "*", "the store fails a read (a locked one still reads)"},
	{"GET /scripts/v1/status/{id}", "503", "*", "the store fails a read (a locked one still reads)"},
	{"GET /scripts/v1/scripts", "503", "*", "out of file descriptors, or a guest key the store cannot check"},
	{"GET /scripts/v1/runs", "503", "*", "the store fails a read (a locked one still reads)"},
	{"GET /scripts/v1/output/{id}", "503", "*", "the output files fail a read"},
	{"GET /scripts/v1/events", "503", "*", "out of file descriptors, or a guest key the store cannot check"},
	{"GET /scripts/v1/monitor", "503", "*", "out of file descriptors, or a guest key the store cannot check"},
	{"GET /scripts/v1/monitor", "500", "*", "the connection cannot be hijacked (never on HTTP/1.1)"},
	{"GET /scripts/v1", "503", "*", "out of file descriptors, or a guest key the store cannot check"},
	{"GET /scripts/v1", "500", "*", "the connection cannot be hijacked (never on HTTP/1.1)"},
	{"GET /scripts", "503", "*", "out of file descriptors, or a guest key the store cannot check"},
	{"GET /scripts", "500", "*", "the connection cannot be hijacked (never on HTTP/1.1)"},
	{"POST /scripts/v1/progress/{id}", "503", "*", "progress is saved later, out of the request: only out of file descriptors"},
	{"GET /scripts/v1/guest/list", "503", "*", "the store fails a read (a locked one still reads)"},
	{"GET /plugins/v1", "503", "*", "out of file descriptors, or a guest key the store cannot check"},
	{"POST /plugins/v1/call/{session}", "503", "*", "out of file descriptors, a guest key the store cannot check, or a call whose client went away (no one reads it)"},
	{"POST /plugins/v1/stop/{session}", "503", "*", "out of file descriptors, or a guest key the store cannot check"},
	{"POST /plugins/v1/events", "503", "*", "out of file descriptors, or a guest key the store cannot check"},
}

func TestOpenAPIContract(t *testing.T) {
	if testing.Short() {
		t.Skip("walks five servers")
	}
	dir := t.TempDir()
	plugins, gone := contractPluginsDir(t)
	s := newDetachedNode(t, node.Config{DataDir: dir, Web: webapi.Config{Token: adminToken, MaxBody: 64 << 10,
		BodyTimeout: 400 * time.Millisecond, Monitors: webapi.MonitorLimits{PerKey: 3, Names: 2}, Console: console.New()},
		PluginsDir: plugins, Plugins: contractPluginLimits}, contractScripts...)
	if err := os.Remove(gone); err != nil { // loaded: its starts now fail
		t.Fatal(err)
	}
	// One plugin process, two sessions, and a breaker that opens at once.
	lim := newPluginsNode(t, plugin.Config{KillGrace: time.Second, MaxProcs: 1, MaxSessions: 2,
		BreakerFailures: 1, BreakerCooldown: time.Minute})
	open := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=exit job EXE 0") // no token: anyone is the admin
	bare := newBareServer(t, 1)                                              // no scripts, no token, one process
	dark := newTokenServer(t)                                                // a token, and no console (--no-console)

	// The document, as served, loaded and validated.
	code, h, served := request(t, s.url, "GET", "/openapi.json", "", "Authorization", "Bearer "+adminToken)
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %v", code, h)
	}
	c := loadContract(t, []byte(served))
	wantVersion := buildinfo.Read().Version
	if wantVersion == "" {
		wantVersion = "(devel)"
	}
	if c.doc.Info.Version != wantVersion {
		t.Errorf("info.version %q, want the build's %q", c.doc.Info.Version, wantVersion)
	}

	// as is the admin's request on s; guest, the same with a guest key.
	as := func(t *testing.T, op, path, body string, status int, header ...string) *exchange {
		t.Helper()
		return c.do(t, s.url, call{op: op, path: path, body: body, header: header, key: adminToken, valid: status < 300}, status)
	}
	guest := func(t *testing.T, key, op, path, body string, status int, header ...string) *exchange {
		t.Helper()
		return c.do(t, s.url, call{op: op, path: path, body: body, header: header, key: key, valid: status < 300}, status)
	}

	t.Run("every route is documented, and every operation routed", func(t *testing.T) {
		documented := map[string]bool{}
		for _, op := range c.operations() {
			documented[op] = true
		}
		catchAll := false
		for _, r := range webapi.RouteTable() {
			if r.Methods == nil {
				catchAll = r.Pattern == "/" // x-unknown-paths documents it
				continue
			}
			for _, m := range r.Methods {
				op := m + " " + c.documentedPath(r.Pattern)
				if !documented[op] {
					t.Errorf("route %s %s is not in the document (as %s)", m, r.Pattern, op)
				}
				delete(documented, op)
			}
		}
		for op := range documented {
			t.Errorf("the document has %s, which no route serves", op)
		}
		if !catchAll {
			t.Error("the routing table has no catch-all \"/\" (x-unknown-paths documents one)")
		}
	})

	as(t, "GET /openapi.json", "/openapi.json", "", 200)
	g := contractGuests(t, as)
	guest(t, g.all, "GET /openapi.json", "/openapi.json", "", 200)

	t.Run("probes and metrics", func(t *testing.T) {
		c.do(t, s.url, call{op: "GET /healthz", path: "/healthz", valid: true}, 200)
		c.do(t, s.url, call{op: "GET /readyz", path: "/readyz", valid: true}, 200)
		as(t, "GET /metrics", "/metrics", "", 200)
		as(t, "GET /metrics", "/metrics", "", 200, "Accept", "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited")
		guest(t, g.all, "GET /metrics", "/metrics", "", 403)
	})

	t.Run("machines", func(t *testing.T) {
		// A single host is a fleet of one: it lists itself.
		ms := as(t, "GET /fleet/v1/machines", "/fleet/v1/machines", "", 200).json()
		if l, _ := ms["machines"].([]any); len(l) != 1 || ms["fleet"] != "" || l[0].(map[string]any)["name"] != ms["host"] {
			t.Errorf("machines: %v", ms)
		}
		guest(t, g.all, "GET /fleet/v1/machines", "/fleet/v1/machines", "", 403)
	})

	t.Run("attached runs", func(t *testing.T) { contractProcess(t, c, s.url, bare.url, g) })
	t.Run("interactive runs", func(t *testing.T) { contractAttach(t, c, s.url, g) })
	t.Run("detached runs", func(t *testing.T) { contractScriptsAPI(t, c, s, g) })
	t.Run("events and monitors", func(t *testing.T) { contractMonitors(t, c, s, g) })
	t.Run("the WebSocket API", func(t *testing.T) { contractSocketAPI(t, c, s, g) })
	t.Run("callbacks and a locked store", func(t *testing.T) { contractCallbacks(t, c, s, g) })
	t.Run("plugin commands", func(t *testing.T) { contractPluginsAPI(t, c, s, lim, g) })

	t.Run("guest keys", func(t *testing.T) {
		as(t, "GET /scripts/v1/guest/list", "/scripts/v1/guest/list", "", 200)
		guest(t, g.all, "GET /scripts/v1/guest/list", "/scripts/v1/guest/list", "", 403)
		guest(t, g.all, "POST /scripts/v1/guest/create", "/scripts/v1/guest/create", `{"run":true}`, 403)
		guest(t, g.all, "POST /scripts/v1/guest/delete/{id}", "/scripts/v1/guest/delete/"+g.echoID, "", 403)
		as(t, "POST /scripts/v1/guest/create", "/scripts/v1/guest/create", `{"name":"echo"}`, 400)
		// Perms: strings that are perms, at most 64; a bad one named by its
		// index.
		for body, says := range map[string]string{
			`{"perms":[]}`:                       "at least one right",
			`{"perms":"plugin"}`:                 "perms",
			`{"perms":[1]}`:                      "perms",
			`{"perms":["Bad"]}`:                  `"perms" [0]: invalid perm "Bad"`,
			`{"perms":["plugin","a[b c]"]}`:      `"perms" [1]`,
			`{"perms":["a[]"],"status":true}`:    `"perms" [0]`,
			js(map[string]any{"perms": perms65}): "at most 64",
		} {
			if e := as(t, "POST /scripts/v1/guest/create", "/scripts/v1/guest/create", body, 400).json(); !strings.Contains(e["error"].(string), says) {
				t.Errorf("guest/create %.100s: %v, want it to say %q", body, e, says)
			}
		}
		made := as(t, "POST /scripts/v1/guest/create", "/scripts/v1/guest/create", `{"perms":["b.c[x/y]","a","b.c[x/y]"],"status":1}`, 200).json()
		if p := js(made["info"].(map[string]any)["perms"]); p != `["a","b.c[x/y]"]` {
			t.Errorf("perms given as [b.c[x/y], a, b.c[x/y]] are kept as %s", p)
		}
		listed := map[string]string{}
		for _, k := range as(t, "GET /scripts/v1/guest/list", "/scripts/v1/guest/list", "", 200).json()["guests"].([]any) {
			listed[k.(map[string]any)["id"].(string)] = js(k.(map[string]any)["perms"])
		}
		if listed[made["id"].(string)] != `["a","b.c[x/y]"]` || listed[g.echoID] != `[]` {
			t.Errorf("the perms of the keys listed: %v", listed)
		}
		as(t, "POST /scripts/v1/guest/delete/{id}", "/scripts/v1/guest/delete/"+made["id"].(string), "", 200)
		as(t, "POST /scripts/v1/guest/create", "/scripts/v1/guest/create", `{"name":"nosuch","run":true}`, 404)
		as(t, "POST /scripts/v1/guest/delete/{id}", "/scripts/v1/guest/delete/nosuch", "", 404)
		// To a client of the Cloud Storage Server SDK, a key that is not
		// there is deleted without a word; a guest key is access_denied.
		for _, op := range []string{"POST /scripts/v1/guest/delete/{id}", "DELETE /scripts/v1/guest/delete/{id}"} {
			c.do(t, s.url, call{op: op, path: "/scripts/v1/guest/delete/nosuch", header: []string{"X-APIKey", adminToken}, valid: true}, 200)
		}
		if ex := c.do(t, s.url, call{op: "GET /scripts/v1/guest/list", path: "/scripts/v1/guest/list", header: []string{"X-APIKey", g.all}}, 400); ex.json()["errorcode"] != "access_denied" {
			t.Errorf("guest/list with a guest key in X-APIKey: %s", ex.body)
		}
		if ex := c.do(t, s.url, call{op: "POST /scripts/v1/guest/create", path: "/scripts/v1/guest/create", body: `{"status":true,"expires":1}`,
			header: []string{"X-APIKey", adminToken}}, 400); ex.json()["errorcode"] != "invalid_expires" {
			t.Errorf("guest/create with a past expires, with X-APIKey: %s", ex.body)
		}
		contractBodyTimeout(t, c, s.url, "POST /scripts/v1/guest/create", "/scripts/v1/guest/create", adminToken)
		as(t, "POST /scripts/v1/guest/create", "/scripts/v1/guest/create", `{"name":"`+strings.Repeat("x", 70<<10)+`"}`, 413)
		for _, op := range []string{"GET /scripts/v1/guest/list", "POST /scripts/v1/guest/create", "POST /scripts/v1/guest/delete/{id}"} {
			ex := c.do(t, open.url, call{op: op, path: concretePath(op), body: `{"run":true}`}, 403)
			if e := ex.json(); e["errorcode"] != "no_token" {
				t.Errorf("%s on a server without a token: %v", op, e)
			}
		}
	})

	t.Run("every operation", func(t *testing.T) {
		for _, op := range c.operations() {
			_, path, _ := strings.Cut(op, " ")
			route := c.operation(t, op)
			// Without credentials: 401, wherever the document says so. The
			// web console needs none: a server without it does.
			if route.Operation.Responses.Status(401) != nil {
				base := s.url
				if isConsole(path) {
					base = dark.url
				}
				c.do(t, base, call{op: op, path: concretePath(op)}, 401)
			}
			// A browser's request for another site: 403 everywhere.
			ex := c.do(t, s.url, call{op: op, path: concretePath(op), key: adminToken, header: []string{"Origin", "http://attacker.example"}}, 403)
			if (isScripts(path) || isPlugins(path)) && ex.json()["errorcode"] != "forbidden_origin" {
				t.Errorf("%s: %s", op, ex.body)
			}
			if !isScripts(path) && !isPlugins(path) {
				continue
			}
			// A server without scripts: 404 on /scripts/v1; without plugins,
			// on /plugins/v1; without either (no event feed), on the
			// emitting of client events.
			want := "no_scripts"
			if isPlugins(path) {
				want = "no_plugins"
			}
			if op == "POST /plugins/v1/events" {
				want = "no_events"
			}
			if ex := c.do(t, bare.url, call{op: op, path: concretePath(op)}, 404); ex.json()["errorcode"] != want {
				t.Errorf("%s on a server without them: %s", op, ex.body)
			}
			// To a client of the Cloud Storage Server SDK (X-APIKey), on
			// /scripts every error is a 400, but for a missing or wrong key:
			// 403. That convention is the /scripts API's only: on
			// /plugins/v1 X-APIKey gets rexec's statuses and codes.
			sdk := []string{"X-APIKey", adminToken, "Origin", "http://attacker.example"}
			wantStatus, wantBadKey, badKeyCode := 400, 403, "invalid_missing_apikey"
			if isPlugins(path) {
				wantStatus, wantBadKey, badKeyCode = 403, 401, "unauthorized"
			}
			if ex := c.do(t, s.url, call{op: op, path: concretePath(op), header: sdk}, wantStatus); ex.json()["errorcode"] != "forbidden_origin" {
				t.Errorf("%s with X-APIKey from another site: %s", op, ex.body)
			}
			if route.Operation.Responses.Status(401) != nil {
				ex := c.do(t, s.url, call{op: op, path: concretePath(op), header: []string{"X-APIKey", "nosuch"}}, wantBadKey)
				if ex.json()["errorcode"] != badKeyCode {
					t.Errorf("%s with a wrong X-APIKey: %s", op, ex.body)
				}
			}
			if isPlugins(path) {
				// A method the path does not serve: 405, as to anyone.
				wrong := "POST"
				if strings.HasPrefix(op, "POST ") {
					wrong = "GET"
				}
				ex := c.do(t, s.url, call{op: op, method: wrong, path: concretePath(op), header: []string{"X-APIKey", adminToken}}, 405)
				if ex.json()["errorcode"] != "method_not_allowed" || ex.head.Get("Allow") == "" {
					t.Errorf("%s %s with X-APIKey: %s %v", wrong, path, ex.body, ex.head)
				}
				// A server without plugins: 404 no_plugins (no_events), as
				// to anyone.
				if ex := c.do(t, bare.url, call{op: op, path: concretePath(op), header: []string{"X-APIKey", "any"}}, 404); ex.json()["errorcode"] != want {
					t.Errorf("%s with X-APIKey on a server without plugins: %s", op, ex.body)
				}
			}
		}
	})

	t.Run("other methods", func(t *testing.T) { contractMethods(t, c, s.url) })

	t.Run("unknown paths", func(t *testing.T) {
		for _, p := range []string{"/nowhere", "/scripts/v1/nope", "/scripts/v1/status/x/y", "/process/x/y", "/plugins/v1/", "/plugins/v1/call/x/y"} {
			for _, m := range []string{"GET", "POST"} {
				c.do(t, s.url, call{op: "x-unknown-paths", method: m, path: p, key: adminToken}, 501)
			}
		}
		// To a client of the Cloud Storage Server SDK, an unknown call
		// under /scripts/: 400 invalid_api_call.
		sdk := []string{"X-APIKey", adminToken}
		for _, p := range []string{"/scripts/v1/nope", "/scripts/v1/status/x/y", "/scripts/v1/", "/scripts/nope"} {
			for _, m := range []string{"GET", "POST"} {
				if ex := c.do(t, s.url, call{op: "x-unknown-paths", method: m, path: p, header: sdk}, 400); ex.json()["errorcode"] != "invalid_api_call" {
					t.Errorf("%s %s with X-APIKey: %s", m, p, ex.body)
				}
			}
		}
		c.do(t, s.url, call{op: "x-unknown-paths", path: "/nowhere", header: sdk}, 501)
		c.do(t, s.url, call{op: "x-unknown-paths", path: "/plugins/v1/nope", header: sdk}, 501)
		c.do(t, s.url, call{op: "x-unknown-paths", path: "/plugins/v1/nope", key: g.plug}, 501)
	})

	t.Run("the web console", func(t *testing.T) { contractConsole(t, c, s, bare, dark) })

	t.Run("HEAD is GET without the body", func(t *testing.T) {
		params := strings.NewReplacer("{id}", g.doneRun, "{file}", "app.js")
		for _, op := range []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json", "GET /process",
			"GET /scripts/v1/status", "GET /scripts/v1/status/{id}", "GET /scripts/v1/scripts", "GET /scripts/v1/runs",
			"GET /scripts/v1/output/{id}", "GET /scripts/v1/guest/list", "GET /plugins/v1", "GET /fleet/v1/machines", "GET /", "GET /console/{file}"} {
			p := params.Replace(strings.TrimPrefix(op, "GET "))
			get := c.do(t, s.url, call{op: op, path: p, key: adminToken, valid: true}, 200)
			head := c.open(t, context.Background(), s.url, call{op: op, method: "HEAD", path: p, key: adminToken}, 200)
			b, _ := io.ReadAll(head.resp.Body)
			if len(b) != 0 || head.head.Get("Content-Type") != get.head.Get("Content-Type") {
				t.Errorf("HEAD %s: %q %v, GET's Content-Type %q", p, b, head.head, get.head.Get("Content-Type"))
			}
		}
	})

	c.checkCoverage(t, contractUnreachable)
}

// isScripts reports whether path is of the /scripts/v1 API (the Cloud
// Storage Server's WebSocket API, /scripts and /scripts/v1, included).
func isScripts(path string) bool { return path == "/scripts" || strings.HasPrefix(path, "/scripts/") }

// isConsole reports whether path is the web console's: its page or a file.
func isConsole(path string) bool { return path == "/" || strings.HasPrefix(path, "/console/") }

// contractKeys are the guest keys of the walk, and runs it shares.
type contractKeys struct {
	all      string // every right, every script
	echo     string // status of the script echo only
	echoID   string
	run      string // run only
	mon      string // status and monitor, for the cap of monitors per key
	plug     string // perms only: contract/cmd and ops.read
	gated    string // status, and the perms ops.read and ops.write[db]
	every    string // the perm plugin: every command
	events   string // perms only: emit and receive deploy.step, and deploy.view
	eventsID string
	doneRun  string // a done run of echo, whose output is "hi\n"
}

// asFunc sends a request with the admin token and validates its answer.
type asFunc func(t *testing.T, op, path, body string, status int, header ...string) *exchange

func contractGuests(t *testing.T, as asFunc) *contractKeys {
	t.Helper()
	create := func(spec string) (id, key string) {
		t.Helper()
		a := as(t, "POST /scripts/v1/guest/create", "/scripts/v1/guest/create", spec, 200).json()
		info := a["info"].(map[string]any)
		// The name and rights again, where the Cloud Storage Server has them.
		again := info["info"].(map[string]any)
		for _, k := range []string{"name", "run", "cancel", "status", "monitor"} {
			if again[k] != info[k] {
				t.Errorf("info.info.%s %v, info.%s %v", k, again[k], k, info[k])
			}
		}
		return a["id"].(string), info["apikey"].(string)
	}
	var g contractKeys
	_, g.all = create(`{"run":true,"cancel":true,"status":true,"monitor":true}`)
	g.echoID, g.echo = create(`{"name":"echo","status":true,"expires":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`)
	_, g.run = create(`{"run":true}`)
	_, g.mon = create(`{"status":true,"monitor":true}`)
	_, g.plug = create(`{"perms":["ops.read","contract/cmd"]}`)
	_, g.gated = create(`{"status":true,"perms":["ops.read","ops.write[db]"]}`)
	_, g.every = create(`{"perms":["plugin"]}`)
	g.eventsID, g.events = create(`{"perms":["event.emit[deploy.step]","event.subscribe[deploy.step]","deploy.view"]}`)
	return &g
}

// concretePath is a path of op's template, with "x" for its parameters.
func concretePath(op string) string {
	_, path, _ := strings.Cut(op, " ")
	for _, p := range []string{"{id}", "{alias}", "{session}", "{file}"} {
		path = strings.ReplaceAll(path, p, "x")
	}
	return path
}

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// fakeRun is the request of a fake child, with "args": [] rather than the null
// of no arguments: the server takes null for "not given", the document does
// not.
func fakeRun(alias, mode string, args ...string) map[string]any {
	m := fake(alias, mode, args...)
	if args == nil {
		m["args"] = []string{}
	}
	return m
}

// with returns m with the pairs added.
func with(m map[string]any, kv ...any) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// readLine reads a line of ex's body, leaving the rest (with that line put
// back) to finish.
func readLine(t *testing.T, ex *exchange) string {
	t.Helper()
	br := bufio.NewReader(ex.resp.Body)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: reading a line: %v", ex.op, err)
	}
	ex.resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(strings.NewReader(line), br), ex.resp.Body}
	return line
}

// contractBodyTimeout sends op a body that never arrives: 408.
func contractBodyTimeout(t *testing.T, c *contract, base, op, path, key string) {
	t.Helper()
	conn := dialRaw(t, base)
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n{\"", path, key)
	resp, body := conn.Response(t)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("%s with a body that never comes: %d %s", op, resp.StatusCode, body)
	}
	req, _ := http.NewRequest("POST", base+path, nil)
	c.validateResponse(t, &exchange{call: call{op: op, path: path}, req: req, resp: resp, head: resp.Header, body: []byte(body), t: t}, true)
}

func contractProcess(t *testing.T, c *contract, base, bare string, g *contractKeys) {
	ndjson := []string{"Accept", "application/x-ndjson"}
	post := func(t *testing.T, body string, status int, header ...string) *exchange {
		t.Helper()
		return c.do(t, base, call{op: "POST /process", path: "/process", body: body, header: header, key: adminToken, valid: status == 200}, status)
	}
	trailers := func(t *testing.T, ex *exchange, code, signal string) {
		t.Helper()
		if ex.resp.Trailer.Get("Process-Exit-Code") != code || ex.resp.Trailer.Get("Process-Signal") != signal {
			t.Errorf("trailers %v, want exit code %s, signal %q", ex.resp.Trailer, code, signal)
		}
	}
	lastLine := func(t *testing.T, ex *exchange) map[string]any {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(string(ex.body)), "\n")
		var m map[string]any
		json.Unmarshal([]byte(lines[len(lines)-1]), &m)
		return m
	}

	// Text: the bytes, then the trailers.
	ex := post(t, js(fakeRun("t1", "echo", "hello", "world")), 200)
	if string(ex.body) != "hello\nworld\n" {
		t.Errorf("text body %q", ex.body)
	}
	trailers(t, ex, "0", "")
	trailers(t, post(t, js(fakeRun("t2", "exit", "3")), 200), "3", "")
	trailers(t, post(t, js(fakeRun("t3", "selfkill", "15")), 200), "-1", "SIGTERM")
	// A script, with stdin and a timeout.
	ex = post(t, `{"alias":"t4","script":"withstdin","stdin":"from stdin\n","timeout":"30s","stderr":"discard"}`, 200)
	if string(ex.body) != "from stdin\n" {
		t.Errorf("script body %q", ex.body)
	}
	// NDJSON: both streams, pieces of a long line, a signal.
	ex = post(t, js(with(fakeRun("n1", "both"), "stderr", "merge")), 200, ndjson...)
	if !strings.Contains(string(ex.body), `"stream":"stderr"`) {
		t.Errorf("no stderr line in %s", ex.body)
	}
	trailers(t, ex, "0", "")
	if ex = post(t, js(fakeRun("n2", "longline", strconv.Itoa(1<<20))), 200, ndjson...); !strings.Contains(string(ex.body), `"partial":true`) {
		t.Errorf("a 1 MiB line came whole")
	}
	ex = post(t, js(fakeRun("n3", "selfkill", "9")), 200, ndjson...)
	if end := lastLine(t, ex); end["signal"] != "SIGKILL" || end["exit_code"] != -1.0 {
		t.Errorf("end %v", end)
	}
	trailers(t, ex, "-1", "SIGKILL")
	// Live stdin: the body's first line is the request, the rest stdin.
	ex = c.do(t, base, call{op: "POST /process", path: "/process", body: js(fakeRun("ls", "cat")) + "\nlive\n",
		header: []string{"Rexec-Stdin", "stream"}, key: adminToken}, 200)
	if string(ex.body) != "live\n" || ex.head.Get("Connection") != "close" {
		t.Errorf("live stdin: %q %v", ex.body, ex.head)
	}

	post(t, `{"alias":`, 400)
	post(t, js(fakeRun("b1", "echo")), 400, "Rexec-Stdin", "bogus")
	post(t, `{"alias":"b2","script":"notify","args":["x"]}`, 400)
	post(t, `{"alias":"b3","cmd":"x","CMD":"y"}`, 400)
	c.do(t, base, call{op: "POST /process", path: "/process", body: js(fakeRun("g1", "echo")), key: g.all}, 403)
	post(t, `{"alias":"nf","cmd":"/nonexistent/rexec-test"}`, 404)
	post(t, `{"alias":"ns","script":"nosuch"}`, 404)
	// Limits: a value that is none, one below the least a run needs, and
	// one above its script's own (invalid_limit, on any host: it is checked
	// before whether the host can enforce the script's): refused before
	// anything starts. The last is of the form the document describes.
	post(t, js(with(fakeRun("l1", "echo"), "memory", "lots")), 400)
	post(t, js(with(fakeRun("l2", "echo"), "pids", 1)), 400)
	if ex := c.do(t, base, call{op: "POST /process", path: "/process", key: adminToken, valid: true,
		body: `{"alias":"l3","script":"limited","args":["x"],"memory":"128MiB","pids":16,"cpu":"250m"}`}, 400); !strings.Contains(string(ex.body), "above script limited's --memory=64MiB") {
		t.Errorf("a limit above its script's: %s", ex.body)
	}
	contractBodyTimeout(t, c, base, "POST /process", "/process", adminToken)
	post(t, js(fakeRun("big", "echo", strings.Repeat("a", 70<<10))), 413)

	// A run in progress: listed, its alias taken, stopped; its stream
	// ends with the cancel.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := c.open(t, ctx, base, call{op: "POST /process", path: "/process", body: js(fakeRun("held", "hang")), header: ndjson,
		key: adminToken, valid: true}, 200)
	if line := readLine(t, held); !strings.Contains(line, "ready") {
		t.Fatalf("held: %q", line)
	}
	post(t, js(fakeRun("held", "echo")), 409)
	list := c.do(t, base, call{op: "GET /process", path: "/process", key: adminToken, valid: true}, 200).json()
	if runs := list["runs"].([]any); len(runs) != 1 || runs[0].(map[string]any)["alias"] != "held" {
		t.Errorf("runs %v", runs)
	}
	c.do(t, base, call{op: "GET /process", path: "/process", key: g.all}, 403)
	c.do(t, base, call{op: "GET /process", path: "/process?fleet=maybe", key: adminToken}, 400)
	// A single host is a fleet of one: ?fleet=1 lists its own runs.
	c.do(t, base, call{op: "GET /process", path: "/process?fleet=1", key: adminToken, valid: true}, 200)
	c.do(t, base, call{op: "DELETE /process/{alias}", path: "/process/held", key: adminToken, valid: true}, 200)
	c.finish(t, held)
	if end := lastLine(t, held); end["reason"] != "cancelled" || end["signal"] != "SIGTERM" {
		t.Errorf("the stopped run's end: %v", end)
	}
	c.do(t, base, call{op: "DELETE /process/{alias}", path: "/process/" + strings.Repeat("a", 129), key: adminToken}, 400)
	c.do(t, base, call{op: "DELETE /process/{alias}", path: "/process/nosuch", key: adminToken}, 404)
	c.do(t, base, call{op: "DELETE /process/{alias}", path: "/process/x", key: g.all}, 403)

	// A script at its -s: 429.
	one := c.open(t, ctx, base, call{op: "POST /process", path: "/process", body: `{"alias":"one1","script":"single"}`,
		key: adminToken, valid: true}, 200)
	readLine(t, one)
	post(t, `{"alias":"one2","script":"single"}`, 429)
	c.do(t, base, call{op: "DELETE /process/{alias}", path: "/process/one1", key: adminToken, valid: true}, 200)
	trailers(t, c.finish(t, one), "-1", "SIGTERM")

	// --max-procs reached: 503.
	bctx, bcancel := context.WithCancel(context.Background())
	defer bcancel()
	m1 := c.open(t, bctx, bare, call{op: "POST /process", path: "/process", body: js(fakeRun("m1", "hang")), valid: true}, 200)
	readLine(t, m1)
	if ex := c.do(t, bare, call{op: "POST /process", path: "/process", body: js(fakeRun("m2", "echo"))}, 503); !strings.Contains(string(ex.body), "too many running processes") {
		t.Errorf("503: %s", ex.body)
	}
	bcancel()
}

// waitRun polls the status of run id, validating each answer, until it is
// in state.
func waitRun(t *testing.T, c *contract, base, id, state string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := c.do(t, base, call{op: "GET /scripts/v1/status/{id}", path: "/scripts/v1/status/" + id, key: adminToken, valid: true}, 200).json()
		if a["state"] == state {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s never got %s: %v", id, state, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func contractScriptsAPI(t *testing.T, c *contract, s *walkServer, g *contractKeys) {
	as := func(t *testing.T, op, path, body string, status int, header ...string) *exchange {
		t.Helper()
		return c.do(t, s.url, call{op: op, path: path, body: body, header: header, key: adminToken, valid: status < 300}, status)
	}
	by := func(t *testing.T, key, op, path, body string, status int) *exchange {
		t.Helper()
		return c.do(t, s.url, call{op: op, path: path, body: body, key: key, valid: status < 300}, status)
	}
	run := func(t *testing.T, body string) map[string]any {
		t.Helper()
		return as(t, "POST /scripts/v1/run", "/scripts/v1/run", body, 200).json()
	}

	echo := run(t, `{"name":"echo","args":["hi"],"timeout":"1m"}`)["id"].(string)
	if st := waitRun(t, c, s.url, echo, "done"); st["finished"].(float64) < st["ended_at"].(float64) || len(st["tasks"].([]any)) != 0 {
		t.Errorf("a done run's finished and tasks: %v", st)
	}
	g.doneRun = echo
	later := run(t, `{"name":"echo","args":["later"],"queue":`+strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)+`}`)
	if later["state"] != "queued" || later["waiting"] != "start_time" {
		t.Errorf("a run for later: %v", later)
	}
	if n := run(t, `{"name":"notify","args":["x"]}`); n["state"] != "done" {
		t.Errorf("a -n run: %v", n)
	}
	if st := waitRun(t, c, s.url, run(t, `{"name":"withstdin","stdin":"abc"}`)["id"].(string), "done"); st["ended"] != "exit" {
		t.Errorf("a run with stdin: %v", st)
	}
	hang := run(t, `{"name":"hang"}`)["id"].(string)
	// Running: the Cloud Storage Server's progress, before any task.
	st := waitRun(t, c, s.url, hang, "running")
	for k, v := range map[string]any{"task": false, "tasknum": 0.0, "maxtasks": 1.0, "taskstart": 0.0, "subtask": false, "subtaskpercent": 0.0} {
		if st[k] != v {
			t.Errorf("a running run's %s: %v, want %v", k, st[k], v)
		}
	}
	// one queued, one running
	active := as(t, "GET /scripts/v1/status", "/scripts/v1/status", "", 200).json()
	if len(active["queued"].(map[string]any)) != 1 || len(active["running"].(map[string]any)) != 1 {
		t.Errorf("active runs %v", active)
	}
	waitRun(t, c, s.url, later["id"].(string), "queued")
	contractSDKClients(t, c, s, g, echo, hang, later["id"].(string))

	// Refused runs.
	as(t, "POST /scripts/v1/run", "/scripts/v1/run", `{"args":["x"]}`, 400)
	as(t, "POST /scripts/v1/run", "/scripts/v1/run", `{"name":"echo"}`, 400)
	as(t, "POST /scripts/v1/run", "/scripts/v1/run", `{"name":"echo","args":["a"],"stdin":"x"}`, 400)
	by(t, g.echo, "POST /scripts/v1/run", "/scripts/v1/run", `{"name":"echo","args":["x"]}`, 403)
	as(t, "POST /scripts/v1/run", "/scripts/v1/run", `{"name":"nosuch"}`, 404)
	contractBodyTimeout(t, c, s.url, "POST /scripts/v1/run", "/scripts/v1/run", adminToken)
	as(t, "POST /scripts/v1/run", "/scripts/v1/run", js(map[string]any{"name": "withstdin", "stdin": strings.Repeat("x", 1200<<10)}), 413)
	capped := run(t, `{"name":"capped"}`)["id"].(string)
	if ex := as(t, "POST /scripts/v1/run", "/scripts/v1/run", `{"name":"capped"}`, 429); ex.json()["errorcode"] != "queue_full" {
		t.Errorf("past -m: %s", ex.body)
	}
	if ex := c.do(t, s.url, call{op: "POST /scripts/v1/run", path: "/scripts/v1/run", body: `{"name":"capped"}`, header: []string{"X-APIKey", adminToken}}, 400); ex.json()["errorcode"] != "queue_full" {
		t.Errorf("past -m, with X-APIKey: %s", ex.body)
	}
	as(t, "POST /scripts/v1/cancel/{id}", "/scripts/v1/cancel/"+capped, "", 200)

	// Status, with guest keys.
	by(t, g.run, "GET /scripts/v1/status", "/scripts/v1/status", "", 403)
	by(t, g.run, "GET /scripts/v1/status/{id}", "/scripts/v1/status/"+echo, "", 403)
	by(t, g.echo, "GET /scripts/v1/status/{id}", "/scripts/v1/status/"+echo, "", 200)
	as(t, "GET /scripts/v1/status/{id}", "/scripts/v1/status/nosuch", "", 404)

	// The scripts a key may call.
	if l := as(t, "GET /scripts/v1/scripts", "/scripts/v1/scripts", "", 200).json()["scripts"].([]any); len(l) != len(contractScripts) {
		t.Errorf("scripts %v", l)
	}
	if l := by(t, g.echo, "GET /scripts/v1/scripts", "/scripts/v1/scripts", "", 200).json()["scripts"].([]any); len(l) != 1 {
		t.Errorf("a key for echo sees %v", l)
	}

	// The history, a page at a time.
	page := as(t, "GET /scripts/v1/runs", "/scripts/v1/runs?limit=1", "", 200).json()
	cursor, _ := page["next_cursor"].(string)
	if cursor == "" {
		t.Fatalf("no next_cursor: %v", page)
	}
	as(t, "GET /scripts/v1/runs", "/scripts/v1/runs?limit=1&cursor="+cursor, "", 200)
	as(t, "GET /scripts/v1/runs", "/scripts/v1/runs?name=echo&state=done&since=1&until="+strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10), "", 200)
	by(t, g.echo, "GET /scripts/v1/runs", "/scripts/v1/runs", "", 200)
	as(t, "GET /scripts/v1/runs", "/scripts/v1/runs?limit=0", "", 400)
	as(t, "GET /scripts/v1/runs", "/scripts/v1/runs?nosuch=1", "", 400)
	by(t, g.echo, "GET /scripts/v1/runs", "/scripts/v1/runs?name=hang", "", 403)

	// Output: as it is, from an offset, followed.
	ex := as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo, "", 200)
	if string(ex.body) != "hi\n" || ex.resp.Trailer.Get("Rexec-Output-End") != "3" {
		t.Errorf("output %q, trailers %v", ex.body, ex.resp.Trailer)
	}
	if ex := as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo+"?offset=1", "", 200); string(ex.body) != "i\n" || ex.head.Get("Rexec-Output-Offset") != "1" {
		t.Errorf("output from 1: %q %v", ex.body, ex.head)
	}
	as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo+"?offset=-1", "", 400)
	by(t, g.run, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo, "", 403)
	as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/nosuch", "", 404)
	as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo+"?offset=4", "", 416)
	// A page of it: at most limit bytes from offset; not with follow=1 or
	// as events.
	if ex := as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo+"?offset=1&limit=1", "", 200); string(ex.body) != "i" ||
		ex.resp.Trailer.Get("Rexec-Output-End") != "2" {
		t.Errorf("output from 1, 1 byte: %q %v", ex.body, ex.resp.Trailer)
	}
	if ex := as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo+"?limit=100", "", 200); string(ex.body) != "hi\n" ||
		ex.resp.Trailer.Get("Rexec-Output-End") != "3" {
		t.Errorf("output, 100 bytes: %q %v", ex.body, ex.resp.Trailer)
	}
	sse := []string{"Accept", "text/event-stream"}
	as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo+"?limit=0", "", 400)
	as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo+"?limit=x", "", 400)
	as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+hang+"?limit=1&follow=1", "", 400)
	as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo+"?limit=1", "", 400, sse...)
	// As Server-Sent Events: from offset, or from Last-Event-ID (which
	// wins), to the output's end.
	for _, r := range []struct {
		query, last, text, lastID string
	}{
		{"", "", "hi\n", "3"},
		{"?offset=1", "", "i\n", "3"},
		{"?offset=0", "1", "i\n", "3"},
		{"", "3", "", ""},
	} {
		header := sse
		if r.last != "" {
			header = append([]string{"Last-Event-ID", r.last}, sse...)
		}
		ex := c.open(t, context.Background(), s.url, call{op: "GET /scripts/v1/output/{id}", path: "/scripts/v1/output/" + echo + r.query,
			header: header, key: adminToken, valid: true}, 200)
		text, lastID, end, data := outputEvents(t, c, ex, bufio.NewReader(ex.resp.Body))
		if text != r.text || lastID != r.lastID || end["event"] != "end" || data["offset"] != 3.0 {
			t.Errorf("output events %s, Last-Event-ID %q: %q (last id %q), then %v %v", r.query, r.last, text, lastID, end, data)
		}
		if c.finish(t, ex); len(ex.body) != 0 || ex.head.Get("Rexec-Output-Offset") != "" {
			t.Errorf("output events %s: after the end, %q; %v", r.query, ex.body, ex.head)
		}
	}
	as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo, "", 400, "Accept", "text/event-stream", "Last-Event-ID", "x")
	as(t, "GET /scripts/v1/output/{id}", "/scripts/v1/output/"+echo, "", 416, "Accept", "text/event-stream", "Last-Event-ID", "4")
	// Without events, Last-Event-ID is not read.
	c.do(t, s.url, call{op: "GET /scripts/v1/output/{id}", path: "/scripts/v1/output/" + echo + "?offset=1", header: []string{"Last-Event-ID", "x"},
		key: adminToken}, 200)
	follow := c.open(t, context.Background(), s.url, call{op: "GET /scripts/v1/output/{id}", path: "/scripts/v1/output/" + hang + "?follow=1",
		key: adminToken, valid: true}, 200)
	if line := readLine(t, follow); line != "ready\n" {
		t.Errorf("followed %q", line)
	}
	// Followed as events: the output, then its end when the run ends.
	followEvents := c.open(t, context.Background(), s.url, call{op: "GET /scripts/v1/output/{id}", path: "/scripts/v1/output/" + hang + "?follow=1",
		header: sse, key: adminToken, valid: true}, 200)
	followed := bufio.NewReader(followEvents.resp.Body)
	if e, _ := c.readEvent(t, followEvents, followed); e["event"] != "output" || e["id"] != "6" || e["data"] != `"ready\n"` {
		t.Errorf("followed as events: %v", e)
	}

	// Cancel: a running run, a queued one, a done one.
	by(t, g.echo, "POST /scripts/v1/cancel/{id}", "/scripts/v1/cancel/"+echo, "", 403)
	as(t, "POST /scripts/v1/cancel/{id}", "/scripts/v1/cancel/nosuch", "", 404)
	as(t, "POST /scripts/v1/cancel/{id}", "/scripts/v1/cancel/"+hang, "", 200)
	if c.finish(t, follow); string(follow.body) != "ready\n" || follow.resp.Trailer.Get("Rexec-Output-End") != "6" {
		t.Errorf("the followed output: %q %v", follow.body, follow.resp.Trailer)
	}
	if text, _, end, data := outputEvents(t, c, followEvents, followed); text != "" || end["event"] != "end" || data["offset"] != 6.0 {
		t.Errorf("the followed output's events: %q, then %v %v", text, end, data)
	}
	c.finish(t, followEvents)
	if st := waitRun(t, c, s.url, hang, "done"); st["ended"] != "cancelled" || st["signal"] != "SIGTERM" {
		t.Errorf("the cancelled run: %v", st)
	}
	as(t, "POST /scripts/v1/cancel/{id}", "/scripts/v1/cancel/"+later["id"].(string), "", 200)
	as(t, "POST /scripts/v1/cancel/{id}", "/scripts/v1/cancel/"+later["id"].(string), "", 409)
}

// contractSDKClients walks what a client of the Cloud Storage Server SDK
// (X-APIKey) gets otherwise than rexec's: its shapes, and every error a 400
// with that server's code, while hang runs and later is queued; echo is
// done.
func contractSDKClients(t *testing.T, c *contract, s *walkServer, g *contractKeys, echo, hang, later string) {
	sdk := func(t *testing.T, key, op, path, body string, status int) map[string]any {
		t.Helper()
		return c.do(t, s.url, call{op: op, path: path, body: body, header: []string{"X-APIKey", key}, valid: status < 300}, status).json()
	}
	refused := func(t *testing.T, key, op, path, body, code string) {
		t.Helper()
		if e := sdk(t, key, op, path, body, 400); e["errorcode"] != code {
			t.Errorf("%s %s with X-APIKey: %v, want %s", op, body, e, code)
		}
	}

	// The status list by script name; started with microseconds.
	lists := sdk(t, adminToken, "GET /scripts/v1/status", "/scripts/v1/status", "", 200)
	queued, _ := lists["queued"].(map[string]any)["echo"].([]any)
	running, _ := lists["running"].(map[string]any)["hang"].([]any)
	if !slices.Contains(queued, any(later)) || !slices.Equal(running, []any{hang}) {
		t.Errorf("the status list by name: %v", lists)
	}
	micro := sdk(t, adminToken, "GET /scripts/v1/status/{id}", "/scripts/v1/status/"+hang, "", 200)["started"].(float64)
	whole := waitRun(t, c, s.url, hang, "running")["started"].(float64)
	if micro < whole || micro >= whole+1 || whole != float64(int64(whole)) {
		t.Errorf("started %v with X-APIKey, %v without", micro, whole)
	}
	sdk(t, adminToken, "GET /scripts/v1/runs", "/scripts/v1/runs?state=done", "", 200)
	sdk(t, g.echo, "GET /scripts/v1/status/{id}", "/scripts/v1/status/"+echo, "", 200)

	// args as an object, with a number.
	id := sdk(t, adminToken, "POST /scripts/v1/run", "/scripts/v1/run", `{"name":"echo","args":{"first":1.50}}`, 200)["id"].(string)
	if st := waitRun(t, c, s.url, id, "done"); !slices.Equal(st["args"].([]any), []any{"1.50"}) {
		t.Errorf("args {\"first\":1.50}: %v", st["args"])
	}

	// Every error a 400, with the Cloud Storage Server's code.
	for _, r := range []struct{ body, code string }{
		{`{"args":["x"]}`, "missing_name"},
		{`{"name":"nosuch"}`, "invalid_name"},
		{`{"name":1}`, "invalid_name"},
		{`{"name":"echo","args":"x"}`, "invalid_args"},
		{`{"name":"echo","args":[true]}`, "invalid_args"},
		{`{"name":"echo","args":["a","b"]}`, "invalid_args"},
		{`{"name":"echo","args":["a"],"stdin":1}`, "invalid_stdin"},
		{`{"name":"echo","args":["a"],"stdin":"x"}`, "stdin_not_allowed"},
		{`{"name":"echo","args":["a"],"queue":-1}`, "invalid_queue"},
		{`{"name":"echo","args":["a"],"queue":"x"}`, "invalid_queue"},
		{`[1]`, "invalid_data"},
		{`{"name":"echo",`, "invalid_data"},
		{`{"name":"echo","args":["a"],"nosuch":1}`, "invalid_request"},
		{`{"name":"echo","args":["a"],"timeout":"x"}`, "invalid_request"},
	} {
		refused(t, adminToken, "POST /scripts/v1/run", "/scripts/v1/run", r.body, r.code)
	}
	refused(t, g.echo, "POST /scripts/v1/run", "/scripts/v1/run", `{"name":"echo","args":["x"]}`, "access_denied")
	refused(t, g.run, "GET /scripts/v1/status", "/scripts/v1/status", "", "access_denied")
	refused(t, adminToken, "GET /scripts/v1/status/{id}", "/scripts/v1/status/nosuch", "", "invalid_id")
	refused(t, adminToken, "GET /scripts/v1/events", "/scripts/v1/events?name=nosuch", "", "invalid_name")
	// Cancel: only a queued run.
	refused(t, adminToken, "POST /scripts/v1/cancel/{id}", "/scripts/v1/cancel/"+hang, "", "script_running")
	refused(t, adminToken, "POST /scripts/v1/cancel/{id}", "/scripts/v1/cancel/"+echo, "", "script_not_queued_running")
	refused(t, adminToken, "POST /scripts/v1/cancel/{id}", "/scripts/v1/cancel/nosuch", "", "script_not_queued_running")
	// A method the path does not serve.
	for _, m := range []struct{ op, method, path, code string }{
		{"GET /scripts/v1/status", "POST", "/scripts/v1/status", "use_get_request"},
		{"POST /scripts/v1/run", "GET", "/scripts/v1/run", "use_post_request"},
		{"POST /scripts/v1/guest/delete/{id}", "GET", "/scripts/v1/guest/delete/x", "use_delete_request"},
		{"GET /scripts/v1", "POST", "/scripts/v1", "use_get_request"},
	} {
		ex := c.do(t, s.url, call{op: m.op, method: m.method, path: m.path, header: []string{"X-APIKey", adminToken}}, 400)
		if ex.json()["errorcode"] != m.code || ex.head.Get("Allow") == "" {
			t.Errorf("%s %s with X-APIKey: %s %v", m.method, m.path, ex.body, ex.head)
		}
	}
}

func contractMonitors(t *testing.T, c *contract, s *walkServer, g *contractKeys) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events := func(t *testing.T, key, query string, status int, header ...string) *exchange {
		t.Helper()
		return c.open(t, ctx, s.url, call{op: "GET /scripts/v1/events", path: "/scripts/v1/events" + query, key: key,
			header: header, valid: status < 300}, status)
	}
	submit := func(t *testing.T, body string) string {
		t.Helper()
		return c.do(t, s.url, call{op: "POST /scripts/v1/run", path: "/scripts/v1/run", body: body, key: adminToken, valid: true}, 200).json()["id"].(string)
	}

	// The events of a run, in order.
	ev := events(t, adminToken, "?name=echo", 200)
	br := bufio.NewReader(ev.resp.Body)
	id := submit(t, `{"name":"echo","args":["ev"]}`)
	var last string
	for _, want := range []string{"queued", "running", "done"} {
		e, data := c.readEvent(t, ev, br)
		if e["event"] != want || data["run"] != id {
			t.Fatalf("event %v %v, want %s of %s", e, data, want, id)
		}
		last = e["id"].(string)
	}
	ev.resp.Body.Close()
	// Replayed after the last seen; lost before the window.
	ev = events(t, adminToken, "?name=notify", 200, "Last-Event-ID", "1")
	if e, _ := c.readEvent(t, ev, bufio.NewReader(ev.resp.Body)); e["event"] != "lost" {
		t.Errorf("after id 1: %v", e)
	}
	ev.resp.Body.Close()
	ev = events(t, adminToken, "?last_event_id="+last, 200)
	submit(t, `{"name":"notify","args":["after"]}`)
	if e, data := c.readEvent(t, ev, bufio.NewReader(ev.resp.Body)); e["event"] != "done" || data["name"] != "notify" {
		t.Errorf("after %s: %v %v", last, e, data)
	}
	ev.resp.Body.Close()
	// A key deleted while it watches: told why.
	gone := c.do(t, s.url, call{op: "POST /scripts/v1/guest/create", path: "/scripts/v1/guest/create", body: `{"monitor":true}`,
		key: adminToken, valid: true}, 200).json()
	ev = events(t, gone["info"].(map[string]any)["apikey"].(string), "", 200)
	br = bufio.NewReader(ev.resp.Body)
	c.do(t, s.url, call{op: "POST /scripts/v1/guest/delete/{id}", path: "/scripts/v1/guest/delete/" + gone["id"].(string), key: adminToken, valid: true}, 200)
	if e, data := c.readEvent(t, ev, br); e["event"] != "error" || data["errorcode"] != "revoked" {
		t.Errorf("a revoked key's stream: %v %v", e, data)
	}
	ev.resp.Body.Close()
	// The Cloud Storage Server SDK's wire: the key in X-APIKey, rights as
	// 0 and 1, DELETE to delete.
	sdk := []string{"X-APIKey", adminToken}
	made := c.do(t, s.url, call{op: "POST /scripts/v1/guest/create", path: "/scripts/v1/guest/create",
		body: `{"name":"echo","run":0,"cancel":0,"status":1,"monitor":0,"expires":0}`, header: sdk, valid: true}, 200).json()
	if info := made["info"].(map[string]any); info["status"] != true || info["run"] != false {
		t.Errorf("rights sent as 1 and 0: %v", info)
	}
	c.do(t, s.url, call{op: "DELETE /scripts/v1/guest/delete/{id}", path: "/scripts/v1/guest/delete/" + made["id"].(string), header: sdk, valid: true}, 200)

	events(t, adminToken, "", 400, "Last-Event-ID", "abc")
	events(t, g.run, "", 403)
	events(t, adminToken, "?name=nosuch", 404)

	// A key at its cap of monitors (--monitors-per-key 3): 429 for one
	// more, of every kind.
	held := []*exchange{events(t, g.mon, "", 200), events(t, g.mon, "", 200), events(t, g.mon, "", 200)}
	events(t, g.mon, "", 429)
	c.do(t, s.url, call{op: "GET /scripts/v1/output/{id}", path: "/scripts/v1/output/" + g.doneRun + "?follow=1", key: g.mon}, 429)
	c.do(t, s.url, call{op: "GET /scripts/v1/monitor", path: "/scripts/v1/monitor", key: g.mon}, 429)
	for _, op := range []string{"GET /scripts/v1", "GET /scripts"} {
		c.do(t, s.url, call{op: op, path: concretePath(op), key: g.mon, header: wsUpgrade}, 429)
	}
	for _, ex := range held {
		ex.resp.Body.Close()
	}

	// The WebSocket.
	c.do(t, s.url, call{op: "GET /scripts/v1/monitor", path: "/scripts/v1/monitor", key: adminToken}, 426)
	c.do(t, s.url, call{op: "GET /scripts/v1/monitor", path: "/scripts/v1/monitor", key: adminToken, header: []string{
		"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "12", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}}, 400)
	c.do(t, s.url, call{op: "GET /scripts/v1/monitor", path: "/scripts/v1/monitor", key: g.run}, 403)
	dial := func(t *testing.T, query string, header http.Header) *wsConn {
		t.Helper()
		return c.dialWS(t, ctx, s.url, "GET /scripts/v1/monitor", "/scripts/v1/monitor"+query, header)
	}

	conn := dial(t, "?apikey="+g.all, nil) // a guest key in the URL, as browsers must
	conn.send(`{"name":"echo"}`)
	if m := conn.receive(); m["success"] != true {
		t.Errorf("watch echo: %v", m)
	}
	conn.send(`{"name":"nosuch"}`)
	if m := conn.receive(); m["errorcode"] != "invalid_name" {
		t.Errorf("watch nosuch: %v", m)
	}
	conn.send(`hello`)
	if m := conn.receive(); m["success"] != false {
		t.Errorf("not a message: %v", m)
	}
	id = submit(t, `{"name":"echo","args":["ws"]}`)
	for _, want := range []string{"queued", "running", "done"} {
		if m := conn.receive(); m["state"] != want || m["run"] != id {
			t.Fatalf("message %v, want %s of %s", m, want, id)
		}
	}
	conn.send(`{"name":"hang"}`)
	conn.receive()
	conn.send(`{"name":""}`) // a third name: past --monitor-names 2
	conn.closedWith(websocket.StatusPolicyViolation)
	conn = dial(t, "", http.Header{"Authorization": {"Bearer " + adminToken}})
	conn.send(`{"name":"` + strings.Repeat("x", 5<<10) + `"}`)
	conn.closedWith(websocket.StatusMessageTooBig)
}

func contractCallbacks(t *testing.T, c *contract, s *walkServer, g *contractKeys) {
	id := c.do(t, s.url, call{op: "POST /scripts/v1/run", path: "/scripts/v1/run", body: `{"name":"tok"}`, key: adminToken, valid: true}, 200).json()["id"].(string)
	waitRun(t, c, s.url, id, "running")
	var token string
	for deadline := time.Now().Add(20 * time.Second); token == ""; time.Sleep(20 * time.Millisecond) {
		out := c.do(t, s.url, call{op: "GET /scripts/v1/output/{id}", path: "/scripts/v1/output/" + id, key: adminToken, valid: true}, 200)
		_, token, _ = strings.Cut(strings.TrimSpace(string(out.body)), "=")
		if time.Now().After(deadline) {
			t.Fatal("the script never printed its token")
		}
	}
	post := func(t *testing.T, what, key, body string, status int) *exchange {
		t.Helper()
		return c.do(t, s.url, call{op: "POST /scripts/v1/" + what + "/{id}", path: "/scripts/v1/" + what + "/" + id, body: body,
			key: key, valid: status < 300}, status)
	}
	post(t, "progress", token, `{"task":1,"task_total":2,"task_title":"Half","subtask_percent":50,"subtask_title":"sub"}`, 200)
	post(t, "result", token, `{"files":3,"names":["a"]}`, 200)
	st := waitRun(t, c, s.url, id, "running")
	if r, _ := json.Marshal(st["result"]); string(r) != `{"files":3,"names":["a"]}` || st["progress"].(map[string]any)["task_title"] != "Half" {
		t.Errorf("the posted result and progress: %v", st)
	}
	// The same progress, as the Cloud Storage Server counts it.
	for k, v := range map[string]any{"task": "Half", "tasknum": 0.0, "maxtasks": 2.0, "subtask": "sub", "subtaskpercent": 50.0} {
		if st[k] != v {
			t.Errorf("a running run's %s: %v, want %v", k, st[k], v)
		}
	}
	if start, _ := st["taskstart"].(float64); start < st["started"].(float64) {
		t.Errorf("taskstart %v, started %v", st["taskstart"], st["started"])
	}
	for _, what := range []string{"progress", "result"} {
		post(t, what, token, `[1]`, 400)
		post(t, what, "nosuch", `{}`, 403)
		post(t, what, "", `{}`, 403)
		post(t, what, token, `{"x":"`+strings.Repeat("x", 70<<10)+`"}`, 413)
		contractBodyTimeout(t, c, s.url, "POST /scripts/v1/"+what+"/{id}", "/scripts/v1/"+what+"/"+id, token)
	}
	post(t, "progress", token, `{"subtask_percent":101}`, 400)

	// A guest key deleted while it follows the output as events: told why.
	reader := c.do(t, s.url, call{op: "POST /scripts/v1/guest/create", path: "/scripts/v1/guest/create", body: `{"status":true}`,
		key: adminToken, valid: true}, 200).json()
	ex := c.open(t, context.Background(), s.url, call{op: "GET /scripts/v1/output/{id}", path: "/scripts/v1/output/" + id + "?follow=1",
		header: []string{"Accept", "text/event-stream"}, key: reader["info"].(map[string]any)["apikey"].(string), valid: true}, 200)
	br := bufio.NewReader(ex.resp.Body)
	if e, _ := c.readEvent(t, ex, br); e["event"] != "output" {
		t.Errorf("the output of %s as events: %v", id, e)
	}
	c.do(t, s.url, call{op: "POST /scripts/v1/guest/delete/{id}", path: "/scripts/v1/guest/delete/" + reader["id"].(string), key: adminToken, valid: true}, 200)
	if e, data := c.readEvent(t, ex, br); e["event"] != "error" || data["errorcode"] != "revoked" {
		t.Errorf("a revoked key's output events: %v %v", e, data)
	}
	c.finish(t, ex)

	// Symbolic's XML-RPC callback: an answer, a fault, and HTTP's limits.
	xml := []string{"Content-Type", "text/xml"}
	rpcCall := func(method string, params ...string) string {
		b := "<methodCall><methodName>" + method + "</methodName><params>"
		for _, p := range params {
			b += "<param><value>" + p + "</value></param>"
		}
		return b + "</params></methodCall>"
	}
	rpc := func(t *testing.T, body string, status int) *exchange {
		t.Helper()
		return c.do(t, s.url, call{op: "POST /api/xmlrpc", path: "/api/xmlrpc", body: body, header: xml, valid: status == 200}, status)
	}
	if ex := rpc(t, rpcCall("getAllMachines", "u", token), 200); !strings.Contains(string(ex.body), "<name>url</name>") {
		t.Errorf("getAllMachines: %s", ex.body)
	}
	if ex := rpc(t, rpcCall("getAllMachines", "u", "nosuch"), 200); !strings.Contains(string(ex.body), "<fault>") {
		t.Errorf("getAllMachines with a wrong token: %s", ex.body)
	}
	rpc(t, rpcCall("postInformation", "u", "p", "id", strings.Repeat("x", 300<<10)), 413)
	contractBodyTimeout(t, c, s.url, "POST /api/xmlrpc", "/api/xmlrpc", "")

	// The store locked by another process: what writes gets 503, and the
	// server says it is not ready.
	unlock := testserver.LockHistory(t, s.dir)
	c.do(t, s.url, call{op: "GET /readyz", path: "/readyz"}, 503)
	post(t, "result", token, `{"late":true}`, 503)
	c.do(t, s.url, call{op: "POST /scripts/v1/run", path: "/scripts/v1/run", body: `{"name":"echo","args":["x"]}`, key: adminToken}, 503)
	c.do(t, s.url, call{op: "POST /scripts/v1/guest/create", path: "/scripts/v1/guest/create", body: `{"run":true}`, key: adminToken}, 503)
	c.do(t, s.url, call{op: "POST /scripts/v1/guest/delete/{id}", path: "/scripts/v1/guest/delete/" + g.echoID, key: adminToken}, 503)
	c.do(t, s.url, call{op: "DELETE /scripts/v1/guest/delete/{id}", path: "/scripts/v1/guest/delete/" + g.echoID, key: adminToken}, 503)
	unlock()
	c.do(t, s.url, call{op: "GET /readyz", path: "/readyz", valid: true}, 200)

	c.do(t, s.url, call{op: "POST /scripts/v1/cancel/{id}", path: "/scripts/v1/cancel/" + id, key: adminToken, valid: true}, 200)
	if st := waitRun(t, c, s.url, id, "done"); st["ended"] != "cancelled" || len(st["tasks"].([]any)) != 1 ||
		st["tasks"].([]any)[0].(map[string]any)["task"] != "Half" {
		t.Errorf("the cancelled run, and its task: %v", st)
	}
	post(t, "result", token, `{"late":true}`, 403) // the token ends with its run
}

// contractMethods sends every path each method it does not serve: 405,
// with Allow naming what it serves, validated against each of the path's
// operations.
func contractMethods(t *testing.T, c *contract, base string) {
	for _, r := range webapi.RouteTable() {
		if r.Methods == nil {
			continue
		}
		served := slices.Clone(r.Methods)
		if slices.Contains(served, "GET") {
			served = append(served, "HEAD")
		}
		var ops []string
		for _, m := range r.Methods {
			ops = append(ops, m+" "+c.documentedPath(r.Pattern))
		}
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
			if slices.Contains(served, m) {
				continue
			}
			for _, op := range ops {
				ex := c.open(t, context.Background(), base, call{op: op, method: m, path: concretePath(op), key: adminToken}, 405)
				allow := strings.Split(ex.head.Get("Allow"), ",")
				for i := range allow {
					allow[i] = strings.TrimSpace(allow[i])
					if !slices.Contains(served, allow[i]) {
						t.Errorf("%s %s: Allow %q names %s, which the route does not serve", m, r.Pattern, ex.head.Get("Allow"), allow[i])
					}
				}
				for _, want := range r.Methods {
					if !slices.Contains(allow, want) {
						t.Errorf("%s %s: Allow %q does not name %s", m, r.Pattern, ex.head.Get("Allow"), want)
					}
				}
				if m != "HEAD" {
					c.finish(t, ex)
				}
			}
		}
	}
}
