package webapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/child"
)

// handleProcess is POST /process: start a child and stream its output until
// it ends; the client going away kills the child's group.
func (s *Server) handleProcess(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
		return
	}
	// Starting and streaming are two functions: the start's frame (the
	// decoded request, the child's spec) is gone before the stream parks on
	// this goroutine's stack for the whole run.
	run := s.startRun(w, r)
	switch {
	case run == nil:
	case run.raw:
		s.serveRaw(w, r, run)
	default:
		s.serveRun(w, r, run)
	}
}

// startedRun is a child started for a request, with what serving it needs.
type startedRun struct {
	alias, script, path string
	proc                *child.Process
	stdin               *liveStdin
	ndjson              bool
	raw                 bool // the output is read from its pipe (raw.go)
}

// startRun decodes the request and starts its child. On failure it answers
// the request itself and returns nil.
//
//go:noinline
func (s *Server) startRun(w http.ResponseWriter, r *http.Request) *startedRun {
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
	spec.RawOutput = s.rawAllowed(r, spec, ndjson, stdin != nil)
	proc, err := s.broker.StartIn(req.Alias, limit, spec)
	if errors.Is(err, broker.ErrGroupBusy) {
		err = fmt.Errorf("script %q: %w (its exectab line allows %d at once)", req.Script, err, limit.Max)
	}
	if err != nil {
		fail(w, s.log.With().Str("alias", req.Alias).Logger(), err)
		return nil
	}
	return &startedRun{alias: req.Alias, script: req.Script, path: spec.Path, proc: proc, stdin: stdin, ndjson: ndjson, raw: spec.RawOutput}
}

// serveRun streams a started run to its client and logs how it ended.
func (s *Server) serveRun(w http.ResponseWriter, r *http.Request, run *startedRun) {
	stop := context.AfterFunc(r.Context(), func() { run.proc.Kill(child.ReasonDisconnect) })
	defer stop()

	rs := newRunStream(run, s.cfg.Heartbeat, w)
	h := w.Header()
	setStreamHeaders(h, rs.enc.contentType())
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	// A stream that goes quiet is parked (park.go): served from then on
	// without net/http's connection goroutine and buffers, which is most
	// of what a held stream costs. A body still streaming stdin, or a
	// connection of unknown kind, stays here.
	parkAfter := time.Duration(0)
	if run.stdin == nil && canPark(r) {
		parkAfter = s.cfg.ParkAfter
	}
	end := rs.pump(rc.Flush, r.Context().Done(), run.stdin.failed(), parkAfter)
	if end == streamPark {
		// Past this point only the parked stream watches the client.
		if stop() && s.park(rc, r, run, rs) {
			return
		}
		end = rs.pump(rc.Flush, r.Context().Done(), nil, 0)
	}
	st := s.endRun(run, rs.written, end == streamDone)
	if end == streamDone {
		h.Set("Process-Exit-Code", strconv.Itoa(st.Code))
		if st.Signal != 0 {
			h.Set("Process-Signal", st.SignalName())
		}
		rs.enc.end(st)
	}
}

// endRun waits for the run's reap and logs how it ended. A client no longer
// there (clientOK false) has its child's group terminated and the rest of
// the output dropped.
func (s *Server) endRun(run *startedRun, written int64, clientOK bool) child.Status {
	proc := run.proc
	if !clientOK {
		proc.Kill(child.ReasonDisconnect)
		proc.Discard()
	}
	st := proc.Wait()
	ev := s.log.Info().
		Str("alias", run.alias).
		Str("cmd", run.path)
	if run.script != "" {
		ev = ev.Str("script", run.script)
	}
	ev = ev.
		Int("pid", proc.Pid()).
		Int("exit_code", st.Code)
	if st.Signal != 0 {
		ev = ev.Str("signal", st.SignalName())
	}
	ev.Int64("duration_ms", st.Duration.Milliseconds()).
		Int64("bytes", written).
		Str("reason", string(st.Reason)).
		Msg("run ended")
	return st
}

// headerDelay is how long the response head may wait for the child's first
// output or its end, so that a short run goes out in one write (head, body
// and trailers) instead of two. A quiet child's client gets the head then.
const headerDelay = 10 * time.Millisecond

// runStream is the state of one run's response while it streams: the same
// on the handler's goroutine and, once parked, on the parked stream's.
type runStream struct {
	proc      *child.Process
	enc       streamEncoder
	ndjson    bool
	heartbeat time.Duration
	out       <-chan child.Chunk // nil once closed
	done      <-chan struct{}    // nil once closed
	// timer is first the head's delay, then (NDJSON) the heartbeat.
	timer    *time.Timer
	headSent bool
	written  int64 // bytes of output written
}

func newRunStream(run *startedRun, heartbeat time.Duration, w io.Writer) *runStream {
	rs := &runStream{proc: run.proc, ndjson: run.ndjson, heartbeat: heartbeat,
		out: run.proc.Output(), done: run.proc.Done(), timer: time.NewTimer(headerDelay)}
	if run.ndjson {
		rs.enc = newNDJSONEncoder(w)
	} else {
		rs.enc = &textEncoder{w}
	}
	return rs
}

// streamEnd says why pump returned.
type streamEnd uint8

const (
	streamDone streamEnd = iota // the child is reaped and its output written
	streamGone                  // the client is gone (or a write failed)
	streamPark                  // quiet for parkAfter: time to park
)

