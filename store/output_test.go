package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rexec/rexec/store"
)

func mustOpenOutput(t *testing.T, s *store.Store, id string) store.OutputWriter {
	t.Helper()
	w, err := s.OpenOutput(id)
	if err != nil {
		t.Fatalf("OpenOutput(%s): %v", id, err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func mustWrite(t *testing.T, w io.Writer, p []byte) {
	t.Helper()
	n, err := w.Write(p)
	if n != len(p) || err != nil {
		t.Fatalf("Write(%d bytes) = %d, %v; want all, no error", len(p), n, err)
	}
}

func outputFile(t *testing.T, s *store.Store, id string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir(), "output", id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOutputCap: the file on disk holds the output up to the cap and the
// marker, and the store says why in words that name the option.
func TestOutputCap(t *testing.T) {
	const max = 100
	marker := store.TruncationMarker(max)
	if marker != "\n[rexec: output truncated at 100 bytes]\n" {
		t.Fatalf("marker %q", marker)
	}
	s := mustOpen(t, t.TempDir(), store.Options{MaxOutput: max})
	data := bytes.Repeat([]byte("0123456789"), 20) // 200 bytes
	r := mustCreate(t, s, "x")
	w := mustOpenOutput(t, s, r.ID)
	mustWrite(t, w, data[:90])
	mustWrite(t, w, data[90:])
	want := string(data[:max]) + marker
	if got := string(outputFile(t, s, r.ID)); got != want {
		t.Fatalf("file = %q, want %q", got, want)
	}
	const reason = "output larger than 100 bytes (--max-output)"
	if w.TruncatedReason() != reason {
		t.Errorf("reason %q, want %q", w.TruncatedReason(), reason)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w2 := mustOpenOutput(t, s, r.ID)
	if w2.TruncatedReason() != reason {
		t.Errorf("after reopening: reason %q", w2.TruncatedReason())
	}
	mustWrite(t, w2, []byte("more"))
	if got := string(outputFile(t, s, r.ID)); got != want {
		t.Errorf("after reopening: file = %q", got)
	}
}

// TestOutputClosed: a closed writer fails writes with os.ErrClosed, and
// closes again without error.
func TestOutputClosed(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{})
	r := mustCreate(t, s, "x")
	w := mustOpenOutput(t, s, r.ID)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("late")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOutputDefaultCap(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{})
	r := mustCreate(t, s, "big")
	w := mustOpenOutput(t, s, r.ID)
	chunk := make([]byte, 1<<20)
	for range 17 {
		mustWrite(t, w, chunk)
	}
	want := int64(store.DefaultMaxOutput) + int64(len(store.TruncationMarker(store.DefaultMaxOutput)))
	if w.Size() != want {
		t.Errorf("size %d, want %d", w.Size(), want)
	}
	fi, err := os.Stat(filepath.Join(s.Dir(), "output", r.ID+".log"))
	if err != nil || fi.Size() != want {
		t.Errorf("file size %v, %v; want %d", fi, err, want)
	}
}

// TestFollowEndRecordedElsewhere: a run's end recorded by another process
// (here another Store on the same directory) sends no signal to this one's
// followers; they find it by looking again (followRecheck).
func TestFollowEndRecordedElsewhere(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := mustOpen(t, dir, store.Options{})
	other := mustOpen(t, dir, store.Options{})
	r := mustCreate(t, s, "x")
	if err := s.MarkStarted(ctx, r.ID, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	w := mustOpenOutput(t, other, r.ID)
	mustWrite(t, w, []byte("written elsewhere\n"))
	w.Close()

	rc, err := s.FollowOutput(ctx, r.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	type result struct {
		b   []byte
		err error
	}
	c := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(rc)
		c <- result{b, err}
	}()
	if err := other.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0)}); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-c:
		if string(res.b) != "written elsewhere\n" || res.err != nil {
			t.Errorf("follower got %q, %v", res.b, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not see the end recorded by another process")
	}
}

// TestFollowCloseWhileReading: Close from another goroutine ends a Read
// that waits at the end of the output, and a Read after Close fails; neither
// panics.
func TestFollowCloseWhileReading(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{})
	r := mustCreate(t, s, "x")
	rc, err := s.FollowOutput(context.Background(), r.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := rc.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // the Read is waiting
	rc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("waiting Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a waiting Read")
	}
	if _, err := rc.Read(make([]byte, 10)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
}
