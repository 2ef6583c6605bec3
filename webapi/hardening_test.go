package webapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/webapi"
	_ "modernc.org/sqlite"
)

// A filtering proxy and rexec must agree on what runs: keys match exactly,
// a key given twice and text that is not UTF-8 are refused, never resolved
// or repaired.
func TestStrictJSONBodies(t *testing.T) {
	s := newServer(t, serverOpts{})
	for _, tc := range []struct{ body, want string }{
		{`{"alias":"a","CMD":"id","cmd":"true"}`, `unknown field "CMD"`},
		{`{"alias":"a","Cmd":"id"}`, `unknown field "Cmd"`},
		{`{"alias":"a","cmd":"id","cmd":"true"}`, `field "cmd" given twice`},
		{`{"alias":"a","cmd":"true","envs":{"A":"1","A":"2"}}`, `given twice`},
		{"{\"alias\":\"a\",\"cmd\":\"echo\",\"args\":[\"\xff\"]}", "not valid UTF-8"},
		{`{"alias":"a","cmd":"echo","args":["\udc00"]}`, "not valid UTF-8"},
		{`{"alias":"a","cmd":"echo","args":["a\u0000b"]}`, "NUL"},
		{`null`, "JSON object"},
	} {
		resp, out := s.run(t, tc.body)
		wantError(t, resp, out, 400, tc.want)
	}
	d := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=exit job EXE 0")
	code, a := d.call(t, "POST", "/scripts/v1/run", json.RawMessage(`{"name":"job","name":"other"}`))
	if code != 400 || a["errorcode"] != "invalid_request" || !strings.Contains(a["error"].(string), "twice") {
		t.Fatalf("duplicate name: %d %v", code, a)
	}
	code, a = d.call(t, "POST", "/scripts/v1/run", json.RawMessage(`{"NAME":"job"}`))
	if code != 400 {
		t.Fatalf("NAME: %d %v", code, a)
	}
}

// A run's argument substituted where a param begins must not reach the
// program as an option (find DIR @@1 with -delete), unless the exectab line
// says so: -a, or a literal -- before it.
func TestScriptArgumentsAreNotOptions(t *testing.T) {
	d := newDetachedServer(t, t.TempDir(),
		"-e=TESTCHILD=args plain EXE fixed @@1",
		"-e=TESTCHILD=args -a optok EXE fixed @@1",
		"-e=TESTCHILD=args dashdash EXE fixed -- @@1",
		"-e=TESTCHILD=args inside EXE --name=@@1")
	for _, tc := range []struct {
		script, arg string
		ok          bool
	}{
		{"plain", "-delete", false},
		{"plain", "--exec=rm", false},
		{"plain", "-", false},
		{"plain", "x-delete", true},
		{"optok", "-delete", true},
		{"dashdash", "-delete", true},
		{"inside", "-delete", true},
	} {
		code, a := d.call(t, "POST", "/scripts/v1/run", map[string]any{"name": tc.script, "args": []string{tc.arg}})
		if tc.ok != (code == 200) {
			t.Errorf("%s %q: %d %v", tc.script, tc.arg, code, a)
			continue
		}
		if !tc.ok && (a["errorcode"] != "invalid_args" || !strings.Contains(a["error"].(string), "argument 1")) {
			t.Errorf("%s %q: the refusal does not say which argument: %v", tc.script, tc.arg, a)
		}
	}
	// The same rule for a script run attached, through POST /process.
	s := newServer(t, serverOpts{scripts: exectab(t, "-e=TESTCHILD=args plain EXE fixed @@1")})
	resp, out := s.run(t, map[string]any{"alias": "p", "script": "plain", "args": []string{"-delete"}})
	wantError(t, resp, out, 400, "argument 1")
}

func TestTimesAndSizesBeyondWhatTheServerTakes(t *testing.T) {
	d := newDetachedServerToken(t, t.TempDir(), detached.Config{}, "tok", "-e=TESTCHILD=args job EXE @@1")
	code, a := d.call(t, "POST", "/scripts/v1/run", map[string]any{"name": "job", "args": []string{"x"}, "queue": int64(9999999999)})
	if code != 400 || !strings.Contains(a["error"].(string), "2262") {
		t.Fatalf("queue past 2262: %d %v", code, a)
	}
	code, a = d.call(t, "POST", "/scripts/v1/guest/create", map[string]any{"run": true, "expires": int64(99999999999)})
	if code != 400 || !strings.Contains(a["error"].(string), "2262") {
		t.Fatalf("expires past 2262: %d %v", code, a)
	}
	// An argument longer than the OS takes is the request's fault: 400,
	// when the run is asked for, not when it starts.
	huge := strings.Repeat("x", 200<<10)
	code, a = d.call(t, "POST", "/scripts/v1/run", map[string]any{"name": "job", "args": []string{huge}})
	if code != 400 || a["errorcode"] != "invalid_args" {
		t.Fatalf("a 200 KiB argument, detached: %d %v", code, a["error"])
	}
	s := newServer(t, serverOpts{})
	resp, out := s.run(t, map[string]any{"alias": "big", "cmd": "true", "args": []string{huge}})
	wantError(t, resp, out, 400, "argument")
}

