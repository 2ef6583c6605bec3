package jsoutput

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rexec/rexec/store"
)

// writer appends to one run's output in the stream. Write only appends to
// a buffer, under a mutex held for no more than a copy; one goroutine per
// writer (drain) publishes the buffer in order, one chunk at a time, each
// waiting for its ack and expecting the previous one as the subject's last
// message, so that the output has no gap and no second writer interleaves
// with it unseen. The cap is store.Store's: the Write that passes it is cut
// there and followed by store.TruncationMarker. When the stream does not
// keep up (more than the buffer's bound waits) or a publish fails, the
// output is cut as a file's is when writing it fails: the failure marker
// line, and every later Write is dropped but reported done.
type writer struct {
	o     *Outputs
	id    string
	subj  string
	max   int64 // the cap
	bound int64 // of what may wait for the stream's ack
	log   zerolog.Logger

	// ctx ends the drainer's publishes: Close cancels it when flushing
	// takes longer than its bound.
	ctx    context.Context
	cancel context.CancelCauseFunc
	wake   chan struct{} // Write and Close put a token (never blocking); the drainer takes it
	done   chan struct{} // closed when the drainer has returned

	mu       sync.Mutex // guards what follows; never held across a request to the server
	buf      []byte     // accepted, not yet taken by the drainer
	size     int64      // Size: accepted, marker included; after a failure, what the stream has
	stored   int64      // the end of what the stream acknowledged
	closed   bool
	cut      bool          // Truncated: nothing more is accepted
	reason   string        // TruncatedReason
	failed   bool          // a publish failed: nothing more is published but the marker and the end
	progress chan struct{} // closed and replaced when stored changes, a publish fails, or the drainer ends
	endErr   error         // why the end message could not be published

	lastSeq uint64 // the drainer's: the stream sequence of the subject's last message as this writer knows it
}

// OpenOutput implements store.Outputs. A run the history does not have is
// store.ErrNotFound. The writer continues after what the stream has of the
// output (a second writer: a start that is retried, here or on another
// host) and counts it against the cap, as store.Store's does.
func (o *Outputs) OpenOutput(id string) (store.OutputWriter, error) {
	ctx, cancel := o.opContext()
	defer cancel()
	if _, err := o.run(ctx, "open output", id); err != nil {
		return nil, err
	}
	subj := o.subject(id)
	last, err := o.last(ctx, subj)
	if err != nil {
		return nil, fmt.Errorf("jsoutput: open output of %q: %w", id, err)
	}
	size, err := sizeOf(last)
	if err != nil {
		return nil, fmt.Errorf("jsoutput: open output of %q: %w", id, err)
	}
	wctx, wcancel := context.WithCancelCause(context.Background())
	w := &writer{
		o: o, id: id, subj: subj, max: o.max, bound: o.buffer,
		log: o.log.With().Str("run", id).Logger(),
		ctx: wctx, cancel: wcancel, wake: make(chan struct{}, 1), done: make(chan struct{}),
		size: size, stored: size, progress: make(chan struct{}),
	}
	if last != nil {
		w.lastSeq = last.Sequence
	}
	if size > o.max { // the marker is there already
		w.cut, w.reason = true, capReason(o.max)
	}
	o.register(w)
	go w.drain()
	return w, nil
}

// Write implements io.Writer. It waits for the stream only while the
// bytes the stream has not acknowledged fill the writer's bound (Options.
// Buffer), and at most timeouts.stall: past that it cuts the output rather
// than hold the run longer. Once the output is cut it returns len(p), nil
// without writing; it fails only after Close (os.ErrClosed).
func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, fmt.Errorf("jsoutput: output %q: %w", w.id, os.ErrClosed)
	}
	if w.cut || len(p) == 0 {
		return len(p), nil
	}
	take, marker := p, ""
	if room := w.max - w.size; int64(len(p)) > room {
		take, marker = p[:max(room, 0)], store.TruncationMarker(w.max)
	}
	// The bound counts output: a marker line always fits. Past it, Write
	// waits for the stream (the run's pipe fills, and the run waits, as on
	// a slow disk) while the publishes go on; a stream that stops taking
	// them fails a publish within its own bound, which cuts the output.
	for deadline := time.Now().Add(w.o.t.stall); ; {
		waiting := w.size - w.stored
		if waiting == 0 || waiting+int64(len(take)) <= w.bound || w.failed || w.closed {
			break
		}
		if time.Now().After(deadline) {
			w.overflow(waiting)
			return len(p), nil
		}
		ch := w.progress
		w.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
		}
		w.mu.Lock()
	}
	if w.closed {
		return 0, fmt.Errorf("jsoutput: output %q: %w", w.id, os.ErrClosed)
	}
	if w.cut {
		return len(p), nil
	}
	w.buf = append(w.buf, take...)
	w.buf = append(w.buf, marker...)
	w.size += int64(len(take) + len(marker))
	if marker != "" {
		w.cut, w.reason = true, capReason(w.max)
	}
	w.signal()
	return len(p), nil
}

// overflow cuts the output because waiting bytes wait for the stream
// already, and no more fit the bound: what waits is still published, then
// the failure marker. w.mu is held.
func (w *writer) overflow(waiting int64) {
	reason := "the output stream did not keep up (" + strconv.FormatInt(waiting, 10) + " bytes waiting)"
	marker := failureMarker(reason)
	w.buf = append(w.buf, marker...)
	w.size += int64(len(marker))
	w.cut, w.reason = true, failReason(reason)
	w.signal()
	w.log.Warn().Int64("waiting_bytes", waiting).Msg("the output stream did not keep up with a run's output: it is cut")
}

