package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rexec/rexec/store"
)

// TestOutputs runs the conformance subtests of store.Outputs and
// store.OutputWriter. open returns a new, empty history and the outputs of
// its runs (for the single-host store, the same *store.Store twice), both
// released at the end of the t it is given. maxOutput is the output cap
// the outputs were opened with; the suite writes a few times that much to
// some runs, so it must be between 100 bytes and 1 MiB.
//
// A run's output exists from the history's Create; the suite makes a run
// done with History.MarkDone after closing its writer, as package detached
// does.
func TestOutputs(t *testing.T, maxOutput int64, open func(t *testing.T) (store.History, store.Outputs)) {
	if maxOutput < 100 || maxOutput > 1<<20 {
		t.Fatalf("storetest.TestOutputs: maxOutput %d: open the outputs with a cap between 100 bytes and 1 MiB", maxOutput)
	}
	for _, tc := range []struct {
		name string
		test func(*testing.T, *outputs)
	}{
		{"OpenUnknown", testOpenUnknown},
		{"EmptyFromCreate", testEmptyFromCreate},
		{"WriteAndSize", testWriteAndSize},
		{"Cap", testCap},
		{"CapExactly", testCapExactly},
		{"CapOneWrite", testCapOneWrite},
		{"SecondWriterAppends", testSecondWriterAppends},
		{"SecondWriterKeepsCap", testSecondWriterKeepsCap},
		{"WriteAfterClose", testWriteAfterClose},
		{"ConcurrentWrites", testConcurrentWrites},
		{"SizeRecorded", testSizeRecorded},
		{"ReadOutput", testReadOutput},
		{"ReadOutputBadOffset", testReadOutputBadOffset},
		{"ReadOutputUnknown", testReadOutputUnknown},
		{"ReadOutputResume", testReadOutputResume},
		{"ReadOutputSeesGrowth", testReadOutputSeesGrowth},
		{"DeleteRemovesOutput", testDeleteRemovesOutput},
		{"RetentionRemovesOutput", testRetentionRemovesOutput},
		{"RecoverRecordsSize", testRecoverRecordsSize},
		{"FollowWrites", testFollowWrites},
		{"FollowFromOffset", testFollowFromOffset},
		{"FollowBadOffset", testFollowBadOffset},
		{"FollowWaitsWhileQuiet", testFollowWaitsWhileQuiet},
		{"FollowEndsWhenDone", testFollowEndsWhenDone},
		{"FollowWaitsForDone", testFollowWaitsForDone},
		{"FollowAfterEnd", testFollowAfterEnd},
		{"FollowQueued", testFollowQueued},
		{"FollowQueuedCancelled", testFollowQueuedCancelled},
		{"FollowContextCancelled", testFollowContextCancelled},
		{"FollowMany", testFollowMany},
		{"FollowCap", testFollowCap},
		{"Stdin", testStdin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, o := open(t)
			tc.test(t, &outputs{History: h, Outputs: o, max: maxOutput})
		})
	}
}

// outputs is what a subtest of TestOutputs works on.
type outputs struct {
	store.History
	store.Outputs
	max int64
}

// run records a queued run.
func (o *outputs) run(t *testing.T) store.Run {
	t.Helper()
	return MustCreate(t, o.History, "out")
}

// running records a run and starts it.
func (o *outputs) running(t *testing.T) store.Run {
	t.Helper()
	r := o.run(t)
	mustStart(t, o.History, r.ID, 100)
	return r
}

// open opens run id's output, closed at the end of the test unless the
// test closed it.
func (o *outputs) open(t *testing.T, id string) store.OutputWriter {
	t.Helper()
	ow, err := o.OpenOutput(id)
	if err != nil {
		t.Fatalf("OpenOutput(%s): %v", id, err)
	}
	w := &writer{OutputWriter: ow}
	t.Cleanup(func() { w.Close() })
	return w
}

