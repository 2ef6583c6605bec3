package stream

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"

	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/internal/fdwatch"
)

// Parking a quiet stream.
//
// Most of what a held stream costs is not rexec's: net/http keeps, for every
// connection, a goroutine running the handler (whose stack is as deep as the
// deepest call it ever made), a goroutine reading in the background to notice
// a client that leaves, and about 10 KiB of buffers. A stream that has gone
// quiet for Options.ParkAfter, with its head sent (or a text stream past its
// first MiB or its first second), is taken over (hijacked): the handler
// returns, and the stream is served from then on by one goroutine with a
// 2 KiB stack, waiting on the child's output channel (pump.go) or on its
// pipe (raw.go), and writing HTTP/1.1 chunks itself with no buffer held
// between writes. The client's going away is seen through EPOLLRDHUP on its
// socket, in the one epoll set of package fdwatch, with no goroutine
// reading it.
//
// When the run ends, the trailers are written and the connection goes back
// to the http.Server through a listener of its own (connQueue), so that a
// keep-alive client can send its next request on it as if nothing happened.

// canPark reports whether r's stream could be parked: HTTP/1.1 on a socket
// whose hangup can be watched.
func canPark(r *http.Request) bool {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return false // HTTP/1.0 has no chunks; HTTP/2 is not hijacked
	}
	switch r.Context().Value(connKey{}).(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}

// parkedStream is a run being served off net/http.
type parkedStream struct {
	run   *Run
	conn  net.Conn
	rest  []byte // bytes the client sent after its request (pipelining)
	keep  bool   // the connection may serve another request after this one
	watch *fdwatch.Watch
	gone  chan struct{} // closed when the client hangs up
	wake  func()        // called at the hangup too, to wake a blocked reader
	once  sync.Once

	// One of these serves the stream: the run's output channel (rs, cw),
	// or its pipe read directly (rw).
	rs *runStream
	cw chunkWriter
	rw *rawWriter
}

func (ps *parkedStream) hangup() {
	ps.once.Do(func() {
		close(ps.gone)
		if ps.wake != nil {
			ps.wake()
		}
	})
}

// hijack takes r's connection over from net/http, watches it for the
// client's hangup (which also calls wake, if set) and counts it among the
// parked streams. The caller must then serve it on a goroutine that ends
// with releaseParked. It returns nil, with the response still net/http's,
// when the connection could not be taken.
func (e *Engine) hijack(rc *http.ResponseController, r *http.Request, run *Run, wake func()) *parkedStream {
	e.parkMu.Lock()
	defer e.parkMu.Unlock()
	if e.parked == nil {
		return nil // closing: stay where the shutdown waits for us
	}
	conn, brw, err := rc.Hijack()
	if err != nil {
		return nil
	}
	ps := &parkedStream{run: run, conn: conn, keep: !r.Close, gone: make(chan struct{}), wake: wake}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		ps.rest = append([]byte(nil), b...)
	}

	var werr error
	if sc, ok := conn.(syscall.Conn); ok {
		ps.watch, werr = fdwatch.AddHangup(sc, ps.hangup)
	} else {
		werr = syscall.ENOTSOCK
	}
	if werr != nil {
		// Cannot happen short of the kernel refusing epoll memory. Notice
		// the hangup the way net/http does, by reading; what is read is
		// lost, so the connection is not used again.
		e.log.Warn().Err(werr).Msg("parking a stream: watching its socket failed; reading it instead")
		ps.keep = false
		go func() {
			var b [1]byte
			conn.Read(b[:])
			ps.hangup()
		}()
	}
	e.parked[ps] = struct{}{}
	e.parkWG.Add(1)
	e.opts.Metrics.Parked(1) // and -1 in releaseParked
	e.log.Debug().Str("alias", run.Alias).Int("pid", run.Proc.Pid()).Msg("stream parked")
	return ps
}

