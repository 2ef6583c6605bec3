package webapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/stream"
)

// GET /process/attach: an interactive run over a WebSocket, as kubectl exec
// -it is. The request is POST /process's, checked the same way (Host and
// Origin, the token, --scripts-only, --max-procs, a script's -s): only its
// body travels as the socket's first message, and its stdin as messages
// after the start. The protocol:
//
//	client → server, first: text, the POST /process JSON body, without "stdin"
//	server → client: text {"type":"started","alias":...} once the child runs
//	server → client: binary, the output as the child writes it (a terminal's bytes with "tty")
//	client → server: binary, stdin (at most attachMaxStdin bytes a message)
//	client → server: text {"type":"resize","rows":R,"cols":C}, {"type":"eof"},
//	                 {"type":"signal","signal":"INT"}
//	server → client: text {"type":"exit","exit_code":N,"signal":...,"reason":...,"duration_ms":N}, then close 1000
//
// A request refused, before or instead of the start, is a text
// {"type":"error","status":...,"code":...,"error":...} with what POST
// /process would have answered (kindOf), then a close: 1008 for a 4xx, 1013
// when the server sheds load (429, 503), 1011 for another 5xx, 1009 for a
// message over its limit. A control message that cannot be done (an unknown
// type, a signal not in attachSignals, a resize of a run without a
// terminal) gets an error message, and the session goes on. The client
// closing the socket, or vanishing (a ping unanswered), is a disconnect: the
// child's group is killed, as when POST /process's client goes away.
//
// Stdin is flow-controlled: a message is handed to the child's stdin before
// the next message is read, so a run that does not read its stdin holds back
// the client's messages, control ones too. Ctrl-C on a terminal is the byte
// 0x03, typed in like any other.

// attachMaxStdin bounds one stdin message (and any message after the
// start); a larger one ends the session (1009).
const attachMaxStdin = 64 << 10

// attachSignals are the signals a client may send its run.
var attachSignals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "TERM": syscall.SIGTERM,
	"KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "WINCH": syscall.SIGWINCH,
}

// attachMessage is a text message of the client after the start.
type attachMessage struct {
	Type   string `json:"type"`
	Rows   int    `json:"rows"`
	Cols   int    `json:"cols"`
	Signal string `json:"signal"`
}

