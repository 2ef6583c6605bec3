//go:build linux

package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/client"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	testchild.Main()
	goleak.VerifyTestMain(m, testchild.LeakOptions()...)
}

// newServer starts a real server on 127.0.0.1:0 and returns its URL.
func newServer(t *testing.T, cfg webapi.Config) string {
	t.Helper()
	return testserver.Start(t, node.Config{Web: cfg}).URL
}

func mustClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	c, err := client.New(url, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// fake is a spec that runs the test binary as the fake child mode.
func fake(mode string, args ...string) client.Spec {
	path, env := testchild.Command(mode)
	name, val, _ := strings.Cut(env, "=")
	return client.Spec{Cmd: path, Args: args, Env: map[string]string{name: val}}
}

func mustStart(t *testing.T, ctx context.Context, c *client.Client, spec client.Spec) *client.Run {
	t.Helper()
	run, err := c.Start(ctx, spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { run.Close() })
	return run
}

// events reads a run to its end.
func events(t *testing.T, run *client.Run) ([]client.Event, error) {
	t.Helper()
	var evs []client.Event
	for {
		ev, err := run.Next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
		if ev.Kind == client.End {
			if _, err := run.Next(); err != io.EOF {
				t.Fatalf("Next after End: %v, want io.EOF", err)
			}
			return evs, nil
		}
	}
}

func mustEvents(t *testing.T, run *client.Run) (lines []string, end client.Status) {
	t.Helper()
	evs, err := events(t, run)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, ev := range evs[:len(evs)-1] {
		if ev.Kind != client.Heartbeat {
			lines = append(lines, ev.Kind.String()+":"+ev.Line)
		}
	}
	return lines, evs[len(evs)-1].Status
}

func TestExitStatus(t *testing.T) {
	c := mustClient(t, newServer(t, webapi.Config{}), "")
	for _, tc := range []struct {
		mode, arg string
		code      int
		signal    string
	}{
		{"exit", "0", 0, ""},
		{"exit", "1", 1, ""},
		{"exit", "42", 42, ""},
		{"selfkill", "9", -1, "SIGKILL"},
		{"selfkill", "15", -1, "SIGTERM"},
	} {
		t.Run(tc.mode+tc.arg, func(t *testing.T) {
			run := mustStart(t, context.Background(), c, fake(tc.mode, tc.arg))
			_, st := mustEvents(t, run)
			if st.ExitCode != tc.code || st.Signal != tc.signal || st.Reason != client.ReasonExit {
				t.Fatalf("status %+v, want code %d signal %q", st, tc.code, tc.signal)
			}
			if st.Success() != (tc.code == 0) {
				t.Fatalf("Success() = %v for %+v", st.Success(), st)
			}
		})
	}
}

func TestStdoutAndStderr(t *testing.T) {
	c := mustClient(t, newServer(t, webapi.Config{}), "")
	t.Run("events", func(t *testing.T) {
		lines, st := mustEvents(t, mustStart(t, context.Background(), c, fake("both")))
		want := "stdout:out 0,stderr:err 0,stdout:out 1,stderr:err 1,stdout:out 2,stderr:err 2"
		if strings.Join(lines, ",") != want || !st.Success() {
			t.Fatalf("lines %v status %+v", lines, st)
		}
	})
	t.Run("copy", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		st, err := mustStart(t, context.Background(), c, fake("both")).Copy(&stdout, &stderr)
		if err != nil || !st.Success() {
			t.Fatalf("copy: %+v %v", st, err)
		}
		if stdout.String() != "out 0\nout 1\nout 2\n" || stderr.String() != "err 0\nerr 1\nerr 2\n" {
			t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
		}
	})
	t.Run("discard stderr", func(t *testing.T) {
		spec := fake("both")
		spec.DiscardStderr = true
		lines, _ := mustEvents(t, mustStart(t, context.Background(), c, spec))
		if strings.Join(lines, ",") != "stdout:out 0,stdout:out 1,stdout:out 2" {
			t.Fatalf("lines %v", lines)
		}
	})
	t.Run("last line without newline", func(t *testing.T) {
		var stdout bytes.Buffer
		spec := client.Spec{Cmd: "sh", Args: []string{"-c", "echo a; printf b"}}
		st, err := mustStart(t, context.Background(), c, spec).Copy(&stdout, io.Discard)
		if err != nil || !st.Success() || stdout.String() != "a\nb" {
			t.Fatalf("stdout %q, %+v %v", stdout.String(), st, err)
		}
	})
}

