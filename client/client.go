// Package client is the Go client of a rexec server: it starts a run with
// POST /process, reads its output as NDJSON while it runs (stdout and stderr
// lines, heartbeats, the end with the exit status), and forwards live stdin;
// and it drives detached runs of scripts through /scripts/v1 (scripts.go:
// list the scripts, submit, status, cancel, history; output.go: read and
// follow a run's output, resuming after a cut connection); and it attaches
// to a run over a WebSocket, on a terminal of its own when asked (attach.go:
// GET /process/attach, for rexec run -it).
// It owns the client side of the wire protocol and nothing else: it never
// prints, exits or handles signals; the rexec commands do that on top of it.
// It builds on every OS Go does.
//
// Errors have kinds, to test with errors.Is and errors.As:
//   - *ServerError: the server refused the request (401, 404, 409, 503 ...);
//     nothing was done. Its Code is the /scripts/v1 errorcode.
//   - ErrUnreachable: no connection to the server; nothing was done.
//   - ErrNoAnswer: the request was sent but no answer came: it may or may not
//     have been carried out.
//   - ErrRunLost: the run's end was never received (connection lost, server
//     gone); its exit status is unknown.
//   - ErrProtocol: the answer is not rexec's protocol.
//   - ErrOutputCut: an answer of a run's output was cut (CopyOutput and
//     Follow resume it; they return it when they give up).
//   - ErrRunRemoved: a followed run was removed from the history at its end.
//   - the context's error when the caller's context ended.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/rexec/rexec/internal/tlsfiles"
)

const (
	ndjsonType = "application/x-ndjson"
	// stdinHeader asks the server to treat the request body after its first
	// line as the child's stdin (see the README).
	stdinHeader = "Rexec-Stdin"
	// maxErrorBody bounds how much of an error answer is read.
	maxErrorBody = 64 << 10
)

var (
	// ErrRunLost means the run's end was never received: the connection
	// broke or the server went away while the run was (or may have been)
	// running. Its exit status is unknown.
	ErrRunLost = errors.New("the run's end was never received")
	// ErrUnreachable means no connection to the server could be made (DNS,
	// refused, TLS ...): the command did not run.
	ErrUnreachable = errors.New("cannot reach the server")
	// ErrProtocol means the server answered something that is not rexec's
	// NDJSON protocol (a proxy's page, an older server ...).
	ErrProtocol = errors.New("unexpected answer from the server")
	// ErrClosed is returned by Next and Copy after Close.
	ErrClosed = errors.New("run closed")
	// ErrNoAnswer means the request reached the server (a connection was
	// made) but no answer came back: what it asked for may have been done.
	ErrNoAnswer = errors.New("no answer from the server")
)

// ServerError is the server's refusal of a request: its HTTP status and the
// message of its {"error": "..."} body (or the start of a body of another
// kind, as a proxy may send).
type ServerError struct {
	StatusCode int
	Message    string
	// Code is the errorcode of a /scripts/v1 answer, such as "invalid_id"
	// or "already_done", or of an attached run's refusal, such as
	// "alias_running"; "" for other answers.
	Code string
}

func (e *ServerError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("server answered %d %s (%s): %s", e.StatusCode, http.StatusText(e.StatusCode), e.Code, e.Message)
	}
	return fmt.Sprintf("server answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// Client talks to one rexec server. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
	tls   *tls.Config
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc (for TLS
// settings, a proxy, a custom dialer). hc must have no Timeout, which would
// cut every run longer than it: bound runs with contexts or Spec.Timeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithTLS makes the client use cfg on https:// URLs: the CAs it trusts
// the server with, the certificate it shows a server that verifies client
// certificates (see LoadTLS). HTTP/2 is used when the server offers it.
// It excludes WithHTTPClient, whose transport has TLS settings of its own.
func WithTLS(cfg *tls.Config) Option {
	return func(c *Client) { c.tls = cfg }
}

// LoadTLS returns the TLS settings of PEM files, for WithTLS: caFile the
// CA certificates to trust the server's certificate with instead of the
// system's, certFile and keyFile a client certificate and its key (both or
// neither). Empty names are left out; all empty gives nil.
func LoadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	return tlsfiles.ClientConfig(tlsfiles.ClientFiles{CACert: caFile, Cert: certFile, Key: keyFile})
}

// New returns a client for the server at baseURL, such as
// "http://127.0.0.1:8910" or "https://rexec.example.com:8910" (a path, as
// behind a reverse proxy, is kept). A non-empty token is sent as
// "Authorization: Bearer <token>".
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("URL %q: want http://host:port or https://host[:port][/path]", baseURL)
	}
	c := &Client{base: u, token: token}
	for _, o := range opts {
		o(c)
	}
	switch {
	case c.http != nil && c.tls != nil:
		return nil, errors.New("WithTLS and WithHTTPClient exclude each other: set the TLS settings on the HTTP client's transport")
	case c.http == nil:
		tr := http.DefaultTransport.(*http.Transport).Clone() // HTTP/2 over TLS included
		if c.tls != nil {
			tr.TLSClientConfig = c.tls.Clone()
		}
		c.http = &http.Client{Transport: tr}
	}
	return c, nil
}

