package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

// Outputs keeps what detached runs print, and the stdin a queued run waits
// with. A run's output has one writer, which appends to it, and any number
// of readers, which read it from a byte offset: as it is now (ReadOutput),
// or following the writer to the end of the run (FollowOutput). *Store is
// the single-host implementation: files under <dir>/output/ and
// <dir>/stdin-<id>. A run's output exists from the History's Create.
type Outputs interface {
	// OpenOutput opens run id's output for appending: ErrNotFound for a
	// run the history does not have.
	OpenOutput(id string) (OutputWriter, error)
	// ReadOutput reads run id's output from offset to its end as it is
	// when read, and returns the size when it was opened. An offset past
	// that size is ErrBadOffset.
	ReadOutput(id string, offset int64) (rd io.ReadCloser, size int64, err error)
	// FollowOutput reads run id's output from offset as it is written: at
	// the end of what is written, Read waits for more, and returns io.EOF
	// once the output is complete (the run is done and its writer closed)
	// and read to its end. When ctx ends, Read returns context.Cause(ctx).
	FollowOutput(ctx context.Context, id string, offset int64) (io.ReadCloser, error)
	// SaveStdin keeps stdin for run id until DeleteStdin.
	SaveStdin(id string, stdin []byte) error
	// Stdin is what SaveStdin kept for run id: nil when nothing.
	Stdin(id string) ([]byte, error)
	// DeleteStdin drops run id's stdin; none is no error.
	DeleteStdin(id string) error
}

// OutputWriter appends to one run's output. Write never fails the process
// that produces the output, and blocks it no longer than a bounded time (a
// file's write; the fleet's stream while it is behind by its writer's
// buffer): past the store's cap, or after a failed write, the rest is
// dropped behind a marker line, and TruncatedReason says why. It is safe
// for concurrent use.
type OutputWriter interface {
	io.WriteCloser
	// Size is the size of the output so far, marker included.
	Size() int64
	// Truncated says whether the output was cut.
	Truncated() bool
	// TruncatedReason says why the output was cut, "" while it was not.
	TruncatedReason() string
}

var _ Outputs = (*Store)(nil)

// fileOutput appends a run's output to its file, dir/output/<id>.log, up to
// the store's MaxOutput bytes. The first write that would pass the cap
// writes what still fits, then one marker line
//
//	\n[rexec: output truncated at N bytes]\n
//
// and from then on every write is discarded but reported as done, so the
// process that produces the output is never blocked or failed by the cap.
// The first write that fails (a full disk, an I/O error...) cuts the output
// the same way: the writer tries once to add the marker line
//
//	\n[rexec: output truncated: writing failed: <reason>]\n
//
// (which may fail too, e.g. on a full disk) and discards every later write,
// reporting it done. TruncatedReason says why the output was cut.
// Nothing is buffered in memory: each Write goes to the file at once. It is
// safe for concurrent use (stdout and stderr pumps may share one).
type fileOutput struct {
	id    string
	max   int64
	store *Store // told of every change, for followers

	mu        sync.Mutex // held by Write and Close; guards f and the file's content
	f         *os.File   // nil once closed
	size      atomic.Int64
	truncated atomic.Bool
	reason    atomic.Pointer[string] // set before truncated
}