func TestLongLine(t *testing.T) {
	c := mustClient(t, newServer(t, webapi.Config{}), "")
	const n = 1 << 20 // the server sends it in 64 KiB pieces
	t.Run("Next joins the pieces", func(t *testing.T) {
		lines, st := mustEvents(t, mustStart(t, context.Background(), c, fake("longline", strconv.Itoa(n))))
		if len(lines) != 2 || lines[0] != "stdout:"+strings.Repeat("x", n) || lines[1] != "stdout:end" || !st.Success() {
			t.Fatalf("%d lines (first %d bytes), %+v", len(lines), len(lines[0]), st)
		}
	})
	t.Run("Copy writes them through", func(t *testing.T) {
		var stdout bytes.Buffer
		st, err := mustStart(t, context.Background(), c, fake("longline", strconv.Itoa(n))).Copy(&stdout, io.Discard)
		if err != nil || !st.Success() || stdout.String() != strings.Repeat("x", n)+"\nend\n" {
			t.Fatalf("%d bytes, %+v %v", stdout.Len(), st, err)
		}
	})
	t.Run("an unterminated last line of pieces", func(t *testing.T) {
		spec := client.Spec{Cmd: "sh", Args: []string{"-c", "echo a; head -c " + strconv.Itoa(n) + " /dev/zero | tr '\\0' x"}}
		evs, err := events(t, mustStart(t, context.Background(), c, spec))
		if err != nil || len(evs) != 3 || evs[0].Line != "a" || evs[0].Unterminated ||
			evs[1].Kind != client.Stdout || evs[1].Line != strings.Repeat("x", n) || !evs[1].Unterminated || !evs[2].Status.Success() {
			t.Fatalf("%d events, %v", len(evs), err)
		}
	})
}

func TestHeartbeatAndTimeout(t *testing.T) {
	c := mustClient(t, newServer(t, webapi.Config{Heartbeat: 50 * time.Millisecond}), "")
	spec := fake("hang")
	spec.Timeout = 400 * time.Millisecond
	evs, err := events(t, mustStart(t, context.Background(), c, spec))
	if err != nil {
		t.Fatal(err)
	}
	beats, first := 0, ""
	for _, ev := range evs {
		if ev.Kind == client.Heartbeat {
			beats++
		} else if first == "" {
			first = ev.Line // a loaded machine may send a heartbeat before it
		}
	}
	end := evs[len(evs)-1].Status
	if first != "ready" || beats == 0 || end.Reason != client.ReasonTimeout || end.Signal != "SIGTERM" || end.ExitCode != -1 {
		t.Fatalf("%d heartbeats, events %+v", beats, evs)
	}
	if end.Duration < spec.Timeout {
		t.Fatalf("duration %v shorter than the timeout", end.Duration)
	}
}

func TestServerErrors(t *testing.T) {
	c := mustClient(t, newServer(t, webapi.Config{}), "")
	wantServerError := func(t *testing.T, err error, status int, msg string) {
		t.Helper()
		var se *client.ServerError
		if !errors.As(err, &se) || se.StatusCode != status || !strings.Contains(se.Message, msg) {
			t.Fatalf("error %v, want a ServerError %d saying %q", err, status, msg)
		}
	}
	t.Run("401", func(t *testing.T) {
		url := newServer(t, webapi.Config{Token: "s3cret"})
		for _, token := range []string{"", "wrong"} {
			_, err := mustClient(t, url, token).Start(context.Background(), fake("exit", "0"))
			wantServerError(t, err, 401, "unauthorized")
		}
		_, st := mustEvents(t, mustStart(t, context.Background(), mustClient(t, url, "s3cret"), fake("exit", "0")))
		if !st.Success() {
			t.Fatalf("with the token: %+v", st)
		}
		if err := mustClient(t, url, "").Health(context.Background()); err != nil {
			t.Fatalf("health needs no token: %v", err)
		}
	})
	t.Run("404", func(t *testing.T) {
		_, err := c.Start(context.Background(), client.Spec{Cmd: "no-such-command-rexec"})
		wantServerError(t, err, 404, "not found")
		_, err = c.Start(context.Background(), client.Spec{Cmd: "true", Cwd: "/no/such/dir"})
		wantServerError(t, err, 404, "/no/such/dir")
	})
	t.Run("409", func(t *testing.T) {
		spec := fake("hang")
		spec.Alias = "dup"
		first := mustStart(t, context.Background(), c, spec)
		if ev, err := first.Next(); err != nil || ev.Line != "ready" {
			t.Fatalf("first run: %+v %v", ev, err)
		}
		_, err := c.Start(context.Background(), spec)
		wantServerError(t, err, 409, "alias")
	})
	t.Run("400", func(t *testing.T) {
		_, err := c.Start(context.Background(), client.Spec{Alias: "a b", Cmd: "true"})
		wantServerError(t, err, 400, "alias")
	})
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := mustClient(t, "http://"+addr, "")
	if _, err := c.Start(context.Background(), client.Spec{Cmd: "true"}); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("start: %v, want ErrUnreachable", err)
	}
	if err := c.Health(context.Background()); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("health: %v, want ErrUnreachable", err)
	}
}

