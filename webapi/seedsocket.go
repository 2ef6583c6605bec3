package webapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/store"
)

// The Cloud Storage Server's WebSocket API (docs/seed-cloud-storage-wire.md,
// §8): its SDK upgrades /scripts/v1 (or /scripts, before 2020) to a
// WebSocket and sends API calls as JSON messages,
//
//	{"api_method":"GET","api_path":"/scripts/v1/monitor","api_sequence":1,"name":"backup"}
//
// Each call gets one answer, the call's answer over HTTP with the call's
// api_sequence added; a monitor call turns watching the name on (or, sent
// again, off), and every event it brings carries its api_sequence. The calls
// are run, cancel, status, guest/... and monitor; each is made as an HTTP
// request to this server with the upgrade's credentials, so it passes the
// same checks as over HTTP, and a key deleted meanwhile closes the socket.

// seedPongWait is how long the client of the API socket may take to answer
// a ping: the SDK answers only while its application reads, and its server
// waits 30 s after 30 s of silence.
const seedPongWait = 60 * time.Second

// maxCallAnswer bounds the answer to one call over the socket (the status
// list of a busy server is the largest); a longer one is an error.
const maxCallAnswer = 8 << 20

// handleScriptsSocket is GET /scripts and /scripts/v1: the Cloud Storage
// Server's WebSocket API. Any request that is not a WebSocket upgrade is
// answered invalid_api_call, as that server does.
func (s *Server) handleScriptsSocket(w http.ResponseWriter, r *http.Request) {
	if !isUpgrade(r) {
		writeScriptsError(w, r, http.StatusBadRequest, "invalid_api_call",
			r.URL.Path+" is the WebSocket API of /scripts/v1: open a WebSocket here, or call /scripts/v1/run, /status, ...")
		return
	}
	s.serveSocket(w, r, socketOptions{
		check:     func() error { return nil }, // each call checks its own right
		readLimit: s.cfg.MaxBody + launch.MaxStdin + 4<<10,
		pongWait:  seedPongWait,
	})
}

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// isEnvelope reports whether a message is an API call: it has any member of
// the envelope.
func isEnvelope(msg map[string]json.RawMessage) bool {
	_, m := msg["api_method"]
	_, p := msg["api_path"]
	_, q := msg["api_sequence"]
	return m || p || q
}

// seedFailure is the answer to a message that fails: success false, a
// message and the errorcode.
func seedFailure(code, msg string) map[string]any {
	return map[string]any{"success": false, "error": msg, "errorcode": code}
}

// call answers an API call: the envelope's errors (without api_sequence),
// else the call's answer with the call's api_sequence. It returns false for
// a monitor call of a new name past m.maxNames.
func (m *monitor) call(msg map[string]json.RawMessage) (map[string]any, bool) {
	var method, path string
	var seq int64
	if json.Unmarshal(msg["api_method"], &method) != nil || method == "" {
		return seedFailure("missing_invalid_api_method", `"api_method" must be a string, such as "GET"`), true
	}
	if json.Unmarshal(msg["api_path"], &path) != nil || path == "" {
		return seedFailure("missing_invalid_api_path", `"api_path" must be a string, such as "/scripts/v1/monitor"`), true
	}
	n, err := strconv.ParseInt(string(msg["api_sequence"]), 10, 64)
	if err != nil {
		return seedFailure("missing_invalid_api_sequence", `"api_sequence" must be a whole number`), true
	}
	seq = n
	fields := make(map[string]json.RawMessage, len(msg))
	for k, v := range msg {
		if k != "api_method" && k != "api_path" && k != "api_sequence" {
			fields[k] = v
		}
	}
	ans, ok := m.route(strings.ToUpper(method), path, seq, fields)
	if ans != nil {
		ans["api_sequence"] = seq
	}
	return ans, ok
}

// route runs the call of method on path, with the call's other members as
// its fields.
func (m *monitor) route(method, path string, seq int64, fields map[string]json.RawMessage) (map[string]any, bool) {
	call, target, ok := socketCall(path)
	switch {
	case !ok:
		return seedFailure("invalid_api_call", "unknown API call "+strconv.Quote(clipName(path))+
			": the calls are run, cancel/{id}, status, status/{id}, monitor, guest/create, guest/list and guest/delete/{id}"), true
	case call != "monitor":
		return m.forwardCall(method, target, fields), true
	case method != http.MethodGet:
		return seedFailure("use_get_request", "a monitor call is a GET"), true
	}
	return m.toggle(fields, seq)
}

// socketCall reads the api_path of a call: the call's name and the path of
// this server that serves it, or false for a path that names no call. As
// the Cloud Storage Server does, it takes "/scripts/<anything>/<call>...";
// the path it returns is one the server's routes serve as it is (no "." or
// ".." segment, no empty one), with the segments escaped again.
func socketCall(apiPath string) (call, target string, ok bool) {
	u, err := url.Parse(apiPath)
	if err != nil {
		return "", "", false
	}
	segs := strings.Split(strings.TrimSuffix(strings.TrimPrefix(u.EscapedPath(), "/"), "/"), "/")
	for i, seg := range segs {
		if segs[i], err = url.PathUnescape(seg); err != nil {
			return "", "", false
		}
	}
	if len(segs) < 3 || segs[0] != "scripts" {
		return "", "", false
	}
	for _, seg := range segs[2:] {
		if seg == "" || seg == "." || seg == ".." {
			return "", "", false
		}
	}
	call, rest := segs[2], segs[3:]
	switch {
	case call == "monitor" && len(rest) == 0,
		call == "run" && len(rest) == 0,
		call == "status" && len(rest) <= 1,
		call == "cancel" && len(rest) == 1,
		call == "guest" && len(rest) == 1 && (rest[0] == "create" || rest[0] == "list"),
		call == "guest" && len(rest) == 2 && rest[0] == "delete":
	default:
		return "", "", false
	}
	target = "/scripts/v1"
	for _, seg := range segs[2:] {
		target += "/" + url.PathEscape(seg)
	}
	return call, target, true
}

