package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// client talks to the server under test over loopback.
type client struct {
	url   string
	tr    *http.Transport
	hc    *http.Client
	proto int          // the HTTP major version every response must have; 0 for any
	dials atomic.Int64 // connections dialed so far
	// connEach: each request on a transport (so a connection) of its
	// own, kept in solo until close.
	connEach bool
	mu       sync.Mutex
	solo     []*http.Transport
	// onResp, when set, sees every response with its headers in; an
	// error fails the request.
	onResp func(*http.Response) error
}

// clientOpts are how a client talks to the server: plain HTTP/1.1 by
// default, or over TLS.
type clientOpts struct {
	roots *x509.CertPool // for an https URL: the CAs trusted (and only those)
	h2    bool           // over TLS, HTTP/2 only; otherwise HTTP/1.1 only
	// connEach gives each request a connection of its own, as clients
	// in processes of their own have: without it, HTTP/2 requests share
	// the connections open.
	connEach bool
	// sessions, when set, lets the client resume TLS sessions, also on
	// the connections of another client given the same cache.
	sessions tls.ClientSessionCache
}

// newClient returns a client of plain HTTP/1.1 that keeps up to conns idle
// keep-alive connections and opens as many at once as it is asked to (no
// per-host cap).
func newClient(url string, conns int) *client { return newClientWith(url, conns, clientOpts{}) }

// newClientWith is newClient with the protocol of opts: for an https URL,
// TLS trusting opts.roots, and HTTP/2 or HTTP/1.1 alone, so that ALPN
// cannot pick another than the one measured.
func newClientWith(url string, conns int, opts clientOpts) *client {
	c := &client{url: url, proto: 1, connEach: opts.connEach}
	dial := (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	tr := &http.Transport{
		Proxy: nil, // loopback only, whatever the environment says
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.dials.Add(1)
			return dial(ctx, network, addr)
		},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		// Reads of 64 KiB, like the ceilings' reads from a pipe.
		ReadBufferSize: 64 << 10,
	}
	if strings.HasPrefix(url, "https://") {
		tr.TLSClientConfig = &tls.Config{RootCAs: opts.roots, ClientSessionCache: opts.sessions}
		tr.TLSHandshakeTimeout = 5 * time.Second
		tr.Protocols = new(http.Protocols)
		if opts.h2 {
			tr.Protocols.SetHTTP2(true)
			c.proto = 2
		} else {
			tr.Protocols.SetHTTP1(true)
			// Say so in the handshake, as curl --http1.1 does.
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
	}
	c.tr, c.hc = tr, &http.Client{Transport: tr}
	return c
}

// close drops the idle connections, so that the server's count of fds
// goes back to its baseline.
func (c *client) close() {
	c.tr.CloseIdleConnections()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tr := range c.solo {
		tr.CloseIdleConnections()
	}
}

// processBody is the JSON body of POST /process.
func processBody(alias, cmd string, args ...string) []byte {
	b, err := json.Marshal(struct {
		Alias string   `json:"alias"`
		Cmd   string   `json:"cmd"`
		Args  []string `json:"args,omitempty"`
	}{alias, cmd, args})
	if err != nil {
		panic(err) // strings always marshal
	}
	return b
}

// aliasRunner runs a command again and again under one alias. When the
// server refuses the alias with 409 although the previous run under it has
// ended (which should not happen), the refusal is returned as an error and
// the runner moves on to a fresh alias, so that one stuck alias does not
// turn the rest of a measure into a loop of refusals.
type aliasRunner struct {
	prefix string
	cmd    string
	args   []string
	gen    int
	body   []byte
}

func newAliasRunner(prefix, cmd string, args ...string) *aliasRunner {
	return &aliasRunner{prefix: prefix, cmd: cmd, args: args, body: processBody(prefix, cmd, args...)}
}

// run is one run to the end, read into buf; see client.run.
func (a *aliasRunner) run(ctx context.Context, c *client, buf []byte) error {
	_, err := c.run(ctx, a.body, buf)
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusConflict {
		a.gen++
		a.body = processBody(a.prefix+"."+strconv.Itoa(a.gen), a.cmd, a.args...)
	}
	return err
}

// statusError is a response other than 200.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.code, bytes.TrimSpace([]byte(e.body)))
}

// start posts body and returns the response once its headers are in. Any
// status but 200 is returned as a *statusError, with the body read.
func (c *client) start(ctx context.Context, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/process", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req)
}

// get fetches path (GET /healthz, say) and reads its body to the end. Any
// status but 200 is returned as a *statusError.
func (c *client) get(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = drain(resp.Body, make([]byte, 4096))
	return err
}

// do sends req and checks the response's protocol and status (with
// onResp, if set). The body is the caller's to close when there is no
// error.
func (c *client) do(req *http.Request) (*http.Response, error) {
	hc := c.hc
	if c.connEach {
		tr := c.tr.Clone()
		c.mu.Lock()
		c.solo = append(c.solo, tr)
		c.mu.Unlock()
		hc = &http.Client{Transport: tr}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if c.proto != 0 && resp.ProtoMajor != c.proto {
		resp.Body.Close()
		return nil, fmt.Errorf("answered over %s, want HTTP/%d", resp.Proto, c.proto)
	}
	if c.onResp != nil {
		if err := c.onResp(resp); err != nil {
			resp.Body.Close()
			return nil, err
		}
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, &statusError{code: resp.StatusCode, body: string(msg)}
	}
	return resp, nil
}

// finish checks, once the body has been read to EOF, that the run exited 0.
func finish(resp *http.Response) error {
	if code := resp.Trailer.Get("Process-Exit-Code"); code != "0" {
		return fmt.Errorf("trailer Process-Exit-Code %q (Process-Signal %q), want \"0\"",
			code, resp.Trailer.Get("Process-Signal"))
	}
	return nil
}

// run posts body, reads the whole stream into buf (which may be nil) and
// checks the exit code. It returns the number of bytes streamed.
func (c *client) run(ctx context.Context, body, buf []byte) (int64, error) {
	resp, err := c.start(ctx, body)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := drain(resp.Body, buf)
	if err != nil {
		return n, err
	}
	return n, finish(resp)
}

// drain reads r to EOF into buf, 64 KiB when nil, and returns the number of
// bytes. (io.Copy to io.Discard would read in 8 KiB pieces, or splice.)
func drain(r io.Reader, buf []byte) (int64, error) {
	if buf == nil {
		buf = make([]byte, 64<<10)
	}
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
