package webapi

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/stream"
)

// handleProcess is /process: POST starts a run (handleStart), GET lists
// the runs in progress (handleList).
func (s *Server) handleProcess(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		s.handleStart(w, r)
	case http.MethodGet, http.MethodHead:
		s.handleList(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: POST starts a run, GET lists them")
	}
}

// handleStart is POST /process: start a child, then stream its output
// until it ends (package stream, which also kills the child's group when
// the client goes away).
func (s *Server) handleStart(w http.ResponseWriter, r *http.Request) {
	// Starting and streaming are two functions: the start's frame (the
	// decoded request, the child's spec) is gone before a stream that is
	// not parked waits on this goroutine's stack for the whole run
	// (TestHeldStreamStacks measures it).
	if run := s.startRun(w, r); run != nil {
		s.stream.Serve(w, r, run)
	}
}

// startRun decodes the request and starts its child. On failure it answers
// the request itself and returns nil.
//
//go:noinline
func (s *Server) startRun(w http.ResponseWriter, r *http.Request) *stream.Run {
	var (
		req   *processRequest
		stdin *liveStdin // set when the body streams the child's stdin
		err   error
	)
	switch mode := r.Header.Get(stdinHeader); mode {
	case "":
		req, err = s.readProcessRequest(w, r)
	case "stream":
		req, stdin, err = s.readStreamingRequest(w, r)
	default:
		err = badRequestf("header %s: unknown mode %q (the only mode is \"stream\")", stdinHeader, mode)
	}
	if err != nil {
		fail(w, s.log, err)
		return nil
	}
	ndjson := wantsNDJSON(r.Header.Get("Accept"))
	spec, limit, err := s.runSpec(req, ndjson, stdin != nil)
	if err != nil {
		fail(w, s.log, err)
		return nil
	}
	if stdin != nil {
		spec.Stdin = stdin
	}
	spec.RawOutput = s.stream.RawOutput(r, spec, ndjson, stdin != nil)
	proc, err := s.startRequest(r, req, limit, spec)
	if err != nil {
		fail(w, s.log.With().Str("alias", req.Alias).Logger(), err)
		return nil
	}
	return &stream.Run{Proc: proc, Alias: req.Alias, Script: req.Script, Path: spec.Path,
		NDJSON: ndjson, StdinFailed: stdin.failed()}
}

// startRequest starts spec, the run req asks for, as r's client: in the
// slot of its alias, within limit.
func (s *Server) startRequest(r *http.Request, req *processRequest, limit broker.Limit, spec child.Spec) (*child.Process, error) {
	proc, err := s.start(req.Alias, limit, spec, broker.Labels{Command: spec.Path, Script: req.Script, Remote: r.RemoteAddr, Who: whoOf(r)})
	if errors.Is(err, broker.ErrGroupBusy) {
		err = fmt.Errorf("script %q: %w (its exectab line allows %d at once)", req.Script, err, limit.Max)
	}
	return proc, err
}

// start takes alias's slot in the broker and starts spec in it.
func (s *Server) start(alias string, limit broker.Limit, spec child.Spec, labels broker.Labels) (*child.Process, error) {
	slot, err := s.broker.Reserve(alias, limit, labels)
	if err != nil {
		return nil, err
	}
	return slot.Start(spec)
}

// runInfo is one run in progress, as GET /process lists it.
type runInfo struct {
	Alias      string `json:"alias"`
	Cmd        string `json:"cmd"`
	Script     string `json:"script,omitempty"`
	Pid        int    `json:"pid"`
	Started    int64  `json:"started"` // UNIX seconds
	DurationMS int64  `json:"duration_ms"`
	Who        string `json:"who"`    // "" for the admin
	Remote     string `json:"remote"` // the client's address
	// Host is the fleet's host that runs it; "" on a single host.
	Host string `json:"host,omitempty"`
}

// handleList is GET /process: the runs of /process in progress (attached
// runs; detached ones are /scripts/v1's), by alias.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	all := false
	switch v := r.URL.Query().Get("fleet"); v {
	case "", "0", "false":
	case "1", "true":
		all = true
	default:
		fail(w, s.log, badRequestf("query parameter \"fleet\" is 1 or true (the fleet's runs), 0 or false, not %q", v))
		return
	}
	host := ""
	if s.cfg.Fleet != nil {
		host = s.cfg.Fleet.Host()
	}
	runs := s.attachedRuns(host)
	if all && s.cfg.Fleet != nil {
		runs = append(runs, s.fleetRuns(r.Context())...)
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": runs})
}

// attachedRuns are this host's attached runs in progress, each with host.
func (s *Server) attachedRuns(host string) []runInfo {
	now := time.Now()
	runs := []runInfo{}
	for _, in := range s.broker.List() {
		runs = append(runs, runInfo{Alias: in.Alias, Cmd: in.Labels.Command, Script: in.Labels.Script, Pid: in.Pid,
			Started: in.Started.Unix(), DurationMS: now.Sub(in.Started).Milliseconds(),
			Who: in.Labels.Who, Remote: in.Labels.Remote, Host: host})
	}
	return runs
}

// handleStop is DELETE /process/{alias}: terminate a run in progress (its
// group gets SIGTERM, then SIGKILL after the kill grace). Its client's
// stream ends as the run does, with the reason "cancelled".
func (s *Server) handleStop(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodDelete {
		w.Header().Set("Allow", http.MethodDelete)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: use DELETE")
		return
	}
	alias := r.PathValue("alias")
	if err := validAlias(alias); err != nil {
		fail(w, s.log, err)
		return
	}
	if err := s.broker.Stop(alias, child.ReasonCancelled); err != nil {
		fail(w, s.log, err)
		return
	}
	s.log.Info().Str("alias", alias).Str("remote", r.RemoteAddr).Msg("run stopped by request")
	writeJSON(w, http.StatusOK, map[string]any{"alias": alias, "stopping": true})
}

// wantsNDJSON reports whether the Accept header asks for application/x-ndjson.
func wantsNDJSON(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == "application/x-ndjson" {
			return true
		}
	}
	return false
}
