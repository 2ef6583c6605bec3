//go:build linux

package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/client"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/webapi"
)

// The wire side of Attach, against a server that plays the protocol's
// part as a script: what the client sends, and what it makes of each
// answer. TestAttach drives the real server.

// wsMessage is one message a fake attach server received.
type wsMessage struct {
	typ  websocket.MessageType
	data []byte
}

// attachServer serves GET /prefix/process/attach with play, after reading
// the first message (the request), and returns a client of it, the
// requests and the messages the client sent: the first, and those play
// reads with recv (false when the connection ended).
func attachServer(t *testing.T, token string, play func(ctx context.Context, c *websocket.Conn, recv func() bool)) (*client.Client, chan *http.Request, chan wsMessage) {
	t.Helper()
	reqs := make(chan *http.Request, 1)
	msgs := make(chan wsMessage, 100)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/prefix/process/attach" {
			http.NotFound(w, r)
			return
		}
		reqs <- r
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		typ, data, err := c.Read(r.Context())
		if err != nil {
			return
		}
		msgs <- wsMessage{typ, data}
		play(r.Context(), c, func() bool {
			typ, data, err := c.Read(r.Context())
			if err != nil {
				return false
			}
			msgs <- wsMessage{typ, data}
			return true
		})
	}))
	t.Cleanup(s.Close)
	return mustClient(t, s.URL+"/prefix", token), reqs, msgs
}

func sendText(ctx context.Context, c *websocket.Conn, s string) {
	c.Write(ctx, websocket.MessageText, []byte(s))
}

func nextMessage(t *testing.T, msgs chan wsMessage) wsMessage {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("no message from the client")
	}
	return wsMessage{}
}

