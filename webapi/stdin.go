package webapi

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"
)

// stdinHeader switches POST /process to live stdin: the body is the JSON
// request on its first line, then the child's stdin, forwarded as it arrives
// while the output streams back on the same connection (HTTP/1.1 full
// duplex). The end of the body closes the child's stdin.
const stdinHeader = "Rexec-Stdin"

// readProcessRequest reads and decodes a whole request body. Reading it to
// its end also lets net/http watch the connection, so a disconnect cancels
// the request's context at once even while the child prints nothing.
func readProcessRequest(w http.ResponseWriter, r *http.Request, maxBody int64) (*processRequest, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, err
	}
	return decodeProcessRequest(body)
}

// readStreamingRequest decodes the request on the body's first line (at most
// maxBody bytes) and returns the rest of the body as the child's stdin.
func readStreamingRequest(w http.ResponseWriter, r *http.Request, maxBody int64) (*processRequest, *liveStdin, error) {
	if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
		return nil, nil, err
	}
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
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, nil, badRequestf("reading the request line: %v", err)
		}
	}
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
