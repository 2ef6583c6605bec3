package webapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/detached"
)

// A black-box suite of the Cloud Storage Server /scripts SDK's wire
// (docs/seed-cloud-storage-wire.md), against a real server: every request
// is written as that SDK writes it (RunAPI, §3: X-APIKey, its Accept,
// POST and DELETE with Content-Type: application/json and a JSON body, "[]"
// for no options, GET without a body), every WebSocket as it opens it (§8:
// /scripts/v1 and /scripts, X-APIKey and Origin on the upgrade, calls in the
// api_* envelope). What can be done with a guest key is done with the admin
// token and with a guest key.

const (
	seedAdmin  = "seed-admin-token"
	seedAccept = "text/html, application/xhtml+xml, */*"
	seedUA     = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:56.0) Gecko/20100101 Firefox/56.0"
)

// seedServer is a server with the admin token seedAdmin and the suite's
// scripts, and more.
func seedServer(t *testing.T, more ...string) *detachedServer {
	t.Helper()
	lines := append([]string{
		"-e=TESTCHILD=exit -s=4 job EXE 0",
		"-e=TESTCHILD=exit -s=4 other EXE 0",
		"-e=TESTCHILD=args -s=4 argv EXE @@1 @@2 @@3",
		"-e=TESTCHILD=hang -s=4 long EXE",
		"-e=TESTCHILD=exit -m=1 capped EXE 0",
	}, more...)
	return newDetachedServerToken(t, t.TempDir(), detached.Config{}, seedAdmin, lines...)
}

// seedReply is an answer to a request: its status, headers, whether it
// closes its connection, its body and the body as a JSON object (numbers as
// json.Number, to tell integers from floats).
type seedReply struct {
	method, path string
	status       int
	header       http.Header
	closes       bool
	raw          string
	body         map[string]any
}

func (r seedReply) String() string {
	return fmt.Sprintf("%s %s: %d %s", r.method, r.path, r.status, r.raw)
}

// seedSend sends method path to base as the SDK does, with the headers given
// as pairs; the answer must be a JSON object.
func seedSend(t *testing.T, base, method, path, body string, header ...string) seedReply {
	t.Helper()
	var rd io.Reader
	if method != http.MethodGet {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "keep-alive")
	req.Header.Set("User-Agent", seedUA)
	req.Header.Set("Accept", seedAccept)
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	r := seedReply{method: method, path: path, status: resp.StatusCode, header: resp.Header,
		closes: resp.Close || strings.EqualFold(resp.Header.Get("Connection"), "close"), raw: strings.TrimSpace(string(b))}
	if r.body = seedDecode(b); r.body == nil {
		t.Fatalf("%s %s: %d, the answer is not a JSON object: %q", method, path, r.status, b)
	}
	return r
}

// seedDecode is data as a JSON object with json.Number numbers, or nil.
func seedDecode(data []byte) map[string]any {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil {
		return nil
	}
	return m
}