// OpenOutput opens the output file of the run id for appending. The file is
// made by Create, so an unknown or deleted run is ErrNotFound. Writing to a
// file that already has content (a second OpenOutput) continues after it and
// counts it against the cap.
func (s *Store) OpenOutput(id string) (_ OutputWriter, err error) {
	defer classifyTo(&err)
	if !validID(id) {
		return nil, fmt.Errorf("store: open output: %w", notFound(id))
	}
	f, err := os.OpenFile(s.outputPath(id), os.O_WRONLY|os.O_APPEND, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("store: open output: %w", notFound(id))
	}
	if err != nil {
		return nil, fmt.Errorf("store: open output %q: %w", id, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: open output %q: %w", id, err)
	}
	w := &fileOutput{id: id, max: s.maxOutput, f: f, store: s}
	w.size.Store(fi.Size())
	if fi.Size() > s.maxOutput { // the marker is there already
		w.truncate(capReason(s.maxOutput))
	}
	s.writerOpened(id)
	return w, nil
}

// TruncationMarker is the line written where output was cut at max bytes.
func TruncationMarker(max int64) string {
	return "\n[rexec: output truncated at " + strconv.FormatInt(max, 10) + " bytes]\n"
}

// failureMarker is the line written where output was cut because writing
// it failed; reason is the error's text, e.g. "no space left on device".
func failureMarker(reason string) string {
	return "\n[rexec: output truncated: writing failed: " + reason + "]\n"
}

// capReason is the TruncatedReason of output cut at max bytes.
func capReason(max int64) string {
	return "output larger than " + strconv.FormatInt(max, 10) + " bytes (--max-output)"
}

// errText is the text of the system error under err ("no space left on
// device"), without the operation and file name around it.
func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Write implements io.Writer. Once the output is cut, by the cap or by a
// failed write, it returns len(p), nil without writing. It fails only after
// Close (os.ErrClosed).
func (w *fileOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.store.outputChanged(w.id)
	if w.f == nil {
		return 0, fmt.Errorf("store: output %q: %w", w.id, os.ErrClosed)
	}
	if w.truncated.Load() {
		return len(p), nil
	}
	size := w.size.Load()
	room := w.max - size
	if int64(len(p)) <= room {
		if err := w.write(p); err != nil {
			w.fail(err)
		}
		return len(p), nil
	}
	if room > 0 {
		if err := w.write(p[:room]); err != nil {
			w.fail(err)
			return len(p), nil
		}
	}
	if err := w.write([]byte(TruncationMarker(w.max))); err != nil {
		w.fail(err)
		return len(p), nil
	}
	w.truncate(capReason(w.max))
	return len(p), nil
}

// write writes p to the file, counting what was written. w.mu is held.
func (w *fileOutput) write(p []byte) error {
	n, err := w.f.Write(p)
	w.size.Add(int64(n))
	return err
}

// fail cuts the output after the write error err: it tries once to write
// the failure marker, whose own error is ignored. w.mu is held.
func (w *fileOutput) fail(err error) {
	reason := errText(err)
	w.write([]byte(failureMarker(reason)))
	w.truncate("writing the output failed: " + reason)
}

// truncate marks the output cut, for reason.
func (w *fileOutput) truncate(reason string) {
	w.reason.Store(&reason)
	w.truncated.Store(true)
}

// Size is the size of the file so far, marker included. A follower may read
// up to it without seeing a partial write of this writer. Safe to call at
// any time, also concurrently with Write.
func (w *fileOutput) Size() int64 { return w.size.Load() }

// Truncated says whether the output was cut (the cap was reached, or a
// write failed) and is being discarded.
func (w *fileOutput) Truncated() bool { return w.truncated.Load() }

// TruncatedReason says why the output was cut: "" while nothing was,
// "output larger than N bytes (--max-output)" when it reached the cap, and
// "writing the output failed: <reason>" (e.g. "no space left on device")
// when a write failed. Record it with MarkDone (Outcome.OutputTruncated).
// Safe to call at any time, also concurrently with Write.
func (w *fileOutput) TruncatedReason() string {
	if r := w.reason.Load(); r != nil {
		return *r
	}
	return ""
}

// Close closes the file. Writes after Close fail with os.ErrClosed; a second
// Close returns nil.
func (w *fileOutput) Close() (err error) {
	defer classifyTo(&err)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err = w.f.Close()
	w.f = nil
	w.store.writerClosed(w.id)
	if err != nil {
		return fmt.Errorf("store: close output %q: %w", w.id, err)
	}
	return nil
}

// ReadOutput opens the output of the run id for reading from byte offset,
// and returns the size of the file when it was opened. An offset below 0 or
// past that size is ErrBadOffset; an offset equal to it reads nothing (yet).
// The reader reads to the end of the file as it is when read, which may be
// past size while the run is writing; a follower counts the bytes it got to
// know its next offset, and calls again (or keeps reading) when it is told
// that more was written.
func (s *Store) ReadOutput(id string, offset int64) (_ io.ReadCloser, _ int64, err error) {
	defer classifyTo(&err)
	if !validID(id) {
		return nil, 0, fmt.Errorf("store: read output: %w", notFound(id))
	}
	f, err := os.Open(s.outputPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("store: read output: %w", notFound(id))
	}
	if err != nil {
		return nil, 0, fmt.Errorf("store: read output %q: %w", id, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("store: read output %q: %w", id, err)
	}
	size := fi.Size()
	if offset < 0 || offset > size {
		f.Close()
		return nil, size, fmt.Errorf("store: read output %q: offset %d, size %d: %w", id, offset, size, ErrBadOffset)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("store: read output %q: %w", id, err)
	}
	return f, size, nil
}
