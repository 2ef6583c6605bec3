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
	// Line, for Stdout and Stderr, is a line without its newline (the
	// pieces of a long line joined). Copy writes the newline back, except
	// after an Unterminated line.
	Line string
	// Unterminated, for Stdout and Stderr, says the line is the stream's
	// last and the command did not end it with a newline; Copy writes no
	// newline after it. Such lines come just before End.
	Unterminated bool
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
	ReasonOOM        Reason = "oom"        // the kernel's OOM killer killed it, at its memory limit
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
	later   int       // the stream that got the latest piece
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
// heartbeats, and last End with the status. A stream's last line that the
// command did not end with a newline comes just before End, marked
// Unterminated, so that writing each line followed by a newline, except
// after an Unterminated one, gives back the output exactly. After End Next
// returns io.EOF. When the stream breaks before End, the error is ErrRunLost
// (the pieces of an unfinished long line are dropped); when the caller's
// context ends, its error; after Close, ErrClosed.
func (r *Run) Next() (Event, error) {
	for {
		if r.unread != nil {
			if ev, ok := r.unterminated(); ok {
				return ev, nil
			}
			ev := *r.unread
			r.unread = nil
			return ev, nil
		}
		ev, partial, err := r.piece()
		if err != nil {
			return Event{}, err
		}
		switch ev.Kind {
		case End:
			// A stream's unterminated last line came as a piece with
			// nothing after it: it goes out before End.
			r.unread = &ev
			continue
		case Stdout, Stderr:
			i := int(ev.Kind - Stdout)
			if partial {
				r.pending[i] = append(r.pending[i], ev.Line...)
				r.later = i
				continue
			}
			if len(r.pending[i]) > 0 {
				ev.Line = string(append(r.pending[i], ev.Line...))
				r.pending[i] = r.pending[i][:0]
			}
		}
		return ev, nil
	}
}

// unterminated takes a line left pending at End, as an Unterminated line;
// when both streams have one, in the order their last pieces arrived.
func (r *Run) unterminated() (Event, bool) {
	for _, i := range [2]int{1 - r.later, r.later} {
		if len(r.pending[i]) > 0 {
			ev := Event{Kind: Stdout + Kind(i), Line: string(r.pending[i]), Unterminated: true}
			r.pending[i] = nil
			return ev, true
		}
	}
	return Event{}, false
}

// Copy writes the run's stdout and stderr lines to stdout and stderr as
// they arrive, each followed by a newline except an Unterminated one, and
// returns the status at the end: what it writes is what the command wrote.
// A long line is written piece by piece, so memory stays bounded. Output is
// buffered only while more complete lines have already arrived; the order of
// lines across the two writers is kept. Copy may follow calls to Next: it
// first writes what Next has taken and not returned yet (the pieces of a
// long line, the unterminated last lines), so that Next's lines and Copy's
// output together are the whole output. When the stream breaks before End,
// the pieces of an unfinished long line are written, without a newline, and
// the error is returned. Errors are those of Next (io.EOF after End), or a
// write error (the run then goes on until Close).
func (r *Run) Copy(stdout, stderr io.Writer) (Status, error) {
	w := [2]*bufio.Writer{bufio.NewWriterSize(stdout, 32<<10), bufio.NewWriterSize(stderr, 32<<10)}
	flush := func() error {
		err0, err1 := w[0].Flush(), w[1].Flush()
		return errors.Join(err0, err1)
	}
	last := -1
	// What Next has taken: the pieces of a line, in the order they came.
	for _, i := range [2]int{1 - r.later, r.later} {
		if len(r.pending[i]) > 0 {
			if last >= 0 {
				if err := w[last].Flush(); err != nil {
					return Status{}, err
				}
			}
			w[i].Write(r.pending[i])
			r.pending[i] = r.pending[i][:0]
			last = i
		}
	}
	if r.unread != nil {
		// Next holds End back: the pieces were unterminated last lines.
		st := r.unread.Status
		r.unread = nil
		return st, flush()
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