// Events and monitors watch scripts of the exectab, within caps on names
// per monitor, monitors per key and monitors per server.
func TestMonitorLimits(t *testing.T) {
	d := newDetachedServerFull(t, t.TempDir(), detached.Config{},
		webapi.Config{Token: "tok", Monitors: webapi.MonitorLimits{Max: 3, PerKey: 2, Names: 2}},
		"-e=TESTCHILD=exit a EXE 0", "-e=TESTCHILD=exit b EXE 0", "-e=TESTCHILD=exit c EXE 0")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws := "ws" + strings.TrimPrefix(d.url, "http") + "/scripts/v1/monitor"
	dial := func(key string) (*websocket.Conn, *http.Response, error) {
		c, resp, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + key}}})
		if err == nil {
			t.Cleanup(func() { c.CloseNow() })
		}
		return c, resp, err
	}
	ack := func(c *websocket.Conn, msg string) map[string]any {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("after %s: %v", msg, err)
		}
		var m map[string]any
		json.Unmarshal(data, &m)
		return m
	}

	c, _, err := dial("tok")
	if err != nil {
		t.Fatal(err)
	}
	if m := ack(c, `{"name":"nosuchscript"}`); m["success"] != false || m["errorcode"] != "invalid_name" {
		t.Fatalf("an unknown name: %v", m)
	}
	if m := ack(c, `{"name":"a"}`); m["success"] != true {
		t.Fatal(m)
	}
	if m := ack(c, `{"name":"a"}`); m["success"] != true { // the same name again costs nothing
		t.Fatal(m)
	}
	if m := ack(c, `{"name":"b"}`); m["success"] != true {
		t.Fatal(m)
	}
	c.Write(ctx, websocket.MessageText, []byte(`{"name":"c"}`))
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation || !strings.Contains(err.Error(), "--monitor-names") {
		t.Fatalf("a third name: %v", err)
	}

	// A message far longer than any name closes the monitor.
	c, _, err = dial("tok")
	if err != nil {
		t.Fatal(err)
	}
	c.Write(ctx, websocket.MessageText, []byte(`{"name":"`+strings.Repeat("x", 30<<10)+`"}`))
	if _, _, err = c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("a 30 KiB message: %v", err)
	}

	// SSE: unknown names are refused, and per-key and server caps hold.
	if code, _, body := request(t, d.url, "GET", "/scripts/v1/events?name=nosuchscript", "", "Authorization", "Bearer tok"); code != 404 ||
		!strings.Contains(body, "invalid_name") {
		t.Fatalf("events of an unknown script: %d %s", code, body)
	}
	open := func(key string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", d.url+"/scripts/v1/events?name=a", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	waitMonitors := func(key string, want int) { // the closed WebSockets above are counted out
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			resp := open(key)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("monitors of closed connections are still counted")
	}
	waitMonitors("tok", 0)
	time.Sleep(100 * time.Millisecond)
	first, second := open("tok"), open("tok")
	if first.StatusCode != 200 || second.StatusCode != 200 {
		t.Fatalf("two monitors: %d %d", first.StatusCode, second.StatusCode)
	}
	third := open("tok")
	b, _ := io.ReadAll(third.Body)
	if third.StatusCode != 429 || !strings.Contains(string(b), "too_many_monitors") || !strings.Contains(string(b), "--monitors-per-key") {
		t.Fatalf("a third monitor of the key: %d %s", third.StatusCode, b)
	}
	_, gkey := createGuest(t, d, map[string]any{"monitor": true})
	if g := open(gkey); g.StatusCode != 200 {
		t.Fatalf("another key's monitor: %d", g.StatusCode)
	}
	g := open(gkey)
	b, _ = io.ReadAll(g.Body)
	if g.StatusCode != 429 || !strings.Contains(string(b), "--max-monitors") {
		t.Fatalf("past the server's cap: %d %s", g.StatusCode, b)
	}
	first.Body.Close()
	waitMonitors(gkey, 2)
}

