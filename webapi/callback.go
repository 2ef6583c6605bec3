package webapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/rexec/rexec/detached"
)

// maxCallbackBody bounds a result or progress posted by a script.
const maxCallbackBody = 64 << 10

// isCallback reports whether path is one of the callback endpoints, which a
// running script calls with its own run token instead of the server's.
func isCallback(path string) bool {
	return strings.HasPrefix(path, "/scripts/v1/result/") || strings.HasPrefix(path, "/scripts/v1/progress/") || path == xmlrpcPath
}

// handlePostResult is POST /scripts/v1/result/{id}: a running script posts a
// JSON object as its run's result, with Authorization: Bearer
// $REXEC_RUN_TOKEN.
func (s *Server) handlePostResult(w http.ResponseWriter, r *http.Request) {
	body, ok := s.callbackBody(w, r)
	if !ok {
		return
	}
	if err := s.cfg.Runs.PostResult(r.Context(), r.PathValue("id"), bearer(r), body); err != nil {
		s.failScripts(w, r, err)
		return
	}
	writeScripts(w, http.StatusOK, map[string]any{})
}

// handlePostProgress is POST /scripts/v1/progress/{id}: a running script sets
// its task and subtask without printing lines.
func (s *Server) handlePostProgress(w http.ResponseWriter, r *http.Request) {
	body, ok := s.callbackBody(w, r)
	if !ok {
		return
	}
	// The fields given change the run's progress; the others keep theirs.
	var p struct {
		Task           *int    `json:"task"`
		TaskTotal      *int    `json:"task_total"`
		TaskTitle      *string `json:"task_title"`
		SubtaskPercent *int    `json:"subtask_percent"`
		SubtaskTitle   *string `json:"subtask_title"`
	}
	if err := decodeStrict(body, &p); err != nil {
		s.failScripts(w, r, err)
		return
	}
	neg := func(n *int) bool { return n != nil && *n < 0 }
	if neg(p.Task) || neg(p.TaskTotal) || neg(p.SubtaskPercent) || (p.SubtaskPercent != nil && *p.SubtaskPercent > 100) {
		s.failScripts(w, r, badRequestf("task and task_total must be 0 or more, subtask_percent 0 to 100"))
		return
	}
	if err := s.cfg.Runs.PostProgress(r.Context(), r.PathValue("id"), bearer(r), detached.ProgressPatch(p)); err != nil {
		s.failScripts(w, r, err)
		return
	}
	writeScripts(w, http.StatusOK, map[string]any{})
}

// callbackBody reads a callback's body: a JSON object of at most 64 KiB.
func (s *Server) callbackBody(w http.ResponseWriter, r *http.Request) (json.RawMessage, bool) {
	body, err := s.readBody(w, r, maxCallbackBody)
	if err != nil {
		s.failScripts(w, r, err)
		return nil, false
	}
	body = bytes.TrimSpace(body)
	var obj map[string]json.RawMessage
	if len(body) == 0 || body[0] != '{' || json.Unmarshal(body, &obj) != nil {
		s.failScripts(w, r, badRequestf("the body must be a JSON object"))
		return nil, false
	}
	return json.RawMessage(body), true
}

// bearer is the run token a callback carries.
func bearer(r *http.Request) string {
	t, _ := credential(r, false)
	return t
}
