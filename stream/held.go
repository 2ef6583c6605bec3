package stream

import "github.com/rexec/rexec/child"

// Held is the stream of a run that another writer than Serve sends to its
// client (the WebSocket of an interactive run, webapi's attach.go). It is
// counted as any held stream while it lasts, and ends as Serve ends a run:
// a client no longer there has the child's group killed, and the end is
// counted and logged in the run's one log line.
type Held struct {
	e       *Engine
	run     *Run
	written int64
}

// Hold counts run's stream as held, until End.
func (e *Engine) Hold(run *Run) *Held {
	e.opts.Metrics.Held(1) // and -1 in endRun
	return &Held{e: e, run: run}
}

// Wrote counts n bytes of output sent to the client.
func (h *Held) Wrote(n int) {
	h.written += int64(n)
	h.e.opts.Metrics.Wrote(n)
}

// End waits for the run's reap and returns its status, once the writer has
// sent the output (clientOK), or stopped because the client is gone: the
// child's group is then killed (child.ReasonDisconnect) and the rest of its
// output dropped. Call it once.
func (h *Held) End(clientOK bool) child.Status {
	return h.e.endRun(h.run, h.written, clientOK)
}
