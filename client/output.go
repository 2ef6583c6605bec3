package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// The output of a detached run: its stdout and stderr merged, as the server
// keeps them (GET /scripts/v1/output/{id}). The header Rexec-Output-Offset
// says where an answer starts, the trailer Rexec-Output-End where it
// stopped: a reader that lost its connection asks again from the byte after
// the last one it got, and gets each byte once.

const (
	// OutputOffsetHeader is the header of an output answer: the offset of
	// its first byte.
	OutputOffsetHeader = "Rexec-Output-Offset"
	// OutputEndTrailer is the trailer of an output answer that ended
	// cleanly: the offset after its last byte, where to go on from.
	OutputEndTrailer = "Rexec-Output-End"
)

var (
	// ErrOutputCut means an answer of the output ended without its
	// Rexec-Output-End trailer: the connection was cut (or a proxy dropped
	// the trailer). Reading again from Output.Offset resumes it.
	ErrOutputCut = errors.New("the output's connection was cut")
	// ErrRunRemoved means a run that was being read is no longer in the
	// history: it ended and its script's -r removed it (it succeeded or was
	// cancelled), or it was deleted.
	ErrRunRemoved = errors.New("the run was removed from the history")
)

// Output is one answer of GET /scripts/v1/output: the run's output from an
// offset, as it is now or (follow) as it is written until the run ends.
type Output struct {
	body   io.ReadCloser
	resp   *http.Response
	offset int64 // the offset of the next byte Read returns
	err    error // sticky
}