// createGuest makes a guest key with the admin token of d.
func createGuest(t *testing.T, d *detachedServer, spec map[string]any) (id, key string) {
	t.Helper()
	code, a := d.call(t, "POST", "/scripts/v1/guest/create", spec)
	if code != 200 {
		t.Fatalf("create guest: %d %v", code, a)
	}
	return a["id"].(string), a["info"].(map[string]any)["apikey"].(string)
}

// A follower of a run's output stops when its guest key is deleted, as the
// event monitors do.
func TestOutputFollowEndsWithItsKey(t *testing.T) {
	d := newDetachedServerToken(t, t.TempDir(), detached.Config{}, "tok", "-e=TESTCHILD=hang long EXE")
	id := d.submit(t, map[string]any{"name": "long"})
	d.waitState(t, id, "running")
	gid, gkey := createGuest(t, d, map[string]any{"name": "long", "status": true})
	req, _ := http.NewRequest("GET", d.url+"/scripts/v1/output/"+id+"?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+gkey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("follow: %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	if l, err := br.ReadString('\n'); err != nil || l != "ready\n" {
		t.Fatalf("first line %q %v", l, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, br)
		done <- err
	}()
	if code, a := d.call(t, "POST", "/scripts/v1/guest/delete/"+gid, nil); code != 200 {
		t.Fatalf("delete: %d %v", code, a)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the stream ended as if complete")
		}
		if resp.Trailer.Get("Rexec-Output-End") != "" {
			t.Fatal("a trailer after the key was deleted")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower outlived its key")
	}
}

// The head of an event stream is sent at once, not with the first event or
// heartbeat: a client (or a proxy) knows at once that it is connected.
func TestEventStreamHeadComesAtOnce(t *testing.T) {
	d := newDetachedServerFull(t, t.TempDir(), detached.Config{}, webapi.Config{Heartbeat: time.Hour}, "-e=TESTCHILD=exit a EXE 0")
	for _, last := range []string{"", "1"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", d.url+"/scripts/v1/events", nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("Last-Event-ID %q: no head: %v", last, err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type %q", ct)
		}
		// The body's first bytes too: some clients show nothing before.
		if l, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || !strings.HasPrefix(l, ":") {
			t.Fatalf("first line %q, %v", l, err)
		}
		resp.Body.Close()
		cancel()
	}
}

// Queued runs are bounded server-wide, in number and in stdin kept on disk,
// whatever the scripts' -m.
func TestServerWideQueueCaps(t *testing.T) {
	d := newDetachedServerWith(t, t.TempDir(), detached.Config{MaxQueued: 2, MaxQueuedStdin: 10},
		"-e=TESTCHILD=exit a EXE 0", "-e=TESTCHILD=cat -i b EXE")
	later := time.Now().Add(time.Hour).Unix()
	first := d.submit(t, map[string]any{"name": "a", "queue": later})
	d.submit(t, map[string]any{"name": "b", "queue": later, "stdin": "123456"})
	code, a := d.call(t, "POST", "/scripts/v1/run", map[string]any{"name": "a", "queue": later})
	if code != 429 || a["errorcode"] != "too_many_queued" {
		t.Fatalf("a third queued run: %d %v", code, a)
	}
	if code, a := d.call(t, "POST", "/scripts/v1/cancel/"+first, nil); code != 200 {
		t.Fatalf("cancel: %d %v", code, a)
	}
	code, a = d.call(t, "POST", "/scripts/v1/run", map[string]any{"name": "b", "queue": later, "stdin": "123456"})
	if code != 429 || a["errorcode"] != "too_much_stdin" {
		t.Fatalf("stdin past the cap: %d %v", code, a)
	}
	d.submit(t, map[string]any{"name": "b", "queue": later, "stdin": "1234"})
	// Runs that end give their room back, in number and in stdin.
	_, list := d.call(t, "GET", "/scripts/v1/status", nil)
	for id := range list["queued"].(map[string]any) {
		d.call(t, "POST", "/scripts/v1/cancel/"+id, nil)
		d.waitState(t, id, "done")
	}
	for i := range 5 {
		for _, body := range []map[string]any{{"name": "a"}, {"name": "b", "stdin": "1234567890"}} {
			id := d.submit(t, body)
			if a := d.waitState(t, id, "done"); a["ended"] != "exit" {
				t.Fatalf("round %d, %v: %v", i, body, a)
			}
		}
	}
}