// signal wakes the drainer.
func (w *writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// notify tells the readers waiting in flushed that something changed.
// w.mu is held.
func (w *writer) notify() {
	close(w.progress)
	w.progress = make(chan struct{})
}

// drain publishes what Write accepted, in order, until the writer is
// closed and nothing is left, then the end message.
func (w *writer) drain() {
	defer close(w.done)
	for {
		chunk, off, ok := w.next()
		if !ok {
			break
		}
		if err := w.publish(off, chunk, false, ""); err != nil {
			w.fail(err)
		}
	}
	w.mu.Lock()
	off, reason := w.stored, w.reason
	w.mu.Unlock()
	err := w.publish(off, nil, true, reason)
	w.mu.Lock()
	w.endErr = err
	w.notify()
	w.mu.Unlock()
}

// next waits for output to publish and takes at most chunkMax bytes of it,
// with their offset; ok is false once the writer is closed and all was
// taken.
func (w *writer) next() (chunk []byte, off int64, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.buf) == 0 {
		if w.closed {
			return nil, 0, false
		}
		w.mu.Unlock()
		<-w.wake
		w.mu.Lock()
	}
	n := min(len(w.buf), chunkMax)
	// The chunk's capacity ends with it: Write appends after it, never
	// into it.
	chunk = w.buf[:n:n]
	if n == len(w.buf) {
		w.buf = nil
	} else {
		w.buf = w.buf[n:]
	}
	return chunk, w.stored, true
}

// publish publishes data at offset off and waits for the ack; with end,
// it is the end message (data is nil) and reason the TruncatedReason.
// Only the drainer calls it.
func (w *writer) publish(off int64, data []byte, end bool, reason string) error {
	m := &nats.Msg{Subject: w.subj, Header: nats.Header{}, Data: data}
	m.Header.Set(hdrOffset, strconv.FormatInt(off, 10))
	if end {
		m.Header.Set(hdrEnd, "closed")
		if reason != "" {
			m.Header.Set(hdrTruncated, reason)
		}
	}
	ctx, cancel := context.WithTimeout(w.ctx, w.o.t.publish)
	defer cancel()
	ack, err := w.o.js.PublishMsg(ctx, m,
		jetstream.WithExpectStream(w.o.sname),
		jetstream.WithExpectLastSequencePerSubject(w.lastSeq))
	switch {
	case err == nil:
	case w.ctx.Err() != nil:
		return context.Cause(w.ctx)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("the stream did not acknowledge within %v", w.o.t.publish)
	default:
		return err
	}
	w.lastSeq = ack.Sequence
	w.mu.Lock()
	w.stored = off + int64(len(data))
	w.notify()
	w.mu.Unlock()
	return nil
}

// fail cuts the output after the publish error err: what waits is
// dropped, and the failure marker is published once at the end of what
// the stream has (which may fail too: a stream that refuses output, a
// server that is gone).
func (w *writer) fail(err error) {
	reason := errText(err)
	w.mu.Lock()
	lost := w.size - w.stored
	w.buf = nil
	w.failed, w.cut, w.reason = true, true, failReason(reason)
	w.size = w.stored
	w.notify()
	w.mu.Unlock()
	w.log.Warn().Err(err).Int64("lost_bytes", lost).Msg("writing a run's output to the stream failed: it is cut")
	if w.ctx.Err() != nil { // Close gave up waiting
		return
	}
	// A publish that timed out may have been stored all the same: the
	// marker goes after what the stream has.
	ctx, cancel := context.WithTimeout(w.ctx, w.o.t.op)
	last, err := w.o.last(ctx, w.subj)
	cancel()
	if err != nil {
		return
	}
	end, err := sizeOf(last)
	if err != nil {
		return
	}
	w.lastSeq = 0
	if last != nil {
		w.lastSeq = last.Sequence
	}
	w.mu.Lock()
	w.stored, w.size = end, end
	w.mu.Unlock()
	if w.publish(end, []byte(failureMarker(reason)), false, "") == nil {
		w.mu.Lock()
		w.size = w.stored
		w.mu.Unlock()
	}
}

// flushed waits until the stream acknowledged what the writer had
// accepted when it was called, the writer failed, or the deadline.
func (w *writer) flushed(deadline time.Time) {
	w.mu.Lock()
	target := w.size
	for w.stored < target && !w.failed {
		progress := w.progress
		w.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-progress:
			t.Stop()
		case <-w.done:
			t.Stop()
			return
		case <-t.C:
			return
		}
		w.mu.Lock()
	}
	w.mu.Unlock()
}

// Size implements store.OutputWriter: what was accepted, marker included.
// After a failed publish it is what the stream has, marker included:
// what was accepted but never stored is not counted.
func (w *writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// Truncated implements store.OutputWriter.
func (w *writer) Truncated() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cut
}

// TruncatedReason implements store.OutputWriter: "" while nothing was
// cut, store.Store's reason at the cap, and "writing the output failed:
// <reason>" when the stream did not keep up or refused it. After Close it
// is final.
func (w *writer) TruncatedReason() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reason
}

// Close flushes what is buffered and publishes the end message, waiting
// for o.t.close at most: past it, what still waits is dropped (the output
// is cut). It returns the end message's failure, if it had one. Writes
// after Close fail with os.ErrClosed; a second Close returns nil.
func (w *writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	w.signal()
	t := time.NewTimer(w.o.t.close)
	select {
	case <-w.done:
	case <-t.C:
		w.cancel(fmt.Errorf("the stream did not take the output within %v of its writer's Close", w.o.t.close))
		<-w.done
	}
	t.Stop()
	w.cancel(nil)
	w.o.unregister(w)
	w.mu.Lock()
	err := w.endErr
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("jsoutput: close the output of %q: the end message: %w", w.id, err)
	}
	return nil
}