// Output asks for run id's output from byte offset. With follow the answer
// stays open and brings the output as it is written, until the run ends (or
// the server shuts down). Read it, then Close it.
func (c *Client) Output(ctx context.Context, id string, offset int64, follow bool) (*Output, error) {
	if offset < 0 {
		return nil, fmt.Errorf("negative offset %d", offset)
	}
	u, err := c.runEndpoint("scripts/v1/output", id)
	if err != nil {
		return nil, err
	}
	u += "?offset=" + strconv.FormatInt(offset, 10)
	if follow {
		u += "&follow=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.doOK(ctx, req)
	if err != nil {
		return nil, err
	}
	if got := resp.Header.Get(OutputOffsetHeader); got != strconv.FormatInt(offset, 10) {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s %q, want %d", ErrProtocol, OutputOffsetHeader, got, offset)
	}
	return &Output{body: resp.Body, resp: resp, offset: offset}, nil
}

// Read reads the output. It returns io.EOF at the answer's clean end (its
// trailer came, and agrees with the bytes read), ErrOutputCut (wrapping the
// cause) when the answer ended without it, ErrProtocol when the trailer
// disagrees with what was read.
func (o *Output) Read(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.body.Read(p)
	o.offset += int64(n)
	switch {
	case err == nil:
	case err == io.EOF:
		end := o.resp.Trailer.Get(OutputEndTrailer)
		switch {
		case end == "":
			err = fmt.Errorf("%w: the answer ended without its %s trailer", ErrOutputCut, OutputEndTrailer)
		case end != strconv.FormatInt(o.offset, 10):
			err = fmt.Errorf("%w: %s %s, but the output read ends at %d", ErrProtocol, OutputEndTrailer, end, o.offset)
		}
		o.err = err
	default:
		o.err = fmt.Errorf("%w: %w", ErrOutputCut, err)
		err = o.err
	}
	return n, err
}

// Offset is the offset of the next byte Read returns: after a cut, where to
// ask again from.
func (o *Output) Offset() int64 { return o.offset }

// Close closes the answer's connection (unless it was read to its end).
func (o *Output) Close() error { return o.body.Close() }

// DefaultRetryFor is how long CopyOutput and Follow keep trying to resume
// without getting a byte further, when OutputOptions.RetryFor is 0.
const DefaultRetryFor = time.Minute

// The waits between attempts to resume: doubling from the first to the
// last, and back to the first once an attempt gets somewhere.
const (
	firstRetryWait = 100 * time.Millisecond
	lastRetryWait  = 5 * time.Second
)

// OutputOptions says how CopyOutput and Follow read a run's output.
type OutputOptions struct {
	// Offset is the byte to start at (0: the start of the output).
	Offset int64
	// RetryFor bounds how long they keep trying to resume, once the server
	// has answered, after a cut connection, an unreachable server or a 503
	// or 429 answer, without
	// getting a byte further (or an answer that stayed open 5 s):
	// DefaultRetryFor when 0; no retry when negative. The waits between
	// attempts double from 100 ms to 5 s.
	RetryFor time.Duration
	// Retrying, when not nil, is called before each wait: why the last
	// attempt stopped, the offset it resumes from and the wait.
	Retrying func(err error, offset int64, wait time.Duration)
}

// CopyOutput writes run id's output to w, from opts.Offset to its end as it
// is now. A cut connection is resumed from the byte after the last one w
// took (see OutputOptions): w gets each byte once, in order. It returns the
// offset after the last byte written to w, where to resume from, with the
// error when it could not finish.
func (c *Client) CopyOutput(ctx context.Context, id string, w io.Writer, opts OutputOptions) (int64, error) {
	_, next, err := c.copyOutput(ctx, id, w, opts, false)
	return next, err
}

// Follow writes run id's output to w from opts.Offset as the run writes
// it, until the run has ended and its output is all written, and returns the
// run's status at its end. It waits for a queued run to start. Like
// CopyOutput it resumes cut connections, and the server's restarts, without
// a gap or a repeated byte, and returns where to resume from with its
// error. A run that its script's -r removes at its end gives ErrRunRemoved
// once its output is written.
func (c *Client) Follow(ctx context.Context, id string, w io.Writer, opts OutputOptions) (RunStatus, int64, error) {
	return c.copyOutput(ctx, id, w, opts, true)
}

func (c *Client) copyOutput(ctx context.Context, id string, w io.Writer, opts OutputOptions, follow bool) (RunStatus, int64, error) {
	retryFor := opts.RetryFor
	if retryFor == 0 {
		retryFor = DefaultRetryFor
	}
	pos := opts.Offset
	wait := firstRetryWait
	giveUp := time.Now().Add(retryFor)
	seen := false // the run was there: a 404 later means it was removed
	buf := make([]byte, 32<<10)
	for {
		// One attempt: an answer from pos to its end (or its cut), then,
		// when following, the run's status to tell its end from the
		// server's shutdown.
		start, began, answered := pos, time.Now(), false
		err := func() error {
			out, err := c.Output(ctx, id, pos, follow)
			if err != nil {
				return err
			}
			defer out.Close()
			seen, answered = true, true
			for {
				n, rerr := out.Read(buf)
				if n > 0 {
					wn, werr := w.Write(buf[:n])
					pos += int64(wn)
					if werr == nil && wn < n {
						werr = io.ErrShortWrite
					}
					if werr != nil {
						return &writeError{werr}
					}
				}
				if rerr == io.EOF {
					return nil
				}
				if rerr != nil {
					return rerr
				}
			}
		}()
		if err == nil && follow {
			var st RunStatus
			st, err = c.Status(ctx, id)
			switch {
			case err == nil && st.State == StateDone && st.OutputSize <= pos:
				return st, pos, nil
			case err == nil:
				// The answer ended before the run, or before the last of
				// its output: the server is shutting down. Ask again.
				err = fmt.Errorf("%w: the answer ended before the run", ErrOutputCut)
			case isNotFound(err):
				return RunStatus{}, pos, ErrRunRemoved
			}
		}
		var we *writeError
		switch {
		case err == nil:
			return RunStatus{}, pos, nil
		case errors.As(err, &we):
			return RunStatus{}, pos, we.err
		case ctx.Err() != nil:
			return RunStatus{}, pos, ctx.Err()
		case seen && follow && isNotFound(err):
			return RunStatus{}, pos, ErrRunRemoved
		case !seen || !retryable(err) || retryFor < 0:
			// Resuming is for an answer that was cut: a server that
			// never answered is the caller's to report.
			return RunStatus{}, pos, err
		}
		// An attempt that got bytes, or that the server held open a while
		// (a quiet run, cut by an idle proxy), got somewhere.
		if pos > start || answered && time.Since(began) >= lastRetryWait {
			wait, giveUp = firstRetryWait, time.Now().Add(retryFor)
		}
		if time.Now().Add(wait).After(giveUp) {
			return RunStatus{}, pos, fmt.Errorf("gave up resuming after %v: %w", retryFor, err)
		}
		if opts.Retrying != nil {
			opts.Retrying(err, pos, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return RunStatus{}, pos, ctx.Err()
		}
		wait = min(2*wait, lastRetryWait)
	}
}

// writeError is a failure to write to the caller's writer: never retried.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// retryable says whether asking again may succeed: the connection was cut
// or could not be made, or the server is busy or restarting.
func retryable(err error) bool {
	var se *ServerError
	if errors.As(err, &se) {
		return se.StatusCode == http.StatusServiceUnavailable || se.StatusCode == http.StatusTooManyRequests ||
			se.StatusCode == http.StatusBadGateway || se.StatusCode == http.StatusGatewayTimeout
	}
	return errors.Is(err, ErrOutputCut) || errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNoAnswer)
}

func isNotFound(err error) bool {
	var se *ServerError
	return errors.As(err, &se) && se.StatusCode == http.StatusNotFound
}