// writer closes its OutputWriter once: io.Closer leaves a second Close
// undefined.
type writer struct {
	store.OutputWriter
	once sync.Once
	err  error
}

func (w *writer) Close() error {
	w.once.Do(func() { w.err = w.OutputWriter.Close() })
	return w.err
}

// done closes w, then records run id as done with the writer's truncation.
func (o *outputs) done(t *testing.T, id string, w store.OutputWriter) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Close of the output of %s: %v", id, err)
	}
	mustDone(t, o.History, id, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0), OutputTruncated: w.TruncatedReason()})
}

// read reads run id's output from offset and returns it with the size
// ReadOutput reported.
func (o *outputs) read(t *testing.T, id string, offset int64) (string, int64) {
	t.Helper()
	rc, size, err := o.ReadOutput(id, offset)
	if err != nil {
		t.Fatalf("ReadOutput(%s, %d): %v", id, offset, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading the output of %s: %v", id, err)
	}
	return string(b), size
}

// content is run id's whole output.
func (o *outputs) content(t *testing.T, id string) string {
	t.Helper()
	s, _ := o.read(t, id, 0)
	return s
}

func mustWrite(t *testing.T, w io.Writer, p string) {
	t.Helper()
	n, err := io.WriteString(w, p)
	if n != len(p) || err != nil {
		t.Fatalf("Write(%d bytes) = %d, %v; want all, no error", len(p), n, err)
	}
}

// digits is n bytes of 0123456789...
func digits(n int64) string {
	return strings.Repeat("0123456789", int(n/10)+1)[:n]
}

func testOpenUnknown(t *testing.T, o *outputs) {
	o.run(t)
	for _, id := range unknownIDs {
		if w, err := o.OpenOutput(id); !errors.Is(err, store.ErrNotFound) {
			if err == nil {
				w.Close()
			}
			t.Errorf("OpenOutput(%q): %v, want ErrNotFound", id, err)
		}
	}
}

// testEmptyFromCreate: a queued run's output exists and is empty, before
// any writer opened it.
func testEmptyFromCreate(t *testing.T, o *outputs) {
	r := o.run(t)
	if got, size := o.read(t, r.ID, 0); got != "" || size != 0 {
		t.Errorf("output of a new run: %q, size %d", got, size)
	}
	if got := MustGet(t, o.History, r.ID).OutputSize; got != 0 {
		t.Errorf("OutputSize of a new run %d", got)
	}
}

func testWriteAndSize(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	if w.Size() != 0 || w.Truncated() || w.TruncatedReason() != "" {
		t.Fatalf("new writer: size %d, truncated %v (%q)", w.Size(), w.Truncated(), w.TruncatedReason())
	}
	want := ""
	for _, p := range []string{"hello", "", " world\n", "\x00\xff binary\r\n"} {
		mustWrite(t, w, p)
		want += p
		if w.Size() != int64(len(want)) {
			t.Errorf("Size %d after %d bytes", w.Size(), len(want))
		}
		if got := o.content(t, r.ID); got != want {
			t.Errorf("output %q, want %q", got, want)
		}
		// The size of a run that is not done is read at the call.
		if got := MustGet(t, o.History, r.ID).OutputSize; got != int64(len(want)) {
			t.Errorf("live OutputSize %d, want %d", got, len(want))
		}
	}
	if w.Truncated() || w.TruncatedReason() != "" {
		t.Errorf("under the cap: truncated %v (%q)", w.Truncated(), w.TruncatedReason())
	}
	active, err := o.ListActive(context.Background())
	if err != nil || len(active) != 1 || active[0].OutputSize != int64(len(want)) {
		t.Errorf("ListActive: %+v, %v; want OutputSize %d", active, err, len(want))
	}
}

// testCap: the write that passes the cap writes what fits and one marker
// line; later writes are dropped but reported done.
func testCap(t *testing.T, o *outputs) {
	max := o.max
	data := digits(2*max + 10)
	marker := store.TruncationMarker(max)
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, data[:max-20])
	mustWrite(t, w, data[max-20:max-10])
	if w.Truncated() || w.Size() != max-10 || w.TruncatedReason() != "" {
		t.Fatalf("before the cap: truncated %v (%q), size %d", w.Truncated(), w.TruncatedReason(), w.Size())
	}
	mustWrite(t, w, data[max-10:max+20]) // 10 fit
	if !w.Truncated() || w.TruncatedReason() == "" {
		t.Errorf("past the cap: truncated %v (%q), want true and a reason", w.Truncated(), w.TruncatedReason())
	}
	mustWrite(t, w, data[max+20:])
	mustWrite(t, w, strings.Repeat("x", 1<<16))
	want := data[:max] + marker
	if got := o.content(t, r.ID); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
	if w.Size() != int64(len(want)) {
		t.Errorf("Size %d, want %d (marker included)", w.Size(), len(want))
	}
	if got := MustGet(t, o.History, r.ID).OutputSize; got != int64(len(want)) {
		t.Errorf("live OutputSize %d, want %d", got, len(want))
	}
}

