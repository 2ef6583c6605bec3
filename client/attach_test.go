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
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/client"
)

// The wire side of Attach, against a server that plays the protocol's
// part as a script: what the client sends, and what it makes of each
// answer. The real server's side is in attach_server_test.go.

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