func mustAttach(t *testing.T, ctx context.Context, c *client.Client, spec client.Spec) *client.Session {
	t.Helper()
	s, err := c.Attach(ctx, spec)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAttachWire(t *testing.T) {
	t.Run("both ways", func(t *testing.T) {
		c, reqs, msgs := attachServer(t, "tok", func(ctx context.Context, c *websocket.Conn, recv func() bool) {
			sendText(ctx, c, `{"type":"started","alias":"sh-1"}`)
			c.Write(ctx, websocket.MessageBinary, []byte("hello "))
			c.Write(ctx, websocket.MessageBinary, []byte("world"))
			for range 5 { // stdin in 2 messages, resize, signal, eof
				if !recv() {
					return
				}
			}
			sendText(ctx, c, `{"type":"future","x":1}`)
			sendText(ctx, c, `{"type":"exit","exit_code":3,"reason":"exit","duration_ms":1500}`)
			c.Close(websocket.StatusNormalClosure, "")
		})
		spec := client.Spec{Alias: "sh-1", Cmd: "sh", Args: []string{"-i"}, Env: map[string]string{"K": "v"},
			TTY: true, Rows: 24, Cols: 80, Memory: "64MiB"}
		s := mustAttach(t, context.Background(), c, spec)
		if s.Alias != "sh-1" {
			t.Fatalf("alias %q", s.Alias)
		}
		r := <-reqs
		if r.Header.Get("Authorization") != "Bearer tok" || strings.Contains(r.URL.String(), "tok") {
			t.Fatalf("the token: header %q, URL %s", r.Header.Get("Authorization"), r.URL)
		}
		first := nextMessage(t, msgs)
		want := `{"alias":"sh-1","cmd":"sh","args":["-i"],"envs":{"K":"v"},"stderr":"merge","memory":"64MiB","tty":true,"rows":24,"cols":80}`
		if first.typ != websocket.MessageText || string(first.data) != want {
			t.Fatalf("first message %v %s\nwant text %s", first.typ, first.data, want)
		}

		out := make([]byte, 11)
		if _, err := io.ReadFull(s, out); err != nil || string(out) != "hello world" {
			t.Fatalf("output %q %v", out, err)
		}
		in := bytes.Repeat([]byte("0123456789abcdef"), 5<<10) // 80 KiB: 2 messages
		if n, err := s.Write(in); n != len(in) || err != nil {
			t.Fatalf("write %d %v", n, err)
		}
		if err := s.Resize(50, 132); err != nil {
			t.Fatal(err)
		}
		if err := s.Signal("SIGINT"); err != nil {
			t.Fatal(err)
		}
		if err := s.CloseStdin(); err != nil {
			t.Fatal(err)
		}
		var stdin []byte
		for i, want := range []int{64 << 10, 16 << 10} {
			m := nextMessage(t, msgs)
			if m.typ != websocket.MessageBinary || len(m.data) != want {
				t.Fatalf("stdin message %d: %v of %d bytes, want binary of %d", i, m.typ, len(m.data), want)
			}
			stdin = append(stdin, m.data...)
		}
		if !bytes.Equal(stdin, in) {
			t.Fatal("stdin arrived changed")
		}
		for _, want := range []string{`{"type":"resize","rows":50,"cols":132}`, `{"type":"signal","signal":"INT"}`, `{"type":"eof"}`} {
			if m := nextMessage(t, msgs); m.typ != websocket.MessageText || string(m.data) != want {
				t.Fatalf("message %v %s, want text %s", m.typ, m.data, want)
			}
		}

		st, err := s.Wait()
		if err != nil || st != (client.Status{ExitCode: 3, Reason: client.ReasonExit, Duration: 1500 * time.Millisecond}) {
			t.Fatalf("wait: %+v %v", st, err)
		}
		if n, err := s.Read(out); n != 0 || err != io.EOF {
			t.Fatalf("read after the end: %d %v", n, err)
		}
		if _, err := s.Write([]byte("x")); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("write after the end: %v, want ErrClosed", err)
		}
	})

	t.Run("killed by a signal", func(t *testing.T) {
		c, _, _ := attachServer(t, "", func(ctx context.Context, c *websocket.Conn, recv func() bool) {
			sendText(ctx, c, `{"type":"started","alias":"a"}`)
			sendText(ctx, c, `{"type":"exit","exit_code":-1,"signal":"SIGKILL","reason":"oom","duration_ms":2}`)
			c.Close(websocket.StatusNormalClosure, "")
		})
		st, err := mustAttach(t, context.Background(), c, client.Spec{Cmd: "x", TTY: true}).Wait()
		if err != nil || st.ExitCode != -1 || st.Signal != "SIGKILL" || st.Reason != client.ReasonOOM {
			t.Fatalf("wait: %+v %v", st, err)
		}
	})

	t.Run("a refusal is a ServerError", func(t *testing.T) {
		c, _, _ := attachServer(t, "", func(ctx context.Context, c *websocket.Conn, recv func() bool) {
			sendText(ctx, c, `{"type":"error","status":409,"code":"alias_running","error":"alias \"a\" is running"}`)
			c.Close(websocket.StatusPolicyViolation, "alias_running")
		})
		_, err := c.Attach(context.Background(), client.Spec{Alias: "a", Cmd: "x", TTY: true})
		var se *client.ServerError
		if !errors.As(err, &se) || se.StatusCode != 409 || se.Code != "alias_running" || se.Message != `alias "a" is running` {
			t.Fatalf("error %#v, want a ServerError 409 alias_running", err)
		}
	})

	t.Run("lost before the end", func(t *testing.T) {
		c, _, _ := attachServer(t, "", func(ctx context.Context, c *websocket.Conn, recv func() bool) {
			sendText(ctx, c, `{"type":"started","alias":"a"}`)
			c.Write(ctx, websocket.MessageBinary, []byte("partial"))
			c.Close(websocket.StatusGoingAway, "server is shutting down")
		})
		s := mustAttach(t, context.Background(), c, client.Spec{Cmd: "x", TTY: true})
		out, err := io.ReadAll(s)
		if string(out) != "partial" || !errors.Is(err, client.ErrRunLost) || !strings.Contains(err.Error(), "server is shutting down") {
			t.Fatalf("output %q, error %v: want ErrRunLost with the server's reason", out, err)
		}
		if _, err := s.Wait(); !errors.Is(err, client.ErrRunLost) {
			t.Fatalf("wait: %v", err)
		}
	})

	t.Run("an error after the start, then a close", func(t *testing.T) {
		c, _, _ := attachServer(t, "", func(ctx context.Context, c *websocket.Conn, recv func() bool) {
			sendText(ctx, c, `{"type":"started","alias":"a"}`)
			sendText(ctx, c, `{"type":"error","status":500,"error":"internal error"}`)
			c.Close(websocket.StatusInternalError, "")
		})
		_, err := mustAttach(t, context.Background(), c, client.Spec{Cmd: "x", TTY: true}).Wait()
		var se *client.ServerError
		if !errors.Is(err, client.ErrRunLost) || !errors.As(err, &se) || se.StatusCode != 500 {
			t.Fatalf("wait: %v, want ErrRunLost and the ServerError", err)
		}
	})

	t.Run("an error after the start, and the session goes on", func(t *testing.T) {
		c, _, _ := attachServer(t, "", func(ctx context.Context, c *websocket.Conn, recv func() bool) {
			sendText(ctx, c, `{"type":"started","alias":"a"}`)
			sendText(ctx, c, `{"type":"error","status":400,"code":"invalid_request","error":"the run has ended"}`)
			c.Write(ctx, websocket.MessageBinary, []byte("more"))
			sendText(ctx, c, `{"type":"exit","exit_code":0,"reason":"exit","duration_ms":1}`)
			c.Close(websocket.StatusNormalClosure, "")
		})
		s := mustAttach(t, context.Background(), c, client.Spec{Cmd: "x", TTY: true})
		out, err := io.ReadAll(s)
		if string(out) != "more" || err != nil {
			t.Fatalf("output %q, error %v", out, err)
		}
		var se *client.ServerError
		if st, err := s.Wait(); err != nil || !st.Success() || !errors.As(s.Refused(), &se) || se.StatusCode != 400 {
			t.Fatalf("wait %+v %v, refused %v", st, err, s.Refused())
		}
	})

	t.Run("not rexec's protocol", func(t *testing.T) {
		c, _, _ := attachServer(t, "", func(ctx context.Context, c *websocket.Conn, recv func() bool) {
			sendText(ctx, c, `<html>`)
		})
		if _, err := c.Attach(context.Background(), client.Spec{Cmd: "x", TTY: true}); !errors.Is(err, client.ErrProtocol) {
			t.Fatalf("attach: %v, want ErrProtocol", err)
		}
	})

	t.Run("a server without attach", func(t *testing.T) {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
		}))
		defer s.Close()
		_, err := mustClient(t, s.URL, "").Attach(context.Background(), client.Spec{Cmd: "x", TTY: true})
		var se *client.ServerError
		if !errors.Is(err, client.ErrProtocol) || !errors.As(err, &se) || se.StatusCode != 405 {
			t.Fatalf("attach: %v, want ErrProtocol with the 405", err)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, err = mustClient(t, "http://"+addr, "").Attach(context.Background(), client.Spec{Cmd: "x", TTY: true})
		if !errors.Is(err, client.ErrUnreachable) {
			t.Fatalf("attach: %v, want ErrUnreachable", err)
		}
	})

	t.Run("refused before sending", func(t *testing.T) {
		c := mustClient(t, "http://127.0.0.1:1", "")
		for name, spec := range map[string]client.Spec{
			"stdin":            {Cmd: "x", Stdin: strings.NewReader("")},
			"no command":       {TTY: true},
			"bad size":         {Cmd: "x", TTY: true, Rows: 70000, Cols: 80},
			"negative timeout": {Cmd: "x", Timeout: -time.Second},
		} {
			if _, err := c.Attach(context.Background(), spec); err == nil || errors.Is(err, client.ErrUnreachable) {
				t.Errorf("%s: %v, want a refusal before any request", name, err)
			}
		}
	})

	t.Run("bad signal and size are not sent", func(t *testing.T) {
		c, _, msgs := attachServer(t, "", func(ctx context.Context, c *websocket.Conn, recv func() bool) {
			sendText(ctx, c, `{"type":"started","alias":"a"}`)
			for recv() {
			}
		})
		s := mustAttach(t, context.Background(), c, client.Spec{Cmd: "x", TTY: true})
		nextMessage(t, msgs) // the request
		if err := s.Signal("STOP"); err == nil {
			t.Error("Signal(STOP) accepted")
		}
		if err := s.Resize(0, 80); err == nil {
			t.Error("Resize(0, 80) accepted")
		}
		s.Signal("term")
		if m := nextMessage(t, msgs); string(m.data) != `{"type":"signal","signal":"TERM"}` {
			t.Fatalf("message %s", m.data)
		}
	})

	t.Run("Close and the context end a Read", func(t *testing.T) {
		for _, how := range []string{"Close", "context"} {
			t.Run(how, func(t *testing.T) {
				gone := make(chan struct{})
				c, _, _ := attachServer(t, "", func(ctx context.Context, c *websocket.Conn, recv func() bool) {
					sendText(ctx, c, `{"type":"started","alias":"a"}`)
					c.Read(ctx) // until the client goes
					close(gone)
				})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				s := mustAttach(t, ctx, c, client.Spec{Cmd: "x", TTY: true})
				errc := make(chan error, 1)
				go func() {
					_, err := s.Read(make([]byte, 10))
					errc <- err
				}()
				want := context.Canceled
				if how == "Close" {
					s.Close()
					want = client.ErrClosed
				} else {
					cancel()
				}
				if err := <-errc; !errors.Is(err, want) {
					t.Fatalf("read: %v, want %v", err, want)
				}
				select {
				case <-gone:
				case <-time.After(30 * time.Second):
					t.Fatal("the server did not see the connection close")
				}
			})
		}
	})
}

