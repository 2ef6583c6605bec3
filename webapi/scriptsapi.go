package webapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/store"
)

// The /scripts/v1 API: detached runs of exectab scripts, with the shapes of
// the Cloud Storage Server /scripts extension. Every answer is JSON with
// "success"; an error also has "error" (for people) and "errorcode" (for
// programs).

// methodsHandler answers a method not in methods (HEAD is where GET is)
// with 405 and Allow, in the error shape of /scripts/v1, and passes the
// others to h.
func (s *Server) methodsHandler(methods []string, h http.HandlerFunc) http.HandlerFunc {
	allowed := methods
	if slices.Contains(methods, http.MethodGet) {
		allowed = append(slices.Clip(methods), http.MethodHead)
	}
	allow := strings.Join(allowed, ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(allowed, r.Method) {
			w.Header().Set("Allow", allow)
			code := "method_not_allowed"
			if seedClient(r) {
				code = seedMethodCode(methods)
			}
			writeScriptsError(w, r, http.StatusMethodNotAllowed, code, "method not allowed: use "+strings.Join(methods, " or "))
			return
		}
		h(w, r)
	}
}

// scriptsHandler checks the method (methodsHandler) and that detached runs
// are enabled.
func (s *Server) scriptsHandler(methods []string, h http.HandlerFunc) http.HandlerFunc {
	return s.methodsHandler(methods, func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Runs == nil {
			writeScriptsError(w, r, http.StatusNotFound, "no_scripts", "this server runs no scripts (start it with --scripts FILE)")
			return
		}
		h(w, r)
	})
}

// guestsHandler answers 404 when this server keeps no guest keys, and 403
// when it has no admin token: the guest API is the admin's.
func (s *Server) guestsHandler(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.cfg.Guests == nil:
			writeScriptsError(w, r, http.StatusNotFound, "no_guests", "this server keeps no guest keys")
		case !s.authRequired():
			s.failScripts(w, r, errNoToken)
		default:
			h(w, r)
		}
	}
}

type runScriptRequest struct {
	Name    string         `json:"name"`
	Args    jsontext.Value `json:"args"` // strings (decodeArgs)
	Stdin   *string        `json:"stdin"`
	Queue   int64          `json:"queue"`   // UNIX time to start at; 0: now
	Timeout string         `json:"timeout"` // a Go duration; capped by the script's -t
	// Host and Labels, in a fleet, say where the run must start.
	Host   string   `json:"host"`
	Labels []string `json:"labels"`
}

// maxLabels caps the labels a run may ask for.
const maxLabels = 16

// target checks where a run asks to start.
func (req runScriptRequest) target() (detached.Target, error) {
	t := detached.Target{Host: req.Host, Labels: req.Labels}
	if t.Host != "" {
		if err := fleet.CheckName(t.Host); err != nil {
			return t, fieldErrorf("host", "field \"host\": %v", err)
		}
	}
	if len(t.Labels) > maxLabels {
		return t, fieldErrorf("labels", "field \"labels\": at most %d labels", maxLabels)
	}
	for _, l := range t.Labels {
		if err := fleet.CheckLabel(l); err != nil {
			return t, fieldErrorf("labels", "field \"labels\": %v", err)
		}
	}
	return t, nil
}

func (s *Server) handleRunScript(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r, s.cfg.MaxBody+launch.MaxStdin)
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	var req runScriptRequest
	if err := decodeStrict(body, &req); err != nil {
		s.failScripts(w, r, err)
		return
	}
	if req.Name == "" {
		s.failScripts(w, r, seedAs("missing_name", badRequestf("field \"name\" is required")))
		return
	}
	args, err := decodeArgs(req.Args, seedClient(r))
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	startAt, err := unixTimeField("queue", req.Queue)
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	timeout, err := parseTimeout(req.Timeout)
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	target, err := req.target()
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	if err := allowed(r, canRun, req.Name); err != nil {
		s.failScripts(w, r, err)
		return
	}
	run, pos, err := s.cfg.Runs.Submit(r.Context(), detached.Request{Script: req.Name, Args: args, Stdin: req.Stdin,
		StartAt: startAt, Who: whoOf(r), Timeout: timeout, Target: target})
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	answer := map[string]any{
		"id": run.ID, "name": run.Script, "state": run.State, "queued": run.QueuedAt.Unix(), "position": pos,
	}
	if why := s.cfg.Runs.Waiting(run); why != "" {
		answer["waiting"] = why
	}
	if run.State == store.StateDone {
		answer["ended"] = run.Ended
	}
	writeScripts(w, http.StatusOK, answer)
}

