package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// client talks to the server under test over loopback.
type client struct {
	url string
	tr  *http.Transport
	hc  *http.Client
}

// newClient returns a client that keeps up to conns idle keep-alive
// connections and opens as many at once as it is asked to (no per-host cap).
func newClient(url string, conns int) *client {
	tr := &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		// Reads of 64 KiB, like the ceilings' reads from a pipe.
		ReadBufferSize: 64 << 10,
	}
	return &client{url: url, tr: tr, hc: &http.Client{Transport: tr}}
}

// close drops the idle connections, so that the server's count of fds
// goes back to its baseline.
func (c *client) close() { c.tr.CloseIdleConnections() }

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
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
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