// testCapExactly: output of exactly the cap is not cut; one byte more is.
func testCapExactly(t *testing.T, o *outputs) {
	max := o.max
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, digits(max))
	if w.Truncated() || w.Size() != max || o.content(t, r.ID) != digits(max) {
		t.Fatalf("output of exactly the cap: truncated %v, size %d", w.Truncated(), w.Size())
	}
	mustWrite(t, w, "!")
	if got, want := o.content(t, r.ID), digits(max)+store.TruncationMarker(max); got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if !w.Truncated() {
		t.Error("one byte past the cap: not truncated")
	}
}

// testCapOneWrite: one write far past the cap.
func testCapOneWrite(t *testing.T, o *outputs) {
	max := o.max
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, digits(3*max))
	if got, want := o.content(t, r.ID), digits(max)+store.TruncationMarker(max); got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

// testSecondWriterAppends: a second writer (a run started again after a
// failed start, or by a restarted server) continues after what is there,
// and its Size counts it.
func testSecondWriterAppends(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "first\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w2 := o.open(t, r.ID)
	if w2.Size() != 6 || w2.Truncated() {
		t.Errorf("second writer: size %d, truncated %v; want 6, false", w2.Size(), w2.Truncated())
	}
	mustWrite(t, w2, "second\n")
	if got := o.content(t, r.ID); got != "first\nsecond\n" {
		t.Errorf("output %q", got)
	}
	if w2.Size() != 13 {
		t.Errorf("second writer's Size %d, want 13", w2.Size())
	}
	// It counts what was there against the cap.
	mustWrite(t, w2, digits(o.max))
	if got, want := o.content(t, r.ID), ("first\nsecond\n" + digits(o.max))[:o.max]+store.TruncationMarker(o.max); got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

// testSecondWriterKeepsCap: output cut by one writer is not grown by the
// next, which knows it is cut.
func testSecondWriterKeepsCap(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, digits(o.max+1))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := digits(o.max) + store.TruncationMarker(o.max)
	w2 := o.open(t, r.ID)
	mustWrite(t, w2, "more")
	if got := o.content(t, r.ID); got != want {
		t.Errorf("after a second writer: output %q, want %q", got, want)
	}
	if !w2.Truncated() || w2.TruncatedReason() == "" || w2.Size() != int64(len(want)) {
		t.Errorf("second writer: truncated %v (%q), size %d; want true, a reason, %d", w2.Truncated(), w2.TruncatedReason(), w2.Size(), len(want))
	}
}

func testWriteAfterClose(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "before")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("late")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if got := o.content(t, r.ID); got != "before" {
		t.Errorf("output %q, want %q", got, "before")
	}
}

