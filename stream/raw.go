package stream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/metrics"
)

// The pipe path: a text stream on a connection that can be parked reads the
// child's pipe itself (child.Spec.RawOutput and child.Pipe, see RawOutput)
// instead of through a pump goroutine and a channel:
//
//   - While it is young it runs in the handler: each read is written through
//     net/http at once, and a run that ends within the head's delay goes out
//     in one write, trailers included.
//   - Once it has been quiet for ParkAfter, or has sent rawBulk bytes, or has
//     run for rawAge, it is parked (park.go): a goroutine with a 2 KiB stack
//     waits for the pipe to be readable, holding no buffer, then reads what
//     the pipe holds (up to 1 MiB, the size of a grown pipe) and sends it as
//     one chunk, size line, data and CRLF in one writev. Nothing is held
//     back: each read is sent at once, and a fast writer's output is
//     coalesced by the pipe.
//
// splice(2) from the pipe to the socket was tried for the parked copy: it
// halved rexec's CPU per byte, but on loopback the client and the writer
// paid more than that back (2 GB of lines: 1,070-1,290 MB/s against 1,720-
// 1,890 MB/s with a copy), so the copy stayed.

// RawOutput reports whether a run may be started with child.Spec.RawOutput,
// its output read from its pipe by the stream instead of through a pump
// and a channel (raw.go): a text stream whose connection could be parked,
// and whose stream ends nowhere else (no live stdin, no separate stderr).
// A terminal is never read so: its end is an EIO, not a pipe's EOF.
func (e *Engine) RawOutput(r *http.Request, spec child.Spec, ndjson, liveStdin bool) bool {
	return !ndjson && !liveStdin && !spec.TTY && e.opts.ParkAfter > 0 && spec.Stderr != child.StderrSeparate && canPark(r)
}

// rawBulk is how much output a stream sends through net/http, and rawAge how
// long it stays there, before it is parked however chatty it stays: a build
// printing a line every few milliseconds for an hour is parked after a
// second, not kept on net/http's memory.
const (
	rawBulk = 1 << 20
	rawAge  = time.Second
)

// rawReadSize bounds one read while the stream is in the handler.
const rawReadSize = 128 << 10

// copyBufSize is the most a parked stream reads and sends at once.
const copyBufSize = 1 << 20

var rawBufs = sync.Pool{New: func() any { b := make([]byte, rawReadSize); return &b }}

// aLongTimeAgo is a deadline in the past: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// serveRaw streams a RawOutput run, whose pipe is pipe: in the handler while
// young, parked after.
func (e *Engine) serveRaw(w http.ResponseWriter, r *http.Request, run *Run, pipe *child.Pipe) {
	proc := run.Proc
	disconnected := func() {
		proc.Kill(child.ReasonDisconnect)
		pipe.SetReadDeadline(aLongTimeAgo) // wake the read
	}
	stop := context.AfterFunc(r.Context(), disconnected)
	defer func() { stop() }() // the one in force at the end (see copyRest below)

	h := w.Header()
	setStreamHeaders(h, "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)

	written, end := e.copyYoung(w, rc, r, pipe)
	if end == streamPark {
		pipe.SetReadDeadline(time.Time{})
		if stop() && e.parkRaw(rc, r, run, pipe, written) {
			return
		}
		// The client left, or the connection could not be taken (the
		// server is closing): finish here, through net/http, with the
		// disconnect watched again.
		stop = context.AfterFunc(r.Context(), disconnected)
		end = e.copyRest(w, rc, r, pipe, &written)
	}
	if end == streamDone {
		pipe.End()
	}
	st := e.endRun(run, written, end == streamDone)
	if end == streamDone {
		setTrailers(h, st)
	}
}

// copyYoung streams the output through net/http while the stream is young,
// each read written and flushed at once, and returns how much it wrote and
// why it stopped: the output is over, the client is gone, or it is time to
// park (quiet for ParkAfter with the head sent, past rawBulk or rawAge). A
// run that ends within the head's delay goes out in one write.
func (e *Engine) copyYoung(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, pipe *child.Pipe) (written int64, end streamEnd) {
	headSent := false
	started := time.Now()
	deadline := started.Add(headerDelay)
	for r.Context().Err() == nil {
		pipe.SetReadDeadline(deadline)
		n, err := pipe.Wait()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Quiet, or woken by the disconnect. The head goes out now
			// if it has not.
			if r.Context().Err() != nil || !headSent && rc.Flush() != nil {
				return written, streamGone
			}
			return written, streamPark
		}
		if err != nil {
			return written, streamDone // EOF, or the supervisor closed the pipe
		}
		m, err := writeWaiting(w, rc, pipe, n)
		if err != nil {
			return written, streamGone
		}
		written += int64(m)
		e.opts.Metrics.Wrote(m)
		headSent = true
		deadline = time.Now().Add(e.opts.ParkAfter)
		if written >= rawBulk || time.Since(started) >= rawAge {
			return written, streamPark
		}
	}
	return written, streamGone
}