// releaseParked gives a parked stream's connection back to the server for
// its next request (ok: the response is complete and the client still
// there) or closes it.
func (e *Engine) releaseParked(ps *parkedStream, ok bool) {
	defer e.parkWG.Done()
	e.opts.Metrics.Parked(-1)
	if ps.watch != nil && !ps.watch.Stop() {
		ok = false // the client hung up (half-closed): nothing more to serve
	}
	e.parkMu.Lock()
	delete(e.parked, ps)
	open := e.parked != nil
	e.parkMu.Unlock()
	if ok && ps.keep && open {
		var c net.Conn = ps.conn
		if len(ps.rest) > 0 {
			c = &prefixConn{Conn: ps.conn, rest: ps.rest}
		}
		e.idleMu.Lock()
		e.idle[c] = struct{}{}
		e.idleMu.Unlock()
		if e.handback.put(c) {
			return
		}
		e.forgetIdle(c)
	}
	ps.conn.Close()
}

// A connection given back to the server is idle until its next request:
// http.Server sees it as new, and a shutdown would wait 5 seconds before
// taking a new connection for an idle one. ConnState forgets it once it is
// active or closed, and closeIdle (Stop) closes the ones still waiting.

func (e *Engine) forgetIdle(c net.Conn) {
	e.idleMu.Lock()
	delete(e.idle, c)
	e.idleMu.Unlock()
}

func (e *Engine) closeIdle() {
	e.idleMu.Lock()
	defer e.idleMu.Unlock()
	for c := range e.idle {
		c.Close()
		delete(e.idle, c)
	}
}

// chunkWriter writes an HTTP/1.1 chunked body straight to a connection.
// Small writes gather in a pooled buffer until Flush sends them as one chunk
// in one write; a large one goes out at once, without a copy, in one writev
// with whatever was gathered. Between flushes it holds no buffer.
type chunkWriter struct {
	conn net.Conn
	buf  *[]byte // nil when empty; the first chunkHeadRoom bytes are the chunk's size line
	size [chunkHeadRoom]byte
}

const (
	chunkHeadRoom = 10      // up to 8 hex digits and CRLF
	directWrite   = 8 << 10 // a write this large is sent without a copy
)

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

var crlf = []byte("\r\n")

func (cw *chunkWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) >= directWrite {
		bufs := net.Buffers{cw.take(), sizeLine(cw.size[:], len(p)), p, crlf}
		_, err := bufs.WriteTo(cw.conn)
		cw.release()
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if cw.buf == nil {
		cw.buf = chunkBufs.Get().(*[]byte)
		*cw.buf = append((*cw.buf)[:0], make([]byte, chunkHeadRoom)...)
	}
	*cw.buf = append(*cw.buf, p...)
	return len(p), nil
}

// take frames what has been gathered as one chunk and returns it (nil when
// nothing has). The buffer stays taken until release.
func (cw *chunkWriter) take() []byte {
	if cw.buf == nil || len(*cw.buf) == chunkHeadRoom {
		return nil
	}
	b := *cw.buf
	var line [chunkHeadRoom]byte
	sl := sizeLine(line[:], len(b)-chunkHeadRoom)
	start := chunkHeadRoom - len(sl)
	copy(b[start:], sl)
	b = append(b, crlf...)
	*cw.buf = b
	return b[start:]
}

func (cw *chunkWriter) release() {
	if cw.buf != nil {
		if cap(*cw.buf) <= 1<<20 {
			chunkBufs.Put(cw.buf)
		}
		cw.buf = nil
	}
}

// Flush sends what has been gathered as one chunk.
func (cw *chunkWriter) Flush() error {
	b := cw.take()
	if b == nil {
		return nil
	}
	_, err := cw.conn.Write(b)
	cw.release()
	return err
}

// end sends what is left, the last chunk and the trailers, in one write.
func (cw *chunkWriter) end(st child.Status) error {
	bufs := net.Buffers{cw.take(), lastChunk(nil, st)}
	_, err := bufs.WriteTo(cw.conn)
	cw.release()
	return err
}

// sizeLine writes n in hex and CRLF into b and returns that part of it.
func sizeLine(b []byte, n int) []byte {
	b = strconv.AppendInt(b[:0], int64(n), 16)
	return append(b, crlf...)
}

// prefixConn gives back the bytes read ahead from a connection before what
// is still in the socket.
type prefixConn struct {
	net.Conn
	rest []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// connQueue is the listener through which connections that served a parked
// stream go back to the http.Server for their next request.
type connQueue struct {
	addr   net.Addr // set by Listen, before the server accepts
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// put hands c to the server; false when the server is closed.
func (q *connQueue) put(c net.Conn) bool {
	select {
	case q.conns <- c:
		return true
	case <-q.closed:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
