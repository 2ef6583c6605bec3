package webapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	testchild.Main()
	goleak.VerifyTestMain(m, testchild.LeakOptions()...)
}

type syncBuffer = testserver.SyncBuffer

type testServer struct {
	*testserver.Server
	url  string
	logs *syncBuffer
}

type serverOpts struct {
	cfg       webapi.Config
	scripts   *atomic.Pointer[catalog.Catalog] // the exectab, which the test may swap
	maxProcs  int
	killGrace time.Duration
}

// newServer starts a real server on 127.0.0.1:0 (a whole node).
func newServer(t *testing.T, o serverOpts) *testServer {
	t.Helper()
	s := testserver.Start(t, node.Config{Env: o.cfg.Env, Scripts: o.scripts, Web: o.cfg,
		Broker: broker.Options{MaxProcs: o.maxProcs, Child: child.Options{KillGrace: o.killGrace, OutputSize: 8}}})
	return &testServer{Server: s, url: s.URL, logs: s.Logs}
}

// fake is a request body that runs the test binary as mode.
func fake(alias, mode string, args ...string) map[string]any {
	path, env := testchild.Command(mode)
	name, val, _ := strings.Cut(env, "=")
	return map[string]any{"alias": alias, "cmd": path, "args": args, "envs": map[string]string{name: val}}
}

func (s *testServer) post(t *testing.T, ctx context.Context, body any, header ...string) *http.Response {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/process", bytes.NewReader(b))
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
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// run posts body and reads the whole response.
func (s *testServer) run(t *testing.T, body any, header ...string) (*http.Response, []byte) {
	t.Helper()
	resp := s.post(t, context.Background(), body, header...)
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, out
}

func wantStatus(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %q", resp.StatusCode, status, body)
	}
}

func wantError(t *testing.T, resp *http.Response, body []byte, status int, contains string) {
	t.Helper()
	wantStatus(t, resp, body, status)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("error body %q is not {\"error\":...}", body)
	}
	if !strings.Contains(e.Error, contains) {
		t.Fatalf("error %q does not mention %q", e.Error, contains)
	}
}

func TestStreamAndTrailers(t *testing.T) {
	s := newServer(t, serverOpts{})
	resp, out := s.run(t, fake("e", "echo", "one", "two words", "three"))
	wantStatus(t, resp, out, 200)
	if string(out) != "one\ntwo words\nthree\n" {
		t.Fatalf("body %q", out)
	}
	h := resp.Header
	for k, v := range map[string]string{
		"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", "X-Accel-Buffering": "no",
	} {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("transfer encoding %v, want chunked", resp.TransferEncoding)
	}
	if got := resp.Trailer.Get("Process-Exit-Code"); got != "0" {
		t.Errorf("Process-Exit-Code %q", got)
	}
	if got := resp.Trailer.Get("Process-Signal"); got != "" {
		t.Errorf("Process-Signal %q on a normal exit", got)
	}
}

func TestExitCodesAndSignalsInTrailers(t *testing.T) {
	s := newServer(t, serverOpts{})
	for _, tc := range []struct {
		mode, arg, code, signal string
	}{
		{"exit", "0", "0", ""},
		{"exit", "1", "1", ""},
		{"exit", "42", "42", ""},
		{"selfkill", "9", "-1", "SIGKILL"},
		{"selfkill", "15", "-1", "SIGTERM"},
	} {
		t.Run(tc.mode+tc.arg, func(t *testing.T) {
			resp, out := s.run(t, fake("x", tc.mode, tc.arg))
			wantStatus(t, resp, out, 200)
			if c, sig := resp.Trailer.Get("Process-Exit-Code"), resp.Trailer.Get("Process-Signal"); c != tc.code || sig != tc.signal {
				t.Fatalf("trailers code %q signal %q, want %q %q", c, sig, tc.code, tc.signal)
			}
		})
	}
}