func TestLiveStdin(t *testing.T) {
	c := mustClient(t, newServer(t, webapi.Config{}), "")
	t.Run("a line comes back before stdin closes", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		spec := fake("cat")
		spec.Stdin = pr
		run := mustStart(t, context.Background(), c, spec)
		pw.Write([]byte("ping\n"))
		if ev, err := run.Next(); err != nil || ev.Kind != client.Stdout || ev.Line != "ping" {
			t.Fatalf("echo %+v %v", ev, err)
		}
		pw.Write([]byte("last, no newline"))
		pw.Close()
		lines, st := mustEvents(t, run)
		if len(lines) != 1 || lines[0] != "stdout:last, no newline" || !st.Success() {
			t.Fatalf("rest %v %+v", lines, st)
		}
	})
	t.Run("binary byte-exact", func(t *testing.T) {
		in := make([]byte, 6<<20)
		for i := range in {
			in[i] = byte(i*31 + i>>12)
		}
		dst := filepath.Join(t.TempDir(), "out")
		spec := client.Spec{Cmd: "sh", Args: []string{"-c", `cat > "$0"`, dst}, Stdin: bytes.NewReader(in)}
		if _, st := mustEvents(t, mustStart(t, context.Background(), c, spec)); !st.Success() {
			t.Fatalf("status %+v", st)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, in) {
			t.Fatalf("%d bytes arrived, want %d identical (%v)", len(got), len(in), err)
		}
	})
	t.Run("a stdin read error aborts the run", func(t *testing.T) {
		pr, pw := io.Pipe()
		spec := fake("cat")
		spec.Stdin = pr
		run, err := c.Start(context.Background(), spec)
		if err == nil {
			defer run.Close()
			pw.Write([]byte("one\n"))
			pw.CloseWithError(errors.New("disk on fire"))
			_, err = events(t, run)
		}
		if !errors.Is(err, client.ErrRunLost) || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("error %v, want ErrRunLost naming the stdin error", err)
		}
	})
}

func TestCancelKillsTheRemoteGroup(t *testing.T) {
	c := mustClient(t, newServer(t, webapi.Config{}), "")
	for _, how := range []string{"context", "Close"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			run := mustStart(t, ctx, c, fake("grandchild"))
			ev, err := run.Next()
			if err != nil {
				t.Fatal(err)
			}
			pid, _ := strconv.Atoi(ev.Line)
			errc := make(chan error, 1)
			go func() {
				_, err := run.Next() // blocks: the child prints nothing more
				errc <- err
			}()
			want := context.Canceled
			if how == "context" {
				cancel()
			} else {
				run.Close()
				want = client.ErrClosed
			}
			if err := <-errc; !errors.Is(err, want) {
				t.Fatalf("Next: %v, want %v", err, want)
			}
			if !testchild.WaitGone(pid, 10*time.Second) {
				t.Fatalf("grandchild %d survived", pid)
			}
		})
	}
}

// brokenServer answers every request with handler: a server that breaks the
// protocol, as a crashing server or a proxy would.
func brokenServer(t *testing.T, handler http.HandlerFunc) *client.Client {
	t.Helper()
	s := httptest.NewServer(handler)
	t.Cleanup(s.Close)
	return mustClient(t, s.URL, "")
}

func ndjson(w http.ResponseWriter, lines ...string) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	for _, l := range lines {
		io.WriteString(w, l+"\n")
	}
	w.(http.Flusher).Flush()
}