// testConcurrentWrites: stdout and stderr pumps share a writer; whole
// writes are never interleaved, and the cap holds.
func testConcurrentWrites(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	lines := []string{"stdout...\n", "stderr...\n"}
	n := int(o.max/10) + 10 // each pump alone passes the cap
	var wg sync.WaitGroup
	for _, line := range lines {
		wg.Go(func() {
			for range n {
				if k, err := io.WriteString(w, line); k != len(line) || err != nil {
					t.Errorf("Write: %d, %v", k, err)
					return
				}
				_ = w.Size() // a follower polling
				_ = w.Truncated()
			}
		})
	}
	waitGroup(t, &wg)
	got := o.content(t, r.ID)
	body, ok := strings.CutSuffix(got, store.TruncationMarker(o.max))
	if !ok || int64(len(body)) != o.max {
		t.Fatalf("output of %d bytes does not end in the marker after %d", len(got), o.max)
	}
	whole := body[:strings.LastIndexByte(body, '\n')+1]
	for _, l := range strings.SplitAfter(whole, "\n") {
		if l != "" && l != lines[0] && l != lines[1] {
			t.Fatalf("interleaved line %q", l)
		}
	}
	if rest := body[len(whole):]; !strings.HasPrefix(lines[0], rest) && !strings.HasPrefix(lines[1], rest) {
		t.Errorf("the cut line %q is not the start of a line", rest)
	}
	if w.Size() != int64(len(got)) {
		t.Errorf("Size %d, want %d", w.Size(), len(got))
	}
}

// testSizeRecorded: MarkDone records the output's size, marker included,
// and why it was cut.
func testSizeRecorded(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, digits(o.max+5))
	reason := w.TruncatedReason()
	o.done(t, r.ID, w)
	want := o.max + int64(len(store.TruncationMarker(o.max)))
	if got := MustGet(t, o.History, r.ID); got.OutputSize != want || got.OutputTruncated != reason || reason == "" {
		t.Errorf("recorded OutputSize %d, OutputTruncated %q; want %d, %q", got.OutputSize, got.OutputTruncated, want, reason)
	}
	small := o.running(t)
	w = o.open(t, small.ID)
	mustWrite(t, w, "12345")
	o.done(t, small.ID, w)
	if got := MustGet(t, o.History, small.ID); got.OutputSize != 5 || got.OutputTruncated != "" {
		t.Errorf("recorded OutputSize %d, OutputTruncated %q; want 5, none", got.OutputSize, got.OutputTruncated)
	}
	// A run cancelled while queued has no output.
	q := o.run(t)
	mustDone(t, o.History, q.ID, store.Outcome{Ended: store.EndedCancelled})
	if got := MustGet(t, o.History, q.ID); got.OutputSize != 0 {
		t.Errorf("OutputSize of a cancelled queued run %d", got.OutputSize)
	}
	if got, size := o.read(t, q.ID, 0); got != "" || size != 0 {
		t.Errorf("output of a cancelled queued run %q, size %d", got, size)
	}
}

func testReadOutput(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "0123456789")
	for _, tc := range []struct {
		offset int64
		want   string
	}{{0, "0123456789"}, {4, "456789"}, {9, "9"}, {10, ""}} {
		if got, size := o.read(t, r.ID, tc.offset); got != tc.want || size != 10 {
			t.Errorf("offset %d: %q, size %d; want %q, size 10", tc.offset, got, size, tc.want)
		}
	}
	o.done(t, r.ID, w)
	if got, size := o.read(t, r.ID, 3); got != "3456789" || size != 10 {
		t.Errorf("done run from 3: %q, size %d", got, size)
	}
}

func testReadOutputBadOffset(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "0123456789")
	for _, off := range []int64{11, 1 << 40, -1, -11} {
		if rc, _, err := o.ReadOutput(r.ID, off); !errors.Is(err, store.ErrBadOffset) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("offset %d: %v, want ErrBadOffset", off, err)
		}
	}
	q := o.run(t)
	if rc, _, err := o.ReadOutput(q.ID, 1); !errors.Is(err, store.ErrBadOffset) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("offset 1 of an empty output: %v, want ErrBadOffset", err)
	}
}

