package webapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// acceptsEventStream reports whether r asks for Server-Sent Events: its
// Accept names text/event-stream, not with q=0.
func acceptsEventStream(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == "text/event-stream" {
			q, err := strconv.ParseFloat(params["q"], 64)
			return err != nil || q > 0
		}
	}
	return false
}

// outputChunk is one read of a run's output, or the error that ended the
// reads.
type outputChunk struct {
	data []byte
	err  error
}

// writeOutputEvents sends rd, a run's output from offset, as Server-Sent
// Events: "event: output" with the text as a JSON string and, as its id, the
// offset of the byte after it (a multi-byte character is never cut: its
// start waits for its end); "event: end" with the offset to resume from when
// the output ends (the run's end, for a follower; else what there is);
// "event: error" when the server ends the stream first (shutdown, a revoked
// key: the client resumes with Last-Event-ID). A comment every heartbeat
// keeps proxies from closing a quiet stream.
func (s *Server) writeOutputEvents(ctx context.Context, w http.ResponseWriter, rd io.Reader, offset int64) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	fmt.Fprint(w, ": rexec output\n\n")
	if rc.Flush() != nil {
		return
	}
	chunks := make(chan outputChunk)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go readOutput(readCtx, rd, chunks)
	ping := time.NewTicker(s.cfg.Heartbeat)
	defer ping.Stop()
	var carry []byte // the start of a character whose end is still to come
	pos := offset    // the offset of carry's first byte
	for {
		var err error
		select {
		case c := <-chunks:
			if c.err != nil {
				if errors.Is(c.err, io.EOF) && len(carry) > 0 {
					// The output ends inside a character: its bytes go
					// as they are (as U+FFFD), and the end is after them.
					pos += int64(len(carry))
					writeOutputEvent(w, pos, carry)
				}
				s.endOutputEvents(ctx, w, rc, c.err, pos)
				return
			}
			carry = append(carry, c.data...)
			n := completeUTF8(carry)
			if n > 0 {
				pos += int64(n)
				err = writeOutputEvent(w, pos, carry[:n])
				carry = append(carry[:0], carry[n:]...)
			}
		case <-ping.C:
			_, err = fmt.Fprint(w, ": ping\n\n")
		case <-ctx.Done():
			s.endOutputEvents(ctx, w, rc, ctx.Err(), pos)
			return
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return // the client is gone
		}
	}
}

// writeOutputEvent writes an "event: output" of text, whose end is at the
// offset end; invalid UTF-8 in text becomes U+FFFD.
func writeOutputEvent(w io.Writer, end int64, text []byte) error {
	data, _ := json.Marshal(string(text)) // a string: it cannot fail
	_, err := fmt.Fprintf(w, "id: %d\nevent: output\ndata: %s\n\n", end, data)
	return err
}

// readOutput reads rd into chunks until an error (io.EOF at its end), which
// it sends last, or until ctx ends.
func readOutput(ctx context.Context, rd io.Reader, chunks chan<- outputChunk) {
	for {
		buf := make([]byte, 32<<10)
		n, err := rd.Read(buf)
		if n > 0 {
			select {
			case chunks <- outputChunk{data: buf[:n]}:
			case <-ctx.Done():
				return
			}
		}
		if err != nil {
			select {
			case chunks <- outputChunk{err: err}:
			case <-ctx.Done():
			}
			return
		}
	}
}

// endOutputEvents ends an output event stream that stopped at pos, for why:
// io.EOF is its end, "event: end"; the server's shutdown and a revoked key
// say so in an "event: error"; anything else (the client gone, the output
// unreadable) ends it with nothing more, and the client resumes from its
// last id.
func (s *Server) endOutputEvents(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, why error, pos int64) {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(why, io.EOF):
		fmt.Fprintf(w, "event: end\ndata: {\"offset\":%d}\n\n", pos)
	case errors.Is(cause, errServerClosing):
		fmt.Fprintf(w, "event: error\ndata: {\"error\":%q,\"errorcode\":\"shutdown\",\"offset\":%d}\n\n", cause.Error(), pos)
	case errors.Is(cause, errKeyRevoked):
		fmt.Fprintf(w, "event: error\ndata: {\"error\":%q,\"errorcode\":\"revoked\"}\n\n", cause.Error())
	default:
		return
	}
	rc.Flush()
}

// completeUTF8 is how many bytes of b end at a character's end: all of b
// but the start of a character cut at its end (at most 3 bytes). Bytes that
// are not UTF-8 count as whole.
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if !utf8.RuneStart(b[i]) {
			continue
		}
		if !utf8.FullRune(b[i:]) {
			return i
		}
		break
	}
	return len(b)
}