// handleCancelRun cancels a queued run, or stops a running one. A client of
// the Cloud Storage Server gets that server's rule instead: only a queued
// run is cancelled, and a started one is refused (script_running).
func (s *Server) handleCancelRun(w http.ResponseWriter, r *http.Request) {
	seed := seedClient(r)
	run, err := s.cfg.Runs.Get(r.Context(), r.PathValue("id"))
	if err == nil {
		err = allowed(r, canCancel, run.Script)
	}
	if err == nil && seed && run.State == store.StateRunning {
		err = seedAs("script_running", badRequestf("run %s has started: this API cancels only queued runs "+
			"(with Authorization: Bearer instead of X-APIKey, cancel stops a running run)", run.ID))
	}
	if err == nil {
		err = s.cfg.Runs.Cancel(r.Context(), run.ID)
	}
	if seed && (errors.Is(err, store.ErrNotFound) || errors.Is(err, detached.ErrDone)) {
		err = seedAs("script_not_queued_running", err)
	}
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	writeScripts(w, http.StatusOK, map[string]any{})
}

func (s *Server) handleRunStatus(w http.ResponseWriter, r *http.Request) {
	run, err := s.cfg.Runs.Get(r.Context(), r.PathValue("id"))
	if err == nil {
		err = allowed(r, canStatus, run.Script)
	}
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	writeScripts(w, http.StatusOK, s.runStatus(run, seedClient(r)))
}

func (s *Server) handleListRuns(w http.ResponseWriter, r *http.Request) {
	active, err := s.cfg.Runs.Active(r.Context())
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	g := guestOf(r)
	if g != nil && !g.Status {
		s.failScripts(w, r, errForbidden)
		return
	}
	if g != nil && g.Name != "" {
		active = slices.DeleteFunc(active, func(run store.Run) bool {
			return run.Script != g.Name // a guest sees only its script's runs
		})
	}
	if seedClient(r) {
		queued, running := seedRunLists(active)
		writeScripts(w, http.StatusOK, map[string]any{"queued": queued, "running": running})
		return
	}
	queued, running := map[string]any{}, map[string]any{}
	for _, run := range active {
		if run.State == store.StateRunning {
			running[run.ID] = s.runStatus(run, false)
		} else {
			queued[run.ID] = s.runStatus(run, false)
		}
	}
	writeScripts(w, http.StatusOK, map[string]any{"queued": queued, "running": running})
}

// runStatus is a run as the status API shows it (see statusObject).
func (s *Server) runStatus(run store.Run, seed bool) map[string]any {
	var position int
	var waiting string
	if run.State == store.StateQueued {
		position, waiting = s.cfg.Runs.Position(run.ID), s.cfg.Runs.Waiting(run)
	}
	return statusObject(run, position, waiting, seed)
}

// StatusJSON is the JSON of GET /scripts/v1/status/{id}'s answer for run,
// for the status files of --status-dir (detached.Config.StatusJSON).
func StatusJSON(run store.Run, position int, waiting string) ([]byte, error) {
	st := statusObject(run, position, waiting, false)
	st["success"] = true
	return json.Marshal(st)
}

// statusObject is a run as the status API shows it; position and waiting
// are the run's place in its queue and why it waits, while it is queued.
// Times are UNIX seconds, 0 when not (yet) known.
//
// It also has the fields of the Cloud Storage Server's status that rexec's
// own do not cover (seedProgress), and for that server's clients (seed) its
// "started" with microseconds, as that server has it.
func statusObject(run store.Run, position int, waiting string, seed bool) map[string]any {
	unix := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.Unix()
	}
	st := map[string]any{
		"id": run.ID, "name": run.Script, "args": run.Args, "state": run.State, "who": run.Who,
		"queued": unix(run.QueuedAt), "start_at": unix(run.StartAt),
		"started": unix(run.StartedAt), "ended_at": unix(run.EndedAt),
		"progress": map[string]any{
			"task": run.Progress.Task, "task_total": run.Progress.TaskTotal, "task_title": run.Progress.TaskTitle,
			"subtask_percent": run.Progress.SubtaskPercent, "subtask_title": run.Progress.SubtaskTitle,
		},
		"output_size": run.OutputSize,
		"timeout":     run.Timeout.Seconds(),
	}
	if run.State == store.StateQueued {
		st["position"] = position
		st["waiting"] = waiting
	}
	if run.Host != "" {
		st["host"] = run.Host
	}
	if run.OutputTruncated != "" {
		st["output_truncated"] = run.OutputTruncated
	}
	if run.State == store.StateDone {
		st["ended"] = run.Ended
		if run.ExitCode != nil {
			st["exit_code"] = *run.ExitCode
		}
		if run.Signal != "" {
			st["signal"] = run.Signal
		}
		if run.Usage != nil {
			st["usage"] = run.Usage
		}
	}
	if run.Result != nil {
		st["result"] = run.Result
	}
	seedProgress(st, run)
	if seed {
		st["started"] = unixMicro(run.StartedAt)
	}
	return st
}