// toggle answers a monitor call: it turns watching the name on, with the
// call's sequence, or off when it was on.
func (m *monitor) toggle(fields map[string]json.RawMessage, seq int64) (map[string]any, bool) {
	raw, ok := fields["name"]
	var name string
	if !ok || string(raw) == "null" {
		return seedFailure("missing_name", `the monitor call needs "name": a script, or "" for every script`), true
	}
	if json.Unmarshal(raw, &name) != nil {
		return seedFailure("invalid_name", `"name" must be a string`), true
	}
	if g := m.guest; g != nil && (!g.Monitor || g.Name != "" && name != g.Name) {
		return seedFailure("access_denied", "this key may not watch "+strconv.Quote(clipName(name))), true
	}
	if err := m.s.watchable(name); err != nil {
		return seedFailure("invalid_name", err.Error()), true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, on := m.seqs[name]; on {
		delete(m.seqs, name)
		return map[string]any{"success": true, "name": name, "enabled": false}, true
	}
	if !m.watchingLocked(name) && m.namesLocked() >= m.maxNames {
		return nil, false
	}
	m.seqs[name] = seq
	m.sub.Watch(feed.Script(name))
	return map[string]any{"success": true, "name": name, "enabled": true}, true
}

// forwardCall makes the call as an HTTP request to this server, with the
// upgrade's credentials and the Cloud Storage Server's conventions, and
// returns its answer.
func (m *monitor) forwardCall(method, path string, fields map[string]json.RawMessage) map[string]any {
	var body bytes.Buffer
	if method != http.MethodGet && method != http.MethodHead {
		enc := json.NewEncoder(&body)
		enc.SetEscapeHTML(false) // as sent: "<" in a stdin stays one byte, within the body's limit
		if enc.Encode(fields) != nil {
			return seedFailure("invalid_data", "the call's fields are not JSON")
		}
	}
	r, err := http.NewRequestWithContext(m.ctx, method, path, bytes.NewReader(body.Bytes()))
	if err != nil {
		return seedFailure("invalid_api_call", "the call's method or path is not valid HTTP")
	}
	up := m.req
	r.URL.RawQuery = up.URL.RawQuery // ?apikey=, if that is how the socket was opened
	r.Header = up.Header.Clone()
	for _, h := range []string{"Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version",
		"Sec-Websocket-Extensions", "Sec-Websocket-Protocol", "Content-Length"} {
		r.Header.Del(h)
	}
	if body.Len() > 0 {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Host, r.RemoteAddr, r.TLS = up.Host, up.RemoteAddr, up.TLS
	rec := &callRecorder{header: http.Header{}}
	m.s.http.Handler.ServeHTTP(rec, r)
	if rec.tooLong {
		return seedFailure("too_large", "the answer is larger than a message may be")
	}
	var ans map[string]any
	dec := json.NewDecoder(&rec.body)
	dec.UseNumber()
	if dec.Decode(&ans) != nil || ans == nil {
		m.s.log.Error().Int("status", rec.status).Str("path", path).Msg("an API call over the WebSocket got an answer that is not a JSON object")
		return seedFailure("internal_error", "internal error")
	}
	if _, ok := ans["success"]; !ok { // an answer of another shape (e.g. 501)
		msg, _ := ans["error"].(string)
		return seedFailure("invalid_api_call", msg)
	}
	return ans
}

// callRecorder keeps the answer to a call made over the socket, up to
// maxCallAnswer bytes.
type callRecorder struct {
	header  http.Header
	status  int
	body    bytes.Buffer
	tooLong bool
}

func (rec *callRecorder) Header() http.Header { return rec.header }

func (rec *callRecorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
}

func (rec *callRecorder) Write(p []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	if rec.body.Len()+len(p) > maxCallAnswer {
		rec.tooLong = true
		return 0, errAnswerTooLong
	}
	return rec.body.Write(p)
}

var errAnswerTooLong = errors.New("the answer is too long for a message")

// seedEvent is event e, of a run's start or end, as the Cloud Storage
// Server tells its monitors: the status object of the run, with the
// progress of a run that has just started, or as it ended (from the
// history, or from e when the history has it no longer).
func (m *monitor) seedEvent(e feed.Event) map[string]any {
	if e.State == "running" {
		return map[string]any{"success": true, "id": e.Run, "name": e.Name, "state": "running",
			"task": false, "tasknum": 0, "maxtasks": 1, "taskstart": 0, "subtask": false, "subtaskpercent": 0}
	}
	if m.s.cfg.Runs != nil {
		if run, err := m.s.cfg.Runs.Get(m.ctx, e.Run); err == nil && run.State == store.StateDone {
			st := statusObject(run, 0, "", true)
			st["success"] = true
			return st
		}
	}
	ev := map[string]any{"success": true, "id": e.Run, "name": e.Name, "state": "done", "ended": e.Ended,
		"finished": unixMicro(e.Time), "tasks": []any{}}
	if e.ExitCode != nil {
		ev["exit_code"] = *e.ExitCode
	}
	return ev
}