func testReadOutputUnknown(t *testing.T, o *outputs) {
	o.run(t)
	for _, id := range unknownIDs {
		if rc, _, err := o.ReadOutput(id, 0); !errors.Is(err, store.ErrNotFound) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("ReadOutput(%q): %v, want ErrNotFound", id, err)
		}
	}
}

// testReadOutputResume: a reader that lost its connection comes back with
// the offset it reached, and gets the rest without gaps or repeats.
func testReadOutputResume(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "0123456789")
	first, size := o.read(t, r.ID, 3)
	mustWrite(t, w, "abcdef")
	second, size2 := o.read(t, r.ID, 3+int64(len(first)))
	if first+second != "3456789abcdef" || size != 10 || size2 != 16 {
		t.Errorf("got %q + %q (sizes %d, %d)", first, second, size, size2)
	}
}

// testReadOutputSeesGrowth: ReadOutput reads the output as it is when
// read, past the size it reported.
func testReadOutputSeesGrowth(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "0123456789")
	rc, size, err := o.ReadOutput(r.ID, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	mustWrite(t, w, "tail")
	b, err := io.ReadAll(rc)
	if string(b) != "456789tail" || size != 10 || err != nil {
		t.Errorf("got %q, %v, size %d; want %q, size 10", b, err, size, "456789tail")
	}
}

// gone checks that run id's output is gone with the run.
func (o *outputs) gone(t *testing.T, id string) {
	t.Helper()
	if rc, _, err := o.ReadOutput(id, 0); !errors.Is(err, store.ErrNotFound) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("ReadOutput of a deleted run: %v, want ErrNotFound", err)
	}
	if w, err := o.OpenOutput(id); !errors.Is(err, store.ErrNotFound) {
		if err == nil {
			w.Close()
		}
		t.Errorf("OpenOutput of a deleted run: %v, want ErrNotFound", err)
	}
	if rc, err := o.FollowOutput(context.Background(), id, 0); !errors.Is(err, store.ErrNotFound) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("FollowOutput of a deleted run: %v, want ErrNotFound", err)
	}
}

func testDeleteRemovesOutput(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "output\n")
	o.done(t, r.ID, w)
	kept := o.running(t)
	wk := o.open(t, kept.ID)
	mustWrite(t, wk, "kept\n")
	if err := o.Delete(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	o.gone(t, r.ID)
	if got := o.content(t, kept.ID); got != "kept\n" {
		t.Errorf("another run's output: %q", got)
	}
}

func testRetentionRemovesOutput(t *testing.T, o *outputs) {
	ctx := context.Background()
	old := o.running(t)
	w := o.open(t, old.ID)
	mustWrite(t, w, "old\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	mustDone(t, o.History, old.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0), EndedAt: time.Now().Add(-48 * time.Hour)})
	recent := o.running(t)
	w = o.open(t, recent.ID)
	mustWrite(t, w, "recent\n")
	o.done(t, recent.ID, w)
	if n, err := o.DeleteEndedBefore(ctx, time.Now().Add(-24*time.Hour)); n != 1 || err != nil {
		t.Fatalf("DeleteEndedBefore = %d, %v; want 1", n, err)
	}
	o.gone(t, old.ID)
	if got := o.content(t, recent.ID); got != "recent\n" {
		t.Errorf("output of the kept run: %q", got)
	}
}

// testRecoverRecordsSize: a run Recover ends keeps the size of the output
// it wrote.
func testRecoverRecordsSize(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "half a line")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := MustGet(t, o.History, r.ID); got.State != store.StateDone || got.OutputSize != int64(len("half a line")) {
		t.Errorf("after Recover: state %s, OutputSize %d; want done, %d", got.State, got.OutputSize, len("half a line"))
	}
	if got := o.content(t, r.ID); got != "half a line" {
		t.Errorf("output %q", got)
	}
}