func TestLineArrivesWhileTheChildRuns(t *testing.T) {
	s := newServer(t, serverOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := s.post(t, ctx, fake("h", "hang"))
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	// The child never exits by itself: the line came through while it runs.
}

func TestOutputBytes(t *testing.T) {
	s := newServer(t, serverOpts{})
	t.Run("50 MiB byte-exact", func(t *testing.T) {
		const n = 50 << 20
		resp, out := s.run(t, fake("g", "gen", strconv.Itoa(n)))
		wantStatus(t, resp, out, 200)
		if err := testchild.CheckGen(out, n); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("16 MiB line intact", func(t *testing.T) {
		const n = 16 << 20
		resp, out := s.run(t, fake("l", "longline", strconv.Itoa(n)))
		wantStatus(t, resp, out, 200)
		if len(out) != n+5 || string(out[n:]) != "\nend\n" || bytes.Count(out[:n], []byte("x")) != n {
			t.Fatalf("long line damaged: %d bytes", len(out))
		}
	})
	t.Run("partial last line and binary", func(t *testing.T) {
		body := fake("b", "cat")
		body["stdin"] = "\x00\x01 ü € \r\n last line without newline"
		resp, out := s.run(t, body)
		wantStatus(t, resp, out, 200)
		if string(out) != body["stdin"] {
			t.Fatalf("body %q", out)
		}
	})
}

func TestArgsAndEnvironment(t *testing.T) {
	t.Setenv("REXEC_TOKEN", "server-secret")
	t.Setenv("REXEC_ANYTHING", "x")
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	s := newServer(t, serverOpts{cfg: webapi.Config{Env: webapi.ServerEnv(os.Environ())}})

	args := []string{"; rm -rf /", "$(id)", "two words", "", "'quoted'", "*"}
	resp, out := s.run(t, fake("a", "args", args...))
	wantStatus(t, resp, out, 200)
	var want strings.Builder
	for _, a := range args {
		fmt.Fprintf(&want, "%q\n", a)
	}
	if string(out) != want.String() {
		t.Fatalf("argv arrived as\n%s\nwant\n%s", out, want.String())
	}

	body := fake("env", "env")
	body["envs"].(map[string]string)["MY_SECRET"] = "value-never-logged"
	body["envs"].(map[string]string)["HOME"] = "/overridden"
	resp, out = s.run(t, body)
	wantStatus(t, resp, out, 200)
	env := string(out)
	if strings.Contains(env, "REXEC_TOKEN") || strings.Contains(env, "REXEC_ANYTHING") {
		t.Fatalf("the server's REXEC_* variables reached the child:\n%s", env)
	}
	if !strings.Contains(env, "MY_SECRET=value-never-logged\n") || !strings.Contains(env, "\nHOME=/overridden\n") {
		t.Fatalf("envs not applied:\n%s", env)
	}
	if strings.Count(env, "HOME=") != 1 {
		t.Fatalf("HOME twice:\n%s", env)
	}
	if strings.Contains(s.logs.String(), "value-never-logged") {
		t.Fatal("an envs value was logged")
	}
}

func TestCwd(t *testing.T) {
	s := newServer(t, serverOpts{})
	dir := t.TempDir()
	resp, out := s.run(t, map[string]any{"alias": "pwd", "cmd": "pwd", "cwd": dir})
	wantStatus(t, resp, out, 200)
	if strings.TrimSpace(string(out)) != dir {
		t.Fatalf("pwd %q, want %q", out, dir)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	script := dir + "/noexec.sh"
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o644)
	s := newServer(t, serverOpts{cfg: webapi.Config{MaxBody: 4096}})
	for _, tc := range []struct {
		name   string
		body   string
		status int
		msg    string
	}{
		{"malformed", `{"alias":"a",`, 400, "malformed JSON"},
		{"not json", `alias=a&cmd=true`, 400, "malformed JSON"},
		{"empty", ``, 400, "empty body"},
		{"array", `[]`, 400, "JSON object"},
		{"unknown field", `{"alias":"a","cmd":"true","bogus":1}`, 400, `unknown field "bogus"`},
		{"wrong type", `{"alias":"a","cmd":"true","args":"-l"}`, 400, `field "args"`},
		{"missing alias", `{"cmd":"true"}`, 400, `"alias" is required`},
		{"missing cmd", `{"alias":"a"}`, 400, `"cmd" (or "script") is required`},
		{"bad alias", `{"alias":"a b","cmd":"true"}`, 400, "alias"},
		{"long alias", `{"alias":"` + strings.Repeat("a", 129) + `","cmd":"true"}`, 400, "128"},
		{"bad stderr", `{"alias":"a","cmd":"true","stderr":"file"}`, 400, "stderr"},
		{"bad timeout", `{"alias":"a","cmd":"true","timeout":"soon"}`, 400, "timeout"},
		{"trailing data", `{"alias":"a","cmd":"true"} {}`, 400, "after the JSON object"},
		{"too large", `{"alias":"a","cmd":"true","args":["` + strings.Repeat("x", 5000) + `"]}`, 413, "--max-body"},
		{"no such command", `{"alias":"a","cmd":"no-such-command-rexec"}`, 404, "not found"},
		{"no such path", `{"alias":"a","cmd":"/no/such/file"}`, 404, "no such file"},
		{"no such cwd", `{"alias":"a","cmd":"true","cwd":"/no/such/dir"}`, 404, "/no/such/dir"},
		{"permission denied", `{"alias":"a","cmd":"` + script + `"}`, 404, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, out := s.run(t, tc.body, "Content-Type", "application/x-www-form-urlencoded")
			wantError(t, resp, out, tc.status, tc.msg)
		})
	}
	t.Run("method", func(t *testing.T) {
		// GET lists the runs (issue 12); other methods are refused.
		req, _ := http.NewRequest(http.MethodPut, s.url+"/process", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantError(t, resp, out, 405, "POST")
		if resp.Header.Get("Allow") != "GET, HEAD, POST" {
			t.Fatalf("Allow %q", resp.Header.Get("Allow"))
		}
	})
	t.Run("other paths", func(t *testing.T) {
		for _, p := range []string{"/", "/processes", "/api/v1/x"} {
			resp, err := http.Post(s.url+p, "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantError(t, resp, out, 501, "not implemented")
		}
	})
}

func TestAliasConflictAndRelease(t *testing.T) {
	s := newServer(t, serverOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	resp := s.post(t, ctx, fake("dup", "hang"))
	bufio.NewReader(resp.Body).ReadString('\n')
	r2, out := s.run(t, fake("dup", "exit", "0"))
	wantError(t, r2, out, 409, "alias")
	cancel()
	// The alias is free again once the child has been reaped.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r3, out := s.run(t, fake("dup", "exit", "0"))
		if r3.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alias still busy: %d %s", r3.StatusCode, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Sequential runs of one alias never see a 409.
	for range 20 {
		r, out := s.run(t, fake("seq", "exit", "0"))
		wantStatus(t, r, out, 200)
	}
}

func TestMaxProcs(t *testing.T) {
	s := newServer(t, serverOpts{maxProcs: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := s.post(t, ctx, fake("one", "hang"))
	bufio.NewReader(resp.Body).ReadString('\n')
	r, out := s.run(t, fake("two", "exit", "0"))
	wantError(t, r, out, 503, "too many")
}

func TestDisconnectKillsTheGroup(t *testing.T) {
	s := newServer(t, serverOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	resp := s.post(t, ctx, fake("gc", "grandchild"))
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	gc, _ := strconv.Atoi(strings.TrimSpace(line))
	cancel()
	if !testchild.WaitGone(gc, 5*time.Second) {
		t.Fatalf("grandchild %d survived the disconnect", gc)
	}
	waitLog(t, s, `"reason":"disconnect"`)
}

func TestDisconnectEscalatesForTermIgnoringChild(t *testing.T) {
	grace := 300 * time.Millisecond
	s := newServer(t, serverOpts{killGrace: grace})
	ctx, cancel := context.WithCancel(context.Background())
	resp := s.post(t, ctx, fake("it", "ignore-term"))
	bufio.NewReader(resp.Body).ReadString('\n')
	cancel()
	waitLog(t, s, `"signal":"SIGKILL"`)
}

func waitLog(t *testing.T, s *testServer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %s:\n%s", want, s.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTimeout(t *testing.T) {
	s := newServer(t, serverOpts{})
	body := fake("t", "hang")
	body["timeout"] = "1s" // long enough for the child to say ready on a loaded machine
	resp, out := s.run(t, body)
	wantStatus(t, resp, out, 200)
	if string(out) != "ready\n" || resp.Trailer.Get("Process-Signal") != "SIGTERM" || resp.Trailer.Get("Process-Exit-Code") != "-1" {
		t.Fatalf("body %q trailers %v", out, resp.Trailer)
	}
	waitLog(t, s, `"reason":"timeout"`)
}

func TestStdinAndStderrMerge(t *testing.T) {
	s := newServer(t, serverOpts{})
	body := fake("c", "cat")
	body["stdin"] = "from stdin\n"
	resp, out := s.run(t, body)
	if wantStatus(t, resp, out, 200); string(out) != "from stdin\n" {
		t.Fatalf("body %q", out)
	}
	resp, out = s.run(t, fake("c", "cat")) // no stdin: EOF at once
	if wantStatus(t, resp, out, 200); len(out) != 0 || resp.Trailer.Get("Process-Exit-Code") != "0" {
		t.Fatalf("body %q", out)
	}
	resp, out = s.run(t, fake("b", "both"))
	if string(out) != "out 0\nout 1\nout 2\n" {
		t.Fatalf("stderr not discarded by default: %q", out)
	}
	body = fake("b", "both")
	body["stderr"] = "merge"
	resp, out = s.run(t, body)
	if string(out) != "out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\n" {
		t.Fatalf("merged: %q", out)
	}
}

type ndLine struct {
	Stream     string
	Line       string
	Partial    bool
	Heartbeat  bool
	ExitCode   *int `json:"exit_code"`
	Signal     string
	DurationMS *int64 `json:"duration_ms"`
	Reason     string
	Usage      *cgroup.Report
}

func readNDJSON(t *testing.T, r io.Reader) []ndLine {
	t.Helper()
	var lines []ndLine
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	for {
		var l ndLine
		if err := dec.Decode(&l); err == io.EOF {
			return lines
		} else if err != nil {
			t.Fatalf("bad NDJSON: %v", err)
		}
		lines = append(lines, l)
	}
}

// withoutHeartbeats drops the heartbeat lines, which a loaded machine may
// send before a child's first output (its start can take longer than the
// test's short heartbeat).
func withoutHeartbeats(lines []ndLine) []ndLine {
	var out []ndLine
	for _, l := range lines {
		if !l.Heartbeat {
			out = append(out, l)
		}
	}
	return out
}

func TestNDJSON(t *testing.T) {
	s := newServer(t, serverOpts{cfg: webapi.Config{Heartbeat: 100 * time.Millisecond}})
	accept := []string{"Accept", "application/x-ndjson"}
	t.Run("streams and end", func(t *testing.T) {
		body := fake("n", "both")
		body["stderr"] = "merge"
		resp := s.post(t, context.Background(), body, accept...)
		if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Fatalf("Content-Type %q", ct)
		}
		lines := withoutHeartbeats(readNDJSON(t, resp.Body))
		var got []string
		for _, l := range lines[:len(lines)-1] {
			got = append(got, l.Stream+":"+l.Line)
		}
		if strings.Join(got, ",") != "stdout:out 0,stderr:err 0,stdout:out 1,stderr:err 1,stdout:out 2,stderr:err 2" {
			t.Fatalf("lines %v", got)
		}
		end := lines[len(lines)-1]
		if end.ExitCode == nil || *end.ExitCode != 0 || end.DurationMS == nil || end.Signal != "" || end.Reason != "exit" {
			t.Fatalf("end object %+v", end)
		}
		// With a cgroup, what the run used; without, no usage at all.
		if cg := s.Node.Cgroups.Mode() != cgroup.ModeOff; cg != (end.Usage != nil) || cg && (end.Usage.CPUMillis == nil || *end.Usage.CPUMillis < 0) {
			t.Fatalf("usage %+v with cgroups %s", end.Usage, s.Node.Cgroups.Mode())
		}
	})
	t.Run("signal and partial last line", func(t *testing.T) {
		body := fake("n", "cat")
		body["stdin"] = "a\nno newline"
		resp := s.post(t, context.Background(), body, accept...)
		lines := withoutHeartbeats(readNDJSON(t, resp.Body))
		if len(lines) != 3 || lines[0].Line != "a" || lines[0].Partial ||
			lines[1].Line != "no newline" || !lines[1].Partial || *lines[2].ExitCode != 0 {
			t.Fatalf("lines %+v", lines)
		}
		resp = s.post(t, context.Background(), fake("k", "selfkill", "9"), accept...)
		lines = withoutHeartbeats(readNDJSON(t, resp.Body))
		if end := lines[len(lines)-1]; *end.ExitCode != -1 || end.Signal != "SIGKILL" {
			t.Fatalf("end %+v", end)
		}
	})
	t.Run("long line comes in partial pieces", func(t *testing.T) {
		const n = 1 << 20
		resp := s.post(t, context.Background(), fake("n", "longline", strconv.Itoa(n)), accept...)
		var whole strings.Builder
		lines := withoutHeartbeats(readNDJSON(t, resp.Body))
		i := 0
		for ; lines[i].Partial; i++ {
			whole.WriteString(lines[i].Line)
		}
		whole.WriteString(lines[i].Line)
		if whole.Len() != n || lines[i+1].Line != "end" {
			t.Fatalf("joined %d bytes, want %d; next %+v", whole.Len(), n, lines[i+1])
		}
	})
	t.Run("heartbeat while silent", func(t *testing.T) {
		body := fake("hb", "hang")
		body["timeout"] = "450ms"
		resp := s.post(t, context.Background(), body, accept...)
		lines := readNDJSON(t, resp.Body)
		beats, first := 0, ""
		for _, l := range lines {
			if l.Heartbeat {
				beats++
			} else if first == "" {
				first = l.Line // a loaded machine may send a heartbeat before it
			}
		}
		if beats == 0 || first != "ready" || lines[len(lines)-1].Signal != "SIGTERM" {
			t.Fatalf("%d heartbeats in %+v", beats, lines)
		}
	})
}

func TestAuth(t *testing.T) {
	s := newServer(t, serverOpts{cfg: webapi.Config{Token: "s3cret"}})
	for _, tc := range []struct {
		name, auth string
		status     int
	}{
		{"none", "", 401},
		{"wrong", "Bearer nope", 401},
		{"wrong scheme", "Basic czNjcmV0", 401},
		{"prefix", "Bearer s3cre", 401},
		{"right", "Bearer s3cret", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h []string
			if tc.auth != "" {
				h = []string{"Authorization", tc.auth}
			}
			resp, out := s.run(t, fake("a", "exit", "0"), h...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, out)
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	resp, err := http.Get(s.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz needs no token, got %d", resp.StatusCode)
	}
	resp, err = http.Get(s.url + "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("unknown path without a token: %d, want 401", resp.StatusCode)
	}
}

func TestFiftyConcurrentAliases(t *testing.T) {
	s := newServer(t, serverOpts{})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			alias := fmt.Sprint("c", i)
			resp, out := s.run(t, fake(alias, "lines", "5", "10ms"))
			if resp.StatusCode != 200 || strings.Count(string(out), "\n") != 5 || resp.Trailer.Get("Process-Exit-Code") != "0" {
				t.Errorf("%s: %d %q %v", alias, resp.StatusCode, out, resp.Trailer)
			}
		})
	}
	wg.Wait()
}

func TestShutdownEndsStreamsWithTrailers(t *testing.T) {
	s := newServer(t, serverOpts{killGrace: 300 * time.Millisecond})
	var resps []*http.Response
	for i, mode := range []string{"hang", "ignore-term", "term-exit"} {
		resp := s.post(t, context.Background(), fake(fmt.Sprint("s", i), mode))
		bufio.NewReader(resp.Body).Peek(1)
		resps = append(resps, resp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- s.Close(ctx) }()
	want := []string{"SIGTERM", "SIGKILL", ""}
	for i, resp := range resps {
		io.Copy(io.Discard, resp.Body)
		if got := resp.Trailer.Get("Process-Signal"); got != want[i] {
			t.Errorf("stream %d: Process-Signal %q, want %q", i, got, want[i])
		}
	}
	if code := resps[2].Trailer.Get("Process-Exit-Code"); code != "7" {
		t.Errorf("TERM-honouring child: exit code %q, want 7", code)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(s.url + "/healthz"); err == nil {
		t.Fatal("still accepting after shutdown")
	}
	if n := strings.Count(s.logs.String(), `"reason":"shutdown"`); n != 3 {
		t.Fatalf("%d runs ended by shutdown in the log, want 3", n)
	}
}

func TestOneLogLinePerRun(t *testing.T) {
	s := newServer(t, serverOpts{})
	s.run(t, fake("logme", "exit", "3"))
	waitLog(t, s, `"alias":"logme"`)
	var line map[string]any
	for _, l := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(l, `"alias":"logme"`) && strings.Contains(l, "run ended") {
			json.Unmarshal([]byte(l), &line)
		}
	}
	for _, k := range []string{"alias", "cmd", "pid", "exit_code", "duration_ms", "bytes", "reason"} {
		if _, ok := line[k]; !ok {
			t.Errorf("run log line lacks %q: %v", k, line)
		}
	}
	if line["level"] != "info" || line["exit_code"] != float64(3) || line["reason"] != "exit" {
		t.Errorf("run log line %v", line)
	}
}

func TestLiveStdin(t *testing.T) {
	s := newServer(t, serverOpts{})
	path, env := testchild.Command("cat")
	name, val, _ := strings.Cut(env, "=")
	spec, _ := json.Marshal(map[string]any{"alias": "live", "cmd": path, "envs": map[string]string{name: val}})

	t.Run("a line comes back before stdin closes", func(t *testing.T) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest(http.MethodPost, s.url+"/process", pr)
		req.Header.Set("Rexec-Stdin", "stream")
		go func() {
			pw.Write(append(spec, '\n'))
			pw.Write([]byte("ping\n"))
		}()
		respc := make(chan *http.Response, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				close(respc)
				return
			}
			respc <- resp
		}()
		resp := <-respc
		if resp == nil {
			t.FailNow()
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("echo %q, %v", line, err)
		}
		pw.Write([]byte("last, no newline"))
		pw.Close()
		rest, _ := io.ReadAll(br)
		if string(rest) != "last, no newline" || resp.Trailer.Get("Process-Exit-Code") != "0" {
			t.Fatalf("rest %q trailers %v", rest, resp.Trailer)
		}
	})
	t.Run("binary stdin byte-exact", func(t *testing.T) {
		in := make([]byte, 4<<20)
		for i := range in {
			in[i] = byte(i*31 + i>>12)
		}
		body := io.MultiReader(bytes.NewReader(append(spec, '\n')), bytes.NewReader(in))
		req, _ := http.NewRequest(http.MethodPost, s.url+"/process", body)
		req.Header.Set("Rexec-Stdin", "stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(out, in) {
			t.Fatalf("%d bytes back, want %d identical", len(out), len(in))
		}
	})
	t.Run("client gone mid-stdin kills the child", func(t *testing.T) {
		pr, pw := io.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/process", pr)
		req.Header.Set("Rexec-Stdin", "stream")
		go pw.Write(append(spec, '\n'))
		resp, err := http.DefaultClient.Do(req) // returns once the run started
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		cancel()
		pw.CloseWithError(io.ErrClosedPipe)
		waitLog(t, s, `"reason":"disconnect"`)
	})
	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct{ mode, body, msg string }{
			{"stream", `{"alias":"x","cmd":"cat","stdin":"no"}` + "\n", "cannot be used"},
			{"stream", `{"alias":"x"` + "\nrest", "malformed JSON"},
			{"lines", `{"alias":"x","cmd":"cat"}`, "unknown mode"},
		} {
			req, _ := http.NewRequest(http.MethodPost, s.url+"/process", strings.NewReader(tc.body))
			req.Header.Set("Rexec-Stdin", tc.mode)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantError(t, resp, out, 400, tc.msg)
		}
	})
}
