package webapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rexec/rexec/child"
)

// A text stream on a connection that can be parked reads the child's pipe
// itself (child.Spec.RawOutput) instead of through a pump and a channel:
//
//   - While it is young it runs in the handler: each read is written through
//     net/http at once, and a run that ends within the head's delay goes out
//     in one write, trailers included.
//   - Once it has been quiet for Config.ParkAfter, or has sent rawBulk bytes,
//     it is parked (park.go), and from then on its output goes from the pipe
//     to the socket with splice(2): the bytes never enter rexec's memory,
//     which saves a copy in and a copy out of every byte, and a held stream
//     has no buffer at all.
//
// Chunked framing needs each chunk's size first: FIONREAD says how many
// bytes the pipe holds, the size line goes out with MSG_MORE, and exactly
// that many bytes are spliced after it. When the pipe is empty the chunk is
// closed without MSG_MORE, which pushes everything out: output is coalesced
// while more is waiting and never held back.

// rawBulk is how much output a stream sends through net/http before it is
// parked to be spliced, however chatty it stays.
const rawBulk = 1 << 20

// rawReadSize bounds one read while the stream is in the handler.
const rawReadSize = 128 << 10

var rawBufs = sync.Pool{New: func() any { b := make([]byte, rawReadSize); return &b }}

// aLongTimeAgo is a deadline in the past: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// rawAllowed reports whether a run's text output may be read raw: the
// connection could be parked, and the stream ends nowhere else.
func (s *Server) rawAllowed(r *http.Request, spec child.Spec, ndjson, liveStdin bool) bool {
	return !ndjson && !liveStdin && s.cfg.ParkAfter > 0 && spec.Stderr != child.StderrSeparate && canPark(r)
}

// serveRaw streams a RawOutput run: in the handler while young, parked and
// spliced after.
func (s *Server) serveRaw(w http.ResponseWriter, r *http.Request, run *startedRun) {
	proc := run.proc
	f := proc.OutputFile()
	prc, _ := f.SyscallConn() // a pipe registered with the poller: never fails
	stop := context.AfterFunc(r.Context(), func() {
		proc.Kill(child.ReasonDisconnect)
		f.SetReadDeadline(aLongTimeAgo) // wake the read below
	})
	defer func() { stop() }() // the one in force at the end (see copyRest below)

	h := w.Header()
	setStreamHeaders(h, "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)

	var written int64
	headSent, grown := false, false
	deadline := time.Now().Add(headerDelay)
	end := streamDone
loop:
	for {
		if r.Context().Err() != nil {
			end = streamGone
			break
		}
		f.SetReadDeadline(deadline)
		n, err := waitOutput(prc)
		switch {
		case err == nil:
			if !grown && n >= defaultPipeSize {
				grown = true
				growPipe(prc)
			}
			b := rawBufs.Get().(*[]byte)
			m, _ := f.Read((*b)[:min(n, rawReadSize)])
			var werr error
			if m > 0 {
				if _, werr = w.Write((*b)[:m]); werr == nil {
					werr = rc.Flush()
				}
			}
			rawBufs.Put(b)
			if werr != nil {
				end = streamGone
				break loop
			}
			written += int64(m)
			headSent = true
			deadline = time.Now().Add(s.cfg.ParkAfter)
			if written >= rawBulk {
				end = streamPark
				break loop
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			if r.Context().Err() != nil {
				end = streamGone
				break loop
			}
			if !headSent {
				if rc.Flush() != nil {
					end = streamGone
					break loop
				}
			}
			end = streamPark
			break loop
		default:
			// EOF, or the supervisor closed the pipe: the output is over.
			break loop
		}
	}

	if end == streamPark {
		f.SetReadDeadline(time.Time{})
		if stop() {
			ps := s.hijack(rc, r, run, func() { f.SetReadDeadline(aLongTimeAgo) })
			if ps != nil {
				ps.rw = &rawWriter{prc: prc, written: written, grown: grown}
				if sc, ok := ps.conn.(syscall.Conn); ok {
					ps.rw.src, _ = sc.SyscallConn()
				}
				go s.serveParkedRaw(ps)
				return
			}
		}
		// The client left, or the connection could not be taken (the
		// server is closing): finish here, through net/http, with the
		// disconnect watched again.
		stop = context.AfterFunc(r.Context(), func() {
			proc.Kill(child.ReasonDisconnect)
			f.SetReadDeadline(aLongTimeAgo)
		})
		end = s.copyRest(w, rc, r, f, &written)
	}
	if end == streamDone {
		proc.OutputEnded()
	}
	st := s.endRun(run, written, end == streamDone)
	if end == streamDone {
		h.Set("Process-Exit-Code", strconv.Itoa(st.Code))
		if st.Signal != 0 {
			h.Set("Process-Signal", st.SignalName())
		}
	}
}

// copyRest copies the rest of the output through net/http, for a stream
// that could not be parked.
func (s *Server) copyRest(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, f *os.File, written *int64) streamEnd {
	b := rawBufs.Get().(*[]byte)
	defer rawBufs.Put(b)
	for {
		if r.Context().Err() != nil {
			return streamGone
		}
		n, err := f.Read(*b)
		if n > 0 {
			if _, werr := w.Write((*b)[:n]); werr != nil || rc.Flush() != nil {
				return streamGone
			}
			*written += int64(n)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return streamGone // set by the disconnect
		}
		if err != nil {
			return streamDone
		}
	}
}

// setStreamHeaders sets the headers of a streamed run's response.
func setStreamHeaders(h http.Header, contentType string) {
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Trailer", "Process-Exit-Code, Process-Signal")
}

// (TIOCINQ is FIONREAD under its other name: the bytes a pipe holds.)

// waitOutput waits until the pipe holds output, and returns how many bytes,
// or io.EOF once every writer has closed it and it is empty, or the error
// of its read deadline. It reads nothing.
func waitOutput(prc syscall.RawConn) (int, error) {
	var n int
	var eof bool
	err := prc.Read(func(fd uintptr) bool {
		if avail, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil && avail > 0 {
			n = avail
			return true
		}
		// Empty: at its end (every writer gone), or not yet.
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if k, _ := unix.Poll(pfd, 0); k > 0 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
			if avail, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil && avail > 0 {
				n = avail
				return true
			}
			eof = true
			return true
		}
		return false // wait for the poller
	})
	if err != nil {
		return 0, err
	}
	if eof {
		return 0, io.EOF
	}
	return n, nil
}

// pending is how many bytes the pipe holds now, without waiting.
func pending(prc syscall.RawConn) int {
	n := 0
	prc.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ)
	})
	return n
}

