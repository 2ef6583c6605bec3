package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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

func TestOutputCap(t *testing.T) {
	ctx := context.Background()
	const max = 100
	marker := store.TruncationMarker(max)
	if marker != "\n[rexec: output truncated at 100 bytes]\n" {
		t.Fatalf("marker %q", marker)
	}
	s := mustOpen(t, t.TempDir(), store.Options{MaxOutput: max})
	data := bytes.Repeat([]byte("0123456789"), 20) // 200 bytes

	t.Run("cut in a write", func(t *testing.T) {
		r := mustCreate(t, s, "x")
		w := mustOpenOutput(t, s, r.ID)
		mustWrite(t, w, data[:60])
		mustWrite(t, w, data[60:90])
		if w.Truncated() || w.Size() != 90 || w.TruncatedReason() != "" {
			t.Fatalf("before the cap: truncated %v (%q) size %d", w.Truncated(), w.TruncatedReason(), w.Size())
		}
		mustWrite(t, w, data[90:140]) // 10 fit
		mustWrite(t, w, data[140:])
		mustWrite(t, w, bytes.Repeat([]byte("x"), 1<<16))
		want := string(data[:max]) + marker
		if got := string(outputFile(t, s, r.ID)); got != want {
			t.Fatalf("file = %q, want %q", got, want)
		}
		const reason = "output larger than 100 bytes (--max-output)"
		if !w.Truncated() || w.Size() != int64(len(want)) || w.TruncatedReason() != reason {
			t.Errorf("truncated %v (%q) size %d, want true (%q) %d", w.Truncated(), w.TruncatedReason(), w.Size(), reason, len(want))
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		// A second writer (e.g. after a restart) does not grow it either.
		w2 := mustOpenOutput(t, s, r.ID)
		mustWrite(t, w2, []byte("more"))
		if got := string(outputFile(t, s, r.ID)); got != want {
			t.Errorf("after reopening: file = %q", got)
		}
		if w2.TruncatedReason() != reason {
			t.Errorf("after reopening: reason %q", w2.TruncatedReason())
		}
		w2.Close()
		err := s.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0), OutputTruncated: w2.TruncatedReason()})
		if err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, s, r.ID); got.OutputSize != int64(len(want)) || got.OutputTruncated != reason {
			t.Errorf("recorded OutputSize %d, OutputTruncated %q; want %d, %q", got.OutputSize, got.OutputTruncated, len(want), reason)
		}
	})

	t.Run("exactly at the cap", func(t *testing.T) {
		r := mustCreate(t, s, "x")
		w := mustOpenOutput(t, s, r.ID)
		mustWrite(t, w, data[:max])
		if w.Truncated() || string(outputFile(t, s, r.ID)) != string(data[:max]) {
			t.Fatal("a write that fits exactly was truncated")
		}
		if got := mustGet(t, s, r.ID).OutputSize; got != max {
			t.Errorf("live OutputSize %d, want %d", got, max)
		}
		mustWrite(t, w, []byte("!"))
		if got := string(outputFile(t, s, r.ID)); got != string(data[:max])+marker {
			t.Errorf("file = %q", got)
		}
	})

	t.Run("closed", func(t *testing.T) {
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
	})

	t.Run("unknown run", func(t *testing.T) {
		for _, id := range []string{"zzzzzzzzzzzzzzzzzzzzzzzzzz", "../rexec.db", ""} {
			if _, err := s.OpenOutput(id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("OpenOutput(%q): %v, want ErrNotFound", id, err)
			}
		}
	})
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

func TestOutputConcurrentWriters(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{MaxOutput: 5000})
	r := mustCreate(t, s, "x")
	w := mustOpenOutput(t, s, r.ID)
	var wg sync.WaitGroup
	for _, line := range []string{"stdout...\n", "stderr...\n"} {
		wg.Go(func() {
			for range 1000 {
				if n, err := io.WriteString(w, line); n != len(line) || err != nil {
					t.Errorf("write: %d, %v", n, err)
					return
				}
				_ = w.Size() // a follower polling
			}
		})
	}
	wg.Wait()
	got := string(outputFile(t, s, r.ID))
	body, ok := strings.CutSuffix(got, store.TruncationMarker(5000))
	if !ok || len(body) != 5000 {
		t.Fatalf("file of %d bytes does not end in the marker after 5000", len(got))
	}
	for _, l := range strings.Split(body, "\n") { // 5000 is a whole number of lines
		if l != "" && l != "stdout..." && l != "stderr..." {
			t.Fatalf("interleaved line %q", l)
		}
	}
}

func TestReadOutput(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{})
	read := func(t *testing.T, id string, offset int64) (string, int64) {
		t.Helper()
		rc, size, err := s.ReadOutput(id, offset)
		if err != nil {
			t.Fatalf("ReadOutput(%d): %v", offset, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b), size
	}

	r := mustCreate(t, s, "x")
	t.Run("queued, no output yet", func(t *testing.T) {
		if got, size := read(t, r.ID, 0); got != "" || size != 0 {
			t.Errorf("got %q size %d", got, size)
		}
	})

	w := mustOpenOutput(t, s, r.ID)
	mustWrite(t, w, []byte("0123456789"))
	for _, tc := range []struct {
		offset int64
		want   string
	}{{0, "0123456789"}, {4, "456789"}, {9, "9"}, {10, ""}} {
		if got, size := read(t, r.ID, tc.offset); got != tc.want || size != 10 {
			t.Errorf("offset %d: got %q size %d, want %q size 10", tc.offset, got, size, tc.want)
		}
	}
	for _, off := range []int64{11, 1 << 40, -1} {
		if _, _, err := s.ReadOutput(r.ID, off); !errors.Is(err, store.ErrBadOffset) {
			t.Errorf("offset %d: %v, want ErrBadOffset", off, err)
		}
	}
	for _, id := range []string{"zzzzzzzzzzzzzzzzzzzzzzzzzz", "../../etc/passwd"} {
		if _, _, err := s.ReadOutput(id, 0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ReadOutput(%q): %v, want ErrNotFound", id, err)
		}
	}

	t.Run("resume without gaps or repeats", func(t *testing.T) {
		// A follower reads what there is, loses its connection, the run
		// writes more, the follower comes back with the offset it reached.
		first, size := read(t, r.ID, 3)
		mustWrite(t, w, []byte("abcdef"))
		second, size2 := read(t, r.ID, 3+int64(len(first)))
		if first+second != "3456789abcdef" || size != 10 || size2 != 16 {
			t.Errorf("got %q + %q (sizes %d, %d)", first, second, size, size2)
		}
	})

	t.Run("reader sees growth", func(t *testing.T) {
		rc, size, err := s.ReadOutput(r.ID, w.Size())
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		mustWrite(t, w, []byte("tail"))
		b, _ := io.ReadAll(rc)
		if string(b) != "tail" || size != 16 || w.Size() != 20 {
			t.Errorf("got %q, size %d, writer size %d", b, size, w.Size())
		}
	})
}
