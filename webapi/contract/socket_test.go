package contract_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The WebSockets of the walk: GET /scripts/v1/monitor, and the Cloud
// Storage Server's WebSocket API (GET /scripts/v1, GET /scripts). Every
// message the walk sends as valid is validated against the clientMessage of
// the operation's x-websocket, every message of the server against its
// serverMessage, and every close code against its closeCodes.

// wsConn is a WebSocket of the walk, opened by an operation of the document.
type wsConn struct {
	t    *testing.T
	ctx  context.Context
	op   string
	ws   webSocket
	conn *websocket.Conn
}

// dialWS opens a WebSocket on base's path (with its query), as op, and
// validates the handshake's answer (101) against op.
func (c *contract) dialWS(t *testing.T, ctx context.Context, base, op, path string, header http.Header) *wsConn {
	t.Helper()
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		t.Fatalf("%s: dial %s: %v %v", op, path, resp, err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	req, _ := http.NewRequest("GET", base+path, nil)
	c.validateResponse(t, &exchange{call: call{op: op, path: path}, req: req, resp: resp, head: resp.Header, t: t}, true)
	return &wsConn{t: t, ctx: ctx, op: op, ws: c.webSocket(t, op), conn: conn}
}

// send sends msg, which must be a client message of the document if it is
// JSON at all.
func (w *wsConn) send(msg string) {
	w.t.Helper()
	var v any
	if json.Unmarshal([]byte(msg), &v) == nil && visit(w.ws.client, v) != nil {
		w.t.Fatalf("%s: the walk sends %s, which is no client message: %v", w.op, msg, visit(w.ws.client, v))
	}
	w.sendRaw(msg)
}

// sendRaw sends msg as it is: one the document says is no client message.
func (w *wsConn) sendRaw(msg string) {
	w.t.Helper()
	if err := w.conn.Write(w.ctx, websocket.MessageText, []byte(msg)); err != nil {
		w.t.Fatalf("%s: write: %v", w.op, err)
	}
}

// receive reads the next message and validates it against the document.
func (w *wsConn) receive() map[string]any {
	w.t.Helper()
	_, data, err := w.conn.Read(w.ctx)
	if err != nil {
		w.t.Fatalf("%s: read: %v", w.op, err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		w.t.Fatalf("%s: message %q is not JSON", w.op, data)
	}
	if err := visit(w.ws.server, m); err != nil {
		w.t.Errorf("%s: message %s does not match the document: %v", w.op, data, err)
	}
	return m
}

// closedWith reads until the server closes the connection, and checks its
// close code: want, and documented.
func (w *wsConn) closedWith(want websocket.StatusCode) {
	w.t.Helper()
	_, _, err := w.conn.Read(w.ctx)
	code := websocket.CloseStatus(err)
	if code != want {
		w.t.Errorf("%s: closed with %v (%v), want %v", w.op, code, err, want)
	}
	if _, ok := w.ws.closeCodes[strconv.Itoa(int(code))]; !ok {
		w.t.Errorf("%s: close code %d is not documented", w.op, code)
	}
}

// call sends an API call of the Cloud Storage Server's WebSocket API, with
// its fields as pairs, and returns its answer, which must carry seq.
func (w *wsConn) call(seq int, method, path string, fields ...any) map[string]any {
	w.t.Helper()
	msg := map[string]any{"api_method": method, "api_path": path, "api_sequence": seq}
	for i := 0; i+1 < len(fields); i += 2 {
		msg[fields[i].(string)] = fields[i+1]
	}
	w.send(js(msg))
	m := w.receive()
	if m["api_sequence"] != float64(seq) {
		w.t.Fatalf("%s: %s %s (%d) answered %v", w.op, method, path, seq, m)
	}
	return m
}

// failed checks that m is an error whose code is code.
func failed(t *testing.T, what string, m map[string]any, code string) {
	t.Helper()
	if m["success"] != false || m["errorcode"] != code {
		t.Errorf("%s: %v, want errorcode %s", what, m, code)
	}
}

// wsUpgrade are the headers of a WebSocket handshake, for requests that the
// server refuses before it upgrades.
var wsUpgrade = []string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}

// contractSocketAPI walks the Cloud Storage Server's WebSocket API: its
// handshake's answers, every call over it with X-APIKey and without, the
// envelope's errors, monitor calls and their events, and its close codes;
// then the same API calls on GET /scripts/v1/monitor.
func contractSocketAPI(t *testing.T, c *contract, s *walkServer, g *contractKeys) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sdk := http.Header{"X-Apikey": {adminToken}}
	bearer := http.Header{"Authorization": {"Bearer " + adminToken}}
	submit := func(t *testing.T, body string) string {
		t.Helper()
		return c.do(t, s.url, call{op: "POST /scripts/v1/run", path: "/scripts/v1/run", body: body, key: adminToken, valid: true}, 200).json()["id"].(string)
	}

	// The handshake: a plain request is invalid_api_call, to every client.
	for _, op := range []string{"GET /scripts/v1", "GET /scripts"} {
		p := concretePath(op)
		failed(t, op, c.do(t, s.url, call{op: op, path: p, key: adminToken}, 400).json(), "invalid_api_call")
		failed(t, op, c.do(t, s.url, call{op: op, path: p, header: []string{"X-APIKey", adminToken}}, 400).json(), "invalid_api_call")
		c.do(t, s.url, call{op: op, path: p, key: adminToken, header: []string{"Upgrade", "websocket"}}, 426)
		bad := slices.Clone(wsUpgrade)
		bad[5] = "12" // Sec-WebSocket-Version
		c.do(t, s.url, call{op: op, path: p, key: adminToken, header: bad}, 400)
	}

	// With X-APIKey: the Cloud Storage Server's convention.
	t.Run("X-APIKey", func(t *testing.T) {
		w := c.dialWS(t, ctx, s.url, "GET /scripts/v1", "/scripts/v1", sdk)
		// What is no call is answered without api_sequence.
		for _, m := range []struct{ msg, code string }{
			{`{"api_path":"/scripts/v1/status","api_sequence":1}`, "missing_invalid_api_method"},
			{`{"api_method":"GET","api_sequence":1}`, "missing_invalid_api_path"},
			{`{"api_method":"GET","api_path":"/scripts/v1/status","api_sequence":1.5}`, "missing_invalid_api_sequence"},
			{`{"api_method":"GET","api_path":"/scripts/v1/status","api_sequence":"1"}`, "missing_invalid_api_sequence"},
			{`{"name":"echo"}`, "missing_invalid_api_method"},
			{`[1]`, "invalid_data"},
			{`hello`, "invalid_data"},
		} {
			w.sendRaw(m.msg)
			a := w.receive()
			failed(t, m.msg, a, m.code)
			if _, ok := a["api_sequence"]; ok {
				t.Errorf("%s: %v has an api_sequence", m.msg, a)
			}
		}

		// The calls, as over HTTP.
		later := submit(t, `{"name":"echo","args":["later"],"queue":`+strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)+`}`)
		st := w.call(1, "GET", "/scripts/v1/status")
		if q, _ := st["queued"].(map[string]any)["echo"].([]any); !slices.Contains(q, any(later)) {
			t.Errorf("the status list by name: %v, want %s queued", st, later)
		}
		if a := w.call(2, "POST", "/scripts/v1/cancel/"+later); a["success"] != true {
			t.Errorf("cancel a queued run: %v", a)
		}
		failed(t, "cancel a cancelled run", w.call(3, "POST", "/scripts/v1/cancel/"+later), "script_not_queued_running")
		run := w.call(4, "POST", "/scripts/v1/run", "name", "echo", "args", map[string]any{"first": 7})
		id, _ := run["id"].(string)
		if id == "" {
			t.Fatalf("run: %v", run)
		}
		if a := w.call(5, "GET", "/scripts/v1/status/"+id); a["id"] != id || !slices.Equal(a["args"].([]any), []any{"7"}) {
			t.Errorf("status of %s: %v", id, a)
		}
		failed(t, "run without a name", w.call(6, "POST", "/scripts/v1/run", "args", []string{"x"}), "missing_name")
		failed(t, "an unknown call", w.call(7, "GET", "/scripts/v1/nope"), "invalid_api_call")
		if a := w.call(8, "get", "/scripts/x/status"); a["success"] != true {
			t.Errorf("a call in lower case, with another second segment: %v", a)
		}
		made := w.call(9, "POST", "/scripts/v1/guest/create", "name", "echo", "status", 1)
		if list := w.call(10, "GET", "/scripts/v1/guest/list"); len(list["guests"].([]any)) == 0 {
			t.Errorf("guest/list: %v", list)
		}
		if a := w.call(11, "DELETE", "/scripts/v1/guest/delete/"+made["id"].(string)); a["success"] != true {
			t.Errorf("guest/delete: %v", a)
		}
		if a := w.call(12, "DELETE", "/scripts/v1/guest/delete/nosuch"); a["success"] != true {
			t.Errorf("guest/delete of a key that is not there: %v", a)
		}
		failed(t, "a monitor call with POST", w.call(13, "POST", "/scripts/v1/monitor", "name", "echo"), "use_get_request")
		failed(t, "a monitor call without a name", w.call(14, "GET", "/scripts/v1/monitor"), "missing_name")
		failed(t, "a monitor call of no script", w.call(15, "GET", "/scripts/v1/monitor", "name", "nosuch"), "invalid_name")
		failed(t, "a call the server refuses", w.call(16, "POST", "/scripts/v1/run", "name", "echo", "args", []string{"a"}, "stdin", "x"), "stdin_not_allowed")
		waitRun(t, c, s.url, id, "done")

		// Monitor calls: a toggle, and events once per watch that matches.
		for _, m := range []struct {
			seq     int
			name    string
			enabled bool
		}{{20, "echo", true}, {21, "echo", false}, {22, "echo", true}, {23, "", true}} {
			if a := w.call(m.seq, "GET", "/scripts/v1/monitor", "name", m.name); a["success"] != true || a["name"] != m.name || a["enabled"] != m.enabled {
				t.Errorf("monitor call %d of %q: %v", m.seq, m.name, a)
			}
		}
		id = submit(t, `{"name":"echo","args":["sock"]}`)
		var got []string
		for len(got) < 4 {
			m := w.receive()
			if m["id"] != id {
				continue // a late event of a run before
			}
			got = append(got, m["state"].(string)+" "+strconv.FormatFloat(m["api_sequence"].(float64), 'f', -1, 64))
			if m["state"] == "done" {
				if _, ok := m["finished"].(float64); !ok || m["tasks"] == nil {
					t.Errorf("the done event: %v", m)
				}
			}
		}
		if want := []string{"running 22", "running 23", "done 22", "done 23"}; !slices.Equal(got, want) {
			t.Errorf("events %q, want %q", got, want)
		}
		// A third name: past --monitor-names 2.
		w.send(js(map[string]any{"api_method": "GET", "api_path": "/scripts/v1/monitor", "api_sequence": 24, "name": "hang"}))
		w.closedWith(websocket.StatusPolicyViolation)
	})

	// Without X-APIKey, at the path of the SDK before 2020: rexec's codes.
	t.Run("Bearer", func(t *testing.T) {
		w := c.dialWS(t, ctx, s.url, "GET /scripts", "/scripts", bearer)
		if st := w.call(1, "GET", "/scripts/v1/status"); st["success"] != true || st["queued"] == nil {
			t.Errorf("the status list: %v", st)
		}
		failed(t, "status of no run", w.call(2, "GET", "/scripts/v1/status/nosuch"), "invalid_id")
		failed(t, "cancel of no run", w.call(3, "POST", "/scripts/v1/cancel/nosuch"), "invalid_id")
		failed(t, "a run of no script", w.call(4, "POST", "/scripts/v1/run", "name", "nosuch"), "invalid_name")
		if a := w.call(5, "GET", "/scripts/v1/monitor", "name", "echo"); a["enabled"] != true {
			t.Errorf("monitor call: %v", a)
		}
		// A message past --max-body + 1 MiB + 4 KiB.
		w.sendRaw(`{"x":"` + strings.Repeat("x", 1<<20+128<<10) + `"}`)
		w.closedWith(websocket.StatusMessageTooBig)
	})

	// A guest key: any key opens the socket, and each call checks its
	// rights; a key deleted meanwhile ends it.
	t.Run("guest keys", func(t *testing.T) {
		w := c.dialWS(t, ctx, s.url, "GET /scripts/v1", "/scripts/v1?apikey="+g.run, nil) // no monitor right
		failed(t, "a monitor call without the right", w.call(1, "GET", "/scripts/v1/monitor", "name", ""), "access_denied")
		failed(t, "status without the right", w.call(2, "GET", "/scripts/v1/status"), "forbidden")
		failed(t, "guest/list", w.call(3, "GET", "/scripts/v1/guest/list"), "forbidden")
		made := c.do(t, s.url, call{op: "POST /scripts/v1/guest/create", path: "/scripts/v1/guest/create", body: `{"status":true}`,
			key: adminToken, valid: true}, 200).json()
		w = c.dialWS(t, ctx, s.url, "GET /scripts", "/scripts", http.Header{"X-Apikey": {made["info"].(map[string]any)["apikey"].(string)}})
		failed(t, "guest/list with X-APIKey", w.call(1, "GET", "/scripts/v1/guest/list"), "access_denied")
		c.do(t, s.url, call{op: "POST /scripts/v1/guest/delete/{id}", path: "/scripts/v1/guest/delete/" + made["id"].(string), key: adminToken, valid: true}, 200)
		w.closedWith(websocket.StatusPolicyViolation)
	})

	// The monitor's WebSocket takes the same calls, besides its watch
	// requests: both kinds of event, each as its watch asks.
	t.Run("monitor", func(t *testing.T) {
		w := c.dialWS(t, ctx, s.url, "GET /scripts/v1/monitor", "/scripts/v1/monitor", bearer)
		if st := w.call(1, "GET", "/scripts/v1/status"); st["success"] != true {
			t.Errorf("the status list: %v", st)
		}
		w.sendRaw(`{"api_method":"GET","api_sequence":2}`)
		failed(t, "no api_path", w.receive(), "missing_invalid_api_path")
		if a := w.call(3, "GET", "/scripts/v1/monitor", "name", "echo"); a["enabled"] != true {
			t.Errorf("monitor call: %v", a)
		}
		w.send(`{"name":"echo"}`)
		if a := w.receive(); a["success"] != true || a["api_sequence"] != nil {
			t.Errorf("watch echo: %v", a)
		}
		id := submit(t, `{"name":"echo","args":["both"]}`)
		var got []string
		for len(got) < 5 {
			m := w.receive()
			switch {
			case m["run"] == id: // rexec's
				got = append(got, "event "+m["state"].(string))
			case m["id"] == id: // the Cloud Storage Server's
				got = append(got, "call "+m["state"].(string))
			}
		}
		if want := []string{"event queued", "event running", "call running", "event done", "call done"}; !slices.Equal(got, want) {
			t.Errorf("messages %q, want %q", got, want)
		}
	})
}
