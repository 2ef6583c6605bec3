package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"
)

// readerRun is a Run reading body as its NDJSON stream.
func readerRun(body []byte) *Run {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Run{parent: ctx, cancel: cancel}
	r.init(io.NopCloser(bytes.NewReader(body)))
	return r
}

// readAll reads r with Next up to its error (io.EOF after End).
func readAll(r *Run) ([]Event, error) {
	var evs []Event
	for {
		ev, err := r.Next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

// texts is what the lines of evs stand for, per stream: each line followed
// by a newline, except an Unterminated one.
func texts(evs []Event) [2]string {
	var b [2][]byte
	for _, ev := range evs {
		if ev.Kind == Stdout || ev.Kind == Stderr {
			i := ev.Kind - Stdout
			b[i] = append(b[i], ev.Line...)
			if !ev.Unterminated {
				b[i] = append(b[i], '\n')
			}
		}
	}
	return [2]string{string(b[0]), string(b[1])}
}

// checkEvents checks the shape of what Next returned: known kinds, End last
// and only then io.EOF, otherwise ErrRunLost; Unterminated lines, at most one
// per stream and none empty, only right before End.
func checkEvents(t *testing.T, evs []Event, err error) {
	t.Helper()
	ended := len(evs) > 0 && evs[len(evs)-1].Kind == End
	if ended != (err == io.EOF) {
		t.Fatalf("end %v with error %v", ended, err)
	}
	if !ended && !errors.Is(err, ErrRunLost) {
		t.Fatalf("no end, and the error is not ErrRunLost: %v", err)
	}
	var unterminated [2]bool
	for j, ev := range evs {
		switch ev.Kind {
		case Stdout, Stderr:
			i := ev.Kind - Stdout
			if unterminated[i] {
				t.Fatalf("event %d: %v line after an unterminated one: %+v", j, ev.Kind, evs)
			}
			if ev.Unterminated {
				unterminated[i] = true
				if ev.Line == "" {
					t.Fatalf("event %d: empty unterminated line", j)
				}
			}
		case Heartbeat, End:
			if ev.Line != "" || ev.Unterminated {
				t.Fatalf("event %d: %+v", j, ev)
			}
		default:
			t.Fatalf("event %d of kind %v", j, ev.Kind)
		}
		if ev.Kind != End && ev.Status != (Status{}) {
			t.Fatalf("event %d: %+v has a status", j, ev)
		}
		if ev.Kind == End && j != len(evs)-1 {
			t.Fatalf("event %d: End before the last", j)
		}
		if (unterminated[0] || unterminated[1]) && !ev.Unterminated && ev.Kind != End {
			t.Fatalf("event %d: %+v after an unterminated line", j, ev)
		}
	}
	if (unterminated[0] || unterminated[1]) && !ended {
		t.Fatal("unterminated line without End")
	}
}

// sameError reports whether a and b are the same outcome.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error() && errors.Is(a, ErrRunLost) == errors.Is(b, ErrRunLost) &&
		errors.Is(a, ErrProtocol) == errors.Is(b, ErrProtocol)
}

// FuzzEvents feeds any bytes to the stream reader. Next must return events
// of the right shape, ending with End then io.EOF, or with ErrRunLost. Per
// stream, Next's lines, each followed by a newline but an Unterminated one,
// then the pieces left pending when the stream is cut, must be what Copy
// writes; and both must end alike. Copy after some calls to Next must write
// the rest.
func FuzzEvents(f *testing.F) {
	f.Add([]byte(`{"stream":"stdout","line":"a"}` + "\n" + `{"exit_code":0,"duration_ms":1,"reason":"exit"}` + "\n"))
	f.Add([]byte(`{"stream":"stdout","line":"ab","partial":true}` + "\n" + `{"stream":"stderr","line":"e"}` + "\n" +
		`{"stream":"stdout","line":"c"}` + "\n" + `{"heartbeat":true}` + "\n" + `{"exit_code":-1,"signal":"SIGKILL","duration_ms":9,"reason":"timeout"}` + "\n"))
	f.Add([]byte(`{"stream":"stdout","line":"cut`))
	f.Add([]byte("not json\n"))
	f.Add([]byte(`{"stream":"other"}` + "\n" + `{}` + "\n" + `{"exit_code":3}` + "\n" + `trailing`))
	// Unterminated last lines, of one stream and of both, one of pieces.
	f.Add([]byte(`{"stream":"stdout","line":"a"}` + "\n" + `{"stream":"stdout","line":"b","partial":true}` + "\n" +
		`{"stream":"stderr","line":"e"}` + "\n" + `{"exit_code":0,"duration_ms":1,"reason":"exit"}` + "\n"))
	f.Add([]byte(`{"stream":"stderr","line":"x","partial":true}` + "\n" + `{"heartbeat":true}` + "\n" +
		`{"stream":"stdout","line":"o","partial":true}` + "\n" + `{"stream":"stderr","line":"y","partial":true}` + "\n" +
		`{"exit_code":1,"duration_ms":1,"reason":"exit"}` + "\n"))
	// Pieces of a long line, then the stream cut.
	f.Add([]byte(`{"stream":"stdout","line":"a","partial":true}` + "\n" + `{"stream":"stderr","line":"b","partial":true}` + "\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		// Next, joined.
		run := readerRun(body)
		evs, errNext := readAll(run)
		checkEvents(t, evs, errNext)
		if _, err := run.Next(); !sameError(err, errNext) {
			t.Fatalf("Next again: %v, then %v", errNext, err)
		}
		next := texts(evs)
		// The pieces of an unfinished line, which Next drops.
		for i := range next {
			next[i] += string(run.pending[i])
		}
		var end Status
		if errNext == io.EOF {
			end = evs[len(evs)-1].Status
		}

		// Copy, through.
		var out, errOut bytes.Buffer
		st, errCopy := readerRun(body).Copy(&out, &errOut)
		if (errCopy == nil) != (errNext == io.EOF) || st != end || (errCopy != nil && !sameError(errCopy, errNext)) {
			t.Fatalf("Copy: %+v %v; Next: %v %v", st, errCopy, end, errNext)
		}
		if next[0] != out.String() || next[1] != errOut.String() {
			t.Fatalf("Next and Copy disagree:\nNext %q %q\nCopy %q %q", next[0], next[1], out.String(), errOut.String())
		}

		// Next k times, then Copy: the same output in all.
		n := len(evs)
		ks := []int{1, 2, n / 2, n - 1, n}
		for j, k := range ks {
			if k < 1 || k > n || slices.Contains(ks[:j], k) {
				continue
			}
			run := readerRun(body)
			for range k {
				run.Next()
			}
			var rest [2]bytes.Buffer
			st, err := run.Copy(&rest[0], &rest[1])
			got := texts(evs[:k])
			got[0] += rest[0].String()
			got[1] += rest[1].String()
			if got[0] != out.String() || got[1] != errOut.String() {
				t.Fatalf("Next %d times, then Copy: %q %q, want %q %q", k, got[0], got[1], out.String(), errOut.String())
			}
			switch {
			case evs[k-1].Kind == End:
				if err != io.EOF {
					t.Fatalf("Copy after End: %+v %v", st, err)
				}
			case st != end || !sameError(err, errCopy):
				t.Fatalf("Next %d times, then Copy: %+v %v; Copy alone: %+v %v", k, st, err, end, errCopy)
			}
		}
	})
}