// A reload that drops a script never loses its queued runs: they wait for
// it to come back (or for a cancel), and status says why they wait.
func TestReloadKeepsQueuedRuns(t *testing.T) {
	d := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=exit -s=5 job EXE 0")
	soon := time.Now().Add(time.Second).Unix() + 1
	var ids []string
	for range 3 {
		ids = append(ids, d.submit(t, map[string]any{"name": "job", "queue": soon}))
	}
	full := d.scripts.Load()
	empty, _ := catalog.Parse(strings.NewReader(""))
	d.scripts.Store(empty)
	d.runs.ScriptsChanged()
	time.Sleep(time.Until(time.Unix(soon, 0)) + 500*time.Millisecond) // past their time, several ticks
	for _, id := range ids {
		a := d.status(t, id)
		if a["state"] != "queued" || a["waiting"] != "script_missing" {
			t.Fatalf("a queued run of a removed script: %v", a)
		}
	}
	d.scripts.Store(full)
	d.runs.ScriptsChanged()
	for _, id := range ids {
		if a := d.waitState(t, id, "done"); a["ended"] != "exit" {
			t.Fatalf("after the script came back: %v", a)
		}
	}
}

// POST /scripts/v1/run answers the state the run is in, never "running" for
// a run that is queued or failed to start.
func TestRunAnswersWhatIsTrue(t *testing.T) {
	d := newDetachedServer(t, t.TempDir(), "missing /nonexistent/rexec-test", "-e=TESTCHILD=hang busy EXE")
	code, a := d.call(t, "POST", "/scripts/v1/run", map[string]any{"name": "missing"})
	if code != 200 || a["state"] != "done" || a["ended"] != "start_failed" {
		t.Fatalf("a script that cannot start: %d %v", code, a)
	}
	first := d.submit(t, map[string]any{"name": "busy"})
	code, a = d.call(t, "POST", "/scripts/v1/run", map[string]any{"name": "busy"})
	if code != 200 || a["state"] != "queued" || a["position"] != float64(1) || a["waiting"] != "slot" {
		t.Fatalf("a run behind a running one: %d %v", code, a)
	}
	if st := d.status(t, first); st["state"] != "running" {
		t.Fatalf("the first run: %v", st)
	}
}

func TestDetachedTimeouts(t *testing.T) {
	d := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=hang -t=1s -s=3 capped EXE", "-e=TESTCHILD=hang -s=3 free EXE")
	// The script's -t.
	id := d.submit(t, map[string]any{"name": "capped"})
	if a := d.waitState(t, id, "done"); a["ended"] != "timeout" || a["timeout"] != float64(1) {
		t.Fatalf("-t=1s: %v", a)
	}
	// A request's timeout, capped by the script's.
	id = d.submit(t, map[string]any{"name": "capped", "timeout": "2h"})
	if a := d.status(t, id); a["timeout"] != float64(1) {
		t.Fatalf("2h on a -t=1s script: %v", a)
	}
	id = d.submit(t, map[string]any{"name": "free", "timeout": "300ms"})
	if a := d.waitState(t, id, "done"); a["ended"] != "timeout" || a["timeout"] != 0.3 {
		t.Fatalf("timeout 300ms: %v", a)
	}
	code, a := d.call(t, "POST", "/scripts/v1/run", map[string]any{"name": "free", "timeout": "soon"})
	if code != 400 {
		t.Fatalf("a bad timeout: %d %v", code, a)
	}
	// Attached runs of a script are capped alike.
	s := newServer(t, serverOpts{scripts: d.scripts})
	resp, out := s.run(t, map[string]any{"alias": "cap", "script": "capped", "timeout": "1h"})
	if resp.StatusCode != 200 || resp.Trailer.Get("Process-Signal") != "SIGTERM" {
		t.Fatalf("attached: %d %q %v", resp.StatusCode, out, resp.Trailer)
	}
}

// Output lines and callbacks change one progress state: a subtask line
// after a callback's task keeps the callback's task.
func TestProgressLinesAndCallbacksShareOneState(t *testing.T) {
	d := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=progress-mix mix EXE")
	id := d.submit(t, map[string]any{"name": "mix"})
	a := d.waitState(t, id, "done")
	p := a["progress"].(map[string]any)
	if a["exit_code"] != float64(0) || p["task"] != float64(2) || p["task_total"] != float64(3) || p["task_title"] != "From the callback" ||
		p["subtask_percent"] != float64(50) || p["subtask_title"] != "Half of it" {
		t.Fatalf("progress %v (run %v)", p, a)
	}
}

