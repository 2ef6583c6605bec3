package contract_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The walk of GET /process/attach, an interactive run over a WebSocket:
// its handshake's answers, a run on a terminal from its request to its
// exit, its control messages, and its refusals with their close codes, on
// base (a token, scripts, --max-body 64 KiB) and on a server of one
// process.

// output reads messages until the run's output holds want, validating the
// text ones, and returns the output so far.
func (w *wsConn) output(out *strings.Builder, want string) {
	w.t.Helper()
	for !strings.Contains(out.String(), want) {
		typ, b, err := w.conn.Read(w.ctx)
		if err != nil {
			w.t.Fatalf("%s: read: %v (output %q)", w.op, err, out.String())
		}
		if typ == websocket.MessageBinary {
			out.Write(b)
			continue
		}
		w.t.Fatalf("%s: message %s before %q in the output", w.op, b, want)
	}
}

// sendBinary sends b as stdin.
func (w *wsConn) sendBinary(b string) {
	w.t.Helper()
	if err := w.conn.Write(w.ctx, websocket.MessageBinary, []byte(b)); err != nil {
		w.t.Fatalf("%s: write: %v", w.op, err)
	}
}

// textMessage reads the next text message, passing over output, and
// validates it.
func (w *wsConn) textMessage() map[string]any {
	w.t.Helper()
	for {
		typ, r, err := w.conn.Reader(w.ctx)
		if err != nil {
			w.t.Fatalf("%s: read: %v", w.op, err)
		}
		if typ == websocket.MessageText {
			b, err := io.ReadAll(r)
			if err != nil {
				w.t.Fatalf("%s: read: %v", w.op, err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				w.t.Fatalf("%s: message %q is not JSON", w.op, b)
			}
			if err := visit(w.ws.server, m); err != nil {
				w.t.Errorf("%s: message %s does not match the document: %v", w.op, b, err)
			}
			return m
		}
		io.Copy(io.Discard, r)
	}
}

// refusedWith reads an error message of status and code (output before it
// passed over), and the close that follows it.
func (w *wsConn) refusedWith(status int, code string, close websocket.StatusCode) {
	w.t.Helper()
	if m := w.textMessage(); m["type"] != "error" || m["status"] != float64(status) || m["code"] != code {
		w.t.Errorf("%s: %v, want an error %d %s", w.op, m, status, code)
	}
	w.closedWith(close)
}

func contractAttach(t *testing.T, c *contract, base string, g *contractKeys) {
	const op = "GET /process/attach"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := http.Header{"Authorization": {"Bearer " + adminToken}}
	dial := func(t *testing.T, base string, header http.Header) *wsConn {
		t.Helper()
		return c.dialWS(t, ctx, base, op, "/process/attach", header)
	}

	// A script on a terminal: started, its output, a resize, stdin, a
	// signal, the end of stdin, the exit.
	w := dial(t, base, admin)
	w.send(`{"alias":"it","script":"term","tty":true,"rows":30,"cols":100}`)
	if m := w.receive(); m["type"] != "started" || m["alias"] != "it" {
		t.Fatalf("%s: %v", op, m)
	}
	var out strings.Builder
	w.output(&out, "ready")
	if !strings.Contains(out.String(), "isatty true true true\r\nsize 30 100\r\n") {
		t.Errorf("a run on a terminal: %q", out.String())
	}
	w.send(`{"type":"resize","rows":40,"cols":120}`)
	w.output(&out, "winch 40 120")
	w.sendBinary("typed\n")
	w.output(&out, `read "typed\n"`)
	w.send(`{"type":"signal","signal":"USR1"}`)
	w.output(&out, "usr1")
	// What cannot be done is answered, and the session goes on.
	w.sendRaw(`{"type":"signal","signal":"STOP"}`)
	if m := w.receive(); m["type"] != "error" || m["code"] != "invalid_request" {
		t.Errorf("a signal a client may not send: %v", m)
	}
	w.sendRaw(`{"type":"resize","rows":0,"cols":80}`)
	if m := w.receive(); m["code"] != "invalid_tty" {
		t.Errorf("a resize to 0 rows: %v", m)
	}
	w.send(`{"type":"eof"}`)
	w.output(&out, "eof")
	if m := w.receive(); m["type"] != "exit" || m["exit_code"] != 0.0 || m["reason"] != "exit" {
		t.Errorf("the exit: %v", m)
	}
	w.closedWith(websocket.StatusNormalClosure)

	// A command without a terminal, stopped by a signal.
	w = dial(t, base, admin)
	w.send(js(fakeRun("sig", "hang")))
	w.receive()
	out.Reset()
	w.output(&out, "ready")
	w.send(`{"type":"signal","signal":"TERM"}`)
	if m := w.receive(); m["type"] != "exit" || m["signal"] != "SIGTERM" || m["exit_code"] != -1.0 {
		t.Errorf("the exit of a signalled run: %v", m)
	}
	w.closedWith(websocket.StatusNormalClosure)

	// Refusals: the error POST /process would answer, then a close.
	held := dial(t, base, admin)
	held.send(js(fakeRun("held", "hang")))
	held.receive()
	for _, r := range []struct {
		name   string
		first  string
		valid  bool
		status int
		code   string
		close  websocket.StatusCode
	}{
		{"an alias in progress", js(fakeRun("held", "echo")), true, 409, "alias_in_use", websocket.StatusPolicyViolation},
		{"a terminal for a script without --tty", `{"alias":"nt","script":"withstdin","tty":true}`, true, 400, "invalid_tty", websocket.StatusPolicyViolation},
		{"a terminal too wide", js(with(fakeRun("wide", "tty"), "tty", true, "cols", 1001)), false, 400, "invalid_tty", websocket.StatusPolicyViolation},
		{"stdin in the request", js(with(fakeRun("in", "cat"), "stdin", "x")), false, 400, "invalid_request", websocket.StatusPolicyViolation},
		{"a script without -i", `{"alias":"ni","script":"hang"}`, true, 400, "invalid_stdin", websocket.StatusPolicyViolation},
		{"no such command", `{"alias":"nf","cmd":"/nonexistent/rexec-test"}`, true, 404, "start_failed", websocket.StatusPolicyViolation},
		{"past --max-body", js(fakeRun("big", "echo", strings.Repeat("a", 70<<10))), true, 413, "too_large", websocket.StatusMessageTooBig},
	} {
		t.Run(r.name, func(t *testing.T) {
			w := dial(t, base, admin)
			if r.valid {
				w.send(r.first)
			} else {
				w.sendRaw(r.first)
			}
			w.refusedWith(r.status, r.code, r.close)
		})
	}
	// A stdin message over 64 KiB ends the session.
	held.sendBinary(strings.Repeat("x", 64<<10+1))
	held.refusedWith(413, "too_large", websocket.StatusMessageTooBig)

	// --max-procs reached: try again later.
	one := newBareServer(t, 1)
	first := dial(t, one.url, nil)
	first.send(js(fakeRun("first", "hang")))
	first.receive()
	second := dial(t, one.url, nil)
	second.send(js(fakeRun("second", "echo")))
	second.refusedWith(503, "too_many_procs", websocket.StatusTryAgainLater)

	// Before the upgrade: a guest key, the handshake's own errors.
	c.do(t, base, call{op: op, path: "/process/attach", key: g.all, header: wsUpgrade}, 403)
	c.do(t, base, call{op: op, path: "/process/attach", key: adminToken}, 426)
	c.do(t, base, call{op: op, path: "/process/attach", key: adminToken, header: []string{
		"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "12", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}}, 400)
}
