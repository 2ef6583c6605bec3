package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// An attached run: GET /process/attach upgrades to a WebSocket that carries
// the run both ways, for a person at a terminal (rexec run -it).
//
//	client → server  text   the request, as the body of POST /process (no stdin)
//	server → client  text   {"type":"started","alias":"..."}
//	server → client  binary output bytes (a terminal's: stdout and stderr as one)
//	client → server  binary stdin bytes, at most 64 KiB a message
//	client → server  text   {"type":"resize","rows":R,"cols":C}, {"type":"eof"},
//	                        {"type":"signal","signal":"INT"}
//	server → client  text   {"type":"exit","exit_code":N,"signal":"SIGTERM","reason":"...","duration_ms":N},
//	                        then a close with 1000
//
// A refusal is {"type":"error","status":409,"code":"alias_running","error":"..."}
// then a close; after the start, the same message says that a control
// message could not be done, and the session goes on. Closing the socket is
// a disconnect: the server kills the command.

// maxStdinMessage is the most stdin bytes one message carries: Write splits
// larger writes.
const maxStdinMessage = 64 << 10

// maxControlMessage bounds the text messages read from the server.
const maxControlMessage = 64 << 10

// Signals are the names Session.Signal sends: the signals the server
// delivers to an attached command.
var Signals = []string{"HUP", "INT", "QUIT", "TERM", "KILL", "USR1", "USR2", "WINCH"}

// Session is an attached run: its output is read with Read, its stdin
// written with Write, and its terminal resized and signalled while it runs.
// Read and Wait are for one goroutine at a time; Write, Resize, Signal,
// CloseStdin and Close may be called from any goroutine, during a Read.
type Session struct {
	// Alias is the run's alias on the server.
	Alias string

	conn   *websocket.Conn
	parent context.Context    // the caller's context
	ctx    context.Context    // the connection's: the parent's, until Close
	cancel context.CancelFunc // ends ctx: closes the connection
	closed atomic.Bool
	ended  atomic.Bool // the end came, or the session was lost
	// refusal is the server's last error message after the start.
	refusal atomic.Pointer[ServerError]

	// The reading side, Read's and Wait's.
	msg    io.Reader // the output message being read, or nil
	status Status    // the end, once err is io.EOF
	err    error     // sticky: io.EOF after the end, or why it was lost
}

// wireMessage is a text message, either way.
type wireMessage struct {
	Type string `json:"type"`

	Alias string `json:"alias,omitempty"` // started

	ExitCode   *int   `json:"exit_code,omitempty"` // exit
	Signal     string `json:"signal,omitempty"`    // exit; signal, to the server
	Reason     string `json:"reason,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`

	Status int    `json:"status,omitempty"` // error
	Code   string `json:"code,omitempty"`
	Error  string `json:"error,omitempty"`

	Rows int `json:"rows,omitempty"` // resize
	Cols int `json:"cols,omitempty"`
}

// Attach starts a run attached to a WebSocket, with spec.TTY on a terminal
// of its own, and returns once the server has started it. Read its output,
// Write its stdin (spec.Stdin must be nil), Wait for its end, and Close it.
// When ctx ends, the connection is closed, which makes the server kill the
// command. A refusal is a *ServerError, as Start's: with the status the
// server gives it (409 for a running alias, 404 for a command that could
// not start ...) and its Code.
func (c *Client) Attach(ctx context.Context, spec Spec) (*Session, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	if spec.Stdin != nil {
		return nil, errors.New("an attached run takes its stdin from Session.Write, not Spec.Stdin")
	}
	w := spec.wire()
	first, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}

	h := http.Header{}
	c.authorize(h)
	dctx, sent := traceConnection(ctx)
	conn, resp, err := websocket.Dial(dctx, c.endpoint("process/attach"), &websocket.DialOptions{HTTPClient: c.http, HTTPHeader: h})
	if err != nil {
		switch {
		case resp != nil && resp.StatusCode != http.StatusSwitchingProtocols:
			return nil, handshakeRefused(resp)
		case resp != nil:
			return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		// The request is not sent before the upgrade: nothing ran.
		return nil, sent(err)
	}
	// Output is read as it comes, never a whole message at once.
	conn.SetReadLimit(-1)
	sctx, cancel := context.WithCancel(ctx)
	s := &Session{Alias: w.Alias, conn: conn, parent: ctx, ctx: sctx, cancel: cancel}
	// The connection ends with ctx even while nobody reads or writes.
	context.AfterFunc(sctx, func() { conn.CloseNow() })

	if err := conn.Write(sctx, websocket.MessageText, first); err != nil {
		s.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: sending the request: %w", ErrRunLost, err)
	}
	if err := s.awaitStart(); err != nil {
		s.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return s, nil
}

// handshakeRefused is the error of a handshake the server answered
// without upgrading: its refusal (401, 403, 503 ...), or, for 404 and 405,
// a server without attached runs.
func handshakeRefused(resp *http.Response) error {
	err := serverError(resp)
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		return fmt.Errorf("%w: the server has no GET /process/attach (a rexec older than runs on a terminal?): %w", ErrProtocol, err)
	}
	return err
}