// A script's -d, or a request's cwd, is the child's PWD too.
func TestWorkingDirectoryIsThePWD(t *testing.T) {
	dir := t.TempDir()
	s := newServer(t, serverOpts{scripts: exectab(t, "-e=TESTCHILD=env -d="+dir+" where EXE")})
	resp, out := s.run(t, map[string]any{"alias": "w", "script": "where"})
	if resp.StatusCode != 200 || !strings.Contains(string(out), "\nPWD="+dir+"\n") {
		t.Fatalf("script -d: %d, PWD not %s in\n%s", resp.StatusCode, dir, out)
	}
	body := fake("c", "env")
	body["cwd"] = dir
	resp, out = s.run(t, body)
	if resp.StatusCode != 200 || !strings.Contains(string(out), "\nPWD="+dir+"\n") {
		t.Fatalf("cwd: %d, PWD not %s in\n%s", resp.StatusCode, dir, out)
	}
}

// lockHistory takes the write lock of the history database in dir, as
// another process would (testserver.LockHistory).
func lockHistory(t *testing.T, dir string) (unlock func()) { return testserver.LockHistory(t, dir) }

// The history database locked by another process is a condition of the
// server: 503 with Retry-After naming it, and /readyz fails until it is
// free; /healthz stays a liveness check.
func TestStoreLockedByAnotherProcess(t *testing.T) {
	d := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=exit job EXE 0")
	if code, _, body := request(t, d.url, "GET", "/readyz", ""); code != 200 {
		t.Fatalf("readyz: %d %s", code, body)
	}
	unlock := lockHistory(t, d.dir)
	code, h, body := request(t, d.url, "POST", "/scripts/v1/run", `{"name":"job"}`)
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, "storage_busy") {
		t.Fatalf("run while locked: %d %v %s", code, h, body)
	}
	if code, h, body := request(t, d.url, "GET", "/readyz", ""); code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, "locked") {
		t.Fatalf("readyz while locked: %d %s", code, body)
	}
	if code, _, _ := request(t, d.url, "GET", "/healthz", ""); code != 200 {
		t.Fatalf("healthz while locked: %d", code)
	}
	unlock()
	if code, _, body := request(t, d.url, "GET", "/readyz", ""); code != 200 {
		t.Fatalf("readyz after: %d %s", code, body)
	}
	d.submit(t, map[string]any{"name": "job"})
}

// mountTmpfs mounts a tmpfs of size at dir, or skips the test where mounts
// are not allowed.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if exec.Command("umount", dir).Run() != nil {
			exec.Command("umount", "-l", dir).Run()
		}
	})
}

// fill writes a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), "no space") {
				t.Fatal(err)
			}
			break
		}
	}
	for { // the last bytes
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	return path
}

// With the data directory's disk full, a run's end is still recorded (and
// shown at once), its output is marked as cut with the reason, cancel never
// answers 500, and new runs get 503: the server names the condition.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	mountTmpfs(t, dir, "4m")
	d := newDetachedServer(t, dir, "-e=TESTCHILD=late-ready slow EXE 1s", "-e=TESTCHILD=exit job EXE 0")
	id := d.submit(t, map[string]any{"name": "slow"})
	d.waitState(t, id, "running")
	filler := fill(t, dir)

	// The run prints "ready" into a full disk, then is cancelled.
	time.Sleep(1500 * time.Millisecond)
	code, a := d.call(t, "POST", "/scripts/v1/cancel/"+id, nil)
	if code != 200 {
		t.Fatalf("cancel on a full disk: %d %v", code, a)
	}
	a = d.waitState(t, id, "done")
	if a["ended"] != "cancelled" {
		t.Fatalf("end: %v", a)
	}
	if r, _ := a["output_truncated"].(string); !strings.Contains(r, "no space") {
		t.Fatalf("the output's cut is not said: %v", a)
	}
	if code, a := d.call(t, "POST", "/scripts/v1/cancel/"+id, nil); code != 409 {
		t.Fatalf("cancel of the done run: %d %v", code, a)
	}
	code, a = d.call(t, "POST", "/scripts/v1/run", map[string]any{"name": "job"})
	if code != 503 || a["errorcode"] != "storage_full" {
		t.Fatalf("run on a full disk: %d %v", code, a)
	}
	if code, _, body := request(t, d.url, "GET", "/readyz", ""); code != 503 || !strings.Contains(body, "full") {
		t.Fatalf("readyz on a full disk: %d %s", code, body)
	}

	// Room again: the end reaches the database within a tick or two.
	os.Remove(filler)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := d.store.Get(context.Background(), id)
		if err == nil && r.State == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the end never reached the store: %+v %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.submit(t, map[string]any{"name": "job"})
}