// A follower reads from FollowOutput in a goroutine of its own, as an HTTP
// handler would, and keeps what it got.
type follower struct {
	cancel  context.CancelCauseFunc
	changed chan struct{} // a token when got or err changed

	mu  sync.Mutex
	got []byte
	err error // the error that ended Read; nil while it goes on
}

// errTestOver ends the followers still reading when their test is over.
var errTestOver = errors.New("storetest: the test is over")

// follow starts following run id's output from offset. Read is called with
// a small buffer, so that reads end in the middle of writes.
func (o *outputs) follow(t *testing.T, id string, offset int64) *follower {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	rc, err := o.FollowOutput(ctx, id, offset)
	if err != nil {
		cancel(nil)
		t.Fatalf("FollowOutput(%s, %d): %v", id, offset, err)
	}
	f := &follower{cancel: cancel, changed: make(chan struct{}, 1)}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		buf := make([]byte, 7)
		for {
			n, err := rc.Read(buf)
			f.mu.Lock()
			f.got = append(f.got, buf[:n]...)
			f.err = err
			f.mu.Unlock()
			select {
			case f.changed <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel(errTestOver)
		select {
		case <-ended:
		case <-time.After(Patience):
			t.Errorf("a follower's Read did not return within %v of its context's end", Patience)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("Close of a follower: %v", err)
		}
	})
	return f
}

// state is what f got so far, and the error that ended it.
func (f *follower) state() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.got), f.err
}

// want waits until f got want (all it got since it started) and fails t if
// it gets something else, ends, or takes longer than Patience.
func (f *follower) want(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(Patience)
	for {
		got, err := f.state()
		if len(got) >= len(want) || err != nil {
			if got != want || err != nil {
				t.Fatalf("follower got %q (ended: %v), want %q and more to come", got, err, want)
			}
			return
		}
		select {
		case <-f.changed:
		case <-deadline:
			t.Fatalf("follower got %q after %v, want %q", got, Patience, want)
		}
	}
}

// quiet checks that f, which got have, gets nothing more and does not end
// for a while: it waits for more.
func (f *follower) quiet(t *testing.T, have string) {
	t.Helper()
	time.Sleep(Quiet)
	if got, err := f.state(); got != have || err != nil {
		t.Fatalf("follower got %q (ended: %v), want %q and still waiting", got, err, have)
	}
}

// end waits until f ends, and fails t unless it got want and ended with
// wantErr (errors.Is), within Patience.
func (f *follower) end(t *testing.T, want string, wantErr error) {
	t.Helper()
	deadline := time.After(Patience)
	for {
		got, err := f.state()
		if err != nil {
			if got != want || !errors.Is(err, wantErr) {
				t.Fatalf("follower got %q and ended with %v, want %q and %v", got, err, want, wantErr)
			}
			return
		}
		select {
		case <-f.changed:
		case <-deadline:
			t.Fatalf("follower got %q and did not end within %v, want %q and %v", got, Patience, want, wantErr)
		}
	}
}

// testFollowWrites: a follower gets the bytes written after it started,
// as they are written.
func testFollowWrites(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	f := o.follow(t, r.ID, 0)
	mustWrite(t, w, "hello ")
	f.want(t, "hello ")
	mustWrite(t, w, "world, in more than one read\n")
	f.want(t, "hello world, in more than one read\n")
	o.done(t, r.ID, w)
	f.end(t, "hello world, in more than one read\n", io.EOF)
}

func testFollowFromOffset(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "0123456789")
	f := o.follow(t, r.ID, 4)
	f.want(t, "456789")
	atEnd := o.follow(t, r.ID, 10)
	mustWrite(t, w, "abc")
	f.want(t, "456789abc")
	atEnd.want(t, "abc")
	o.done(t, r.ID, w)
	f.end(t, "456789abc", io.EOF)
	atEnd.end(t, "abc", io.EOF)
}

