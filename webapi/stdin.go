package webapi

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// stdinHeader switches POST /process to live stdin: the body is the JSON
// request on its first line, then the child's stdin, forwarded as it arrives
// while the output streams back on the same connection (HTTP/1.1 full
// duplex). The end of the body closes the child's stdin.
const stdinHeader = "Rexec-Stdin"

// readProcessRequest reads and decodes a whole request body. Reading it to
// its end also lets net/http watch the connection, so a disconnect cancels
// the request's context at once even while the child prints nothing.
func (s *Server) readProcessRequest(w http.ResponseWriter, r *http.Request) (*processRequest, error) {
	body, err := s.readBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return nil, err
	}
	return decodeProcessRequest(body)
}

// readBody reads a whole request body of at most limit bytes, within the
// time a body of that limit may take (Config.BodyTimeout), so that a client
// that never finishes its body cannot hold the connection.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(s.bodyTimeout(limit)))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, errBodyTimeout
	}
	if err != nil {
		return nil, err
	}
	rc.SetReadDeadline(time.Time{})
	return body, nil
}

// readStreamingRequest decodes the request on the body's first line (at most
// MaxBody bytes, within the body timeout) and returns the rest of the body as
// the child's stdin.
//
// Such a body may still be arriving when the run ends (a child that exits
// before reading all of its stdin), and the child's stdin feed may then be
// blocked reading it: net/http aborts that read when the handler returns and
// cannot tell where the body stood, so it would take the rest of the body
// for the next request on the connection. The response therefore closes the
// connection: a connection whose body was not read to its end is never
// reused.
func (s *Server) readStreamingRequest(w http.ResponseWriter, r *http.Request) (*processRequest, *liveStdin, error) {
	maxBody := s.cfg.MaxBody
	rc := http.NewResponseController(w)
	if err := rc.EnableFullDuplex(); err != nil {
		return nil, nil, err
	}
	w.Header().Set("Connection", "close")
	rc.SetReadDeadline(time.Now().Add(s.bodyTimeout(maxBody)))
	br := bufio.NewReader(r.Body)
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if int64(len(line)) > maxBody {
			return nil, nil, &http.MaxBytesError{Limit: maxBody}
		}
		if err == nil || err == io.EOF {
			break
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, nil, errBodyTimeout
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, nil, badRequestf("reading the request line: %v", err)
		}
	}
	rc.SetReadDeadline(time.Time{}) // stdin may take as long as the run
	req, err := decodeProcessRequest(bytes.TrimRight(line, "\r\n"))
	if err != nil {
		return nil, nil, err
	}
	if req.Stdin != nil {
		return nil, nil, badRequestf("field \"stdin\" cannot be used with %s: stream: the body after the first line is the stdin", stdinHeader)
	}
	return req, &liveStdin{r: br, fail: make(chan struct{})}, nil
}

// liveStdin is the rest of a request body, read by the child's stdin feed.
// A read error other than EOF means the client is gone: it closes fail.
type liveStdin struct {
	r    io.Reader
	once sync.Once
	fail chan struct{}
}

func (s *liveStdin) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.once.Do(func() { close(s.fail) })
	}
	return n, err
}

// failed is closed when reading the body fails; nil (never) without one.
func (s *liveStdin) failed() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.fail
}