// writeWaiting reads up to n bytes that the pipe holds (rawReadSize at
// most), writes them through net/http and flushes them.
func writeWaiting(w http.ResponseWriter, rc *http.ResponseController, pipe *child.Pipe, n int) (int, error) {
	b := rawBufs.Get().(*[]byte)
	defer rawBufs.Put(b)
	m, _ := pipe.Read((*b)[:min(n, rawReadSize)])
	if m == 0 {
		return 0, nil
	}
	if _, err := w.Write((*b)[:m]); err != nil {
		return 0, err
	}
	return m, rc.Flush()
}

// copyRest copies the rest of the output through net/http, for a stream
// that could not be parked.
func (e *Engine) copyRest(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, pipe *child.Pipe, written *int64) streamEnd {
	b := rawBufs.Get().(*[]byte)
	defer rawBufs.Put(b)
	for {
		if r.Context().Err() != nil {
			return streamGone
		}
		n, err := pipe.Read(*b)
		if n > 0 {
			if _, werr := w.Write((*b)[:n]); werr != nil || rc.Flush() != nil {
				return streamGone
			}
			*written += int64(n)
			e.opts.Metrics.Wrote(n)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return streamGone // set by the disconnect
		}
		if err != nil {
			return streamDone
		}
	}
}

// parkRaw serves the rest of a raw stream on a goroutine of its own, off
// net/http, reading the pipe and writing the chunks with a rawWriter. It
// returns false, with the response still net/http's, when the connection
// could not be taken.
func (e *Engine) parkRaw(rc *http.ResponseController, r *http.Request, run *Run, pipe *child.Pipe, written int64) bool {
	ps := e.hijack(rc, r, run, func() { pipe.SetReadDeadline(aLongTimeAgo) })
	if ps == nil {
		return false
	}
	ps.rw = &rawWriter{pipe: pipe, conn: ps.conn, written: written, metrics: e.opts.Metrics}
	go e.serveParkedRaw(ps)
	return true
}

// serveParkedRaw streams a parked raw run to its end; see serveParked for
// why its frame is small.
func (e *Engine) serveParkedRaw(ps *parkedStream) {
	e.endParkedRaw(ps, ps.rw.copy(ps.gone))
}

// endParkedRaw ends a parked raw run: trailers, log, and the connection
// back to the server or closed.
//
//go:noinline
func (e *Engine) endParkedRaw(ps *parkedStream, end streamEnd) {
	ok := end == streamDone
	if ok {
		ps.rw.pipe.End()
	}
	st := e.endRun(ps.run, ps.rw.written, ok)
	if ok {
		ok = ps.rw.end(st) == nil
	}
	e.releaseParked(ps, ok)
}

// rawWriter copies a parked run's pipe to its socket as HTTP/1.1 chunks.
type rawWriter struct {
	pipe    *child.Pipe
	conn    net.Conn
	hdr     [64]byte
	written int64
	metrics *metrics.Streams
}

// copy copies the output to the client until the pipe's end, or until the
// client is gone (its hangup wakes the wait through the read deadline).
func (rw *rawWriter) copy(gone <-chan struct{}) streamEnd {
	for {
		n, err := rw.pipe.Wait()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return streamGone
		}
		if err != nil {
			return streamDone // EOF, or the pipe closed by the supervisor
		}
		if err := rw.chunk(n); err != nil {
			return streamGone
		}
		select {
		case <-gone:
			return streamGone
		default:
		}
	}
}

// chunk reads up to n bytes the pipe holds and sends them as one chunk, in
// one writev.
func (rw *rawWriter) chunk(n int) error {
	b := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(b)
	m, err := rw.pipe.Read((*b)[:min(n, len(*b))])
	if m == 0 {
		return err
	}
	h := rw.hdr[:0]
	h = strconv.AppendInt(h, int64(m), 16)
	h = append(h, crlf...)
	bufs := net.Buffers{h, (*b)[:m], crlf}
	if _, err := bufs.WriteTo(rw.conn); err != nil {
		return err
	}
	rw.written += int64(m)
	rw.metrics.Wrote(m)
	return nil
}

// copyBufs are the parked streams' read buffers, taken only while there is
// output to copy: a quiet stream holds none. 1 MiB, the size of a grown
// pipe: a fast stream goes out in few, large chunks (measured on 2 GB of
// 100-byte lines: 1,890 MB/s with 1 MiB reads, 1,590-1,730 with 256 KiB,
// against 1,600-1,700 before parking). A client that reads slowly holds
// one while its write waits, as it held 8 chunks of 128 KiB before.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// end sends the last chunk and the trailers.
func (rw *rawWriter) end(st child.Status) error {
	_, err := rw.conn.Write(lastChunk(rw.hdr[:0], st))
	return err
}