func testFollowBadOffset(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "0123456789")
	for _, off := range []int64{11, 1 << 40, -1} {
		if rc, err := o.FollowOutput(context.Background(), r.ID, off); !errors.Is(err, store.ErrBadOffset) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("offset %d: %v, want ErrBadOffset", off, err)
		}
	}
	for _, id := range unknownIDs {
		if rc, err := o.FollowOutput(context.Background(), id, 0); !errors.Is(err, store.ErrNotFound) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("FollowOutput(%q): %v, want ErrNotFound", id, err)
		}
	}
}

// testFollowWaitsWhileQuiet: at the end of what is written, a follower
// waits, however long the run is quiet, and gets what comes next.
func testFollowWaitsWhileQuiet(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "first\n")
	f := o.follow(t, r.ID, 0)
	f.want(t, "first\n")
	f.quiet(t, "first\n")
	mustWrite(t, w, "second\n")
	f.want(t, "first\nsecond\n")
	f.quiet(t, "first\nsecond\n")
}

// testFollowEndsWhenDone: once the writer is closed and the run done, the
// follower reads to the end and gets io.EOF.
func testFollowEndsWhenDone(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	f := o.follow(t, r.ID, 0)
	mustWrite(t, w, "all of it\n")
	o.done(t, r.ID, w)
	f.end(t, "all of it\n", io.EOF)
}

// testFollowWaitsForDone: a closed writer does not end the output while
// the run is not done (another writer may come: a start that is retried).
func testFollowWaitsForDone(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	f := o.follow(t, r.ID, 0)
	mustWrite(t, w, "first try\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.want(t, "first try\n")
	f.quiet(t, "first try\n")
	w2 := o.open(t, r.ID)
	mustWrite(t, w2, "second try\n")
	f.want(t, "first try\nsecond try\n")
	o.done(t, r.ID, w2)
	f.end(t, "first try\nsecond try\n", io.EOF)
}

// testFollowAfterEnd: a follower that starts after the run is done reads
// what there is and gets io.EOF.
func testFollowAfterEnd(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "0123456789")
	o.done(t, r.ID, w)
	o.follow(t, r.ID, 0).end(t, "0123456789", io.EOF)
	o.follow(t, r.ID, 6).end(t, "6789", io.EOF)
	o.follow(t, r.ID, 10).end(t, "", io.EOF)
}

// testFollowQueued: a follower of a queued run, before any writer opened
// its output, waits for the run to start and gets all it writes.
func testFollowQueued(t *testing.T, o *outputs) {
	r := o.run(t)
	f := o.follow(t, r.ID, 0)
	f.quiet(t, "")
	mustStart(t, o.History, r.ID, 100)
	f.quiet(t, "")
	w := o.open(t, r.ID)
	f.quiet(t, "")
	mustWrite(t, w, "started\n")
	f.want(t, "started\n")
	o.done(t, r.ID, w)
	f.end(t, "started\n", io.EOF)
}

// testFollowQueuedCancelled: a queued run that ends without starting ends
// its followers, though no writer ever opened its output.
func testFollowQueuedCancelled(t *testing.T, o *outputs) {
	r := o.run(t)
	f := o.follow(t, r.ID, 0)
	f.quiet(t, "")
	mustDone(t, o.History, r.ID, store.Outcome{Ended: store.EndedCancelled})
	f.end(t, "", io.EOF)
}

// testFollowContextCancelled: when its context ends, a follower's Read
// returns the context's cause.
func testFollowContextCancelled(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "some\n")
	f := o.follow(t, r.ID, 0)
	other := o.follow(t, r.ID, 0)
	f.want(t, "some\n")
	f.quiet(t, "some\n")
	cause := errors.New("the client went away")
	f.cancel(cause)
	f.end(t, "some\n", cause)
	// The others go on.
	mustWrite(t, w, "more\n")
	other.want(t, "some\nmore\n")

	// A context that ended before the follower reached the end.
	ctx, cancel := context.WithCancelCause(context.Background())
	shutdown := errors.New("shutting down")
	cancel(shutdown)
	rc, err := o.FollowOutput(ctx, r.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := readUntilError(rc)
	if !errors.Is(err, shutdown) || !strings.HasPrefix("some\nmore\n", got) {
		t.Errorf("follower with an ended context: %q, %v; want a prefix of the output and %v", got, err, shutdown)
	}
}

