package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
)

// OutputWriter appends a run's output to its file, dir/output/<id>.log, up to
// the store's MaxOutput bytes. The first write that would pass the cap
// writes what still fits, then one marker line
//
//	\n[rexec: output truncated at N bytes]\n
//
// and from then on every write is discarded but reported as done, so the
// process that produces the output is never blocked or failed by the cap.
// Nothing is buffered in memory: each Write goes to the file at once. It is
// safe for concurrent use (stdout and stderr pumps may share one).
type OutputWriter struct {
	id  string
	max int64

	mu        sync.Mutex // held by Write and Close; guards f and the file's content
	f         *os.File   // nil once closed
	size      atomic.Int64
	truncated atomic.Bool
}

// OpenOutput opens the output file of the run id for appending. The file is
// made by Create, so an unknown or deleted run is ErrNotFound. Writing to a
// file that already has content (a second OpenOutput) continues after it and
// counts it against the cap.
func (s *Store) OpenOutput(id string) (*OutputWriter, error) {
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
	w := &OutputWriter{id: id, max: s.maxOutput, f: f}
	w.size.Store(fi.Size())
	w.truncated.Store(fi.Size() > s.maxOutput) // the marker is there already
	return w, nil
}

// TruncationMarker is the line written where output was cut at max bytes.
func TruncationMarker(max int64) string {
	return "\n[rexec: output truncated at " + strconv.FormatInt(max, 10) + " bytes]\n"
}

// Write implements io.Writer. Once the cap is reached it returns len(p), nil
// without writing. An error from the file is returned as it is.
func (w *OutputWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return 0, fmt.Errorf("store: output %q: %w", w.id, os.ErrClosed)
	}
	if w.truncated.Load() {
		return len(p), nil
	}
	size := w.size.Load()
	room := w.max - size
	if int64(len(p)) <= room {
		n, err := w.f.Write(p)
		w.size.Add(int64(n))
		return n, err
	}
	if room > 0 {
		n, err := w.f.Write(p[:room])
		w.size.Add(int64(n))
		if err != nil {
			return n, err
		}
	}
	n, err := io.WriteString(w.f, TruncationMarker(w.max))
	w.size.Add(int64(n))
	if err != nil {
		return int(max(room, 0)), err
	}
	w.truncated.Store(true)
	return len(p), nil
}

// Size is the size of the file so far, marker included. A follower may read
// up to it without seeing a partial write of this writer. Safe to call at
// any time, also concurrently with Write.
func (w *OutputWriter) Size() int64 { return w.size.Load() }

// Truncated says whether the cap was reached and output is being discarded.
func (w *OutputWriter) Truncated() bool { return w.truncated.Load() }

// Close closes the file. Writes after Close fail with os.ErrClosed; a second
// Close returns nil.
func (w *OutputWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
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
func (s *Store) ReadOutput(id string, offset int64) (io.ReadCloser, int64, error) {
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
