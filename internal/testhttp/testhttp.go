// Package testhttp is HTTP for tests that need to see what a server sends:
// one request with its status, headers and body, or a connection written
// and read by hand.
package testhttp

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Request sends method path to base with the headers given as pairs
// ("Host" sets the Host header) and returns the status, the headers and the
// body.
func Request(t testing.TB, base, method, path, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// Conn is a client connection written and read by hand.
type Conn struct {
	net.Conn
	br *bufio.Reader
}

// Dial connects to the server at url (http://host:port), with a deadline
// of 30 s as a failure bound; the test's end closes the connection.
func Dial(t testing.TB, url string) *Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &Conn{Conn: c, br: bufio.NewReader(c)}
}

// Response reads one response head and its body as net/http reads them.
func (c *Conn) Response(t testing.TB) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading a response body: %v", err)
	}
	return resp, string(b)
}

// Closed reports whether the server closed the connection (EOF with nothing
// more sent), waiting up to the failure bound.
func (c *Conn) Closed(t testing.TB) bool {
	t.Helper()
	b, err := c.br.ReadByte()
	if err == nil {
		t.Logf("the server sent %q after the response", b)
		return false
	}
	return errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset")
}

// Reader is what the connection has received, buffered: for a response
// read as it streams.
func (c *Conn) Reader() *bufio.Reader { return c.br }