// The real server's side: runs on a terminal, driven as a person would.

// output collects a session's output in the background, to wait for what
// the command writes; done closes when Read ends, with its error in err.
type output struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{} // a receive after each read
	done chan struct{}
	err  error
}

func collect(s *client.Session) *output {
	o := &output{more: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(o.done)
		b := make([]byte, 4096)
		for {
			n, err := s.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			o.mu.Unlock()
			select {
			case o.more <- struct{}{}:
			default:
			}
			if err != nil {
				o.err = err
				return
			}
		}
	}()
	return o
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output holds want.
func (o *output) waitFor(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(30 * time.Second) // a failure bound only
	for !strings.Contains(o.String(), want) {
		select {
		case <-o.more:
		case <-o.done:
			if !strings.Contains(o.String(), want) {
				t.Fatalf("the output ended (%v) without %q:\n%s", o.err, want, o.String())
			}
		case <-timeout:
			t.Fatalf("no %q in the output:\n%s", want, o.String())
		}
	}
}

// end waits for the output's end and returns the run's status.
func (o *output) end(t *testing.T, s *client.Session) (client.Status, error) {
	t.Helper()
	select {
	case <-o.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the run did not end; output:\n%s", o.String())
	}
	return s.Wait()
}

func TestAttach(t *testing.T) {
	url := newServer(t, webapi.Config{})
	c := mustClient(t, url, "")
	tty := func(args ...string) client.Spec {
		spec := fake("tty", args...)
		spec.TTY = true
		return spec
	}

	t.Run("a terminal: size, typing, resize, a signal, Ctrl-C", func(t *testing.T) {
		spec := tty()
		spec.Rows, spec.Cols = 30, 100
		s := mustAttach(t, context.Background(), c, spec)
		out := collect(s)
		out.waitFor(t, "isatty true true true\r\nsize 30 100\r\nready\r\n")
		s.Write([]byte("hello\n"))
		out.waitFor(t, `read "hello\n"`)
		if err := s.Resize(40, 120); err != nil {
			t.Fatal(err)
		}
		out.waitFor(t, "winch 40 120")
		if err := s.Signal("USR1"); err != nil {
			t.Fatal(err)
		}
		out.waitFor(t, "usr1")
		s.Write([]byte{0x03}) // Ctrl-C: the line discipline sends SIGINT
		st, err := out.end(t, s)
		if err != nil || st.Signal != "SIGINT" || st.ExitCode != -1 || st.Reason != client.ReasonExit {
			t.Fatalf("end %+v %v, want killed by SIGINT; output:\n%s", st, err, out)
		}
		if s.Refused() != nil {
			t.Fatalf("refused: %v", s.Refused())
		}
	})

	t.Run("eof and the exit code", func(t *testing.T) {
		s := mustAttach(t, context.Background(), c, tty())
		out := collect(s)
		out.waitFor(t, "ready")
		s.CloseStdin()
		st, err := out.end(t, s)
		if err != nil || !st.Success() || !strings.Contains(out.String(), "eof") {
			t.Fatalf("end %+v %v; output:\n%s", st, err, out)
		}
		spec := client.Spec{Cmd: "sh", Args: []string{"-c", "exit 3"}, TTY: true}
		if st, err := mustAttach(t, context.Background(), c, spec).Wait(); err != nil || st.ExitCode != 3 {
			t.Fatalf("exit 3: %+v %v", st, err)
		}
	})

	t.Run("without a terminal: stdin and output as they are", func(t *testing.T) {
		s := mustAttach(t, context.Background(), c, fake("cat"))
		out := collect(s)
		in := bytes.Repeat([]byte{0, 1, 2, 0x03, '\n', 255}, 30000) // 180 KB: 3 messages
		if _, err := s.Write(in); err != nil {
			t.Fatal(err)
		}
		s.CloseStdin()
		if st, err := out.end(t, s); err != nil || !st.Success() || out.String() != string(in) {
			t.Fatalf("end %+v %v; %d bytes back, want the %d sent", st, err, len(out.String()), len(in))
		}
	})

	t.Run("Close kills the remote command", func(t *testing.T) {
		spec := fake("grandchild")
		spec.TTY = true
		s := mustAttach(t, context.Background(), c, spec)
		out := collect(s)
		out.waitFor(t, "\r\n")
		pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
		if err != nil {
			t.Fatalf("pid %q", out.String())
		}
		s.Close()
		if _, err := out.end(t, s); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("after Close: %v, want ErrClosed", err)
		}
		if !testchild.WaitGone(pid, 10*time.Second) {
			t.Fatalf("grandchild %d survived", pid)
		}
	})

	wantServerError := func(t *testing.T, err error, status int, code string) {
		t.Helper()
		var se *client.ServerError
		if !errors.As(err, &se) || se.StatusCode != status || (code != "" && se.Code != code) {
			t.Fatalf("error %v, want a ServerError %d %s", err, status, code)
		}
	}
	t.Run("refusals", func(t *testing.T) {
		spec := tty()
		spec.Alias = "busy-tty"
		held := mustAttach(t, context.Background(), c, spec)
		collect(held).waitFor(t, "ready")
		_, err := c.Attach(context.Background(), spec)
		wantServerError(t, err, 409, "")

		_, err = c.Attach(context.Background(), client.Spec{Cmd: "no-such-command-rexec", TTY: true})
		wantServerError(t, err, 404, "")
		_, err = c.Attach(context.Background(), client.Spec{Cmd: "true", TTY: true, DiscardStderr: true})
		wantServerError(t, err, 400, "invalid_tty")

		authURL := newServer(t, webapi.Config{Token: "s3cret"})
		_, err = mustClient(t, authURL, "wrong").Attach(context.Background(), tty())
		wantServerError(t, err, 401, "")
		st, err := mustAttach(t, context.Background(), mustClient(t, authURL, "s3cret"), client.Spec{Cmd: "true", TTY: true}).Wait()
		if err != nil || !st.Success() {
			t.Fatalf("with the token: %+v %v", st, err)
		}
	})
}