// seedProgress adds to st, the status object of run, the fields that the
// Cloud Storage Server's applications read: while the run runs, its
// progress as that server counts it (task and subtask false when there is
// none, tasknum from 0, maxtasks at least 1, taskstart 0 before the first
// task); once it is done, when it finished and the tasks it went through.
// Its times are UNIX seconds with microseconds.
func seedProgress(st map[string]any, run store.Run) {
	p := run.Progress
	switch run.State {
	case store.StateRunning:
		st["task"], st["subtask"] = false, false
		if p.Task > 0 {
			st["task"] = p.TaskTitle
		}
		if p.SubtaskTitle != "" || p.SubtaskPercent > 0 {
			st["subtask"] = p.SubtaskTitle
		}
		st["tasknum"] = max(p.Task-1, 0)
		st["maxtasks"] = max(p.TaskTotal, p.Task, 1)
		st["taskstart"] = unixMicro(run.TaskStartedAt)
		st["subtaskpercent"] = p.SubtaskPercent
	case store.StateDone:
		st["finished"] = unixMicro(run.EndedAt)
		tasks := make([]map[string]any, 0, len(run.Tasks))
		for _, t := range run.Tasks {
			tasks = append(tasks, map[string]any{"task": t.Title, "start": unixMicro(t.Start), "end": unixMicro(t.End)})
		}
		st["tasks"] = tasks
	}
}

// unixMicro is t in UNIX seconds with microseconds, 0 for the zero time.
func unixMicro(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixMicro()) / 1e6
}

// Why a follower's reads stop before the run's end.
var (
	errServerClosing = errors.New("server is shutting down")
	errKeyRevoked    = errors.New("the guest key was deleted or expired")
)

// handleRunOutput sends a run's output from byte ?offset=N, ?limit=L bytes
// of it at most. With ?follow=1 it stays open and streams new output until
// the run ends. The header
// Rexec-Output-Offset says where it starts; the trailer Rexec-Output-End
// where it stopped, the offset to resume from.
//
// A client that accepts text/event-stream gets the output as Server-Sent
// Events instead (outputsse.go), each with the offset after it as its id:
// one that reconnects with Last-Event-ID resumes there, with no gap and no
// byte twice.
func (s *Server) handleRunOutput(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var offset int64
	sse := acceptsEventStream(r)
	v, from := r.URL.Query().Get("offset"), "offset"
	if last := r.Header.Get("Last-Event-ID"); sse && last != "" {
		v, from = last, "Last-Event-ID"
	}
	if v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.failScripts(w, r, badRequestf("%s must be a byte offset (0 or more), not %q", from, v))
			return
		}
		offset = n
	}
	follow := r.URL.Query().Get("follow")
	following := follow == "1" || follow == "true"
	var limit int64 = -1 // none
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || following || sse {
			s.failScripts(w, r, badRequestf("limit must be a number of bytes (1 or more), without follow=1 or events, not %q", v))
			return
		}
		limit = n
	}
	if err := s.runAllowed(r, canStatus); err != nil {
		s.failScripts(w, r, err)
		return
	}
	if following {
		closeMonitor, ok := s.admitMonitor(w, r)
		if !ok {
			return
		}
		defer closeMonitor()
	}
	// A follower stops at the server's shutdown (with its trailer: the
	// client resumes from it), and when its guest key is deleted or
	// expires, as the event monitors do.
	ctx, stop := context.WithCancelCause(r.Context())
	defer stop(nil)
	go func() {
		select {
		case <-s.closing:
			stop(errServerClosing)
		case <-ctx.Done():
		}
	}()
	defer s.watchGuest(r, func() { stop(errKeyRevoked) })()
	rd, err := s.cfg.Runs.Output(ctx, id, offset, following)
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	defer rd.Close()
	var out io.Reader = rd
	if limit > 0 {
		out = io.LimitReader(rd, limit)
	}
	if sse {
		s.writeOutputEvents(ctx, w, rd, offset)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Rexec-Output-Offset", strconv.FormatInt(offset, 10))
	h.Set("Trailer", "Rexec-Output-End")
	w.WriteHeader(http.StatusOK)
	pos := offset
	err = copyFlushing(w, out, &pos)
	switch cause := context.Cause(ctx); {
	case err == nil, errors.Is(cause, errServerClosing) && errors.Is(err, errServerClosing):
	case errors.Is(cause, errKeyRevoked):
		// The key may no longer read this output: cut the connection,
		// so the client sees the stream end without its trailer.
		panic(http.ErrAbortHandler)
	default:
		return // the client is gone, or the output could not be read
	}
	h.Set("Rexec-Output-End", strconv.FormatInt(pos, 10))
}

// copyFlushing copies rd to w until rd's EOF, pushing each read to the
// client at once, and counts the bytes written in *pos.
func copyFlushing(w http.ResponseWriter, rd io.Reader, pos *int64) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			*pos += int64(n)
			if ferr := rc.Flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// runAllowed checks the request's guest, if any, against the run {id}.
func (s *Server) runAllowed(r *http.Request, right func(store.Guest) bool) error {
	run, err := s.cfg.Runs.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return allowed(r, right, run.Script)
}

func writeScripts(w http.ResponseWriter, status int, v map[string]any) {
	v["success"] = true
	writeJSON(w, status, v)
}

// writeJSON writes v as a JSON answer that no cache keeps.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
