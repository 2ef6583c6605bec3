package stream

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/metrics"
)

// The channel path: an NDJSON stream, a text stream that cannot read its
// pipe itself (HTTP/1.0, live stdin, separate stderr, parking off), read
// from the child's output channel. It streams through net/http until it
// has been quiet for ParkAfter, then is parked (park.go) and served by
// serveParked to its end.

// servePump streams a run read from its output channel and logs how it
// ended.
func (e *Engine) servePump(w http.ResponseWriter, r *http.Request, run *Run) {
	stop := context.AfterFunc(r.Context(), func() { run.Proc.Kill(child.ReasonDisconnect) })
	defer stop()

	rs := newRunStream(run, e.opts.Heartbeat, w, e.opts.Metrics)
	h := w.Header()
	setStreamHeaders(h, rs.enc.contentType())
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	// A stream that goes quiet is parked: served from then on without
	// net/http's connection goroutine and buffers, which is most of what a
	// held stream costs. A body still streaming stdin, or a connection of
	// unknown kind, stays here.
	parkAfter := time.Duration(0)
	if run.StdinFailed == nil && canPark(r) {
		parkAfter = e.opts.ParkAfter
	}
	end := rs.pump(rc.Flush, r.Context().Done(), run.StdinFailed, parkAfter)
	if end == streamPark {
		// Past this point only the parked stream watches the client.
		if stop() && e.park(rc, r, run, rs) {
			return
		}
		end = rs.pump(rc.Flush, r.Context().Done(), nil, 0)
	}
	st := e.endRun(run, rs.written, end == streamDone)
	if end == streamDone {
		setTrailers(h, st)
		rs.enc.end(st)
	}
}

// runStream is the state of one run's response while it streams: the same
// on the handler's goroutine and, once parked, on the parked stream's.
type runStream struct {
	proc      *child.Process
	enc       encoder
	ndjson    bool
	heartbeat time.Duration
	out       <-chan child.Chunk // nil once closed
	done      <-chan struct{}    // nil once closed
	// timer is first the head's delay, then (NDJSON) the heartbeat.
	timer    *time.Timer
	headSent bool
	written  int64 // bytes of output written
	metrics  *metrics.Streams
}

func newRunStream(run *Run, heartbeat time.Duration, w io.Writer, m *metrics.Streams) *runStream {
	rs := &runStream{proc: run.Proc, ndjson: run.NDJSON, heartbeat: heartbeat,
		out: run.Proc.Output(), done: run.Proc.Done(), timer: time.NewTimer(headerDelay), metrics: m}
	if run.NDJSON {
		rs.enc = newNDJSONEncoder(w)
	} else {
		rs.enc = &textEncoder{w}
	}
	return rs
}

// pump copies the child's output to the client until the child has been
// reaped, the client is gone, or (parkAfter > 0) the head is out and
// nothing happened for parkAfter. flush pushes what the encoder wrote to
// the client; gone and bodyFailed (either may be nil) say the client left.
func (rs *runStream) pump(flush func() error, gone, bodyFailed <-chan struct{}, parkAfter time.Duration) streamEnd {
	park := parkTimer{after: parkAfter}
	defer park.stop()
	park.arm(rs.headSent)
	for rs.out != nil || rs.done != nil {
		select {
		case c, ok := <-rs.out:
			if !ok {
				rs.out = nil
				break
			}
			if rs.send(c, flush) != nil {
				return streamGone
			}
			rs.rearm(&park)
		case <-rs.done:
			rs.done = nil
		case <-rs.timer.C:
			if rs.tick(flush) != nil {
				return streamGone
			}
			rs.rearm(&park)
		case <-park.c:
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

// send writes c, and with it whatever output is already waiting, and
// flushes it all at once; nothing is held back once the channel is empty.
// The head goes out with the first.
func (rs *runStream) send(c child.Chunk, flush func() error) error {
	err := rs.write(c)
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
		return err
	}
	if !rs.headSent {
		rs.headSent = true
		rs.timer.Stop()
	}
	return nil
}

// tick answers rs.timer: at the head's delay the head goes out before any
// output, and after it (NDJSON) a heartbeat goes out each time.
func (rs *runStream) tick(flush func() error) error {
	var err error
	if rs.headSent {
		err = rs.enc.heartbeat()
	}
	rs.headSent = true
	if err != nil {
		return err
	}
	return flush()
}

// rearm restarts the waits that something sent resets: the heartbeat
// (NDJSON) and the park's.
func (rs *runStream) rearm(park *parkTimer) {
	if rs.ndjson {
		rs.timer.Reset(rs.heartbeat)
	}
	park.arm(rs.headSent)
}

// parkTimer says when a stream whose head is out has been quiet for after;
// with after zero or negative, never.
type parkTimer struct {
	after time.Duration
	t     *time.Timer
	c     <-chan time.Time // t's, nil until armed
}

// arm starts (or restarts) the wait, once the head is out.
func (pt *parkTimer) arm(headSent bool) {
	if pt.after <= 0 || !headSent {
		return
	}
	if pt.t == nil {
		pt.t = time.NewTimer(pt.after)
		pt.c = pt.t.C
	} else {
		pt.t.Reset(pt.after)
	}
}

func (pt *parkTimer) stop() {
	if pt.t != nil {
		pt.t.Stop()
	}
}

func (rs *runStream) write(c child.Chunk) error {
	err := rs.enc.chunk(c)
	rs.written += int64(len(c.Data))
	rs.metrics.Wrote(len(c.Data))
	c.Release()
	return err
}

// park serves the rest of the stream on a goroutine of its own, off
// net/http, writing its chunks with a chunkWriter. It returns false, with
// the response still net/http's, when the connection could not be taken.
func (e *Engine) park(rc *http.ResponseController, r *http.Request, run *Run, rs *runStream) bool {
	ps := e.hijack(rc, r, run, nil)
	if ps == nil {
		return false
	}
	ps.rs = rs
	ps.cw.conn = ps.conn
	rs.enc.setWriter(&ps.cw)
	go e.serveParked(ps)
	return true
}

// serveParked streams a parked run to its end. Its frame is kept small
// (the end is another function's): the stream parks on this goroutine's
// stack, and a 2 KiB stack holds it only if the frames under the park fit
// in about 1 KiB (webapi's TestHeldStreamStacks measures them).
func (e *Engine) serveParked(ps *parkedStream) {
	e.endParked(ps, ps.rs.pump(ps.cw.Flush, ps.gone, nil, 0))
}

// endParked ends a parked run: trailers, log, and the connection back to
// the server or closed.
//
//go:noinline
func (e *Engine) endParked(ps *parkedStream, end streamEnd) {
	st := e.endRun(ps.run, ps.rs.written, end == streamDone)
	ok := end == streamDone
	if ok {
		ok = ps.rs.enc.end(st) == nil && ps.cw.end(st) == nil
	}
	ps.cw.release()
	e.releaseParked(ps, ok)
}