// sdk is a call of the SDK with key as X-APIKey: every answer to it closes
// its connection (the SDK sends its key only on a connection's first
// request) and is JSON.
func sdk(t *testing.T, base, key, method, path, body string) seedReply {
	t.Helper()
	r := seedSend(t, base, method, path, body, "X-APIKey", key)
	if !r.closes {
		t.Errorf("%s %s (X-APIKey): the answer does not close its connection (Connection: %q): %d %s",
			method, path, r.header.Get("Connection"), r.status, r.raw)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return r
}

// bearer is the same call by one of rexec's own clients, with token as
// Authorization: Bearer.
func bearer(t *testing.T, base, token, method, path, body string) seedReply {
	t.Helper()
	return seedSend(t, base, method, path, body, "Authorization", "Bearer "+token)
}

// ok reports whether the answer is 200 with success true, and says why
// not.
func (r seedReply) ok(t *testing.T) bool {
	t.Helper()
	if r.status != 200 || r.body["success"] != true {
		t.Errorf("%v: want 200 with success true", r)
		return false
	}
	return true
}

// mustOK is ok, fatal when not.
func (r seedReply) mustOK(t *testing.T) seedReply {
	t.Helper()
	if !r.ok(t) {
		t.FailNow()
	}
	return r
}

// wantErr checks that the answer is an error of the given status and
// errorcode, in the seed's shape: success false, error a message,
// errorcode.
func (r seedReply) wantErr(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status || r.body["success"] != false || r.body["errorcode"] != code {
		t.Errorf("%v: want %d with errorcode %q", r, status, code)
		return
	}
	if msg, _ := r.body["error"].(string); msg == "" {
		t.Errorf("%v: no error message", r)
	}
}

// str is v as a string, or "" when it is none.
func str(v any) string { s, _ := v.(string); return s }

// isInt reports whether v is a JSON integer.
func isInt(v any) bool {
	n, ok := v.(json.Number)
	if !ok {
		return false
	}
	_, err := strconv.ParseInt(string(n), 10, 64)
	return err == nil
}

// intOf is v as an integer, and whether it is a JSON integer.
func intOf(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	return i, err == nil
}

// numOf is v as a number, and whether it is a JSON number.
func numOf(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// seedNow is the time as the seed writes it: UNIX seconds with
// microseconds.
func seedNow() float64 { return float64(time.Now().UnixMicro()) / 1e6 }

// seedRunBody is the body of RunScript(name, args, "", queue): queue 0 is
// left out, as the SDK does when the caller passes none.
func seedRunBody(name string, args any, queue int64) string {
	m := map[string]any{"name": name, "args": args, "stdin": ""}
	if args == nil {
		m["args"] = []any{}
	}
	if queue != 0 {
		m["queue"] = queue
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// seedGuest makes a guest key as CreateGuest does, with the admin token as
// X-APIKey: the rights as 0 or 1, an hour to live.
func seedGuest(t *testing.T, d *detachedServer, name string, run, cancel, status, monitor int) (id, key string) {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"run":%d,"cancel":%d,"status":%d,"monitor":%d,"expires":%d}`,
		name, run, cancel, status, monitor, time.Now().Unix()+3600)
	r := sdk(t, d.url, d.token, "POST", "/scripts/v1/guest/create", body).mustOK(t)
	info, _ := r.body["info"].(map[string]any)
	id, key = fmt.Sprint(r.body["id"]), str(info["apikey"])
	if id == "" || key == "" {
		t.Fatalf("guest/create: no id or key: %v", r)
	}
	return id, key
}

// A seedWho is a kind of key the suite runs with: the admin token, or a
// guest key for the one script a test uses, with every right.
type seedWho struct {
	name string
	key  func(t *testing.T, script string) string
}

func seedWhos(d *detachedServer) []seedWho {
	return []seedWho{
		{"admin", func(*testing.T, string) string { return d.token }},
		{"guest", func(t *testing.T, script string) string {
			_, key := seedGuest(t, d, script, 1, 1, 1, 1)
			return key
		}},
	}
}

// seedRun starts a run as RunScript does and returns its id; the answer
// must have the seed's shape.
func seedRun(t *testing.T, base, key, name string, args any, queue int64) string {
	t.Helper()
	r := sdk(t, base, key, "POST", "/scripts/v1/run", seedRunBody(name, args, queue)).mustOK(t)
	checkRunAnswer(t, r.body, name)
	return str(r.body["id"])
}

// checkRunAnswer checks the shape of a run's answer: success, id (a
// string), name, state, queued and position (integers).
func checkRunAnswer(t *testing.T, a map[string]any, name string) {
	t.Helper()
	if str(a["id"]) == "" || a["name"] != name || str(a["state"]) == "" || !isInt(a["queued"]) || !isInt(a["position"]) {
		t.Errorf("run answer %v: want id (string), name %q, state, queued and position (integers)", a, name)
	}
}

// seedStatus is GetStatus(id) with key.
func seedStatus(t *testing.T, base, key, id string) map[string]any {
	t.Helper()
	return sdk(t, base, key, "GET", "/scripts/v1/status/"+id, "").mustOK(t).body
}

// seedPoll polls GetStatus(id) until cond holds of the status, for 15 s
// at most, and returns that status.
func seedPoll(t *testing.T, base, key, id, what string, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := seedStatus(t, base, key, id)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: never %s: %v", id, what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seedWaitState polls until run id is in state.
func seedWaitState(t *testing.T, base, key, id, state string) map[string]any {
	t.Helper()
	return seedPoll(t, base, key, id, state, func(st map[string]any) bool { return st["state"] == state })
}

// checkSeedTime checks that v is a time as the seed writes it, between
// from and now (UNIX seconds with microseconds), and returns it.
func checkSeedTime(t *testing.T, what string, v any, from float64) float64 {
	t.Helper()
	f, ok := numOf(v)
	if !ok || f < from-1 || f > seedNow()+1 {
		t.Errorf("%s = %v: want UNIX seconds between %.6f and now", what, v, from)
	}
	return f
}

// Keys: the admin token and a guest key as X-APIKey; anything else is 403
// invalid_missing_apikey, and every answer closes its connection.
func TestSeedSDKKeys(t *testing.T) {
	d := seedServer(t)
	_, gkey := seedGuest(t, d, "job", 1, 1, 1, 1)
	for _, key := range []string{d.token, gkey} {
		r := sdk(t, d.url, key, "GET", "/scripts/v1/status", "")
		r.ok(t)
	}
	deadID, dead := seedGuest(t, d, "job", 1, 1, 1, 1)
	sdk(t, d.url, d.token, "DELETE", "/scripts/v1/guest/delete/"+deadID, "[]").mustOK(t)

	for _, key := range []string{"", "wrong", d.token + "x", dead} {
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/scripts/v1/status", ""},
			{"GET", "/scripts/v1/status/x", ""},
			{"POST", "/scripts/v1/run", seedRunBody("job", nil, 0)},
			{"POST", "/scripts/v1/cancel/x", "[]"},
			{"GET", "/scripts/v1/guest/list", ""},
			{"POST", "/scripts/v1/guest/create", `{"name":"job","run":1,"cancel":1,"status":1,"monitor":1,"expires":4000000000}`},
			{"DELETE", "/scripts/v1/guest/delete/x", "[]"},
			{"GET", "/scripts/v1", ""},
			{"GET", "/scripts/v1/nosuch", ""},
		} {
			t.Run(fmt.Sprintf("key=%q %s %s", key, c.method, c.path), func(t *testing.T) {
				sdk(t, d.url, key, c.method, c.path, c.body).wantErr(t, 403, "invalid_missing_apikey")
			})
		}
	}
	// Nothing ran.
	if r := bearer(t, d.url, d.token, "GET", "/scripts/v1/runs", ""); r.status != 200 || !strings.Contains(r.raw, `"runs":[]`) {
		t.Errorf("refused keys ran something: %v", r)
	}
	// rexec's own clients: 401 unauthorized, and kept-alive connections.
	r := bearer(t, d.url, "wrong", "GET", "/scripts/v1/status", "")
	r.wantErr(t, 401, "unauthorized")
	if r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("Bearer with a wrong token: no WWW-Authenticate: %v", r.header)
	}
	if r := bearer(t, d.url, d.token, "GET", "/scripts/v1/status", ""); !r.ok(t) || r.closes {
		t.Errorf("Bearer: %v, closes its connection: %v", r, r.closes)
	}
}

// Errors: each condition is a 400 with the seed's errorcode, for the admin
// token and a guest key; with Authorization: Bearer, rexec's own statuses
// and codes.
func TestSeedSDKErrors(t *testing.T) {
	d := seedServer(t)
	future := time.Now().Unix() + 3600
	queued := seedRun(t, d.url, d.token, "job", nil, future)
	done := seedRun(t, d.url, d.token, "job", nil, 0)
	seedWaitState(t, d.url, d.token, done, "done")
	long := seedRun(t, d.url, d.token, "long", nil, 0)
	seedWaitState(t, d.url, d.token, long, "running")

	type errCase struct {
		what, method, path, body, code string
	}
	both := []errCase{
		{"run without name", "POST", "/scripts/v1/run", `{"args":[],"stdin":""}`, "missing_name"},
		{"run with name null", "POST", "/scripts/v1/run", `{"name":null,"args":[],"stdin":""}`, "missing_name"},
		{"args a string", "POST", "/scripts/v1/run", `{"name":"job","args":"x","stdin":""}`, "invalid_args"},
		{"args a number", "POST", "/scripts/v1/run", `{"name":"job","args":5,"stdin":""}`, "invalid_args"},
		{"stdin a number", "POST", "/scripts/v1/run", `{"name":"job","args":[],"stdin":5}`, "invalid_stdin"},
		{"queue a float", "POST", "/scripts/v1/run", `{"name":"job","args":[],"stdin":"","queue":1.5}`, "invalid_queue"},
		{"queue a string", "POST", "/scripts/v1/run", `{"name":"job","args":[],"stdin":"","queue":"x"}`, "invalid_queue"},
		{"stdin for a script without -i", "POST", "/scripts/v1/run", `{"name":"job","args":[],"stdin":"hello"}`, "stdin_not_allowed"},
		{"malformed JSON", "POST", "/scripts/v1/run", `{"name":"job"`, "invalid_data"},
		{"malformed JSON in name", "POST", "/scripts/v1/run", `{"name":`, "invalid_data"},
		{"malformed JSON in args", "POST", "/scripts/v1/run", `{"name":"job","args":[1,`, "invalid_data"},
		{"a trailing comma in args", "POST", "/scripts/v1/run", `{"name":"job","args":{"a":1,}}`, "invalid_data"},
		{"body a string", "POST", "/scripts/v1/run", `"job"`, "invalid_data"},
		{"body a number", "POST", "/scripts/v1/run", `5`, "invalid_data"},
		{"body null", "POST", "/scripts/v1/run", `null`, "invalid_data"},
		{"empty body", "POST", "/scripts/v1/run", ``, "invalid_data"},
		{"GET run", "GET", "/scripts/v1/run", "", "use_post_request"},
		{"GET cancel", "GET", "/scripts/v1/cancel/" + queued, "", "use_post_request"},
		{"POST status", "POST", "/scripts/v1/status", "[]", "use_get_request"},
		{"POST status/id", "POST", "/scripts/v1/status/" + queued, "[]", "use_get_request"},
		{"status of an unknown id", "GET", "/scripts/v1/status/nosuchid", "", "invalid_id"},
		{"cancel of an unknown id", "POST", "/scripts/v1/cancel/nosuchid", "[]", "script_not_queued_running"},
		{"cancel of a done run", "POST", "/scripts/v1/cancel/" + done, "[]", "script_not_queued_running"},
		{"unknown call", "GET", "/scripts/v1/nosuch", "", "invalid_api_call"},
		{"unknown call, POST", "POST", "/scripts/v1/nosuch", "[]", "invalid_api_call"},
		{"empty call", "GET", "/scripts/v1/", "", "invalid_api_call"},
		{"plain GET of the WebSocket API", "GET", "/scripts/v1", "", "invalid_api_call"},
		{"plain GET of the 2018 WebSocket API", "GET", "/scripts", "", "invalid_api_call"},
	}
	// A guest key for one script is not told which other names exist:
	// any other name is access_denied to it (the seed says invalid_name).
	guestOnly := []errCase{
		{"run of a name not in the exectab", "POST", "/scripts/v1/run", `{"name":"nosuch","args":[],"stdin":""}`, "access_denied"},
	}
	adminOnly := []errCase{
		{"run of a name not in the exectab", "POST", "/scripts/v1/run", `{"name":"nosuch","args":[],"stdin":""}`, "invalid_name"},
		{"PUT guest/delete", "PUT", "/scripts/v1/guest/delete/x", "[]", "use_delete_request"},
		{"GET guest/create", "GET", "/scripts/v1/guest/create", "", "use_post_request"},
		{"POST guest/list", "POST", "/scripts/v1/guest/list", "[]", "use_get_request"},
		{"guest/create expiring in the past", "POST", "/scripts/v1/guest/create",
			fmt.Sprintf(`{"name":"job","run":1,"cancel":0,"status":1,"monitor":1,"expires":%d}`, time.Now().Unix()-60), "invalid_expires"},
	}
	for _, who := range seedWhos(d) {
		t.Run(who.name, func(t *testing.T) {
			key := who.key(t, "job")
			cases := append(slices.Clip(both), guestOnly...)
			if who.name == "admin" {
				cases = append(slices.Clip(both), adminOnly...)
			}
			for _, c := range cases {
				t.Run(c.what, func(t *testing.T) {
					sdk(t, d.url, key, c.method, c.path, c.body).wantErr(t, 400, c.code)
				})
			}
		})
	}

	// A guest key lacking a right, or for another script.
	_, runOnly := seedGuest(t, d, "job", 1, 0, 0, 0)
	_, statusOnly := seedGuest(t, d, "job", 0, 0, 1, 0)
	_, full := seedGuest(t, d, "job", 1, 1, 1, 1)
	guestID, _ := seedGuest(t, d, "job", 1, 1, 1, 1)
	for _, c := range []struct {
		what, key, method, path, body string
	}{
		{"status without the right", runOnly, "GET", "/scripts/v1/status/" + queued, ""},
		{"status list without the right", runOnly, "GET", "/scripts/v1/status", ""},
		{"cancel without the right", runOnly, "POST", "/scripts/v1/cancel/" + queued, "[]"},
		{"run without the right", statusOnly, "POST", "/scripts/v1/run", seedRunBody("job", nil, 0)},
		{"run of another script", full, "POST", "/scripts/v1/run", seedRunBody("other", nil, 0)},
		{"status of another script's run", full, "GET", "/scripts/v1/status/" + long, ""},
		{"cancel of another script's run", full, "POST", "/scripts/v1/cancel/" + long, "[]"},
		{"guest/create", full, "POST", "/scripts/v1/guest/create", `{"name":"job","run":1,"cancel":1,"status":1,"monitor":1,"expires":4000000000}`},
		{"guest/list", full, "GET", "/scripts/v1/guest/list", ""},
		{"guest/delete", full, "DELETE", "/scripts/v1/guest/delete/" + guestID, "[]"},
	} {
		t.Run("guest/"+c.what, func(t *testing.T) {
			sdk(t, d.url, c.key, c.method, c.path, c.body).wantErr(t, 400, "access_denied")
		})
	}
	// Nothing was refused by doing it: the queued run is still queued, the
	// long one still running, the guest key still there.
	if st := seedStatus(t, d.url, d.token, queued); st["state"] != "queued" {
		t.Errorf("the queued run after refusals: %v", st)
	}
	if st := seedStatus(t, d.url, d.token, long); st["state"] != "running" {
		t.Errorf("the running run after refusals: %v", st)
	}
	if r := sdk(t, d.url, d.token, "GET", "/scripts/v1/guest/list", "").mustOK(t); !strings.Contains(r.raw, `"`+guestID+`"`) {
		t.Errorf("the guest key a guest tried to delete is gone: %v", r)
	}

	// The same requests from rexec's own clients keep rexec's statuses and
	// codes.
	for _, c := range []struct {
		what, token, method, path, body string
		status                          int
		code                            string
	}{
		{"unknown name", d.token, "POST", "/scripts/v1/run", `{"name":"nosuch"}`, 404, "invalid_name"},
		{"wrong method", d.token, "GET", "/scripts/v1/run", "", 405, "method_not_allowed"},
		{"wrong method on status", d.token, "POST", "/scripts/v1/status", "[]", 405, "method_not_allowed"},
		{"wrong token", "wrong", "GET", "/scripts/v1/status", "", 401, "unauthorized"},
		{"unknown id", d.token, "GET", "/scripts/v1/status/nosuchid", "", 404, "invalid_id"},
		{"cancel of a done run", d.token, "POST", "/scripts/v1/cancel/" + done, "[]", 409, "already_done"},
		{"numbers in args", d.token, "POST", "/scripts/v1/run", `{"name":"argv","args":["a",2,3.5]}`, 400, "invalid_request"},
		{"guest without the right", runOnly, "GET", "/scripts/v1/status/" + queued, "", 403, "forbidden"},
		{"guest key on guest/list", full, "GET", "/scripts/v1/guest/list", "", 403, "forbidden"},
	} {
		t.Run("bearer/"+c.what, func(t *testing.T) {
			r := bearer(t, d.url, c.token, c.method, c.path, c.body)
			r.wantErr(t, c.status, c.code)
		})
	}
}

// RunScript: the body as the SDK sends it; numbers in args as their text,
// an args object as its values in order; the answer in the seed's shape.
func TestSeedSDKRun(t *testing.T) {
	d := seedServer(t)
	output := func(t *testing.T, key, id string) string {
		t.Helper()
		code, _, body := request(t, d.url, "GET", "/scripts/v1/output/"+id, "", "X-APIKey", key, "Accept", seedAccept)
		if code != 200 {
			t.Fatalf("output of %s: %d %s", id, code, body)
		}
		return body
	}
	for _, who := range seedWhos(d) {
		t.Run(who.name, func(t *testing.T) {
			start := seedNow()
			// The SDK always sends args and stdin, "" when none.
			key := who.key(t, "job")
			id := seedRun(t, d.url, key, "job", nil, 0)
			st := seedWaitState(t, d.url, key, id, "done")
			if st["id"] != id || st["name"] != "job" {
				t.Errorf("status of %s: %v", id, st)
			}
			checkSeedTime(t, "started", st["started"], start)
			checkSeedTime(t, "finished", st["finished"], start)
			if tasks, ok := st["tasks"].([]any); !ok || len(tasks) != 0 {
				t.Errorf("a done run without task lines: tasks %#v, want []", st["tasks"])
			}

			key = who.key(t, "argv")
			id = seedRun(t, d.url, key, "argv", []any{"a", 2, 3.5}, 0)
			seedWaitState(t, d.url, key, id, "done")
			if out := output(t, key, id); out != "\"a\"\n\"2\"\n\"3.5\"\n" {
				t.Errorf("args [\"a\",2,3.5] gave %q", out)
			}
			// A PHP associative array comes as an object: its values, in
			// order. Raw, so that the order is the one written.
			r := sdk(t, d.url, key, "POST", "/scripts/v1/run", `{"name":"argv","args":{"z":"a","y":"b","x":"c"},"stdin":""}`).mustOK(t)
			checkRunAnswer(t, r.body, "argv")
			id = str(r.body["id"])
			seedWaitState(t, d.url, key, id, "done")
			if out := output(t, key, id); out != "\"a\"\n\"b\"\n\"c\"\n" {
				t.Errorf("args {\"z\":\"a\",\"y\":\"b\",\"x\":\"c\"} gave %q", out)
			}
			// A queue time in the past is now (§5.1), and a null stdin is
			// none.
			key = who.key(t, "job")
			r = sdk(t, d.url, key, "POST", "/scripts/v1/run", seedRunBody("job", nil, time.Now().Unix()-600)).mustOK(t)
			checkRunAnswer(t, r.body, "job")
			seedWaitState(t, d.url, key, str(r.body["id"]), "done")
			r = sdk(t, d.url, key, "POST", "/scripts/v1/run", `{"name":"job","args":[],"stdin":null}`).mustOK(t)
			checkRunAnswer(t, r.body, "job")
			seedWaitState(t, d.url, key, str(r.body["id"]), "done")
			// A queued run: its answer says so.
			r = sdk(t, d.url, key, "POST", "/scripts/v1/run", seedRunBody("job", nil, time.Now().Unix()+3600)).mustOK(t)
			checkRunAnswer(t, r.body, "job")
			if r.body["state"] != "queued" {
				t.Errorf("a run queued for later: %v", r)
			}
			st = seedStatus(t, d.url, key, str(r.body["id"]))
			if st["state"] != "queued" || !isInt(st["queued"]) || !isInt(st["position"]) {
				t.Errorf("status of a queued run: %v", st)
			}
			sdk(t, d.url, key, "POST", "/scripts/v1/cancel/"+str(r.body["id"]), "[]").ok(t)
		})
	}
	// rexec's own clients still give strings only.
	bearer(t, d.url, d.token, "POST", "/scripts/v1/run", `{"name":"argv","args":["a",2,3.5]}`).wantErr(t, 400, "invalid_request")
	bearer(t, d.url, d.token, "POST", "/scripts/v1/run", `{"name":"argv","args":{"x":"a","y":"b","z":"c"}}`).wantErr(t, 400, "invalid_request")
}

// queue_full: a script's -m limit, counting queued runs.
func TestSeedSDKQueueFull(t *testing.T) {
	d := seedServer(t)
	future := time.Now().Unix() + 3600
	for _, who := range seedWhos(d) {
		t.Run(who.name, func(t *testing.T) {
			key := who.key(t, "capped")
			id := seedRun(t, d.url, key, "capped", nil, future)
			sdk(t, d.url, key, "POST", "/scripts/v1/run", seedRunBody("capped", nil, future)).wantErr(t, 400, "queue_full")
			sdk(t, d.url, key, "POST", "/scripts/v1/cancel/"+id, "[]").mustOK(t)
		})
	}
	id := seedRun(t, d.url, d.token, "capped", nil, future)
	bearer(t, d.url, d.token, "POST", "/scripts/v1/run", `{"name":"capped","queue":`+strconv.FormatInt(future, 10)+`}`).wantErr(t, 429, "queue_full")
	bearer(t, d.url, d.token, "POST", "/scripts/v1/cancel/"+id, "").ok(t)
}

// CancelScript: a queued run is cancelled; a running one is refused and
// keeps running (while rexec's own clients still stop it); a done or unknown
// one is script_not_queued_running.
func TestSeedSDKCancel(t *testing.T) {
	d := seedServer(t)
	for _, who := range seedWhos(d) {
		t.Run(who.name, func(t *testing.T) {
			key := who.key(t, "job")
			id := seedRun(t, d.url, key, "job", nil, time.Now().Unix()+3600)
			r := sdk(t, d.url, key, "POST", "/scripts/v1/cancel/"+id, "[]")
			if r.ok(t) && r.raw != `{"success":true}` {
				t.Errorf("cancel: %v, want {\"success\":true}", r)
			}
			if st := seedStatus(t, d.url, key, id); st["state"] == "queued" || st["state"] == "running" {
				t.Errorf("a cancelled run: %v", st)
			}
			sdk(t, d.url, key, "POST", "/scripts/v1/cancel/"+id, "[]").wantErr(t, 400, "script_not_queued_running")
			sdk(t, d.url, key, "POST", "/scripts/v1/cancel/nosuchid", "[]").wantErr(t, 400, "script_not_queued_running")

			key = who.key(t, "long")
			id = seedRun(t, d.url, key, "long", nil, 0)
			seedWaitState(t, d.url, key, id, "running")
			sdk(t, d.url, key, "POST", "/scripts/v1/cancel/"+id, "[]").wantErr(t, 400, "script_running")
			if st := seedStatus(t, d.url, key, id); st["state"] != "running" {
				t.Errorf("a running run after a refused cancel: %v", st)
			}
			// rexec's own clients stop it.
			bearer(t, d.url, d.token, "POST", "/scripts/v1/cancel/"+id, "").ok(t)
			seedWaitState(t, d.url, key, id, "done")
		})
	}
}

// GetStatus(id): a running run's progress as the seed counts it, a done
// run's times and tasks.
func TestSeedSDKStatusTasks(t *testing.T) {
	script := filepath.Join(t.TempDir(), "tasks.sh")
	// Each step waits for the test's go-ahead, a file in the run's
	// argument, a directory.
	err := os.WriteFile(script, []byte(`d="$1"
while [ ! -e "$d/go0" ]; do sleep 0.02; done
echo "[1/2] one"
while [ ! -e "$d/go1" ]; do sleep 0.02; done
echo "[2/2] two"
while [ ! -e "$d/go2" ]; do sleep 0.02; done
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d := seedServer(t, "-s=4 tasks /bin/sh '"+script+"' @@1")
	for _, who := range seedWhos(d) {
		t.Run(who.name, func(t *testing.T) {
			key := who.key(t, "tasks")
			flags := t.TempDir()
			goAhead := func(name string) {
				if err := os.WriteFile(filepath.Join(flags, name), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { goAhead("go0"); goAhead("go1"); goAhead("go2") })
			// A monitor sees the run's start and end, and nothing of its
			// progress.
			w := seedDial(t, d.url, "/scripts/v1", key)
			w.monitor(1, "tasks", true)
			start := seedNow()
			id := seedRun(t, d.url, key, "tasks", []any{flags}, 0)

			// Running, before any task line.
			st := seedWaitState(t, d.url, key, id, "running")
			want := map[string]any{"task": false, "tasknum": json.Number("0"), "maxtasks": json.Number("1"),
				"taskstart": json.Number("0"), "subtask": false, "subtaskpercent": json.Number("0")}
			for k, v := range want {
				if got, ok := st[k]; !ok || got != v {
					t.Errorf("running, before a task: %s = %#v, want %#v (%v)", k, got, v, st)
				}
			}
			if _, ok := st["progress"].(map[string]any); !ok || st["id"] != id || st["name"] != "tasks" {
				t.Errorf("running: rexec's fields are gone: %v", st)
			}

			goAhead("go0")
			st = seedPoll(t, d.url, key, id, "on task one", func(st map[string]any) bool { return st["task"] == "one" })
			if n, ok := intOf(st["tasknum"]); !ok || n != 0 {
				t.Errorf("task one: tasknum %v, want 0", st["tasknum"])
			}
			if n, ok := intOf(st["maxtasks"]); !ok || n != 2 {
				t.Errorf("task one: maxtasks %v, want 2", st["maxtasks"])
			}
			if st["subtask"] != false || !isInt(st["subtaskpercent"]) {
				t.Errorf("task one: subtask %v, subtaskpercent %v", st["subtask"], st["subtaskpercent"])
			}
			first := checkSeedTime(t, "taskstart of task one", st["taskstart"], start)

			goAhead("go1")
			st = seedPoll(t, d.url, key, id, "on task two", func(st map[string]any) bool { return st["task"] == "two" })
			if n, ok := intOf(st["tasknum"]); !ok || n != 1 {
				t.Errorf("task two: tasknum %v, want 1", st["tasknum"])
			}
			if n, ok := intOf(st["maxtasks"]); !ok || n != 2 {
				t.Errorf("task two: maxtasks %v, want 2", st["maxtasks"])
			}
			if second := checkSeedTime(t, "taskstart of task two", st["taskstart"], start); second < first {
				t.Errorf("task two started at %.6f, before task one (%.6f)", second, first)
			}

			goAhead("go2")
			st = seedWaitState(t, d.url, key, id, "done")
			started := checkSeedTime(t, "started", st["started"], start)
			finished := checkSeedTime(t, "finished", st["finished"], start)
			if finished < started {
				t.Errorf("finished %.6f before started %.6f", finished, started)
			}
			tasks, _ := st["tasks"].([]any)
			if len(tasks) != 2 {
				t.Fatalf("tasks %v, want 2", st["tasks"])
			}
			times := []float64{started, finished}
			var prev float64
			for i, title := range []string{"one", "two"} {
				task, _ := tasks[i].(map[string]any)
				if task["task"] != title {
					t.Errorf("tasks[%d] = %v, want task %q", i, task, title)
				}
				s := checkSeedTime(t, fmt.Sprintf("tasks[%d].start", i), task["start"], start)
				e := checkSeedTime(t, fmt.Sprintf("tasks[%d].end", i), task["end"], start)
				if s > e || s < prev {
					t.Errorf("tasks[%d] = %v: start after end, or before the task before", i, task)
				}
				prev = s
				times = append(times, s, e)
			}
			evs := w.runEvents(id, 1)
			if len(evs) != 2 {
				t.Fatalf("events of the run: %v, want running and done", evs)
			}
			checkRunningEvent(t, evs[0], id, "tasks", 1)
			checkDoneEvent(t, evs[1], id, "tasks", 1, start)
			if evTasks, _ := evs[1]["tasks"].([]any); len(evTasks) != 2 {
				t.Errorf("done event: tasks %v, want the two tasks", evs[1]["tasks"])
			}
			// Seconds with microseconds, as the seed writes them: not all
			// of six times fall on a whole second.
			whole := true
			for _, f := range times {
				whole = whole && f == float64(int64(f))
			}
			if whole {
				t.Errorf("every time is whole seconds: %v", st)
			}
		})
	}
}

// GetStatus(): the ids of queued and running runs, keyed by script name;
// {} when there are none.
func TestSeedSDKStatusList(t *testing.T) {
	d := seedServer(t)
	whos := seedWhos(d)
	keys := map[string]string{}
	for _, who := range whos {
		keys[who.name] = who.key(t, "job")
	}
	lists := func(t *testing.T, r seedReply) (queued, running map[string]any) {
		t.Helper()
		r.mustOK(t)
		queued, qok := r.body["queued"].(map[string]any)
		running, rok := r.body["running"].(map[string]any)
		if !qok || !rok {
			t.Fatalf("%v: want queued and running as objects", r)
		}
		return queued, running
	}
	for _, who := range whos {
		t.Run("empty/"+who.name, func(t *testing.T) {
			r := sdk(t, d.url, keys[who.name], "GET", "/scripts/v1/status", "")
			if q, run := lists(t, r); len(q) != 0 || len(run) != 0 {
				t.Errorf("nothing active: %v", r)
			}
		})
	}

	q1 := seedRun(t, d.url, d.token, "job", nil, time.Now().Unix()+3600)
	q2 := seedRun(t, d.url, d.token, "job", nil, time.Now().Unix()+7200)
	long := seedRun(t, d.url, d.token, "long", nil, 0)
	seedWaitState(t, d.url, d.token, long, "running")
	ids := func(v any) []string {
		list, _ := v.([]any)
		var out []string
		for _, id := range list {
			s, ok := id.(string)
			if !ok {
				t.Errorf("an id in the status list: %#v, want a string", id)
			}
			out = append(out, s)
		}
		return out
	}
	for _, who := range whos {
		t.Run("busy/"+who.name, func(t *testing.T) {
			r := sdk(t, d.url, keys[who.name], "GET", "/scripts/v1/status", "")
			q, run := lists(t, r)
			if got := strings.Join(ids(q["job"]), ","); got != q1+","+q2 && got != q2+","+q1 {
				t.Errorf("queued[job] = %v, want [%s %s] (%v)", q["job"], q1, q2, r)
			}
			if who.name == "admin" {
				if len(q) != 1 || len(run) != 1 || strings.Join(ids(run["long"]), ",") != long {
					t.Errorf("%v: want queued {job: [%s %s]}, running {long: [%s]}", r, q1, q2, long)
				}
			}
		})
	}
	// rexec's own clients: status objects keyed by run id.
	r := bearer(t, d.url, d.token, "GET", "/scripts/v1/status", "")
	q, run := lists(t, r)
	qst, _ := q[q1].(map[string]any)
	rst, _ := run[long].(map[string]any)
	if qst["state"] != "queued" || rst["state"] != "running" || len(q) != 2 || len(run) != 1 {
		t.Errorf("Bearer status list: %v", r)
	}
	bearer(t, d.url, d.token, "POST", "/scripts/v1/cancel/"+long, "").ok(t)
}

// CreateGuest, GetGuestList, DeleteGuest.
func TestSeedSDKGuests(t *testing.T) {
	d := seedServer(t)
	expires := time.Now().Unix() + 3600
	r := sdk(t, d.url, d.token, "POST", "/scripts/v1/guest/create",
		fmt.Sprintf(`{"name":"job","run":1,"cancel":0,"status":1,"monitor":1,"expires":%d}`, expires)).mustOK(t)
	id := fmt.Sprint(r.body["id"])
	info, _ := r.body["info"].(map[string]any)
	inner, _ := info["info"].(map[string]any)
	key := str(info["apikey"])
	if id == "" || fmt.Sprint(info["id"]) != id || key == "" || inner == nil {
		t.Fatalf("guest/create: %v: want id, info.id, info.apikey, info.info", r)
	}
	if inner["name"] != "job" || inner["run"] != true || inner["cancel"] != false || inner["status"] != true || inner["monitor"] != true || len(inner) != 5 {
		t.Errorf("guest/create: info.info = %v, want name job, run, status and monitor true, cancel false", inner)
	}
	if n, ok := intOf(info["expires"]); ok && n != expires {
		t.Errorf("guest/create: info.expires = %v, want %d", info["expires"], expires)
	}

	r = sdk(t, d.url, d.token, "GET", "/scripts/v1/guest/list", "").mustOK(t)
	guests, ok := r.body["guests"].([]any)
	found := false
	for _, g := range guests {
		g, _ := g.(map[string]any)
		found = found || fmt.Sprint(g["id"]) == id
	}
	if !ok || !found {
		t.Errorf("guest/list: %v, want guests, an array with %s", r, id)
	}

	// The key's rights, as X-APIKey.
	runID := seedRun(t, d.url, key, "job", nil, 0)
	seedStatus(t, d.url, key, runID)
	sdk(t, d.url, key, "POST", "/scripts/v1/cancel/"+runID, "[]").wantErr(t, 400, "access_denied")

	r = sdk(t, d.url, d.token, "DELETE", "/scripts/v1/guest/delete/"+id, "[]")
	if r.ok(t) && r.raw != `{"success":true}` {
		t.Errorf("guest/delete: %v, want {\"success\":true}", r)
	}
	sdk(t, d.url, key, "GET", "/scripts/v1/status", "").wantErr(t, 403, "invalid_missing_apikey")
	r = sdk(t, d.url, d.token, "GET", "/scripts/v1/guest/list", "").mustOK(t)
	if strings.Contains(r.raw, `"id":"`+id+`"`) {
		t.Errorf("guest/list after delete: %v", r)
	}
	// The seed deletes what is not there without a word.
	for _, gone := range []string{id, "nosuchguest"} {
		r = sdk(t, d.url, d.token, "DELETE", "/scripts/v1/guest/delete/"+gone, "[]")
		if r.ok(t) && r.raw != `{"success":true}` {
			t.Errorf("guest/delete of %s: %v, want {\"success\":true}", gone, r)
		}
	}
	// With an empty guest list, guests is [].
	r = sdk(t, d.url, d.token, "GET", "/scripts/v1/guest/list", "").mustOK(t)
	if g, ok := r.body["guests"].([]any); !ok || len(g) != 0 {
		t.Errorf("guest/list without guests: %v, want guests []", r)
	}
}

// seedWS is a WebSocket of the SDK's API.
type seedWS struct {
	t       *testing.T
	c       *websocket.Conn
	ctx     context.Context
	backlog []map[string]any // messages read while waiting for another
}

// seedDial opens the WebSocket API at path as the SDK does.
func seedDial(t *testing.T, base, path, key string) *seedWS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, &websocket.DialOptions{HTTPHeader: seedWSHeader(base, key)})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket %s: %v (status %d)", path, err, status)
	}
	c.SetReadLimit(10_000_000)
	t.Cleanup(func() { c.CloseNow() })
	return &seedWS{t: t, c: c, ctx: ctx}
}

// seedWSHeader is the SDK's header on an upgrade: its key, and Origin its
// host string.
func seedWSHeader(base, key string) http.Header {
	h := http.Header{}
	h.Set("X-APIKey", key)
	h.Set("Origin", base)
	h.Set("Pragma", "no-cache")
	h.Set("User-Agent", seedUA)
	h.Set("Accept", seedAccept)
	return h
}

func (w *seedWS) sendRaw(msg string) {
	w.t.Helper()
	if err := w.c.Write(w.ctx, websocket.MessageText, []byte(msg)); err != nil {
		w.t.Fatalf("sending %s: %v", msg, err)
	}
}

// send sends msg as JSON, "<", ">" and "&" as themselves, as PHP's
// json_encode writes them.
func (w *seedWS) send(msg map[string]any) {
	w.t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(msg); err != nil {
		w.t.Fatal(err)
	}
	w.sendRaw(b.String())
}

// read is the next message: from the backlog, else from the socket.
func (w *seedWS) read() map[string]any {
	w.t.Helper()
	if len(w.backlog) > 0 {
		m := w.backlog[0]
		w.backlog = w.backlog[1:]
		return m
	}
	typ, data, err := w.c.Read(w.ctx)
	if err != nil {
		w.t.Fatalf("reading: %v", err)
	}
	if typ != websocket.MessageText {
		w.t.Errorf("a message of type %v: %s", typ, data)
	}
	m := seedDecode(data)
	if m == nil {
		w.t.Fatalf("a message that is not a JSON object: %q", data)
	}
	return m
}

// seqOf is a message's api_sequence, and whether it has one.
func seqOf(m map[string]any) (int64, bool) {
	v, has := m["api_sequence"]
	if !has {
		return 0, false
	}
	n, _ := intOf(v)
	return n, true
}

// call sends an API call with api_sequence seq and returns its answer: the
// next message with that api_sequence; messages before it (events) go to
// the backlog.
func (w *seedWS) call(seq int64, method, path string, fields map[string]any) map[string]any {
	w.t.Helper()
	msg := map[string]any{"api_method": method, "api_path": path, "api_sequence": seq}
	for k, v := range fields {
		msg[k] = v
	}
	w.send(msg)
	var skipped []map[string]any
	defer func() { w.backlog = append(w.backlog, skipped...) }()
	for {
		m := w.read()
		if n, ok := seqOf(m); ok && n == seq {
			return m
		}
		skipped = append(skipped, m)
	}
}

// wantAnswer checks an answer over the socket: success true, with the
// call's api_sequence.
func wantAnswer(t *testing.T, what string, m map[string]any, seq int64) bool {
	t.Helper()
	if n, ok := seqOf(m); m["success"] != true || !ok || n != seq {
		t.Errorf("%s: %v, want success with api_sequence %d", what, m, seq)
		return false
	}
	return true
}

// wantSocketErr checks an error answer over the socket: the errorcode, and
// api_sequence seq (none when seq < 0).
func wantSocketErr(t *testing.T, what string, m map[string]any, seq int64, code string) {
	t.Helper()
	n, has := seqOf(m)
	if m["success"] != false || m["errorcode"] != code || str(m["error"]) == "" ||
		(seq < 0 && has) || (seq >= 0 && (!has || n != seq)) {
		want := "no api_sequence"
		if seq >= 0 {
			want = fmt.Sprintf("api_sequence %d", seq)
		}
		t.Errorf("%s: %v, want errorcode %q and %s", what, m, code, want)
	}
}

// monitor turns watching name on (or off: enabled) with api_sequence seq.
func (w *seedWS) monitor(seq int64, name string, enabled bool) {
	w.t.Helper()
	m := w.call(seq, "GET", "/scripts/v1/monitor", map[string]any{"name": name})
	if wantAnswer(w.t, "monitor "+name, m, seq) && (m["name"] != name || m["enabled"] != enabled) {
		w.t.Errorf("monitor %q: %v, want enabled %v", name, m, enabled)
	}
}

// runEvents reads the events of run id until dones done events of it came,
// and returns them in order. Every event read is a running or done event
// with an api_sequence; events of other runs are skipped.
func (w *seedWS) runEvents(id string, dones int) []map[string]any {
	w.t.Helper()
	var evs []map[string]any
	for n := 0; n < dones; {
		m := w.read()
		if _, ok := seqOf(m); !ok || (m["state"] != "running" && m["state"] != "done") {
			w.t.Errorf("an event that is not a running or done event with an api_sequence: %v", m)
		}
		if fmt.Sprint(m["id"]) != id {
			continue
		}
		evs = append(evs, m)
		if m["state"] == "done" {
			n++
		}
	}
	return evs
}

// checkRunningEvent checks a running event of run id, by api_sequence seq.
func checkRunningEvent(t *testing.T, e map[string]any, id, name string, seq int64) {
	t.Helper()
	want := map[string]any{"success": true, "id": id, "name": name, "state": "running", "task": false, "tasknum": json.Number("0"),
		"maxtasks": json.Number("1"), "taskstart": json.Number("0"), "subtask": false, "subtaskpercent": json.Number("0"),
		"api_sequence": json.Number(strconv.FormatInt(seq, 10))}
	for k, v := range want {
		if got, ok := e[k]; !ok || got != v {
			t.Errorf("running event: %s = %#v, want %#v (%v)", k, got, v, e)
		}
	}
}

// checkDoneEvent checks a done event of run id, by api_sequence seq.
func checkDoneEvent(t *testing.T, e map[string]any, id, name string, seq int64, from float64) {
	t.Helper()
	if n, _ := seqOf(e); e["success"] != true || e["id"] != id || e["name"] != name || e["state"] != "done" || n != seq {
		t.Errorf("done event: %v, want success, id %s, name %s, state done, api_sequence %d", e, id, name, seq)
	}
	checkSeedTime(t, "done event: finished", e["finished"], from)
	if _, ok := e["tasks"].([]any); !ok {
		t.Errorf("done event: tasks %#v, want an array", e["tasks"])
	}
}

var seedSocketPaths = []string{"/scripts/v1", "/scripts"}

// StartMonitoring: the acknowledgement, a running and a done event per run
// with the api_sequence of the watch, and the toggle off.
func TestSeedSDKSocketMonitor(t *testing.T) {
	d := seedServer(t)
	for _, who := range seedWhos(d) {
		for _, path := range seedSocketPaths {
			t.Run(who.name+path, func(t *testing.T) {
				key := who.key(t, "job")
				w := seedDial(t, d.url, path, key)
				// As StartMonitoring writes it.
				w.sendRaw(`{"api_method":"GET","api_path":"/scripts/v1/monitor","api_sequence":1,"name":"job"}`)
				if ack := w.read(); ack["success"] != true || ack["name"] != "job" || ack["enabled"] != true || fmt.Sprint(ack["api_sequence"]) != "1" {
					t.Fatalf("monitor ack: %v", ack)
				}
				start := seedNow()
				id := seedRun(t, d.url, key, "job", nil, 0)
				evs := w.runEvents(id, 1)
				if len(evs) != 2 {
					t.Fatalf("events of run %s: %v, want running and done", id, evs)
				}
				checkRunningEvent(t, evs[0], id, "job", 1)
				checkDoneEvent(t, evs[1], id, "job", 1, start)

				// A sentinel socket that keeps watching job: once it has
				// seen a run's done, so would the first.
				sentinel := seedDial(t, d.url, path, key)
				sentinel.monitor(1, "job", true)
				w.monitor(4, "job", false)
				id = seedRun(t, d.url, key, "job", nil, 0)
				sentinel.runEvents(id, 1)
				for seq := int64(5); seq <= 7; seq++ {
					wantAnswer(t, "status", w.call(seq, "GET", "/scripts/v1/status/"+id, nil), seq)
				}
				if len(w.backlog) > 0 {
					t.Errorf("events after monitoring was turned off: %v", w.backlog)
				}
				// And on again, with a new sequence.
				w.monitor(8, "job", true)
				id = seedRun(t, d.url, key, "job", nil, 0)
				evs = w.runEvents(id, 1)
				if len(evs) != 2 || fmt.Sprint(evs[0]["api_sequence"]) != "8" || fmt.Sprint(evs[1]["api_sequence"]) != "8" {
					t.Errorf("after turning it on again: %v", evs)
				}
			})
		}
	}
}

// Watching "" and "job" on one socket: each job event comes twice, once
// with each api_sequence; events of other scripts come once.
func TestSeedSDKSocketWatchAllAndOne(t *testing.T) {
	d := seedServer(t)
	for _, path := range seedSocketPaths {
		t.Run(path, func(t *testing.T) {
			w := seedDial(t, d.url, path, d.token)
			w.monitor(7, "", true)
			w.monitor(8, "job", true)
			start := seedNow()
			id := seedRun(t, d.url, d.token, "job", nil, 0)
			evs := w.runEvents(id, 2)
			seqs := map[string][]string{}
			for _, e := range evs {
				seqs[str(e["state"])] = append(seqs[str(e["state"])], fmt.Sprint(e["api_sequence"]))
				if e["state"] == "running" {
					n, _ := seqOf(e)
					checkRunningEvent(t, e, id, "job", n)
				} else {
					n, _ := seqOf(e)
					checkDoneEvent(t, e, id, "job", n, start)
				}
			}
			for _, state := range []string{"running", "done"} {
				if got := strings.Join(seqs[state], ","); got != "7,8" && got != "8,7" {
					t.Errorf("%s events of job with api_sequence %v, want 7 and 8 (%v)", state, seqs[state], evs)
				}
			}
			other := seedRun(t, d.url, d.token, "other", nil, 0)
			evs = w.runEvents(other, 1)
			if len(evs) != 2 || fmt.Sprint(evs[0]["api_sequence"]) != "7" || fmt.Sprint(evs[1]["api_sequence"]) != "7" {
				t.Errorf("events of other, watched by \"\" only: %v", evs)
			}
		})
	}
}

// API calls over the socket: run, status, cancel, the status list, and
// their errors, each answer with its call's api_sequence.
func TestSeedSDKSocketCalls(t *testing.T) {
	d := seedServer(t)
	for _, who := range seedWhos(d) {
		for _, path := range seedSocketPaths {
			t.Run(who.name+path, func(t *testing.T) {
				key := who.key(t, "job")
				w := seedDial(t, d.url, path, key)
				a := w.call(2, "POST", "/scripts/v1/run", map[string]any{"name": "job", "args": []any{}, "stdin": ""})
				wantAnswer(t, "run", a, 2)
				checkRunAnswer(t, a, "job")
				id := str(a["id"])
				st := w.call(3, "GET", "/scripts/v1/status/"+id, nil)
				if wantAnswer(t, "status", st, 3) && (st["id"] != id || st["name"] != "job") {
					t.Errorf("status over the socket: %v", st)
				}
				seedWaitState(t, d.url, key, id, "done")

				a = w.call(4, "POST", "/scripts/v1/run", map[string]any{"name": "job", "args": []any{}, "stdin": "", "queue": time.Now().Unix() + 3600})
				wantAnswer(t, "run, queued", a, 4)
				queued := str(a["id"])
				list := w.call(5, "GET", "/scripts/v1/status", nil)
				if wantAnswer(t, "status list", list, 5) {
					q, _ := list["queued"].(map[string]any)
					running, rok := list["running"].(map[string]any)
					if ids, _ := q["job"].([]any); !rok || len(running) != 0 || len(ids) != 1 || ids[0] != queued {
						t.Errorf("status list over the socket: %v, want queued {job: [%s]}, running {}", list, queued)
					}
				}
				a = w.call(6, "POST", "/scripts/v1/cancel/"+queued, nil)
				wantAnswer(t, "cancel", a, 6)
				list = w.call(7, "GET", "/scripts/v1/status", nil)
				if q, _ := list["queued"].(map[string]any); wantAnswer(t, "status list", list, 7) && len(q) != 0 {
					t.Errorf("status list after cancel: %v", list)
				}
				wantSocketErr(t, "cancel of a cancelled run", w.call(8, "POST", "/scripts/v1/cancel/"+queued, nil), 8, "script_not_queued_running")

				// Errors: the call's api_sequence, the seed's code.
				unknownName := "invalid_name"
				if who.name != "admin" {
					unknownName = "access_denied" // a guest is not told which other names exist
				}
				wantSocketErr(t, "run of an unknown name", w.call(10, "POST", "/scripts/v1/run", map[string]any{"name": "nosuch", "args": []any{}, "stdin": ""}), 10, unknownName)
				wantSocketErr(t, "run without name", w.call(11, "POST", "/scripts/v1/run", map[string]any{"args": []any{}, "stdin": ""}), 11, "missing_name")
				wantSocketErr(t, "run with stdin", w.call(12, "POST", "/scripts/v1/run", map[string]any{"name": "job", "args": []any{}, "stdin": "x"}), 12, "stdin_not_allowed")
				wantSocketErr(t, "GET run", w.call(13, "GET", "/scripts/v1/run", map[string]any{"name": "job"}), 13, "use_post_request")
				wantSocketErr(t, "status of an unknown id", w.call(14, "GET", "/scripts/v1/status/nosuchid", nil), 14, "invalid_id")
				wantSocketErr(t, "monitor without name", w.call(15, "GET", "/scripts/v1/monitor", nil), 15, "missing_name")
				wantSocketErr(t, "monitor with POST", w.call(16, "POST", "/scripts/v1/monitor", map[string]any{"name": "job"}), 16, "use_get_request")
				wantSocketErr(t, "unknown api_path", w.call(17, "GET", "/scripts/v1/nosuch", nil), 17, "invalid_api_call")
				if who.name == "admin" {
					wantSocketErr(t, "monitor of an unknown name", w.call(18, "GET", "/scripts/v1/monitor", map[string]any{"name": "nosuch"}), 18, "invalid_name")
				} else {
					wantSocketErr(t, "guest/list with a guest key", w.call(18, "GET", "/scripts/v1/guest/list", nil), 18, "access_denied")
					wantSocketErr(t, "run of another script", w.call(19, "POST", "/scripts/v1/run", map[string]any{"name": "other", "args": []any{}, "stdin": ""}), 19, "access_denied")
				}
				// api_method is upper-cased, as the seed does.
				if m := w.call(20, "get", "/scripts/v1/monitor", map[string]any{"name": "job"}); wantAnswer(t, "monitor with api_method get", m, 20) && m["enabled"] != true {
					t.Errorf("monitor with api_method get: %v", m)
				}
			})
		}
	}
	// The guest calls of the admin over the socket.
	w := seedDial(t, d.url, "/scripts/v1", d.token)
	a := w.call(1, "POST", "/scripts/v1/guest/create", map[string]any{"name": "job", "run": 1, "cancel": 0, "status": 1, "monitor": 0, "expires": time.Now().Unix() + 3600})
	if wantAnswer(t, "guest/create", a, 1) {
		info, _ := a["info"].(map[string]any)
		wantAnswer(t, "guest/list", w.call(2, "GET", "/scripts/v1/guest/list", nil), 2)
		wantAnswer(t, "guest/delete", w.call(3, "DELETE", "/scripts/v1/guest/delete/"+fmt.Sprint(info["id"]), nil), 3)
	}
	wantSocketErr(t, "PUT guest/delete", w.call(4, "PUT", "/scripts/v1/guest/delete/x", nil), 4, "use_delete_request")
}

// The envelope's own errors carry no api_sequence.
func TestSeedSDKSocketEnvelope(t *testing.T) {
	d := seedServer(t)
	for _, path := range seedSocketPaths {
		t.Run(path, func(t *testing.T) {
			w := seedDial(t, d.url, path, d.token)
			for _, c := range []struct{ msg, code string }{
				{`{"api_path":"/scripts/v1/monitor","api_sequence":1,"name":"job"}`, "missing_invalid_api_method"},
				{`{"api_method":5,"api_path":"/scripts/v1/monitor","api_sequence":1,"name":"job"}`, "missing_invalid_api_method"},
				{`{"name":"job"}`, "missing_invalid_api_method"},
				{`{"api_method":"GET","api_sequence":1,"name":"job"}`, "missing_invalid_api_path"},
				{`{"api_method":"GET","api_path":5,"api_sequence":1,"name":"job"}`, "missing_invalid_api_path"},
				{`{"api_method":"GET","api_path":"/scripts/v1/monitor","name":"job"}`, "missing_invalid_api_sequence"},
				{`{"api_method":"GET","api_path":"/scripts/v1/monitor","api_sequence":1.5,"name":"job"}`, "missing_invalid_api_sequence"},
				{`{"api_method":"GET","api_path":"/scripts/v1/monitor","api_sequence":"1","name":"job"}`, "missing_invalid_api_sequence"},
				{`not json`, "invalid_data"},
				{`"job"`, "invalid_data"},
			} {
				w.sendRaw(c.msg)
				wantSocketErr(t, c.msg, w.read(), -1, c.code)
			}
			// The socket still serves calls.
			w.monitor(9, "job", true)
		})
	}
}

// Guest keys over the socket: their rights, and the socket closes when the
// key is deleted; a bad key cannot open one.
func TestSeedSDKSocketGuest(t *testing.T) {
	d := seedServer(t)
	for _, path := range seedSocketPaths {
		t.Run(path, func(t *testing.T) {
			_, watcher := seedGuest(t, d, "job", 0, 0, 0, 1)
			w := seedDial(t, d.url, path, watcher)
			w.monitor(1, "job", true)
			wantSocketErr(t, `a guest for job watching ""`, w.call(2, "GET", "/scripts/v1/monitor", map[string]any{"name": ""}), 2, "access_denied")
			wantSocketErr(t, "a guest for job watching other", w.call(3, "GET", "/scripts/v1/monitor", map[string]any{"name": "other"}), 3, "access_denied")
			wantSocketErr(t, "a guest without run running", w.call(4, "POST", "/scripts/v1/run", map[string]any{"name": "job", "args": []any{}, "stdin": ""}), 4, "access_denied")
			id := seedRun(t, d.url, d.token, "job", nil, 0)
			if evs := w.runEvents(id, 1); len(evs) != 2 {
				t.Errorf("a guest's watch of job: %v", evs)
			}

			runnerID, runner := seedGuest(t, d, "job", 1, 0, 0, 0)
			r := seedDial(t, d.url, path, runner)
			wantSocketErr(t, "a guest without monitor watching", r.call(1, "GET", "/scripts/v1/monitor", map[string]any{"name": "job"}), 1, "access_denied")
			a := r.call(2, "POST", "/scripts/v1/run", map[string]any{"name": "job", "args": []any{}, "stdin": ""})
			if wantAnswer(t, "a guest's run over the socket", a, 2) {
				checkRunAnswer(t, a, "job")
			}

			// Deleting the key closes its socket.
			sdk(t, d.url, d.token, "DELETE", "/scripts/v1/guest/delete/"+runnerID, "[]").mustOK(t)
			for {
				_, data, err := r.c.Read(r.ctx)
				if err != nil {
					if r.ctx.Err() != nil {
						t.Fatal("the socket of a deleted key stays open")
					}
					break
				}
				t.Logf("before the close: %s", data)
			}
		})
	}
	// A bad key cannot open the socket: 403.
	for _, path := range append(seedSocketPaths, "/scripts/v1/monitor") {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(d.url, "http")+path, &websocket.DialOptions{HTTPHeader: seedWSHeader(d.url, "wrong")})
		cancel()
		if err == nil {
			c.CloseNow()
			t.Errorf("%s: a bad key opened the socket", path)
			continue
		}
		if resp == nil || resp.StatusCode != 403 {
			t.Errorf("%s: a bad key: %v, %v, want 403", path, err, resp)
		}
	}
}

// The older /scripts/v1/monitor takes the envelope too, and answers it with
// the api_sequence.
func TestSeedSDKMonitorEndpointEnvelope(t *testing.T) {
	d := seedServer(t)
	w := seedDial(t, d.url, "/scripts/v1/monitor", d.token)
	w.monitor(3, "job", true)
	start := seedNow()
	id := seedRun(t, d.url, d.token, "job", nil, 0)
	evs := w.runEvents(id, 1)
	if len(evs) != 2 {
		t.Fatalf("events: %v", evs)
	}
	checkRunningEvent(t, evs[0], id, "job", 3)
	checkDoneEvent(t, evs[1], id, "job", 3, start)
	// And {"name":...} still, answered without api_sequence.
	w.sendRaw(`{"name":"other"}`)
	if m := w.read(); m["success"] != true || m["name"] != "other" || m["enabled"] != true {
		t.Errorf(`{"name":"other"}: %v`, m)
	}
}

// A run's stdin over the socket: up to the API's limit, whatever its bytes
// (characters that JSON escapes for HTML among them), it reaches the script
// as sent.
func TestSeedSDKSocketStdin(t *testing.T) {
	d := seedServer(t, "-e=TESTCHILD=cat -i -s=4 cat EXE")
	w := seedDial(t, d.url, "/scripts/v1", seedAdmin)
	stdin := strings.Repeat("<&>é", 200<<10) // 1,024,000 bytes; with "<" as "\u003c", over 2 MiB
	a := w.call(1, "POST", "/scripts/v1/run", map[string]any{"name": "cat", "args": []any{}, "stdin": stdin})
	if a["success"] != true {
		t.Fatalf("run with 1 MiB of stdin over the socket: %v", a)
	}
	id := str(a["id"])
	seedWaitState(t, d.url, seedAdmin, id, "done")
	code, _, body := request(t, d.url, "GET", "/scripts/v1/output/"+id, "", "X-APIKey", seedAdmin)
	if code != 200 || body != stdin {
		t.Fatalf("output: %d, %d bytes, want the %d bytes of stdin", code, len(body), len(stdin))
	}
	// One byte past the limit is the API's refusal, as over HTTP.
	a = w.call(2, "POST", "/scripts/v1/run", map[string]any{"name": "cat", "args": []any{}, "stdin": strings.Repeat("x", 1<<20+1)})
	if a["success"] != false || a["errorcode"] != "invalid_stdin" {
		t.Fatalf("run with 1 MiB + 1 of stdin: %v", a)
	}
}
