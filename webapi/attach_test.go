package webapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/webapi"
)

// attachConn is a client of GET /process/attach: the output so far, and
// the text messages as they came.
type attachConn struct {
	t    *testing.T
	ctx  context.Context
	c    *websocket.Conn
	out  strings.Builder
	msgs []map[string]any
}

// dialAttach opens GET /process/attach on url with header.
func dialAttach(t *testing.T, url string, header http.Header) *attachConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/process/attach", &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		t.Fatalf("dial: %v %v", resp, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &attachConn{t: t, ctx: ctx, c: c}
}

// attach dials url and sends req as the first message.
func attach(t *testing.T, url string, req any) *attachConn {
	t.Helper()
	a := dialAttach(t, url, nil)
	a.send(req)
	return a
}

func (a *attachConn) send(v any) {
	a.t.Helper()
	b, ok := v.(string)
	if !ok {
		j, err := json.Marshal(v)
		if err != nil {
			a.t.Fatal(err)
		}
		b = string(j)
	}
	if err := a.c.Write(a.ctx, websocket.MessageText, []byte(b)); err != nil {
		a.t.Fatalf("send %s: %v", b, err)
	}
}

func (a *attachConn) typeIn(s string) {
	a.t.Helper()
	if err := a.c.Write(a.ctx, websocket.MessageBinary, []byte(s)); err != nil {
		a.t.Fatalf("stdin %q: %v", s, err)
	}
}

// next reads one message: output is added to out, a text message is
// returned (nil for output). A closed connection fails the test.
func (a *attachConn) next() map[string]any {
	a.t.Helper()
	typ, b, err := a.c.Read(a.ctx)
	if err != nil {
		a.t.Fatalf("read: %v (output so far %q, messages %v)", err, a.out.String(), a.msgs)
	}
	if typ == websocket.MessageBinary {
		a.out.Write(b)
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		a.t.Fatalf("text message %q is not JSON", b)
	}
	a.msgs = append(a.msgs, m)
	return m
}

// message reads until a text message comes, and returns it.
func (a *attachConn) message() map[string]any {
	a.t.Helper()
	for {
		if m := a.next(); m != nil {
			return m
		}
	}
}

// until reads until the output holds want.
func (a *attachConn) until(want string) {
	a.t.Helper()
	for !strings.Contains(a.out.String(), want) {
		if m := a.next(); m != nil && (m["type"] == "exit" || m["type"] == "error") {
			a.t.Fatalf("%v before %q in the output (%q)", m, want, a.out.String())
		}
	}
}

// exit reads to the exit message and the close after it, and returns the
// exit message.
func (a *attachConn) exit() map[string]any {
	a.t.Helper()
	for {
		m := a.next()
		if m == nil {
			continue
		}
		if m["type"] != "exit" {
			a.t.Fatalf("message %v before the exit (output %q)", m, a.out.String())
		}
		a.closedWith(websocket.StatusNormalClosure)
		return m
	}
}

// refused reads the error message of a refusal and the close after it.
func (a *attachConn) refused(status int, code string, closeCode websocket.StatusCode) map[string]any {
	a.t.Helper()
	m := a.message()
	if m["type"] != "error" || m["status"] != float64(status) || m["code"] != code || m["error"] == "" {
		a.t.Fatalf("message %v, want an error %d %s", m, status, code)
	}
	a.closedWith(closeCode)
	return m
}

func (a *attachConn) closedWith(code websocket.StatusCode) {
	a.t.Helper()
	_, b, err := a.c.Read(a.ctx)
	if got := websocket.CloseStatus(err); got != code {
		a.t.Fatalf("after the last message: %q %v, want a close with %v", b, err, code)
	}
}