// awaitStart reads the server's first message: started, or its refusal.
func (s *Session) awaitStart() error {
	typ, r, err := s.conn.Reader(s.ctx)
	if err != nil {
		return s.lost(err, "before the run started")
	}
	if typ != websocket.MessageText {
		return fmt.Errorf("%w: output before the run started", ErrProtocol)
	}
	m, err := readControl(r)
	if err != nil {
		return err
	}
	switch m.Type {
	case "started":
		if m.Alias != "" {
			s.Alias = m.Alias
		}
		return nil
	case "error":
		return m.serverError()
	}
	return fmt.Errorf("%w: message %q before the run started", ErrProtocol, m.Type)
}

// readControl reads a text message of the server.
func readControl(r io.Reader) (wireMessage, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxControlMessage+1))
	if err != nil {
		return wireMessage{}, fmt.Errorf("%w: %w", ErrRunLost, err)
	}
	if len(data) > maxControlMessage {
		return wireMessage{}, fmt.Errorf("%w: a text message longer than %d bytes", ErrProtocol, maxControlMessage)
	}
	var m wireMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return wireMessage{}, fmt.Errorf("%w: a text message is not JSON: %v", ErrProtocol, err)
	}
	return m, nil
}

// serverError is an error message as the error of an HTTP answer.
func (m wireMessage) serverError() *ServerError {
	msg := m.Error
	if msg == "" {
		msg = "(no message)"
	}
	status := m.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	return &ServerError{StatusCode: status, Message: msg, Code: m.Code}
}