// readUntilError reads rc until Read fails, in Patience at most.
func readUntilError(rc io.Reader) (string, error) {
	type result struct {
		got string
		err error
	}
	c := make(chan result, 1)
	go func() {
		var b bytes.Buffer
		_, err := b.ReadFrom(rc)
		if err == nil {
			err = io.EOF // ReadFrom swallows io.EOF
		}
		c <- result{b.String(), err}
	}()
	select {
	case r := <-c:
		return r.got, r.err
	case <-time.After(Patience):
		return "", fmt.Errorf("no error from Read within %v", Patience)
	}
}

// testFollowMany: several followers of one run, from different offsets,
// each get all of it, in order, and end.
func testFollowMany(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	mustWrite(t, w, "start\n")
	offsets := []int64{0, 0, 3, 6}
	var fs []*follower
	for _, off := range offsets {
		fs = append(fs, o.follow(t, r.ID, off))
	}
	want := "start\n"
	for i := range 20 {
		line := fmt.Sprintf("line %d\n", i)
		mustWrite(t, w, line)
		want += line
		if i%5 == 0 {
			for j, f := range fs {
				f.want(t, want[offsets[j]:])
			}
		}
	}
	o.done(t, r.ID, w)
	for j, f := range fs {
		f.end(t, want[offsets[j]:], io.EOF)
	}
}

// testFollowCap: followers see the output as cut, marker included.
func testFollowCap(t *testing.T, o *outputs) {
	r := o.running(t)
	w := o.open(t, r.ID)
	f := o.follow(t, r.ID, 0)
	data := digits(2 * o.max)
	mustWrite(t, w, data[:o.max/2])
	f.want(t, data[:o.max/2])
	mustWrite(t, w, data[o.max/2:])
	want := data[:o.max] + store.TruncationMarker(o.max)
	f.want(t, want)
	mustWrite(t, w, "dropped")
	f.quiet(t, want)
	o.done(t, r.ID, w)
	f.end(t, want, io.EOF)
}

// testStdin: a queued run's stdin is kept until deleted, per run.
func testStdin(t *testing.T, o *outputs) {
	a, b := o.run(t), o.run(t)
	if got, err := o.Stdin(a.ID); got != nil || err != nil {
		t.Errorf("Stdin before SaveStdin: %q, %v; want nil", got, err)
	}
	in := make([]byte, 256<<10)
	for i := range in {
		in[i] = byte(i * 7)
	}
	if err := o.SaveStdin(a.ID, in); err != nil {
		t.Fatal(err)
	}
	if err := o.SaveStdin(b.ID, []byte("b's\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := o.Stdin(a.ID); !bytes.Equal(got, in) || err != nil {
		t.Errorf("Stdin(a): %d bytes, %v; want the %d saved", len(got), err, len(in))
	}
	if got, err := o.Stdin(b.ID); string(got) != "b's\n" || err != nil {
		t.Errorf("Stdin(b): %q, %v", got, err)
	}
	if err := o.DeleteStdin(a.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := o.Stdin(a.ID); got != nil || err != nil {
		t.Errorf("Stdin after DeleteStdin: %q, %v; want nil", got, err)
	}
	if err := o.DeleteStdin(a.ID); err != nil {
		t.Errorf("second DeleteStdin: %v; none is no error", err)
	}
	if got, err := o.Stdin(b.ID); string(got) != "b's\n" || err != nil {
		t.Errorf("Stdin(b) after deleting a's: %q, %v", got, err)
	}
	// The stdin is not part of the output.
	if got := o.content(t, b.ID); got != "" {
		t.Errorf("output of a run with stdin: %q", got)
	}
	if err := o.DeleteStdin(b.ID); err != nil {
		t.Fatal(err)
	}
}