func TestAttachTerminal(t *testing.T) {
	s := newServer(t, serverOpts{})
	a := attach(t, s.url, ttyRun("term", "rows", 30, "cols", 100))
	if m := a.message(); m["type"] != "started" || m["alias"] != "term" || len(m) != 2 {
		t.Fatalf("first message %v", m)
	}
	a.until("ready")
	for _, want := range []string{"isatty true true true\r\n", "size 30 100\r\n"} {
		if !strings.Contains(a.out.String(), want) {
			t.Errorf("output %q lacks %q", a.out.String(), want)
		}
	}
	// Listed while it runs, as any attached run.
	if _, list := s.call(t, "GET", "/process"); !strings.Contains(js(list), `"alias":"term"`) {
		t.Errorf("GET /process: %v", list)
	}
	a.send(`{"type":"resize","rows":50,"cols":132}`)
	a.until("winch 50 132")
	a.typeIn("hello\n")
	a.until(`read "hello\n"`)
	if !strings.Contains(a.out.String(), "hello\r\n") {
		t.Errorf("the terminal did not echo what was typed: %q", a.out.String())
	}
	a.send(`{"type":"signal","signal":"USR1"}`)
	a.until("usr1")
	a.send(`{"type":"eof"}`)
	a.until("eof")
	end := a.exit()
	if end["exit_code"] != 0.0 || end["reason"] != "exit" || end["duration_ms"] == nil {
		t.Fatalf("exit %v", end)
	}
	if _, ok := end["signal"]; ok {
		t.Fatalf("exit %v has a signal", end)
	}
	code, _, body := request(t, s.url, "GET", "/metrics", "")
	if code != 200 || !strings.Contains(body, `rexec_runs_ended_total{ended="exit_zero",kind="attached",script=""} 1`) {
		t.Errorf("the run's end is not counted as an attached run's:\n%s", grepLines(body, "rexec_runs_ended_total"))
	}
}