// Read reads the run's output, as the server sends it: on a terminal, the
// bytes the command wrote to it (stdout and stderr together, with the
// terminal's \r\n). It returns io.EOF after the last byte, once the end has
// come (Wait then returns it at once); ErrRunLost when the connection
// broke before the end, the caller's context's error when it ended, and
// ErrClosed after Close.
func (s *Session) Read(p []byte) (int, error) {
	for {
		if s.err != nil {
			return 0, s.err
		}
		if s.msg != nil {
			n, err := s.msg.Read(p)
			switch {
			case err == io.EOF:
				s.msg = nil
			case err != nil:
				return n, s.fail(s.lost(err, ""))
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		typ, r, err := s.conn.Reader(s.ctx)
		if err != nil {
			return 0, s.fail(s.lost(err, ""))
		}
		if typ == websocket.MessageBinary {
			s.msg = r
			continue
		}
		m, err := readControl(r)
		if err != nil {
			return 0, s.fail(err)
		}
		switch m.Type {
		case "exit":
			if m.ExitCode == nil {
				return 0, s.fail(fmt.Errorf("%w: an exit message without exit_code", ErrProtocol))
			}
			s.status = Status{ExitCode: *m.ExitCode, Signal: m.Signal, Reason: Reason(m.Reason),
				Duration: time.Duration(m.DurationMS) * time.Millisecond}
			s.finish()
			return 0, io.EOF
		case "error":
			// A control message the server could not do; the session
			// goes on, unless the server closes it next.
			s.refusal.Store(m.serverError())
		}
		// A message of a newer server: skipped.
	}
}

// Wait reads the run to its end, discarding the output Read has not
// taken, and returns how it ended. Its errors are Read's, but io.EOF.
func (s *Session) Wait() (Status, error) {
	var buf [4 << 10]byte
	for {
		if _, err := s.Read(buf[:]); err != nil {
			if err == io.EOF {
				return s.status, nil
			}
			return Status{}, err
		}
	}
}

// finish closes the connection after the end, as the server asks.
func (s *Session) finish() {
	s.err = io.EOF
	s.ended.Store(true)
	s.conn.Close(websocket.StatusNormalClosure, "")
	s.cancel()
}

// fail records why the session ended before its end and closes it.
func (s *Session) fail(err error) error {
	switch {
	case s.closed.Load():
		err = ErrClosed
	case s.parent.Err() != nil:
		err = s.parent.Err()
	}
	s.err = err
	s.ended.Store(true)
	s.cancel()
	s.conn.CloseNow()
	return err
}

// lost is the error of a connection that broke: ErrRunLost, with the
// server's reason when it closed the connection with one, and its last
// error message.
func (s *Session) lost(err error, when string) error {
	if when != "" {
		when = " " + when
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		why := ce.Reason
		if why == "" {
			why = "no reason given"
		}
		err = fmt.Errorf("%w: the server closed the connection%s (%d: %s)", ErrRunLost, when, int(ce.Code), why)
	} else {
		err = fmt.Errorf("%w%s: %w", ErrRunLost, when, err)
	}
	if se := s.refusal.Load(); se != nil {
		err = fmt.Errorf("%w, after %w", err, se)
	}
	return err
}

// Refused is the last control message the server could not do, as it said
// in an error message (a resize of a run without a terminal, a signal to a
// run that has ended, stdin after its end ...): a *ServerError; nil when
// there was none. The session goes on after such a message, unless the
// server closes it (Read then returns ErrRunLost, with this error).
func (s *Session) Refused() error {
	if se := s.refusal.Load(); se != nil {
		return se
	}
	return nil
}

// Write sends p to the command's stdin, in messages of at most 64 KiB. On a
// terminal, what the terminal's line discipline makes of the bytes applies:
// Ctrl-C (0x03) interrupts the foreground command, Ctrl-D (0x04) at the
// start of a line ends its input. The server takes a message once the
// command's stdin has taken the last one: a command that reads no stdin
// holds Write back, and Resize, Signal and CloseStdin behind it. After the
// end or Close it returns ErrClosed.
func (s *Session) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxStdinMessage)]
		if err := s.send(websocket.MessageBinary, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// Resize sets the size of the command's terminal: the kernel sends its
// foreground process group SIGWINCH.
func (s *Session) Resize(rows, cols int) error {
	if rows < 1 || rows > MaxTTYSize || cols < 1 || cols > MaxTTYSize {
		return fmt.Errorf("terminal size %dx%d: want 1-%d rows and columns", rows, cols, MaxTTYSize)
	}
	return s.sendControl(wireMessage{Type: "resize", Rows: rows, Cols: cols})
}

// Signal sends the command a signal: one of Signals, with or without its
// "SIG" prefix.
func (s *Session) Signal(name string) error {
	name = strings.TrimPrefix(strings.ToUpper(name), "SIG")
	for _, known := range Signals {
		if name == known {
			return s.sendControl(wireMessage{Type: "signal", Signal: name})
		}
	}
	return fmt.Errorf("signal %q: want one of %s", name, strings.Join(Signals, " "))
}

// CloseStdin ends the command's input, as the end of a pipe would.
func (s *Session) CloseStdin() error {
	return s.sendControl(wireMessage{Type: "eof"})
}

func (s *Session) sendControl(m wireMessage) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.send(websocket.MessageText, data)
}

// send writes a message; one that cannot be sent because the session is
// over is ErrClosed, or the caller's context's error.
func (s *Session) send(typ websocket.MessageType, data []byte) error {
	err := s.conn.Write(s.ctx, typ, data)
	switch {
	case err == nil:
		return nil
	case s.parent.Err() != nil:
		return s.parent.Err()
	case s.closed.Load() || s.ended.Load():
		return ErrClosed
	}
	// The connection broke: Read says so, and with what it knows.
	return fmt.Errorf("%w: %w", ErrRunLost, err)
}

// Close ends the session. When the run has not ended, the connection is
// closed and the server kills the command. Close is idempotent and may be
// called while Read or Wait waits in another goroutine.
func (s *Session) Close() error {
	s.closed.Store(true)
	s.cancel()
	s.conn.CloseNow()
	return nil
}
