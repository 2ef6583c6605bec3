package webapi

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/stream"
)

// handleProcess is POST /process: start a child, then stream its output
// until it ends (package stream, which also kills the child's group when
// the client goes away).
func (s *Server) handleProcess(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
		return
	}
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
	proc, err := s.broker.StartIn(req.Alias, limit, spec)
	if errors.Is(err, broker.ErrGroupBusy) {
		err = fmt.Errorf("script %q: %w (its exectab line allows %d at once)", req.Script, err, limit.Max)
	}
	if err != nil {
		fail(w, s.log.With().Str("alias", req.Alias).Logger(), err)
		return nil
	}
	return &stream.Run{Proc: proc, Alias: req.Alias, Script: req.Script, Path: spec.Path,
		NDJSON: ndjson, StdinFailed: stdin.failed()}
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
