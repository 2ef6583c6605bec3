package webapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/webapi"
)

// call sends a request with no body to path and decodes the JSON answer.
func (s *testServer) call(t *testing.T, method, path string, header ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if method != http.MethodHead {
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
		}
	}
	return resp.StatusCode, v
}

// GET /process lists the runs in progress; DELETE /process/{alias} stops
// one, whose client sees its stream end with the reason "cancelled".
func TestListAndStopRuns(t *testing.T) {
	s := newServer(t, serverOpts{scripts: exectab(t, "-e=TESTCHILD=hang held EXE")})
	if code, v := s.call(t, "GET", "/process"); code != 200 || len(v["runs"].([]any)) != 0 {
		t.Fatalf("empty list: %d %v", code, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	text := s.post(t, ctx, fake("text", "hang"))
	ndjson := s.post(t, ctx, map[string]any{"alias": "nd", "script": "held"}, "Accept", "application/x-ndjson")
	textBody, ndBody := bufio.NewReader(text.Body), bufio.NewReader(ndjson.Body)
	textBody.ReadString('\n')
	ndBody.ReadString('\n')

	code, v := s.call(t, "GET", "/process")
	runs := v["runs"].([]any)
	if code != 200 || len(runs) != 2 {
		t.Fatalf("list: %d %v", code, v)
	}
	nd, tx := runs[0].(map[string]any), runs[1].(map[string]any) // by alias
	exe, _ := testchild.Command("")
	if nd["alias"] != "nd" || nd["script"] != "held" || nd["cmd"] != exe || tx["alias"] != "text" || tx["cmd"] != exe || tx["script"] != nil {
		t.Fatalf("list: %v", runs)
	}
	for _, r := range []map[string]any{nd, tx} {
		started := time.Unix(int64(r["started"].(float64)), 0)
		if r["pid"].(float64) <= 0 || time.Since(started) > time.Minute || r["who"] != "" ||
			!strings.HasPrefix(r["remote"].(string), "127.0.0.1:") || r["duration_ms"].(float64) < 0 {
			t.Fatalf("run %v", r)
		}
	}

	if code, v := s.call(t, "DELETE", "/process/nd"); code != 200 || v["alias"] != "nd" {
		t.Fatalf("stop: %d %v", code, v)
	}
	var end map[string]any
	for {
		line, err := ndBody.ReadString('\n')
		if err != nil {
			t.Fatalf("NDJSON stream ended without its end line: %v", err)
		}
		json.Unmarshal([]byte(line), &end)
		if _, ok := end["reason"]; ok {
			break
		}
	}
	if end["reason"] != "cancelled" || end["signal"] != "SIGTERM" {
		t.Fatalf("end line %v", end)
	}
	if code, _ := s.call(t, "DELETE", "/process/text"); code != 200 {
		t.Fatalf("stop text: %d", code)
	}
	for {
		if _, err := textBody.ReadString('\n'); err != nil {
			break
		}
	}
	if sig := text.Trailer.Get("Process-Signal"); sig != "SIGTERM" {
		t.Fatalf("text stream: Process-Signal %q", sig)
	}
	waitLog(t, s, `"reason":"cancelled"`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, v := s.call(t, "GET", "/process"); len(v["runs"].([]any)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("stopped runs still listed")
		}
	}
}

func TestStopRefusals(t *testing.T) {
	s := newServer(t, serverOpts{})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"DELETE", "/process/nope", 404},
		{"DELETE", "/process/bad%20alias", 400},
		{"GET", "/process/nope", 405},
		{"POST", "/process/nope", 405},
		{"PUT", "/process", 405},
		{"DELETE", "/process", 405},
	} {
		code, v := s.call(t, tc.method, tc.path)
		if code != tc.status || v["error"] == nil {
			t.Errorf("%s %s: %d %v, want %d with an error", tc.method, tc.path, code, v, tc.status)
		}
	}
	// Behind the token like every endpoint.
	auth := newServer(t, serverOpts{cfg: webapi.Config{Token: "s3cret"}})
	for _, m := range []string{"GET /process", "DELETE /process/x"} {
		method, path, _ := strings.Cut(m, " ")
		if code, _ := auth.call(t, method, path); code != 401 {
			t.Errorf("%s without the token: %d", m, code)
		}
		if code, _ := auth.call(t, method, path, "Authorization", "Bearer s3cret"); code == 401 {
			t.Errorf("%s with the token: 401", m)
		}
	}
}