// pump copies the child's output to the client until the child has been
// reaped, the client is gone, or (parkAfter > 0) the head is out and
// nothing happened for parkAfter. flush pushes what the encoder wrote to
// the client; gone and bodyFailed (either may be nil) say the client left.
func (rs *runStream) pump(flush func() error, gone, bodyFailed <-chan struct{}, parkAfter time.Duration) streamEnd {
	var parkC <-chan time.Time
	var park *time.Timer
	armPark := func() {
		if parkAfter <= 0 || !rs.headSent {
			return
		}
		if park == nil {
			park = time.NewTimer(parkAfter)
			parkC = park.C
		} else {
			park.Reset(parkAfter)
		}
	}
	defer func() {
		if park != nil {
			park.Stop()
		}
	}()
	armPark()
	rearm := func() {
		if rs.ndjson {
			rs.timer.Reset(rs.heartbeat)
		}
		armPark()
	}
	for rs.out != nil || rs.done != nil {
		select {
		case c, ok := <-rs.out:
			if !ok {
				rs.out = nil
				break
			}
			err := rs.write(c)
			// Coalesce what is already waiting into the same flush; never
			// hold anything back once the channel is empty.
		more:
			for err == nil {
				select {
				case c, ok := <-rs.out:
					if !ok {
						rs.out = nil
						break more
					}
					err = rs.write(c)
				default:
					break more
				}
			}
			if err == nil {
				err = flush()
			}
			if err != nil {
				return streamGone
			}
			if !rs.headSent {
				rs.headSent = true
				rs.timer.Stop()
			}
			rearm()
		case <-rs.done:
			rs.done = nil
		case <-rs.timer.C:
			var err error
			if rs.headSent {
				err = rs.enc.heartbeat()
			}
			rs.headSent = true
			if err == nil {
				err = flush()
			}
			if err != nil {
				return streamGone
			}
			rearm()
		case <-parkC:
			return streamPark
		case <-gone:
			return streamGone
		case <-bodyFailed:
			return streamGone
		}
	}
	rs.timer.Stop()
	return streamDone
}

func (rs *runStream) write(c child.Chunk) error {
	err := rs.enc.chunk(c)
	rs.written += int64(len(c.Data))
	c.Release()
	return err
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

// streamEncoder writes a run's output in one of the response formats.
type streamEncoder interface {
	contentType() string
	// setWriter moves the encoder to another writer (when a stream parks).
	setWriter(io.Writer)
	chunk(child.Chunk) error
	heartbeat() error
	end(child.Status) error
}

// textEncoder passes the bytes through exactly as the child wrote them;
// the end of the run is in the trailers.
type textEncoder struct{ w io.Writer }

func (*textEncoder) contentType() string     { return "text/plain; charset=utf-8" }
func (e *textEncoder) setWriter(w io.Writer) { e.w = w }
func (e *textEncoder) chunk(c child.Chunk) error {
	_, err := e.w.Write(c.Data)
	return err
}
func (*textEncoder) heartbeat() error       { return nil }
func (*textEncoder) end(child.Status) error { return nil }

// maxNDJSONLine bounds the part of a line held while waiting for its newline.
// A longer line is sent in pieces marked "partial":true, to be joined by the
// client, so memory stays bounded whatever the child writes.
const maxNDJSONLine = 64 << 10

// ndjsonEncoder writes one JSON object per line of output.
type ndjsonEncoder struct {
	enc     *json.Encoder
	pending [2][]byte // an unterminated line, per stream
}

type ndjsonLine struct {
	Stream  string `json:"stream"`
	Line    string `json:"line"`
	Partial bool   `json:"partial,omitempty"`
}

type ndjsonEnd struct {
	ExitCode   int    `json:"exit_code"`
	Signal     string `json:"signal,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Reason     string `json:"reason"`
}

func newNDJSONEncoder(w io.Writer) *ndjsonEncoder {
	e := &ndjsonEncoder{}
	e.setWriter(w)
	return e
}

func (e *ndjsonEncoder) setWriter(w io.Writer) {
	e.enc = json.NewEncoder(w)
	e.enc.SetEscapeHTML(false)
}

func (*ndjsonEncoder) contentType() string { return "application/x-ndjson" }

func (e *ndjsonEncoder) chunk(c child.Chunk) error {
	s := c.Stream
	data := c.Data
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(e.pending[s])+len(data) > maxNDJSONLine {
				err := e.line(s, append(e.pending[s], data...), true)
				e.pending[s] = e.pending[s][:0]
				return err
			}
			e.pending[s] = append(e.pending[s], data...)
			return nil
		}
		line := data[:i]
		data = data[i+1:]
		if len(e.pending[s]) > 0 {
			line = append(e.pending[s], line...)
			e.pending[s] = e.pending[s][:0]
		}
		if err := e.line(s, line, false); err != nil {
			return err
		}
	}
	return nil
}

func (e *ndjsonEncoder) line(s child.Stream, b []byte, partial bool) error {
	return e.enc.Encode(ndjsonLine{Stream: s.String(), Line: string(b), Partial: partial})
}

func (e *ndjsonEncoder) heartbeat() error {
	return e.enc.Encode(struct {
		Heartbeat bool `json:"heartbeat"`
	}{true})
}

func (e *ndjsonEncoder) end(st child.Status) error {
	// A last line without its newline goes out as a piece ("partial"):
	// no piece follows it, so a client that joins pieces reproduces the
	// output exactly, unterminated last line included.
	for s := range e.pending {
		if len(e.pending[s]) > 0 {
			if err := e.line(child.Stream(s), e.pending[s], true); err != nil {
				return err
			}
			e.pending[s] = nil
		}
	}
	return e.enc.Encode(ndjsonEnd{
		ExitCode:   st.Code,
		Signal:     st.SignalName(),
		DurationMS: st.Duration.Milliseconds(),
		Reason:     string(st.Reason),
	})
}
