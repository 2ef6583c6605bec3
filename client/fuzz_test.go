package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// readerRun is a Run reading body as its NDJSON stream.
func readerRun(body []byte) *Run {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Run{parent: ctx, cancel: cancel}
	r.init(io.NopCloser(bytes.NewReader(body)))
	return r
}

// FuzzEvents feeds any bytes to the stream reader. It must end with End then
// io.EOF, or with ErrRunLost, and Next (lines joined) and Copy (pieces
// written through) must agree on every stream's text.
func FuzzEvents(f *testing.F) {
	f.Add([]byte(`{"stream":"stdout","line":"a"}` + "\n" + `{"exit_code":0,"duration_ms":1,"reason":"exit"}` + "\n"))
	f.Add([]byte(`{"stream":"stdout","line":"ab","partial":true}` + "\n" + `{"stream":"stderr","line":"e"}` + "\n" +
		`{"stream":"stdout","line":"c"}` + "\n" + `{"heartbeat":true}` + "\n" + `{"exit_code":-1,"signal":"SIGKILL","duration_ms":9,"reason":"timeout"}` + "\n"))
	f.Add([]byte(`{"stream":"stdout","line":"cut`))
	f.Add([]byte("not json\n"))
	f.Add([]byte(`{"stream":"other"}` + "\n" + `{}` + "\n" + `{"exit_code":3}` + "\n" + `trailing`))
	f.Fuzz(func(t *testing.T, body []byte) {
		// Next, joined.
		r := readerRun(body)
		var next [2]strings.Builder
		var endNext *Status
		var errNext error
		for {
			ev, err := r.Next()
			if err != nil {
				errNext = err
				break
			}
			switch ev.Kind {
			case Stdout, Stderr:
				next[ev.Kind-Stdout].WriteString(ev.Line + "\n")
			case End:
				endNext = &ev.Status
			case Heartbeat:
			default:
				t.Fatalf("event of kind %v", ev.Kind)
			}
		}
		if (endNext != nil) != (errNext == io.EOF) {
			t.Fatalf("end %v with error %v", endNext, errNext)
		}
		if endNext == nil && !errors.Is(errNext, ErrRunLost) {
			t.Fatalf("no end, and the error is not ErrRunLost: %v", errNext)
		}
		leftover := [2]string{string(r.pending[0]), string(r.pending[1])} // pieces of an unfinished line

		// Copy, through.
		var out, errOut bytes.Buffer
		st, errCopy := readerRun(body).Copy(&out, &errOut)
		if (errCopy == nil) != (endNext != nil) || (errCopy == nil && st != *endNext) {
			t.Fatalf("Copy: %+v %v; Next: %v %v", st, errCopy, endNext, errNext)
		}
		if next[0].String()+leftover[0] != out.String() || next[1].String()+leftover[1] != errOut.String() {
			t.Fatalf("Next and Copy disagree:\n%q %q\n%q %q", next[0].String(), next[1].String(), out.String(), errOut.String())
		}
	})
}