// attachExit is the last message of a run that ended.
type attachExit struct {
	Type       string `json:"type"` // "exit"
	ExitCode   int    `json:"exit_code"`
	Signal     string `json:"signal,omitempty"`
	Reason     string `json:"reason,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// attachError is an error message: the status, code and message that POST
// /process would answer for the same error (kindOf).
type attachError struct {
	Type   string `json:"type"` // "error"
	Status int    `json:"status"`
	Code   string `json:"code"`
	Error  string `json:"error"`
}

// errMessageTooBig is a message past its limit: the session ends (1009).
var errMessageTooBig = errors.New("message too big")

// errAnswered ends a session before its start with nothing more to say:
// the client has been answered, or is gone.
var errAnswered = errors.New("the client has been answered, or is gone")

// handleAttach is GET /process/attach.
func (s *Server) handleAttach(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: GET upgrades to a WebSocket")
		return
	}
	if !s.attaching() {
		fail(w, s.log, broker.ErrShuttingDown)
		return
	}
	defer s.attached.Done()
	// The Origin was checked for every request (guard.go), with the
	// server's --allowed-origin list, which Accept's own check knows
	// nothing of.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered
	}
	defer c.CloseNow()
	// The first message is a request body: MaxBody, as POST /process's.
	// Each later one is read to attachMaxStdin and one byte more, to tell
	// a message past it; the library's limit is a bound never reached.
	c.SetReadLimit(max(s.cfg.MaxBody, attachMaxStdin) + 1)
	a := &attachSession{s: s, c: c, r: r}
	a.serve()
}

// attaching counts one more session, or refuses it when the server is
// shutting down (Close waits for the sessions it counted).
func (s *Server) attaching() bool {
	s.attachMu.Lock()
	defer s.attachMu.Unlock()
	if s.attachClosed {
		return false
	}
	s.attached.Add(1)
	return true
}

// waitAttached refuses new sessions and waits for the open ones to end:
// their runs end with the broker's shutdown. When ctx ends first, their
// connections are cut (their runs killed as for a disconnect) and waited
// for; it returns ctx's error then.
func (s *Server) waitAttached(ctx context.Context) error {
	s.attachMu.Lock()
	s.attachClosed = true
	s.attachMu.Unlock()
	done := make(chan struct{})
	go func() { s.attached.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.cancelBase() // every session's context: each kills its run and ends
	<-done
	return ctx.Err()
}

// attachSession is one WebSocket of GET /process/attach. The handler's
// goroutine writes every message (serve); a reader goroutine (read) takes
// the client's messages after the start and hands it what to answer.
type attachSession struct {
	s *Server
	c *websocket.Conn
	r *http.Request

	// After the start: the run, its stdin's writer, and what the reader
	// hands the writer.
	proc    *child.Process
	stdin   *io.PipeWriter
	replies chan attachError // an error message, and the session goes on
	readErr chan error       // why reading stopped: the client gone, or errMessageTooBig
}

// serve runs the session: the request, the start, the run, its end.
func (a *attachSession) serve() {
	ctx, cancel := context.WithCancel(a.r.Context())
	defer cancel()
	req, err := a.readRequest(ctx)
	if errors.Is(err, errAnswered) {
		return
	}
	if err != nil {
		a.refuse(err)
		return
	}
	run, stdinR, err := a.start(req)
	if err != nil {
		a.refuse(err)
		return
	}
	defer stdinR.Close() // a feed blocked on it ends with the session
	held := a.s.stream.Hold(run)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		a.read(ctx)
	}()
	st, ok := a.pump(ctx, held)
	a.stdin.CloseWithError(io.ErrClosedPipe) // a write to it blocked in read ends
	// The reader's context ends only after the close: a read whose
	// context ends closes the connection, exit message or not.
	if ok {
		ok = a.write(ctx, websocket.MessageText, exitMessage(st)) == nil
	}
	if ok {
		a.c.Close(websocket.StatusNormalClosure, "")
	} else {
		a.c.CloseNow()
	}
	cancel()
	<-readerDone
}

// readRequest reads and decodes the first message, the request, within
// the time a POST /process body may take (else 408); the server's shutdown
// ends the wait (503). It returns errAnswered once the client has been
// answered, or is gone.
func (a *attachSession) readRequest(ctx context.Context) (*processRequest, error) {
	// A read whose context ends closes the connection (the library's
	// rule), so the wait is ended by an answer from the side, which makes
	// the read fail. Whichever of the two claims the session first speaks.
	var claimed atomic.Bool
	got, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		t := time.NewTimer(a.s.bodyTimeout(a.s.cfg.MaxBody))
		defer t.Stop()
		var err error
		select {
		case <-got:
			return
		case <-t.C:
			err = errBodyTimeout
		case <-a.s.closing:
			err = broker.ErrShuttingDown
		}
		if claimed.CompareAndSwap(false, true) {
			a.refuse(err)
		}
	}()
	typ, body, err := a.readMessage(ctx, a.s.cfg.MaxBody)
	close(got)
	<-watched
	switch {
	case !claimed.CompareAndSwap(false, true):
		return nil, errAnswered // refused by the watch
	case errors.Is(err, errMessageTooBig):
		return nil, &http.MaxBytesError{Limit: a.s.cfg.MaxBody}
	case err != nil:
		return nil, errAnswered // the client is gone
	case typ != websocket.MessageText:
		return nil, badRequestf("the first message is the request, a JSON object as POST /process takes, in a text message")
	}
	req, err := decodeProcessRequest(body)
	if err != nil {
		return nil, err
	}
	if req.Stdin != nil {
		return nil, fieldErrorf("stdin", "field \"stdin\" cannot be used here: stdin travels as binary messages after the start")
	}
	return req, nil
}

// readMessage reads one message of at most limit bytes; a longer one is
// errMessageTooBig, read no further.
func (a *attachSession) readMessage(ctx context.Context, limit int64) (websocket.MessageType, []byte, error) {
	typ, rd, err := a.c.Reader(ctx)
	if err != nil {
		return 0, nil, err
	}
	b, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return 0, nil, err
	}
	if int64(len(b)) > limit {
		return typ, nil, errMessageTooBig
	}
	return typ, b, nil
}

// start starts the request's run, its stdin fed from a pipe that the
// client's messages write, and tells the client.
func (a *attachSession) start(req *processRequest) (*stream.Run, *io.PipeReader, error) {
	s := a.s
	spec, limit, err := s.runSpec(req, false, true)
	if err != nil {
		return nil, nil, err
	}
	stdinR, stdinW := io.Pipe()
	spec.Stdin = stdinR
	proc, err := s.startRequest(a.r, req, limit, spec)
	if err != nil {
		stdinR.Close()
		return nil, nil, err
	}
	a.proc, a.stdin = proc, stdinW
	a.replies, a.readErr = make(chan attachError, 8), make(chan error, 1)
	run := &stream.Run{Proc: proc, Alias: req.Alias, Script: req.Script, Path: spec.Path}
	started, _ := json.Marshal(map[string]string{"type": "started", "alias": req.Alias})
	if err := a.write(a.r.Context(), websocket.MessageText, started); err != nil {
		// The client is gone already: the run ends as a disconnect.
		proc.Kill(child.ReasonDisconnect)
	}
	return run, stdinR, nil
}

// pump is the writer: it sends the run's output as binary messages, the
// reader's error messages, and pings, until the run has been reaped and
// its output sent (true), or the client is gone (false). It returns the
// run's status.
func (a *attachSession) pump(ctx context.Context, held *stream.Held) (child.Status, bool) {
	out, done := a.proc.Output(), a.proc.Done()
	ping := time.NewTicker(a.s.cfg.Heartbeat)
	defer ping.Stop()
	pongs := make(chan error, 1)
	pinging := false
	for out != nil || done != nil {
		var err error
		select {
		case c, ok := <-out:
			if !ok {
				out = nil
				break
			}
			err = a.write(ctx, websocket.MessageBinary, c.Data)
			if err == nil {
				held.Wrote(len(c.Data))
			}
			c.Release()
		case <-done:
			done = nil
		case e := <-a.replies:
			b, _ := json.Marshal(e)
			err = a.write(ctx, websocket.MessageText, b)
		case err = <-a.readErr:
			if errors.Is(err, errMessageTooBig) {
				a.refuse(err)
			}
		case <-ping.C:
			if !pinging {
				pinging = true
				go func() {
					pctx, cancel := context.WithTimeout(ctx, monitorWriteTimeout)
					defer cancel()
					pongs <- a.c.Ping(pctx)
				}()
			}
		case err = <-pongs:
			pinging = false
		}
		if err != nil {
			if pinging {
				a.c.CloseNow() // the ping in flight fails at once
				<-pongs
			}
			return held.End(false), false
		}
	}
	// A ping in flight ends with the close that follows: pongs holds its
	// outcome.
	return held.End(true), true
}

// read is the reader: it hands stdin messages to the run and does the
// control messages, until a read fails or ctx ends.
func (a *attachSession) read(ctx context.Context) {
	for {
		typ, b, err := a.readMessage(ctx, attachMaxStdin)
		if err != nil {
			select {
			case a.readErr <- err:
			case <-ctx.Done():
			}
			return
		}
		var reply error
		if typ == websocket.MessageBinary {
			reply = a.typeIn(b)
		} else {
			reply = a.control(b)
		}
		if reply == nil {
			continue
		}
		status, code, msg := kindOf(reply)
		select {
		case a.replies <- attachError{Type: "error", Status: status, Code: code, Error: msg}:
		case <-ctx.Done():
			return
		}
	}
}

// typeIn hands b to the run's stdin, once the child's feed takes it.
func (a *attachSession) typeIn(b []byte) error {
	if _, err := a.stdin.Write(b); err != nil {
		return badRequestf("stdin has ended: the run takes no more of it")
	}
	return nil
}

// control does one text message of the client: resize, eof or signal.
func (a *attachSession) control(b []byte) error {
	var m attachMessage
	if err := decodeStrict(b, &m); err != nil {
		return err
	}
	switch m.Type {
	case "resize":
		if err := a.proc.Resize(m.Rows, m.Cols); errors.Is(err, os.ErrProcessDone) {
			return badRequestf("the run has ended")
		} else if err != nil {
			return err
		}
		return nil
	case "eof":
		a.stdin.Close()
		return nil
	case "signal":
		sig, ok := attachSignals[strings.TrimPrefix(m.Signal, "SIG")]
		if !ok {
			return fieldErrorf("signal", "signal %q is not one a client may send: HUP, INT, QUIT, TERM, KILL, USR1, USR2 or WINCH", m.Signal)
		}
		if err := a.proc.Signal(sig); err != nil {
			return badRequestf("the run has ended")
		}
		return nil
	}
	return fieldErrorf("type", "message type %q is not one of resize, eof and signal (stdin goes in binary messages)", m.Type)
}

// write sends one message; a failure means the client is gone.
func (a *attachSession) write(ctx context.Context, typ websocket.MessageType, b []byte) error {
	return a.c.Write(ctx, typ, b)
}

// refuse sends err as an error message and closes the socket with the
// code of its status.
func (a *attachSession) refuse(err error) {
	var status int
	var code, msg string
	if errors.Is(err, errMessageTooBig) {
		status, code, msg = http.StatusRequestEntityTooLarge, "too_large",
			fmt.Sprintf("a message after the start is at most %d bytes", attachMaxStdin)
	} else {
		status, code, msg = kindOf(err)
		logRefusal(a.s.log, status, err)
	}
	b, _ := json.Marshal(attachError{Type: "error", Status: status, Code: code, Error: msg})
	if a.write(a.r.Context(), websocket.MessageText, b) != nil {
		return
	}
	a.c.Close(closeCodeOf(status, err), "")
}

// closeCodeOf is the close code of an error message's status.
func closeCodeOf(status int, err error) websocket.StatusCode {
	switch {
	case errors.Is(err, errMessageTooBig), status == http.StatusRequestEntityTooLarge:
		return websocket.StatusMessageTooBig
	case status == http.StatusServiceUnavailable, status == http.StatusTooManyRequests:
		return websocket.StatusTryAgainLater
	case status >= 500:
		return websocket.StatusInternalError
	}
	return websocket.StatusPolicyViolation
}

// exitMessage is the exit message of a run that ended with st.
func exitMessage(st child.Status) []byte {
	b, _ := json.Marshal(attachExit{Type: "exit", ExitCode: st.Code, Signal: st.SignalName(), Reason: string(st.Reason),
		DurationMS: st.Duration.Milliseconds()})
	return b
}
