package stream

import (
	"net/http"
	"strconv"
	"time"

	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/metrics"
)

// Run is a child started for a request, with what serving its stream needs.
type Run struct {
	Proc *child.Process
	// Alias, Script (empty for an ad-hoc command) and Path name the run in
	// the log line of its end.
	Alias, Script, Path string
	// NDJSON streams one JSON object per line of output, heartbeats and an
	// end object; otherwise the bytes go out as the child wrote them.
	NDJSON bool
	// StdinFailed, for a run whose request body is its live stdin, is
	// closed when reading the body fails: the client is gone. Nil
	// otherwise. Such a stream stays with net/http.
	StdinFailed <-chan struct{}
}

// Serve streams run's output as the response to r until the child has been
// reaped, then sets the trailers and logs the run's end. A client that goes
// away gets the child's group killed (child.ReasonDisconnect) and the rest
// of the output dropped. The stream may outlive Serve: parked, it is served
// off net/http until its end (park.go).
//
// A child started with child.Spec.RawOutput (see RawOutput) has its pipe
// read here (raw.go); any other run is read from its output channel
// (pump.go).
func (e *Engine) Serve(w http.ResponseWriter, r *http.Request, run *Run) {
	e.opts.Metrics.Held(1) // and -1 in endRun
	if pipe := run.Proc.RawPipe(); pipe != nil {
		e.serveRaw(w, r, run, pipe)
		return
	}
	e.servePump(w, r, run)
}

// headerDelay is how long the response head may wait for the child's first
// output or its end, so that a short run goes out in one write (head, body
// and trailers) instead of two. A quiet child's client gets the head then.
const headerDelay = 10 * time.Millisecond

// streamEnd says why a stream's copy returned.
type streamEnd uint8

const (
	streamDone streamEnd = iota // the child is reaped and its output written
	streamGone                  // the client is gone (or a write failed)
	streamPark                  // quiet for ParkAfter (or past rawBulk, rawAge): time to park
)

// The trailers that carry the run's end: written by net/http from the
// header (setTrailers) while the stream is its, by lastChunk once the
// stream is parked.
const (
	trailerExitCode = "Process-Exit-Code"
	trailerSignal   = "Process-Signal"
	// trailerReason is why it ended (child.Reason): exit, timeout, oom...
	trailerReason = "Process-End-Reason"
)

// setStreamHeaders sets the headers of a streamed run's response.
func setStreamHeaders(h http.Header, contentType string) {
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Trailer", trailerExitCode+", "+trailerSignal+", "+trailerReason)
}

// setTrailers sets the run's end in the trailers net/http sends after the
// body.
func setTrailers(h http.Header, st child.Status) {
	h.Set(trailerExitCode, strconv.Itoa(st.Code))
	if st.Signal != 0 {
		h.Set(trailerSignal, st.SignalName())
	}
	h.Set(trailerReason, string(st.Reason))
}

// lastChunk appends the last chunk of a parked stream's response, with the
// run's end in its trailers (as setTrailers sets them), to b.
func lastChunk(b []byte, st child.Status) []byte {
	// In net/http's order: sorted by name.
	b = append(b, "0\r\n"+trailerReason+": "...)
	b = append(b, st.Reason...)
	b = append(b, crlf...)
	b = append(b, trailerExitCode+": "...)
	b = strconv.AppendInt(b, int64(st.Code), 10)
	b = append(b, crlf...)
	if st.Signal != 0 {
		b = append(b, trailerSignal+": "...)
		b = append(b, st.SignalName()...)
		b = append(b, crlf...)
	}
	return append(b, crlf...)
}

// endRun waits for the run's reap and logs how it ended. A client no longer
// there (clientOK false) has its child's group terminated and the rest of
// the output dropped.
func (e *Engine) endRun(run *Run, written int64, clientOK bool) child.Status {
	proc := run.Proc
	if !clientOK {
		proc.Kill(child.ReasonDisconnect)
		if pipe := proc.RawPipe(); pipe != nil {
			pipe.Discard()
		} else {
			proc.Discard()
		}
	}
	st := proc.Wait()
	e.opts.Metrics.Held(-1)
	e.opts.Runs.Ended(metrics.Attached, run.Script, st)
	ev := e.log.Info().
		Str("alias", run.Alias).
		Str("cmd", run.Path)
	if run.Script != "" {
		ev = ev.Str("script", run.Script)
	}
	ev = ev.
		Int("pid", proc.Pid()).
		Int("exit_code", st.Code)
	if st.Signal != 0 {
		ev = ev.Str("signal", st.SignalName())
	}
	ev = ev.Int64("duration_ms", st.Duration.Milliseconds()).
		Int64("bytes", written).
		Str("reason", string(st.Reason))
	st.Usage.Log(ev).Msg("run ended")
	return st
}