func grepLines(text, prefix string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Ctrl-C is the byte 0x03, typed: the terminal interrupts its foreground
// group.
func TestAttachCtrlC(t *testing.T) {
	s := newServer(t, serverOpts{})
	a := attach(t, s.url, ttyRun("ctrlc"))
	a.until("ready")
	a.typeIn("\x03")
	if end := a.exit(); end["exit_code"] != -1.0 || end["signal"] != "SIGINT" || end["reason"] != "exit" {
		t.Fatalf("exit %v", end)
	}
}

// A control message that cannot be done is answered with an error, and the
// session goes on.
func TestAttachControlErrors(t *testing.T) {
	s := newServer(t, serverOpts{})
	a := attach(t, s.url, ttyRun("ctl"))
	a.until("ready")
	for msg, code := range map[string]string{
		`{"type":"signal","signal":"STOP"}`:       "invalid_request",
		`{"type":"signal","signal":"SIGSEGV"}`:    "invalid_request",
		`{"type":"dance"}`:                        "invalid_request",
		`{"type":"resize","rows":0,"cols":80}`:    "invalid_tty",
		`{"type":"resize","rows":24,"cols":1001}`: "invalid_tty",
		`not json`: "invalid_request",
	} {
		a.send(msg)
		if m := a.message(); m["type"] != "error" || m["code"] != code || m["status"] != 400.0 {
			t.Errorf("%s: %v, want a 400 %s", msg, m, code)
		}
	}
	a.send(`{"type":"signal","signal":"SIGUSR1"}`) // the SIG prefix is taken too
	a.until("usr1")
	a.send(`{"type":"eof"}`)
	if end := a.exit(); end["exit_code"] != 0.0 {
		t.Fatalf("exit %v", end)
	}

	// Stdin after its end, to a run that goes on (one that ends at its
	// stdin's end may end before the late bytes are read: the end is
	// then the answer).
	l := attach(t, s.url, with(fake("late", "hang"), "tty", true))
	l.until("ready")
	l.send(`{"type":"eof"}`)
	l.typeIn("late")
	if m := l.message(); m["type"] != "error" || m["code"] != "invalid_request" || !strings.Contains(m["error"].(string), "stdin has ended") {
		t.Errorf("stdin after its end: %v", m)
	}
	l.send(`{"type":"signal","signal":"KILL"}`)
	if end := l.exit(); end["signal"] != "SIGKILL" {
		t.Fatalf("exit %v", end)
	}

	// Without a terminal: the output and stdin go through pipes; a resize
	// is refused.
	p := attach(t, s.url, fake("pipe", "cat"))
	p.message()
	p.send(`{"type":"resize","rows":24,"cols":80}`)
	if m := p.message(); m["code"] != "invalid_tty" {
		t.Errorf("resize without a terminal: %v", m)
	}
	p.typeIn("through a pipe\n")
	p.until("through a pipe\n")
	p.send(`{"type":"eof"}`)
	if end := p.exit(); end["exit_code"] != 0.0 || p.out.String() != "through a pipe\n" {
		t.Fatalf("exit %v, output %q", end, p.out.String())
	}
}

func TestAttachSignal(t *testing.T) {
	s := newServer(t, serverOpts{})
	a := attach(t, s.url, fake("sig", "hang"))
	a.message()
	a.until("ready")
	a.send(`{"type":"signal","signal":"TERM"}`)
	if end := a.exit(); end["signal"] != "SIGTERM" || end["exit_code"] != -1.0 {
		t.Fatalf("exit %v", end)
	}
}

func TestAttachRefused(t *testing.T) {
	s := newServer(t, serverOpts{cfg: webapi.Config{MaxBody: 4 << 10}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := s.post(t, ctx, fake("busy", "hang"))
	if line, _ := io.ReadAll(io.LimitReader(held.Body, 6)); string(line) != "ready\n" {
		t.Fatalf("held run: %q", line)
	}
	for _, tc := range []struct {
		name   string
		first  any
		status int
		code   string
		close  websocket.StatusCode
	}{
		{"a running alias", fake("busy", "echo"), 409, "alias_in_use", websocket.StatusPolicyViolation},
		{"stdin in the request", with(fake("s", "cat"), "stdin", "x"), 400, "invalid_request", websocket.StatusPolicyViolation},
		{"the reserved alias", fake("attach", "echo"), 400, "invalid_request", websocket.StatusPolicyViolation},
		{"a terminal too tall", ttyRun("big", "rows", 1001), 400, "invalid_tty", websocket.StatusPolicyViolation},
		{"a size without a terminal", with(fake("nt", "echo"), "cols", 100), 400, "invalid_tty", websocket.StatusPolicyViolation},
		{"a terminal without stderr", ttyRun("ns", "stderr", "discard"), 400, "invalid_tty", websocket.StatusPolicyViolation},
		{"no such command", map[string]any{"alias": "nf", "cmd": "/nonexistent/rexec-test"}, 404, "start_failed", websocket.StatusPolicyViolation},
		{"malformed", `{"alias":`, 400, "invalid_request", websocket.StatusPolicyViolation},
		{"past --max-body", fake("long", "echo", strings.Repeat("x", 5<<10)), 413, "too_large", websocket.StatusMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := attach(t, s.url, tc.first)
			a.refused(tc.status, tc.code, tc.close)
		})
	}
	t.Run("a binary request", func(t *testing.T) {
		a := dialAttach(t, s.url, nil)
		a.typeIn(js(fake("bin", "echo")))
		a.refused(400, "invalid_request", websocket.StatusPolicyViolation)
	})
	// POST /process has the same rules on a terminal.
	resp, body := s.run(t, ttyRun("p", "rows", -1))
	wantError(t, resp, body, 400, "rows and cols")
	resp, body = s.run(t, fake("attach", "echo"))
	wantError(t, resp, body, 400, "reserved")
}

// --max-procs reached: the load is shed, 503 and 1013.
func TestAttachMaxProcs(t *testing.T) {
	s := newServer(t, serverOpts{maxProcs: 1})
	a := attach(t, s.url, fake("one", "hang"))
	a.message()
	b := attach(t, s.url, fake("two", "echo"))
	b.refused(503, "too_many_procs", websocket.StatusTryAgainLater)
}

// A stdin message past 64 KiB ends the session: 413 and 1009, and the run
// is killed as for a disconnect.
func TestAttachOversizedStdin(t *testing.T) {
	s := newServer(t, serverOpts{})
	a := attach(t, s.url, fake("big", "hang"))
	a.message()
	a.until("ready")
	a.typeIn(strings.Repeat("x", 64<<10)) // at the limit: taken
	a.typeIn(strings.Repeat("x", 64<<10+1))
	a.refused(413, "too_large", websocket.StatusMessageTooBig)
	waitUnlisted(t, s, "big")
	if !strings.Contains(s.logs.String(), `"reason":"disconnect"`) {
		t.Errorf("the run did not end as a disconnect: %s", s.logs.String())
	}
}

// waitUnlisted waits until GET /process no longer lists alias.
func waitUnlisted(t *testing.T, s *testServer, alias string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, list := s.call(t, "GET", "/process")
		if !strings.Contains(js(list), `"alias":"`+alias+`"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still running: %v", alias, list)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The client going away kills the run and everything in its cgroup, a
// process that left its session included.
func TestAttachDisconnectKillsTheRun(t *testing.T) {
	s := newServer(t, serverOpts{})
	if s.Node.Cgroups == nil || s.Node.Cgroups.Mode() == cgroup.ModeOff {
		t.Skip("no cgroups here")
	}
	a := attach(t, s.url, with(fake("esc", "escapee"), "tty", true))
	a.message()
	for !strings.Contains(a.out.String(), "\n") {
		a.next()
	}
	esc, err := strconv.Atoi(strings.TrimSpace(a.out.String()))
	if err != nil {
		t.Fatalf("output %q", a.out.String())
	}
	a.c.CloseNow()
	waitUnlisted(t, s, "esc")
	if !testchild.WaitGone(esc, 10*time.Second) {
		t.Fatalf("the escapee %d outlived the disconnect", esc)
	}
}

func TestAttachChecksLikePOSTProcess(t *testing.T) {
	s := newServer(t, serverOpts{cfg: webapi.Config{Token: "s3cret"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(s.url, "http") + "/process/attach"
	for name, h := range map[string]http.Header{
		"no token":           nil,
		"a wrong token":      {"Authorization": {"Bearer nope"}},
		"another site":       {"Authorization": {"Bearer s3cret"}, "Origin": {"http://attacker.example"}},
		"a rebound host":     {"Authorization": {"Bearer s3cret"}, "Host": {"attacker.example"}},
		"the token in a URL": nil,
	} {
		t.Run(name, func(t *testing.T) {
			u := url
			if name == "the token in a URL" {
				u += "?apikey=s3cret"
			}
			want := http.StatusUnauthorized
			if h.Get("Origin") != "" || h.Get("Host") != "" {
				want = http.StatusForbidden
			}
			opts := &websocket.DialOptions{HTTPHeader: h}
			if host := h.Get("Host"); host != "" {
				opts.Host = host
			}
			c, resp, err := websocket.Dial(ctx, u, opts)
			if err == nil {
				c.CloseNow()
				t.Fatal("upgraded")
			}
			if resp == nil || resp.StatusCode != want {
				t.Fatalf("%v %v, want %d", resp, err, want)
			}
		})
	}
	a := dialAttach(t, s.url, http.Header{"Authorization": {"Bearer s3cret"}})
	a.send(fake("ok", "echo", "hi"))
	a.message()
	if end := a.exit(); end["exit_code"] != 0.0 || a.out.String() != "hi\n" {
		t.Fatalf("exit %v, output %q", end, a.out.String())
	}
	code, _, _ := request(t, s.url, "POST", "/process/attach", "", "Authorization", "Bearer s3cret")
	if code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /process/attach: %d", code)
	}
}

// A script runs on a terminal only when its exectab line says --tty; an
// interactive run takes stdin, which needs -i.
func TestAttachScripts(t *testing.T) {
	s := newDetachedServer(t, t.TempDir(), "--tty -i -e=TESTCHILD=tty term EXE", "-i -e=TESTCHILD=tty plain EXE",
		"--tty -e=TESTCHILD=tty noinput EXE")
	a := attach(t, s.url, map[string]any{"alias": "t1", "script": "term", "tty": true})
	a.message()
	a.until("isatty true true true")
	a.send(`{"type":"eof"}`)
	if end := a.exit(); end["exit_code"] != 0.0 {
		t.Fatalf("exit %v", end)
	}
	attach(t, s.url, map[string]any{"alias": "t2", "script": "plain", "tty": true}).refused(400, "invalid_tty", websocket.StatusPolicyViolation)
	attach(t, s.url, map[string]any{"alias": "t3", "script": "noinput", "tty": true}).refused(400, "invalid_stdin", websocket.StatusPolicyViolation)

	// POST /process: the same rule, and the terminal's bytes with the
	// usual trailers.
	code, h, body := request(t, s.url, "POST", "/process", `{"alias":"p1","script":"plain","tty":true}`)
	if code != 400 || !strings.Contains(body, "--tty") {
		t.Fatalf("POST a terminal for a script without --tty: %d %s %v", code, body, h)
	}
	resp, err := http.Post(s.url+"/process", "application/json", strings.NewReader(`{"alias":"p2","script":"noinput","tty":true,"rows":40}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(out), "isatty true true true\r\nsize 40 80\r\n") || resp.Trailer.Get("Process-Exit-Code") != "0" {
		t.Fatalf("POST /process with a terminal: %q %v", out, resp.Trailer)
	}
}

// The server's shutdown: a session that runs gets its run's end (reason
// shutdown) and a normal close; one that has not sent its request is
// refused (503, 1013); Close waits for both.
func TestAttachShutdown(t *testing.T) {
	s := newServer(t, serverOpts{killGrace: time.Second})
	running := attach(t, s.url, fake("run", "hang"))
	running.message()
	running.until("ready")
	waiting := dialAttach(t, s.url, nil)
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		closed <- s.Node.Close(ctx)
	}()
	waiting.refused(503, "shutting_down", websocket.StatusTryAgainLater)
	if end := running.exit(); end["reason"] != "shutdown" || end["signal"] != "SIGTERM" {
		t.Fatalf("exit %v", end)
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
}