// CloseIdleConnections closes the connections kept for reuse.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Spec describes a run.
type Spec struct {
	// Alias is the run's unique name on the server: 1-128 letters, digits,
	// '.', '_' and '-'. When empty, it is the base name of Cmd followed by
	// '-' and a random suffix.
	Alias string
	// Cmd is the executable: a path, or a name looked up in the server's PATH.
	Cmd string
	// Script, instead of Cmd, names a script of the server's exectab; Args
	// are then its arguments, and Cwd and Env must be empty (the exectab
	// sets them).
	Script string
	// Args are passed as argv[1:], unchanged (no shell is involved).
	Args []string
	// Cwd is the working directory; empty means the server's.
	Cwd string
	// Env is added to the server's environment.
	Env map[string]string
	// Timeout, when positive, has the server terminate the process group
	// after this long.
	Timeout time.Duration
	// DiscardStderr drops the command's stderr on the server; by default
	// its lines come as Stderr events.
	DiscardStderr bool
	// Stdin, when not nil, is forwarded to the command's stdin as it is read
	// (live, on the same connection as the output); its EOF closes the
	// command's stdin, and a read error aborts the run. When nil, the
	// command's stdin is empty. A Read blocked when the run ends is not
	// interrupted: the goroutine feeding stdin ends when it returns.
	Stdin io.Reader
	// Memory, Pids and CPU are the limits the run asks for (its cgroup's
	// on the server): a size ("256MiB"), a count, cores ("0.5", "250m").
	// Empty or 0 asks for none; the server's defaults and caps apply.
	Memory string
	Pids   int
	CPU    string
	// TTY runs the command on a terminal of its own on the server (a
	// pseudo-terminal: its stdin, stdout and stderr; its session and
	// controlling terminal), of Rows lines and Cols columns (0: the
	// server's default size). Its output is then one stream, as a
	// terminal shows it (with Start, Stdout lines ending in '\r'), and
	// DiscardStderr is refused. Only Attach can resize it or type into it
	// as a person would.
	TTY        bool
	Rows, Cols int
}

// MaxTTYSize is the most rows or columns of a terminal the server's API
// takes (Spec.Rows and Cols, Session.Resize).
const MaxTTYSize = 1000

// wireRequest is the JSON request of POST /process.
type wireRequest struct {
	Alias   string            `json:"alias"`
	Cmd     string            `json:"cmd,omitempty"`
	Script  string            `json:"script,omitempty"`
	Args    []string          `json:"args,omitempty"`
	Cwd     string            `json:"cwd,omitempty"`
	Envs    map[string]string `json:"envs,omitempty"`
	Stderr  string            `json:"stderr"`
	Timeout string            `json:"timeout,omitempty"`
	Memory  string            `json:"memory,omitempty"`
	Pids    int               `json:"pids,omitempty"`
	CPU     string            `json:"cpu,omitempty"`
	TTY     bool              `json:"tty,omitempty"`
	Rows    int               `json:"rows,omitempty"`
	Cols    int               `json:"cols,omitempty"`
}

// wire is the request of spec, as POST /process and the first message of
// GET /process/attach carry it: one encoding for both.
func (spec Spec) wire() wireRequest {
	w := wireRequest{Alias: spec.Alias, Cmd: spec.Cmd, Script: spec.Script, Args: spec.Args, Cwd: spec.Cwd, Envs: spec.Env, Stderr: "merge",
		Memory: spec.Memory, Pids: spec.Pids, CPU: spec.CPU, TTY: spec.TTY, Rows: spec.Rows, Cols: spec.Cols}
	if w.Alias == "" {
		w.Alias = NewAlias(spec.Cmd + spec.Script)
	}
	if spec.DiscardStderr {
		w.Stderr = "discard"
	}
	if spec.Timeout > 0 {
		w.Timeout = spec.Timeout.String()
	}
	return w
}

// check refuses what no server would run: a command and a script, or
// neither; a negative timeout or size.
func (spec Spec) check() error {
	if (spec.Cmd == "") == (spec.Script == "") {
		return errors.New("give a command or a script, not both or neither")
	}
	if spec.Timeout < 0 {
		return fmt.Errorf("negative timeout %v", spec.Timeout)
	}
	if spec.Rows < 0 || spec.Rows > MaxTTYSize || spec.Cols < 0 || spec.Cols > MaxTTYSize {
		return fmt.Errorf("terminal size %dx%d: want 1-%d rows and columns, or 0 for the server's default", spec.Rows, spec.Cols, MaxTTYSize)
	}
	return nil
}