// A pipe found holding a full default buffer (64 KiB) is grown to 1 MiB: a
// fast writer then runs ahead of the reader instead of blocking every
// 64 KiB. A failure (beyond /proc/sys/fs/pipe-max-size) changes nothing.
const (
	defaultPipeSize = 64 << 10
	bigPipeSize     = 1 << 20
)

func growPipe(prc syscall.RawConn) {
	prc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, bigPipeSize) })
}

// rawWriter splices a parked run's pipe into its socket as HTTP/1.1 chunks.
type rawWriter struct {
	prc     syscall.RawConn // the pipe
	src     syscall.RawConn // the socket
	hdr     [24]byte
	open    bool // a chunk's data is out but not its closing CRLF
	grown   bool
	written int64
}

// serveParkedRaw streams a parked raw run to its end; see serveParked for
// why its frame is small.
func (s *Server) serveParkedRaw(ps *parkedStream) {
	s.endParkedRaw(ps, ps.rw.copy(ps.gone))
}

//go:noinline
func (s *Server) endParkedRaw(ps *parkedStream, end streamEnd) {
	ok := end == streamDone
	if ok {
		ps.run.proc.OutputEnded()
	}
	st := s.endRun(ps.run, ps.rw.written, ok)
	if ok {
		ok = ps.rw.end(st) == nil
	}
	s.releaseParked(ps, ok)
}

// copy splices the output to the client until the pipe's end, or until the
// client is gone (its hangup wakes the wait through the read deadline).
func (rw *rawWriter) copy(gone <-chan struct{}) streamEnd {
	if rw.src == nil {
		return streamGone // not a socket: cannot happen, canPark checked
	}
	for {
		n, err := waitOutput(rw.prc)
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

// chunk sends the n bytes the pipe holds as one chunk.
func (rw *rawWriter) chunk(n int) error {
	if !rw.grown && n >= defaultPipeSize {
		rw.grown = true
		growPipe(rw.prc)
	}
	h := rw.hdr[:0]
	if rw.open {
		h = append(h, crlf...)
	}
	h = strconv.AppendInt(h, int64(n), 16)
	h = append(h, crlf...)
	if err := rw.send(h, unix.MSG_MORE); err != nil {
		return err
	}
	if err := rw.splice(n); err != nil {
		return err
	}
	rw.written += int64(n)
	rw.open = true
	if pending(rw.prc) > 0 {
		return nil // the next chunk's size line closes this one
	}
	rw.open = false
	// Sent without MSG_MORE, this pushes out what MSG_MORE held: without
	// it, the kernel kept a quiet stream's last line about 200 ms.
	return rw.send(crlf, 0)
}

// end sends the last chunk and the trailers.
func (rw *rawWriter) end(st child.Status) error {
	b := rw.hdr[:0]
	if rw.open {
		b = append(b, crlf...)
	}
	return rw.send(lastChunk(b, st), 0)
}

// send writes b to the socket with flags, waiting while it is full.
func (rw *rawWriter) send(b []byte, flags int) error {
	var serr error
	err := rw.src.Write(func(fd uintptr) bool {
		for len(b) > 0 {
			n, err := unix.SendmsgN(int(fd), b, nil, nil, flags|unix.MSG_NOSIGNAL)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false // wait for the poller to say writable
			case err != nil:
				serr = err
				return true
			}
			b = b[n:]
		}
		return true
	})
	if err == nil {
		err = serr
	}
	return err
}

// splice moves exactly n bytes, which the pipe holds, to the socket.
func (rw *rawWriter) splice(n int) error {
	var serr error
	cerr := rw.prc.Control(func(pfd uintptr) {
		werr := rw.src.Write(func(sfd uintptr) bool {
			for n > 0 {
				m, err := unix.Splice(int(pfd), nil, int(sfd), nil, n,
					unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE|unix.SPLICE_F_MORE)
				switch {
				case err == unix.EINTR:
					continue
				case err == unix.EAGAIN:
					return false // the socket is full: wait until writable
				case err != nil:
					serr = err
					return true
				case m == 0:
					serr = io.ErrUnexpectedEOF
					return true
				}
				n -= int(m)
			}
			return true
		})
		if serr == nil {
			serr = werr
		}
	})
	if serr == nil {
		serr = cerr
	}
	return serr
}
