package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// Kind is what an Event carries.
type Kind int

const (
	// Stdout is a line the command wrote to its stdout.
	Stdout Kind = iota + 1
	// Stderr is a line the command wrote to its stderr.
	Stderr
	// Heartbeat says the server is there while the command is silent.
	Heartbeat
	// End is the last event: the run is over and Event.Status says how.
	End
)

func (k Kind) String() string {
	switch k {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	case Heartbeat:
		return "heartbeat"
	case End:
		return "end"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Event is one thing that happened in a run.
type Event struct {
	Kind Kind
	// Line, for Stdout and Stderr, is a line without its newline. Copy
	// writes the newline back, except after a stream's last line when the
	// command did not end it with one.
	Line string
	// Status, for End, is how the run ended.
	Status Status
}

// Reason says why a run ended.
type Reason string

const (
	ReasonExit       Reason = "exit"       // the command exited, or was killed by someone else
	ReasonTimeout    Reason = "timeout"    // Spec.Timeout expired: the server terminated the group
	ReasonShutdown   Reason = "shutdown"   // the server shut down and terminated the group
	ReasonDisconnect Reason = "disconnect" // the client went away (never seen by that client)
)

// Status is how a run ended.
type Status struct {
	// ExitCode is the command's exit code, or -1 when a signal killed it.
	ExitCode int
	// Signal is the name of the signal that killed the command, such as
	// "SIGKILL", or empty.
	Signal   string
	Duration time.Duration
	Reason   Reason
}

// Success reports whether the command exited with code 0.
func (s Status) Success() bool { return s.ExitCode == 0 && s.Signal == "" }

// Run is a started run. Its methods but Close are not safe for concurrent
// use; Close may be called from any goroutine, to abort the run.
type Run struct {
	// Alias is the run's alias on the server.
	Alias string

	parent   context.Context    // the caller's context
	cancel   context.CancelFunc // cancels the request: closes the connection
	stdin    *io.PipeReader     // the request body with live stdin, or nil
	closed   atomic.Bool
	stdinErr atomic.Pointer[error] // a read error of Spec.Stdin

	body    io.ReadCloser
	br      *bufio.Reader
	line    []byte    // the object being read, reused
	pending [2][]byte // pieces of a long line, per stream, until its last piece
	unread  *Event    // End, held back by Next while unterminated last lines go out
	err     error     // sticky: io.EOF after End, or why the run was lost
}

// wireEvent is any object of the NDJSON stream.
type wireEvent struct {
	Stream     string `json:"stream"`
	Line       string `json:"line"`
	Partial    bool   `json:"partial"`
	Heartbeat  bool   `json:"heartbeat"`
	ExitCode   *int   `json:"exit_code"`
	Signal     string `json:"signal"`
	DurationMS int64  `json:"duration_ms"`
	Reason     string `json:"reason"`
}

func (r *Run) init(body io.ReadCloser) {
	r.body = body
	r.br = bufio.NewReaderSize(body, 64<<10)
}

// Next returns the run's next event: Stdout and Stderr lines (the pieces of
// a long line joined, so a line takes as much memory as it is long),
// heartbeats, and last End with the status. After End it returns io.EOF.
// When the stream breaks before End, the error is ErrRunLost (an unfinished
// long line is dropped); when the caller's context ends, its error; after
// Close, ErrClosed.
func (r *Run) Next() (Event, error) {
	for {
		var ev Event
		var partial bool
		if r.unread != nil {
			ev, r.unread = *r.unread, nil
		} else {
			var err error
			if ev, partial, err = r.piece(); err != nil {
				return Event{}, err
			}
		}
		if ev.Kind == End {
			// A stream's unterminated last line comes as a piece with
			// nothing after it: it is still a line.
			for i := range r.pending {
				if len(r.pending[i]) > 0 {
					line := Event{Kind: Stdout + Kind(i), Line: string(r.pending[i])}
					r.pending[i] = r.pending[i][:0]
					end := ev
					r.unread = &end
					return line, nil
				}
			}
		}
		if ev.Kind != Stdout && ev.Kind != Stderr {
			return ev, nil
		}
		i := ev.Kind - Stdout
		if partial {
			r.pending[i] = append(r.pending[i], ev.Line...)
			continue
		}
		if len(r.pending[i]) > 0 {
			ev.Line = string(append(r.pending[i], ev.Line...))
			r.pending[i] = r.pending[i][:0]
		}
		return ev, nil
	}
}

// Copy writes the run's stdout and stderr lines to stdout and stderr, each
// followed by a newline, as they arrive, and returns the status at the end.
// A long line is written piece by piece, so memory stays bounded. Output is
// buffered only while more complete lines have already arrived; the order of
// lines across the two writers is kept. Errors are those of Next, or a write
// error (the run then goes on until Close).
func (r *Run) Copy(stdout, stderr io.Writer) (Status, error) {
	w := [2]*bufio.Writer{bufio.NewWriterSize(stdout, 32<<10), bufio.NewWriterSize(stderr, 32<<10)}
	flush := func() error {
		err0, err1 := w[0].Flush(), w[1].Flush()
		return errors.Join(err0, err1)
	}
	last := -1
	// Pieces already taken by Next.
	for i := range r.pending {
		if len(r.pending[i]) > 0 {
			w[i].Write(r.pending[i])
			r.pending[i] = r.pending[i][:0]
			last = i
		}
	}
	for {
		if !r.lineBuffered() {
			if err := flush(); err != nil {
				return Status{}, err
			}
		}
		ev, partial, err := r.piece()
		if err != nil {
			flush()
			return Status{}, err
		}
		switch ev.Kind {
		case Stdout, Stderr:
			i := int(ev.Kind - Stdout)
			if last >= 0 && last != i {
				if err := w[last].Flush(); err != nil {
					return Status{}, err
				}
			}
			last = i
			w[i].WriteString(ev.Line)
			if !partial {
				w[i].WriteByte('\n')
			}
		case End:
			return ev.Status, flush()
		}
	}
}

// Close ends the run. When it has not ended, the connection is closed and
// the server kills the command's process group. Close is idempotent and may
// be called while Next or Copy waits in another goroutine.
func (r *Run) Close() error {
	r.closed.Store(true)
	return r.release()
}

// release closes the connection, unless it was read to its end, and the
// live stdin body, whose reader (the transport) may be waiting for stdin.
func (r *Run) release() error {
	err := r.body.Close()
	r.cancel()
	if r.stdin != nil {
		r.stdin.CloseWithError(ErrClosed)
	}
	return err
}

// piece reads the stream up to the next event; for a piece of a long line
// (the server splits lines longer than 64 KiB) partial is true. Objects of
// kinds it does not know, from a newer server, are skipped.
func (r *Run) piece() (ev Event, partial bool, err error) {
	if r.err != nil {
		return Event{}, false, r.err
	}
	for {
		line, err := r.readLine()
		if err != nil {
			return Event{}, false, r.fail(err)
		}
		var w wireEvent
		if err := json.Unmarshal(line, &w); err != nil {
			return Event{}, false, r.fail(fmt.Errorf("%w: a line of the stream is not JSON: %v", ErrProtocol, err))
		}
		switch {
		case w.ExitCode != nil:
			st := Status{ExitCode: *w.ExitCode, Signal: w.Signal,
				Duration: time.Duration(w.DurationMS) * time.Millisecond, Reason: Reason(w.Reason)}
			r.finish()
			return Event{Kind: End, Status: st}, false, nil
		case w.Heartbeat:
			return Event{Kind: Heartbeat}, false, nil
		case w.Stream == "stdout":
			return Event{Kind: Stdout, Line: w.Line}, w.Partial, nil
		case w.Stream == "stderr":
			return Event{Kind: Stderr, Line: w.Line}, w.Partial, nil
		}
	}
}

// readLine reads one NDJSON object, as long as the server made it.
func (r *Run) readLine() ([]byte, error) {
	r.line = r.line[:0]
	for {
		frag, err := r.br.ReadSlice('\n')
		r.line = append(r.line, frag...)
		switch {
		case err == nil:
			return r.line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(r.line) > 0:
			return nil, io.ErrUnexpectedEOF // the last object was cut
		}
		return nil, err
	}
}

// lineBuffered reports whether a whole object has arrived and not been read.
func (r *Run) lineBuffered() bool {
	b, _ := r.br.Peek(r.br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// finish releases the connection after End: what follows (the chunked
// body's end and its trailers) is read so that it can be reused.
func (r *Run) finish() {
	r.err = io.EOF
	io.Copy(io.Discard, io.LimitReader(r.br, 64<<10))
	r.release()
}

// fail records why the stream ended before End and releases the connection.
func (r *Run) fail(err error) error {
	switch {
	case r.closed.Load():
		err = ErrClosed
	case r.parent.Err() != nil:
		err = r.parent.Err()
	case err == io.EOF:
		err = fmt.Errorf("%w: the stream ended early", ErrRunLost)
	case errors.Is(err, ErrProtocol):
		err = fmt.Errorf("%w: %w", ErrRunLost, err)
	default:
		err = r.withStdinErr(fmt.Errorf("%w: %w", ErrRunLost, err))
	}
	r.err = err
	r.release()
	return err
}

// feed writes the request's first line, then stdin, to the request body.
// The body's end closes the command's stdin; a read error aborts the request.
func (r *Run) feed(pw *io.PipeWriter, first []byte, stdin io.Reader) {
	if _, err := pw.Write(first); err != nil {
		return
	}
	_, err := io.Copy(pw, readerFunc(func(p []byte) (int, error) {
		n, err := stdin.Read(p)
		if err != nil && err != io.EOF {
			err = fmt.Errorf("reading stdin: %w", err)
			r.stdinErr.Store(&err)
		}
		return n, err
	}))
	pw.CloseWithError(err)
}

// withStdinErr adds a failure to read stdin, the likely cause of err.
func (r *Run) withStdinErr(err error) error {
	if p := r.stdinErr.Load(); p != nil {
		return fmt.Errorf("%w (%w)", err, *p)
	}
	return err
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