// Start starts a run and returns once the server has accepted it (its
// answer's head has arrived); read its events with Next or Copy, and Close it
// when done. When ctx ends, the connection is closed, which makes the server
// kill the command's process group.
func (c *Client) Start(ctx context.Context, spec Spec) (*Run, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	w := spec.wire()
	body, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}

	rctx, cancel := context.WithCancel(ctx)
	run := &Run{Alias: w.Alias, parent: ctx, cancel: cancel}
	var reqBody io.Reader = bytes.NewReader(body)
	if spec.Stdin != nil {
		pr, pw := io.Pipe()
		reqBody, run.stdin = pr, pr
		go run.feed(pw, append(body, '\n'), spec.Stdin)
	}
	// abort ends the request, and the feeding of stdin, when Start fails.
	abort := func() {
		cancel()
		if run.stdin != nil {
			run.stdin.CloseWithError(ErrClosed)
		}
	}
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.endpoint("process"), reqBody)
	if err != nil {
		abort()
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", ndjsonType)
	if spec.Stdin != nil {
		req.Header.Set(stdinHeader, "stream")
	}
	resp, err := c.do(req)
	if err != nil {
		abort()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, ErrNoAnswer) {
			// The command may have started.
			err = fmt.Errorf("%w: %w", ErrRunLost, err)
		}
		return nil, run.withStdinErr(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer abort()
		return nil, serverError(resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != ndjsonType {
		resp.Body.Close()
		abort()
		return nil, fmt.Errorf("%w: 200 with Content-Type %q, not %s", ErrProtocol, resp.Header.Get("Content-Type"), ndjsonType)
	}
	run.init(resp.Body)
	return run, nil
}

// Health checks that the server answers GET /healthz with 200. It needs no
// token.
func (c *Client) Health(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint("healthz"), nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return serverError(resp)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return resp.Body.Close()
}

func (c *Client) endpoint(name string) string {
	return c.base.JoinPath(name).String()
}

// do sends req with the token. A failure before a connection was made is
// ErrUnreachable (nothing was done); after it, the request may have reached
// the server and been carried out, so it is ErrNoAnswer.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	c.authorize(req.Header)
	ctx, sent := traceConnection(req.Context())
	resp, err := c.http.Do(req.WithContext(ctx))
	if err != nil {
		return nil, sent(err)
	}
	return resp, nil
}

// authorize adds the token to the headers of a request.
func (c *Client) authorize(h http.Header) {
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
}

// traceConnection returns ctx, for a request, and sent, which gives the
// kind of that request's transport error: ErrUnreachable before a
// connection was made (nothing was done), ErrNoAnswer after it (what it
// asked for may have been done); the error as it is when ctx ended.
func traceConnection(ctx context.Context) (_ context.Context, sent func(error) error) {
	var connected atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { connected.Store(true) }}
	sent = func(err error) error {
		switch {
		case ctx.Err() != nil:
			return err
		case !connected.Load():
			return fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return fmt.Errorf("%w to the request: %w", ErrNoAnswer, err)
	}
	return httptrace.WithClientTrace(ctx, trace), sent
}

// doOK is do for a request whose only good answer is 200: another status is
// the server's error (ServerError), and a request that its context ended is
// the context's error.
func (c *Client) doOK(ctx context.Context, req *http.Request) (*http.Response, error) {
	resp, err := c.do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, serverError(resp)
	}
	return resp, nil
}

// serverError reads an error answer and closes its body.
func serverError(resp *http.Response) error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var e struct {
		Error     string `json:"error"`
		ErrorCode string `json:"errorcode"`
	}
	msg, code := "", ""
	if json.Unmarshal(body, &e) == nil {
		msg, code = e.Error, e.ErrorCode
	}
	if msg == "" {
		msg = excerpt(body)
	}
	if msg == "" {
		msg = "(no message)"
	}
	return &ServerError{StatusCode: resp.StatusCode, Message: msg, Code: code}
}

// excerpt is the start of a body that is not rexec's, as one line of text.
func excerpt(body []byte) string {
	const max = 200
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(body), "\uFFFD")), " ")
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "..."
	}
	return s
}

// NewAlias returns an alias for cmd: its base name, keeping only the
// characters an alias may hold, then '-' and 8 random hex digits.
func NewAlias(cmd string) string {
	var b strings.Builder
	for _, c := range []byte(path.Base(cmd)) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
		}
		if b.Len() == 64 {
			break
		}
	}
	name := b.String()
	if strings.Trim(name, ".") == "" {
		name = "run"
	}
	var r [4]byte
	rand.Read(r[:])
	return name + "-" + hex.EncodeToString(r[:])
}