func TestBrokenStreams(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		lost    bool // ErrRunLost, after a first line
		proto   bool // ErrProtocol
	}{
		{"connection cut", func(w http.ResponseWriter, r *http.Request) {
			ndjson(w, `{"stream":"stdout","line":"one"}`)
			io.WriteString(w, `{"stream":"stdout","li`) // cut in the middle of an object
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}, true, false},
		{"clean end without the end object", func(w http.ResponseWriter, r *http.Request) {
			ndjson(w, `{"stream":"stdout","line":"one"}`)
		}, true, false},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) {
			ndjson(w, `{"stream":"stdout","line":"one"}`, `<html>`)
		}, true, true},
		{"not NDJSON", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello")
		}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := brokenServer(t, tc.handler)
			run, err := c.Start(context.Background(), client.Spec{Cmd: "x"})
			if err == nil {
				defer run.Close()
				var ev client.Event
				if ev, err = run.Next(); err != nil || ev.Line != "one" {
					t.Fatalf("first event %+v %v", ev, err)
				}
				_, err = events(t, run)
			}
			if errors.Is(err, client.ErrRunLost) != tc.lost || errors.Is(err, client.ErrProtocol) != tc.proto {
				t.Fatalf("error %v: want lost %v, protocol %v", err, tc.lost, tc.proto)
			}
		})
	}
	t.Run("a proxy's error page", func(t *testing.T) {
		c := brokenServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>\n  <h1>Bad   Gateway</h1>\n</html>\n")
		})
		_, err := c.Start(context.Background(), client.Spec{Cmd: "x"})
		var se *client.ServerError
		if !errors.As(err, &se) || se.StatusCode != 502 || se.Message != "<html> <h1>Bad Gateway</h1> </html>" {
			t.Fatalf("error %#v", err)
		}
	})
	t.Run("unknown objects are skipped", func(t *testing.T) {
		c := brokenServer(t, func(w http.ResponseWriter, r *http.Request) {
			ndjson(w, `{"future":"thing"}`, `{"stream":"stdout","line":"one","extra":1}`, `{"exit_code":3,"duration_ms":5,"reason":"exit"}`)
		})
		run := mustStart(t, context.Background(), c, client.Spec{Cmd: "x"})
		lines, st := mustEvents(t, run)
		if len(lines) != 1 || st.ExitCode != 3 || st.Duration != 5*time.Millisecond {
			t.Fatalf("lines %v status %+v", lines, st)
		}
	})
}

