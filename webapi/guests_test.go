package webapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/detached"
)

func TestGuestKeys(t *testing.T) {
	dir := t.TempDir()
	const admin = "admin-token"
	s := newDetachedServerToken(t, dir, detached.Config{}, admin,
		"-e=TESTCHILD=exit job EXE 0", "-e=TESTCHILD=exit other EXE 0", "-e=TESTCHILD=hang long EXE")
	call := func(key, method, path string, body any) (int, apiAnswer) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, s.url+path, rd)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a apiAnswer
		json.NewDecoder(resp.Body).Decode(&a)
		return resp.StatusCode, a
	}
	create := func(spec map[string]any) (id, key string) {
		t.Helper()
		code, a := call(admin, "POST", "/scripts/v1/guest/create", spec)
		if code != 200 || a["success"] != true {
			t.Fatalf("create %v: %d %v", spec, code, a)
		}
		info := a["info"].(map[string]any)
		return a["id"].(string), info["apikey"].(string)
	}

	// A key for "job": run and status only.
	jobID, jobKey := create(map[string]any{"name": "job", "run": true, "status": true})
	code, a := call(jobKey, "POST", "/scripts/v1/run", map[string]any{"name": "job"})
	if code != 200 {
		t.Fatalf("guest run of its script: %d %v", code, a)
	}
	runID := a["id"].(string)
	if code, a := call(jobKey, "GET", "/scripts/v1/status/"+runID, nil); code != 200 || a["state"] == nil {
		t.Fatalf("guest status: %d %v", code, a)
	}
	if r, _ := s.store.Get(context.Background(), runID); r.Who != jobID {
		t.Fatalf("who asked: %q, want the key id %q", r.Who, jobID)
	}
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
	}{
		{"POST", "/scripts/v1/run", map[string]any{"name": "other"}, 403},    // another script
		{"POST", "/scripts/v1/cancel/" + runID, nil, 403},                    // no cancel right
		{"GET", "/scripts/v1/events?name=job", nil, 403},                     // no monitor right
		{"GET", "/scripts/v1/guest/list", nil, 403},                          // admin API
		{"POST", "/process", map[string]any{"alias": "x", "cmd": "id"}, 403}, // ad-hoc commands
	} {
		if code, a := call(jobKey, tc.method, tc.path, tc.body); code != tc.status {
			t.Errorf("guest %s %s: %d %v, want %d", tc.method, tc.path, code, a, tc.status)
		}
	}
	// The list a guest sees holds only its script's runs.
	longID := s.submit(t, map[string]any{"name": "long"})
	s.waitState(t, longID, "running")
	code, a = call(jobKey, "GET", "/scripts/v1/status", nil)
	if code != 200 {
		t.Fatalf("guest list: %d %v", code, a)
	}
	for _, group := range []string{"queued", "running"} {
		for id, r := range a[group].(map[string]any) {
			if r.(map[string]any)["name"] != "job" {
				t.Fatalf("a guest of job sees run %s of %v", id, r.(map[string]any)["name"])
			}
		}
	}
	if _, seen := a["running"].(map[string]any)[longID]; seen {
		t.Fatal("a guest of job sees the long run")
	}
	if code, _ := call(jobKey, "GET", "/scripts/v1/status/"+longID, nil); code != 403 {
		t.Fatalf("guest status of another script's run: %d", code)
	}
	// A key with the cancel right, for the long script only.
	_, cancelKey := create(map[string]any{"name": "long", "cancel": true})
	if code, a := call(cancelKey, "POST", "/scripts/v1/cancel/"+longID, nil); code != 200 {
		t.Fatalf("guest cancel with the right: %d %v", code, a)
	}
	if code, _ := call(cancelKey, "GET", "/scripts/v1/status/"+longID, nil); code != 403 {
		t.Fatalf("cancel-only key reading status: %d", code)
	}
	s.waitState(t, longID, "done")

	// The list never shows keys, and the database holds only hashes.
	code, a = call(admin, "GET", "/scripts/v1/guest/list", nil)
	if code != 200 || len(a["guests"].([]any)) != 2 || strings.Contains(toJSON(a), jobKey) || strings.Contains(toJSON(a), cancelKey) {
		t.Fatalf("list: %d %v", code, a)
	}
	for _, f := range []string{"rexec.db", "rexec.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if bytes.Contains(b, []byte(jobKey)) {
			t.Fatalf("the key is in %s", f)
		}
	}

	// A monitor key, by query parameter over WebSocket; deleting the key ends it.
	monID, monKey := create(map[string]any{"name": "", "monitor": true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/scripts/v1/monitor?apikey="+monKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.Write(ctx, websocket.MessageText, []byte(`{"name":""}`))
	if _, data, err := ws.Read(ctx); err != nil || !strings.Contains(string(data), `"success":true`) {
		t.Fatalf("ack %s %v", data, err)
	}
	if code, _ := call(admin, "POST", "/scripts/v1/guest/delete/"+monID, nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
				t.Fatalf("monitor ended with %v, want a policy-violation close", err)
			}
			break
		}
	}
	if code, _ := call(monKey, "GET", "/scripts/v1/status", nil); code != 401 {
		t.Fatalf("deleted key still works: %d", code)
	}

	// A key that expires.
	_, soon := create(map[string]any{"status": true, "expires": time.Now().Add(2 * time.Second).Unix()})
	if code, _ := call(soon, "GET", "/scripts/v1/status", nil); code != 200 {
		t.Fatalf("fresh key: %d", code)
	}
	time.Sleep(2500 * time.Millisecond)
	if code, _ := call(soon, "GET", "/scripts/v1/status", nil); code != 401 {
		t.Fatalf("expired key: %d", code)
	}
	if code, _ := call(admin, "POST", "/scripts/v1/guest/create", map[string]any{"name": "job"}); code != 400 {
		t.Fatalf("a key without rights: %d", code)
	}
	if code, _ := call("", "GET", "/scripts/v1/status", nil); code != 401 {
		t.Fatalf("no key: %d", code)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
