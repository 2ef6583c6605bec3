package jsoutput

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rexec/rexec/internal/testnats"
	"github.com/rexec/rexec/store"
	"github.com/rexec/rexec/store/storetest"
)

// running records a run in h and starts it.
func running(t *testing.T, h store.History) store.Run {
	t.Helper()
	r := storetest.MustCreate(t, h, "out")
	if err := h.MarkStarted(context.Background(), r.ID, 100, time.Time{}); err != nil {
		t.Fatal(err)
	}
	return r
}

func markDone(t *testing.T, h store.History, id string, ended store.Ended) {
	t.Helper()
	if err := h.MarkDone(context.Background(), id, store.Outcome{Ended: ended}); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, w io.Writer, p []byte) {
	t.Helper()
	if n, err := w.Write(p); n != len(p) || err != nil {
		t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
	}
}

// pattern is n bytes that tell their offsets apart.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// readAll reads run id's output from offset with o.ReadOutput.
func readAll(t *testing.T, o *Outputs, id string, offset int64) ([]byte, int64) {
	t.Helper()
	rc, size, err := o.ReadOutput(id, offset)
	if err != nil {
		t.Fatalf("ReadOutput(%d): %v", offset, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading from %d: %v", offset, err)
	}
	return b, size
}

// follow follows run id's output from offset on o, ending at the test's
// end at the latest.
func follow(t *testing.T, o *Outputs, id string, offset int64) io.ReadCloser {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), storetest.Patience)
	t.Cleanup(cancel)
	rc, err := o.FollowOutput(ctx, id, offset)
	if err != nil {
		t.Fatalf("FollowOutput(%d): %v", offset, err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// checkMessages checks that the messages of run id's output are
// contiguous: each starts where the one before it ended, and the writers'
// end messages have no data.
func checkMessages(t *testing.T, o *Outputs, id string) {
	t.Helper()
	ctx := context.Background()
	var at int64
	for seq := uint64(1); ; {
		m, err := o.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(o.subject(id)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		off, err := offsetOf(m.Header)
		if err != nil || off != at {
			t.Fatalf("message %d at offset %d (%v), want %d", m.Sequence, off, err, at)
		}
		if m.Header.Get(hdrEnd) != "" && len(m.Data) > 0 {
			t.Fatalf("end message %d with %d bytes", m.Sequence, len(m.Data))
		}
		at += int64(len(m.Data))
		seq = m.Sequence + 1
	}
}

// TestTwoHosts: a run written on host A is followed on host B, which
// resumes by offset after its first follower was closed mid-stream, and
// reads it whole after A's connection is gone.
func TestTwoHosts(t *testing.T) {
	srv := testnats.Start(t)
	h := newHistory(t)
	n := newNames(t)
	ncA, jsA := testnats.Connect(t, srv)
	_, jsB := testnats.Connect(t, srv)
	a := mustOpen(t, jsA, n, h, Options{})
	b := mustOpen(t, jsB, n, h, Options{})
	r := running(t, h)
	w, err := a.OpenOutput(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(300 << 10) // several chunks
	first := follow(t, b, r.ID, 0)
	for p := data[:200<<10]; len(p) > 0; p = p[min(len(p), 5000):] {
		mustWrite(t, w, p[:min(len(p), 5000)])
	}
	got := make([]byte, 150<<10)
	if _, err := io.ReadFull(first, got); err != nil {
		t.Fatalf("first follower: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[:len(got)]) {
		t.Fatal("the first follower got other bytes")
	}
	second := follow(t, b, r.ID, int64(len(got)))
	mustWrite(t, w, data[200<<10:])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	markDone(t, h, r.ID, store.EndedExit)
	rest, err := io.ReadAll(second)
	if err != nil {
		t.Fatalf("second follower: %v", err)
	}
	if !bytes.Equal(append(got, rest...), data) {
		t.Fatalf("followers got %d+%d bytes, not the %d written", len(got), len(rest), len(data))
	}

	ncA.Close()
	if all, size := readAll(t, b, r.ID, 0); !bytes.Equal(all, data) || size != int64(len(data)) {
		t.Errorf("after the writer's host left: %d bytes, size %d; want %d", len(all), size, len(data))
	}
	if tail, _ := readAll(t, b, r.ID, 123457); !bytes.Equal(tail, data[123457:]) {
		t.Errorf("from 123457: %d bytes, want %d", len(tail), len(data)-123457)
	}
	checkMessages(t, b, r.ID)
}

// TestFollowLostHost: the host that ran a run dies without closing its
// writer (no end message); once the fleet marks the run done, followers
// on other hosts read what was written and end.
func TestFollowLostHost(t *testing.T) {
	srv := testnats.Start(t)
	h := newHistory(t)
	n := newNames(t)
	ncA, jsA := testnats.Connect(t, srv)
	_, jsB := testnats.Connect(t, srv)
	a := mustOpen(t, jsA, n, h, Options{})
	b := mustOpen(t, jsB, n, h, Options{})
	r := running(t, h)
	w, err := a.OpenOutput(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	mustWrite(t, w, []byte("half of it\n"))
	a.flushLocal(r.ID) // in the stream before the host goes
	f := follow(t, b, r.ID, 0)
	ncA.Close() // the host is gone: its writer never publishes its end

	got := make([]byte, len("half of it\n"))
	if _, err := io.ReadFull(f, got); err != nil || string(got) != "half of it\n" {
		t.Fatalf("follower: %q, %v", got, err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := f.Read(make([]byte, 10))
		ended <- err
	}()
	select {
	case err := <-ended:
		t.Fatalf("the follower of a running run ended: %v", err)
	case <-time.After(storetest.Quiet):
	}
	start := time.Now()
	markDone(t, h, r.ID, store.EndedInterrupted) // the fleet's "lost"
	select {
	case err := <-ended:
		if err != io.EOF {
			t.Fatalf("follower ended with %v, want io.EOF", err)
		}
		t.Logf("the follower ended %v after the run was marked done", time.Since(start).Round(time.Millisecond))
	case <-time.After(storetest.Patience):
		t.Fatalf("the follower did not end within %v of the run's end", storetest.Patience)
	}
	// The dead host's writer: Close does not hang, and says the end
	// message was not published.
	if err := w.Close(); err == nil {
		t.Error("Close on a closed connection: no error")
	}
}

// TestStreamRefuses: a stream that refuses output (full) cuts it with the
// failure marker; Write never waits for it.
func TestStreamRefuses(t *testing.T) {
	srv := testnats.Start(t)
	h := newHistory(t)
	_, js := testnats.Connect(t, srv)
	o := mustOpen(t, js, newNames(t), h, Options{MaxBytes: 8 << 10, MaxOutput: 1 << 20})
	r := running(t, h)
	w, err := o.OpenOutput(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(256 * 1000)
	var slowest time.Duration
	for i, p := 0, data; len(p) > 0; i, p = i+1, p[1000:] {
		start := time.Now()
		mustWrite(t, w, p[:1000])
		slowest = max(slowest, time.Since(start))
		if i < 4 { // the first 4000 bytes in messages the stream takes
			o.flushLocal(r.ID)
		}
	}
	if slowest > time.Second {
		t.Errorf("a Write took %v", slowest)
	}
	w.Close() // the end may be refused too
	reason := w.TruncatedReason()
	if !w.Truncated() || !strings.HasPrefix(reason, "writing the output failed: ") {
		t.Fatalf("truncated %v (%q), want the failure's reason", w.Truncated(), reason)
	}
	got, size := readAll(t, o, r.ID, 0)
	marker := failureMarker(strings.TrimPrefix(reason, "writing the output failed: "))
	body, _ := bytes.CutSuffix(got, []byte(marker)) // the marker may not fit either
	if len(body) < 4000 || !bytes.Equal(body, data[:len(body)]) || size != int64(len(got)) || w.Size() != size {
		t.Errorf("output of %d bytes (size %d, writer's %d) is not what the stream took (4000 bytes at least) and the marker", len(got), size, w.Size())
	}
	t.Logf("kept %d bytes, marker stored: %v, reason %q", len(body), len(body) < len(got), reason)
	checkMessages(t, o, r.ID)
}

// TestServerGone: with the server gone, Writes return at once, the output
// is cut once the buffer's bound is reached, and Close returns within its
// bound.
func TestServerGone(t *testing.T) {
	srv := testnats.Start(t)
	h := newHistory(t)
	_, js := testnats.Connect(t, srv)
	o := mustOpen(t, js, newNames(t), h, Options{Buffer: 64 << 10})
	// The publish in flight fails well after the Writes are done, and
	// Close gives up before the end message's publish would fail.
	o.t = timeouts{publish: time.Second, close: 1500 * time.Millisecond, sync: 300 * time.Millisecond, op: 300 * time.Millisecond}
	r := running(t, h)
	w, err := o.OpenOutput(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, w, []byte("before\n"))
	o.flushLocal(r.ID)
	stop(srv)

	data := pattern(1 << 20)
	start := time.Now()
	for p := data; len(p) > 0; p = p[4096:] {
		mustWrite(t, w, p[:4096])
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("1 MiB of Writes to a writer whose server is gone took %v", d)
	}
	if !w.Truncated() || !strings.Contains(w.TruncatedReason(), "did not keep up") {
		t.Errorf("truncated %v (%q), want cut for the bound", w.Truncated(), w.TruncatedReason())
	}
	start = time.Now()
	err = w.Close()
	if d := time.Since(start); d > o.t.close+time.Second {
		t.Errorf("Close took %v, bound %v", d, o.t.close)
	}
	if err == nil {
		t.Error("Close without a server: no error")
	}
	if w.Size() != int64(len("before\n")) || !strings.HasPrefix(w.TruncatedReason(), "writing the output failed: ") {
		t.Errorf("after Close: size %d (want what the stream has, %d), reason %q", w.Size(), len("before\n"), w.TruncatedReason())
	}
	if _, err := w.Write([]byte("late")); err == nil {
		t.Error("Write after Close succeeded")
	}
}

// TestSeek: readers find any offset of an output whose chunks are spread
// among other runs' messages, from the host that wrote it and another.
func TestSeek(t *testing.T) {
	srv := testnats.Start(t)
	h := newHistory(t)
	n := newNames(t)
	_, jsA := testnats.Connect(t, srv)
	_, jsB := testnats.Connect(t, srv)
	a := mustOpen(t, jsA, n, h, Options{})
	b := mustOpen(t, jsB, n, h, Options{})
	r, other := running(t, h), running(t, h)
	w, err := a.OpenOutput(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	wo, err := a.OpenOutput(other.ID)
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(41 * 7000)
	for i := 0; i < 41; i++ {
		mustWrite(t, w, data[i*7000:(i+1)*7000])
		a.flushLocal(r.ID) // one message each
		for range i%3 + 1 {
			mustWrite(t, wo, []byte("other\n"))
			a.flushLocal(other.ID)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wo.Close(); err != nil {
		t.Fatal(err)
	}
	offsets := []int64{0, 1, 6999, 7000, 7001, 13999, 14000, 100000, 7000 * 20, 7000*40 - 1, 7000 * 40, int64(len(data)) - 1, int64(len(data))}
	for _, o := range []*Outputs{a, b} {
		for _, off := range offsets {
			if got, size := readAll(t, o, r.ID, off); !bytes.Equal(got, data[off:]) || size != int64(len(data)) {
				t.Errorf("ReadOutput from %d: %d bytes (size %d), want %d", off, len(got), size, len(data)-int(off))
			}
		}
	}
	// Followers of a run that is not done, then is.
	var fs []io.ReadCloser
	for _, off := range offsets {
		fs = append(fs, follow(t, b, r.ID, off))
	}
	markDone(t, h, r.ID, store.EndedExit)
	for i, f := range fs {
		got, err := io.ReadAll(f)
		if err != nil || !bytes.Equal(got, data[offsets[i]:]) {
			t.Errorf("follower from %d: %d bytes, %v; want %d", offsets[i], len(got), err, len(data)-int(offsets[i]))
		}
	}
	checkMessages(t, b, r.ID)
	checkMessages(t, b, other.ID)
}

// TestSecondWriterElsewhere: two writers of one run at once, on two
// hosts: the second to publish finds the subject moved on and cuts its
// output, never interleaving with the first's.
func TestSecondWriterElsewhere(t *testing.T) {
	srv := testnats.Start(t)
	h := newHistory(t)
	n := newNames(t)
	_, jsA := testnats.Connect(t, srv)
	_, jsB := testnats.Connect(t, srv)
	a := mustOpen(t, jsA, n, h, Options{})
	b := mustOpen(t, jsB, n, h, Options{})
	r := running(t, h)
	wa, err := a.OpenOutput(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := b.OpenOutput(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, wa, []byte("from a\n"))
	a.flushLocal(r.ID)
	mustWrite(t, wb, []byte("from b\n"))
	wa.Close()
	wb.Close()
	if !wb.Truncated() || wa.Truncated() {
		t.Errorf("truncated: a %v, b %v (%q); want b only", wa.Truncated(), wb.Truncated(), wb.TruncatedReason())
	}
	got, _ := readAll(t, a, r.ID, 0)
	if !strings.HasPrefix(string(got), "from a\n") || strings.Contains(string(got), "from b") {
		t.Errorf("output %q", got)
	}
	checkMessages(t, a, r.ID)
}

// TestDelete: Delete purges a run's output and stdin, and nothing else.
func TestDelete(t *testing.T) {
	srv := testnats.Start(t)
	h := newHistory(t)
	_, js := testnats.Connect(t, srv)
	o := mustOpen(t, js, newNames(t), h, Options{})
	r, kept := running(t, h), running(t, h)
	for _, id := range []string{r.ID, kept.ID} {
		w, err := o.OpenOutput(id)
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, w, []byte("output of "+id))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := o.SaveStdin(id, []byte("stdin of "+id)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := o.Delete(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if got, size := readAll(t, o, r.ID, 0); len(got) != 0 || size != 0 {
		t.Errorf("output after Delete: %q, size %d", got, size)
	}
	if got, err := o.Stdin(r.ID); got != nil || err != nil {
		t.Errorf("stdin after Delete: %q, %v", got, err)
	}
	if got, _ := readAll(t, o, kept.ID, 0); string(got) != "output of "+kept.ID {
		t.Errorf("another run's output: %q", got)
	}
	if got, err := o.Stdin(kept.ID); string(got) != "stdin of "+kept.ID || err != nil {
		t.Errorf("another run's stdin: %q, %v", got, err)
	}
	for _, id := range []string{r.ID, "", "nope", "a.b.>", "*", "../x"} {
		if err := o.Delete(ctx, id); err != nil {
			t.Errorf("Delete(%q): %v", id, err)
		}
	}
}

// TestStdin: stdin up to launch's limit (1 MiB) goes through the object
// store on any server; a run the history does not have is ErrNotFound.
func TestStdin(t *testing.T) {
	srv := testnats.Start(t)
	h := newHistory(t)
	_, jsA := testnats.Connect(t, srv)
	_, jsB := testnats.Connect(t, srv)
	n := newNames(t)
	a := mustOpen(t, jsA, n, h, Options{})
	b := mustOpen(t, jsB, n, h, Options{})
	r := storetest.MustCreate(t, h, "in")
	in := pattern(1 << 20)
	if err := a.SaveStdin(r.ID, in); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Stdin(r.ID); !bytes.Equal(got, in) || err != nil {
		t.Errorf("Stdin on another host: %d bytes, %v; want %d", len(got), err, len(in))
	}
	if err := b.DeleteStdin(r.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Stdin(r.ID); got != nil || err != nil {
		t.Errorf("Stdin after DeleteStdin: %d bytes, %v", len(got), err)
	}
	for _, id := range []string{"zzzzzzzzzzzzzzzzzzzzzzzzzz", "", "a.b.>", "../x"} {
		if err := a.SaveStdin(id, []byte("x")); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SaveStdin(%q): %v, want ErrNotFound", id, err)
		}
	}
}

// TestBufferAtCap: a buffer as large as the cap is never passed, however
// fast the run writes: the output is cut by the cap alone.
func TestBufferAtCap(t *testing.T) {
	srv := testnats.Start(t)
	h := newHistory(t)
	_, js := testnats.Connect(t, srv)
	const max = 200_000
	o := mustOpen(t, js, newNames(t), h, Options{MaxOutput: max, Buffer: max})
	r := running(t, h)
	w, err := o.OpenOutput(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(3 * max)
	for p := data; len(p) > 0; p = p[max/2:] {
		mustWrite(t, w, p[:max/2])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := readAll(t, o, r.ID, 0); !bytes.Equal(got, append(data[:max:max], store.TruncationMarker(max)...)) {
		t.Errorf("output of %d bytes, want the cap and its marker (%q)", len(got), w.TruncatedReason())
	}
}