func TestRequest(t *testing.T) {
	var got *http.Request
	var body []byte
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		ndjson(w, `{"exit_code":0,"duration_ms":1,"reason":"exit"}`)
	}))
	defer s.Close()
	c := mustClient(t, s.URL+"/prefix/", "tok")
	spec := client.Spec{Alias: "a", Cmd: "ls", Args: []string{"-l"}, Cwd: "/tmp", Env: map[string]string{"K": "v"}, Timeout: 90 * time.Second}
	mustEvents(t, mustStart(t, context.Background(), c, spec))
	if got.URL.Path != "/prefix/process" || got.Header.Get("Authorization") != "Bearer tok" || got.Header.Get("Accept") != "application/x-ndjson" {
		t.Fatalf("request %s %v", got.URL, got.Header)
	}
	want := `{"alias":"a","cmd":"ls","args":["-l"],"cwd":"/tmp","envs":{"K":"v"},"stderr":"merge","timeout":"1m30s"}`
	if string(body) != want {
		t.Fatalf("body %s\nwant %s", body, want)
	}
	for _, bad := range []string{"127.0.0.1:8910", "localhost:8910", "ftp://x", "http://", ":"} {
		if _, err := client.New(bad, ""); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

func TestNewAlias(t *testing.T) {
	c := mustClient(t, newServer(t, webapi.Config{}), "")
	for cmd, prefix := range map[string]string{
		"/usr/bin/python3.12":    "python3.12",
		"my tool!":               "mytool",
		"/":                      "run",
		"..":                     "run",
		strings.Repeat("y", 300): strings.Repeat("y", 64),
	} {
		a := client.NewAlias(cmd)
		if !regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-[0-9a-f]{8}$`).MatchString(a) {
			t.Errorf("NewAlias(%q) = %q", cmd, a)
		}
	}
	if client.NewAlias("x") == client.NewAlias("x") {
		t.Error("two aliases alike")
	}
	run := mustStart(t, context.Background(), c, client.Spec{Cmd: "/bin/true"})
	if !strings.HasPrefix(run.Alias, "true-") {
		t.Fatalf("alias %q", run.Alias)
	}
	if _, st := mustEvents(t, run); !st.Success() {
		t.Fatalf("status %+v", st)
	}
}

// streamLines is what Next returned of each stream, a line as "text" or,
// when Unterminated, "text|".
func streamLines(evs []client.Event) (stdout, stderr []string) {
	for _, ev := range evs {
		l := ev.Line
		if ev.Unterminated {
			l += "|"
		}
		switch ev.Kind {
		case client.Stdout:
			stdout = append(stdout, l)
		case client.Stderr:
			stderr = append(stderr, l)
		}
	}
	return stdout, stderr
}

func TestNextKeepsUnterminatedLastLines(t *testing.T) {
	c := mustClient(t, newServer(t, webapi.Config{}), "")
	for _, tc := range []struct {
		script         string
		stdout, stderr string // lines, "|" marking an Unterminated one
	}{
		{"echo a; printf b; echo e >&2", "a,b|", "e"},
		{"echo a; printf b; printf c >&2", "a,b|", "c|"},
		{"echo a; echo e >&2; printf 'f\ng' >&2", "a", "e,f,g|"},
		{"printf 'a\n\n'; printf e >&2", "a,", "e|"},
	} {
		t.Run(tc.script, func(t *testing.T) {
			spec := client.Spec{Cmd: "sh", Args: []string{"-c", tc.script}}
			evs, err := events(t, mustStart(t, context.Background(), c, spec))
			if err != nil || !evs[len(evs)-1].Status.Success() {
				t.Fatalf("events %+v, %v", evs, err)
			}
			stdout, stderr := streamLines(evs)
			if strings.Join(stdout, ",") != tc.stdout || strings.Join(stderr, ",") != tc.stderr {
				t.Fatalf("stdout %q stderr %q, want %q %q", stdout, stderr, tc.stdout, tc.stderr)
			}
			// Unterminated lines come last, just before End.
			for j, ev := range evs[:len(evs)-1] {
				if ev.Unterminated && !evs[j+1].Unterminated && evs[j+1].Kind != client.End {
					t.Fatalf("event %d after an unterminated line: %+v", j+1, evs)
				}
			}
		})
	}
}

// TestNextAndCopyAgree reads the same scripted stream with Next, with Copy,
// and with Next then Copy: each gives back the same output.
func TestNextAndCopyAgree(t *testing.T) {
	long := strings.Repeat("x", 100)
	stream := []string{
		`{"stream":"stdout","line":"a"}`,
		`{"stream":"stdout","line":"` + long + `","partial":true}`,
		`{"heartbeat":true}`,
		`{"future":"thing"}`,
		`{"stream":"stderr","line":"e","partial":true}`,
		`{"stream":"stdout","line":"` + long + `"}`, // the long line's end
		`{"stream":"stdout","line":"b","partial":true}`,
		`{"stream":"stdout","line":"c","partial":true}`, // an unterminated last line of two pieces
		`{"stream":"stderr","line":"f","partial":true}`, // "ef", unterminated too
		`{"exit_code":2,"duration_ms":7,"reason":"exit"}`,
	}
	c := brokenServer(t, func(w http.ResponseWriter, r *http.Request) { ndjson(w, stream...) })
	wantStdout, wantStderr := "a\n"+long+long+"\nbc", "ef"
	wantEvents := []client.Event{
		{Kind: client.Stdout, Line: "a"},
		{Kind: client.Heartbeat},
		{Kind: client.Stdout, Line: long + long},
		{Kind: client.Stdout, Line: "bc", Unterminated: true},
		{Kind: client.Stderr, Line: "ef", Unterminated: true},
		{Kind: client.End, Status: client.Status{ExitCode: 2, Duration: 7 * time.Millisecond, Reason: client.ReasonExit}},
	}
	evs, err := events(t, mustStart(t, context.Background(), c, client.Spec{Cmd: "x"}))
	if err != nil || !slices.Equal(evs, wantEvents) {
		t.Fatalf("Next: %+v %v\nwant %+v", evs, err, wantEvents)
	}
	for k := range len(wantEvents) {
		t.Run(fmt.Sprintf("Copy after %d Next", k), func(t *testing.T) {
			run := mustStart(t, context.Background(), c, client.Spec{Cmd: "x"})
			var out [2]strings.Builder
			for range k {
				ev, err := run.Next()
				if err != nil {
					t.Fatal(err)
				}
				if ev.Kind == client.Stdout || ev.Kind == client.Stderr {
					out[ev.Kind-client.Stdout].WriteString(ev.Line)
					if !ev.Unterminated {
						out[ev.Kind-client.Stdout].WriteString("\n")
					}
				}
			}
			st, err := run.Copy(&out[0], &out[1])
			if err != nil || st != wantEvents[len(wantEvents)-1].Status {
				t.Fatalf("Copy: %+v %v", st, err)
			}
			if out[0].String() != wantStdout || out[1].String() != wantStderr {
				t.Fatalf("stdout %q stderr %q", out[0].String(), out[1].String())
			}
		})
	}
}
