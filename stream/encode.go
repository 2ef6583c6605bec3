package stream

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/child"
)

// encoder writes a run's output in one of the response formats.
type encoder interface {
	contentType() string
	// setWriter moves the encoder to another writer (when a stream parks).
	setWriter(io.Writer)
	chunk(child.Chunk) error
	heartbeat() error
	end(child.Status) error
}

// textEncoder passes the bytes through exactly as the child wrote them;
// the end of the run is in the trailers.
type textEncoder struct{ w io.Writer }

func (*textEncoder) contentType() string     { return "text/plain; charset=utf-8" }
func (e *textEncoder) setWriter(w io.Writer) { e.w = w }
func (e *textEncoder) chunk(c child.Chunk) error {
	_, err := e.w.Write(c.Data)
	return err
}
func (*textEncoder) heartbeat() error       { return nil }
func (*textEncoder) end(child.Status) error { return nil }

// maxNDJSONLine bounds the part of a line held while waiting for its newline:
// past it, what is held is sent as a piece marked "partial":true, to be
// joined by the client, so memory stays bounded whatever the child writes. A
// longer line whose newline comes in the same read is sent whole.
const maxNDJSONLine = 64 << 10

// ndjsonEncoder writes one JSON object per line of output.
type ndjsonEncoder struct {
	enc     *json.Encoder
	pending [2][]byte // an unterminated line, per stream
}

type ndjsonLine struct {
	Stream  string `json:"stream"`
	Line    string `json:"line"`
	Partial bool   `json:"partial,omitempty"`
}

type ndjsonEnd struct {
	ExitCode   int    `json:"exit_code"`
	Signal     string `json:"signal,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Reason     string `json:"reason"`
	// Usage is what the run's cgroup says it used; absent without one.
	Usage *cgroup.Report `json:"usage,omitempty"`
}

func newNDJSONEncoder(w io.Writer) *ndjsonEncoder {
	e := &ndjsonEncoder{}
	e.setWriter(w)
	return e
}

func (e *ndjsonEncoder) setWriter(w io.Writer) {
	e.enc = json.NewEncoder(w)
	e.enc.SetEscapeHTML(false)
}

func (*ndjsonEncoder) contentType() string { return "application/x-ndjson" }

func (e *ndjsonEncoder) chunk(c child.Chunk) error {
	s := c.Stream
	data := c.Data
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(e.pending[s])+len(data) > maxNDJSONLine {
				err := e.line(s, append(e.pending[s], data...), true)
				e.pending[s] = e.pending[s][:0]
				return err
			}
			e.pending[s] = append(e.pending[s], data...)
			return nil
		}
		line := data[:i]
		data = data[i+1:]
		if len(e.pending[s]) > 0 {
			line = append(e.pending[s], line...)
			e.pending[s] = e.pending[s][:0]
		}
		if err := e.line(s, line, false); err != nil {
			return err
		}
	}
	return nil
}

func (e *ndjsonEncoder) line(s child.Stream, b []byte, partial bool) error {
	return e.enc.Encode(ndjsonLine{Stream: s.String(), Line: string(b), Partial: partial})
}

func (e *ndjsonEncoder) heartbeat() error {
	return e.enc.Encode(struct {
		Heartbeat bool `json:"heartbeat"`
	}{true})
}

func (e *ndjsonEncoder) end(st child.Status) error {
	// A last line without its newline goes out as a piece ("partial"):
	// no piece follows it, so a client that joins pieces reproduces the
	// output exactly, unterminated last line included.
	for s := range e.pending {
		if len(e.pending[s]) > 0 {
			if err := e.line(child.Stream(s), e.pending[s], true); err != nil {
				return err
			}
			e.pending[s] = nil
		}
	}
	return e.enc.Encode(ndjsonEnd{
		ExitCode:   st.Code,
		Signal:     st.SignalName(),
		DurationMS: st.Duration.Milliseconds(),
		Reason:     string(st.Reason),
		Usage:      st.Report(),
	})
}
