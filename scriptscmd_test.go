//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rexec/rexec/client"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
)

// scriptsServer starts a real server with the exectab lines (EXE is the
// test binary, for fake children) and returns its URL.
func scriptsServer(t *testing.T, token string, lines ...string) string {
	t.Helper()
	exe, _ := testchild.Command("")
	tab := filepath.Join(t.TempDir(), "exectab")
	text := strings.ReplaceAll(strings.Join(lines, "\n"), "EXE", "'"+exe+"'") + "\n"
	if err := os.WriteFile(tab, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return testserver.Start(t, node.Config{ScriptsFile: tab, Web: webapi.Config{Token: token}}).URL
}

// detachedTab is the exectab of the tests of the commands.
var detachedTab = []string{
	"-e=TESTCHILD=lines lines EXE @@1 @@2",                   // @@1 lines, @@2 apart
	"-e=TESTCHILD=exit code EXE @@1",                         // exits with @@1
	"-e=TESTCHILD=selfkill kill EXE @@1",                     // killed by signal @@1 (9 or 15)
	`signal /bin/sh -c "echo dying; kill -@@1 $$"`,           // killed by signal @@1 (a name)
	"-e=TESTCHILD=gen gen EXE @@1",                           // @@1 bytes of a binary pattern
	"-e=TESTCHILD=cat -i cat EXE",                            // stdin to stdout
	"-e=TESTCHILD=hang -s=1 -m=2 hang EXE",                   // runs until cancelled; one at a time, two at most
	"-e=TESTCHILD=exit -r gone EXE 0",                        // leaves the history when done
	"-n note @@1",                                            // no process
	"-e=TESTCHILD=echo -t=1h -s=3 -m=5 slow EXE @@1 @@2 @@3", // for the list of scripts
}

// waitState polls run id until it is in state, and returns its status.
func waitState(t *testing.T, url, id string, state client.State) client.RunStatus {
	t.Helper()
	cl := mustAPIClient(t, url, "")
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := cl.Status(context.Background(), id)
		if err == nil && st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s never %s: %+v %v", id, state, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustAPIClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	cl, err := client.New(url, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.CloseIdleConnections)
	return cl
}

// submitID runs "rexec submit" and returns the id it printed.
func submitID(t *testing.T, url string, args ...string) string {
	t.Helper()
	r := rexec(t, nil, nil, append([]string{"submit", "--url", url}, args...)...)
	id := strings.TrimSuffix(r.stdout, "\n")
	if r.code != 0 || id == "" || strings.Contains(id, "\n") || r.stderr != "" {
		t.Fatalf("submit %v: %+v", args, r)
	}
	return id
}

// jsonOf decodes a --json answer, which must be one object on one line.
func jsonOf(t *testing.T, r result) map[string]any {
	t.Helper()
	var a map[string]any
	if r.code != 0 || strings.Count(r.stdout, "\n") != 1 || json.Unmarshal([]byte(r.stdout), &a) != nil || a["success"] != true {
		t.Fatalf("not one JSON answer: %+v", r)
	}
	return a
}

func linesOutput(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}

func TestScriptsCommands(t *testing.T) {
	url := scriptsServer(t, "", detachedTab...)
	cl := mustAPIClient(t, url, "")

	t.Run("scripts", func(t *testing.T) {
		r := rexec(t, nil, nil, "scripts", "--url", url)
		r.want(t, 0, r.stdout, "")
		rows := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if len(rows) != 1+len(detachedTab) || !strings.HasPrefix(rows[0], "NAME") {
			t.Fatalf("table:\n%s", r.stdout)
		}
		var slow string
		for _, row := range rows {
			if strings.HasPrefix(row, "slow ") {
				slow = strings.Join(strings.Fields(row), " ")
			}
		}
		if slow != "slow 3 no 3 5 1h" {
			t.Fatalf("the row of slow: %q in\n%s", slow, r.stdout)
		}
		if !strings.Contains(r.stdout, "notify only (-n)") || !strings.Contains(r.stdout, "removed when done (-r)") {
			t.Fatalf("no notes:\n%s", r.stdout)
		}
		a := jsonOf(t, rexec(t, nil, nil, "scripts", "--url", url, "--json"))
		scripts, _ := a["scripts"].([]any)
		if len(scripts) != len(detachedTab) {
			t.Fatalf("--json: %v", a)
		}
	})

	t.Run("submit, status and logs", func(t *testing.T) {
		id := submitID(t, url, "lines", "--", "3", "10ms")
		waitState(t, url, id, client.StateDone)
		rexec(t, nil, nil, "logs", "--url", url, id).want(t, 0, linesOutput(3), "")
		rexec(t, nil, nil, "logs", "--url", url, "--offset", "7", id).want(t, 0, linesOutput(3)[7:], "")
		r := rexec(t, nil, nil, "status", "--url", url, id)
		for _, want := range []string{"id  ", id, "name  ", "lines", "args  ", "3 10ms", "state  ", "done: exit 0", "queued  ", "ended  ", "output  ", "21 bytes"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("status has no %q:\n%s", want, r.stdout)
			}
		}
		a := jsonOf(t, rexec(t, nil, nil, "status", "--url", url, "--json", id))
		if a["id"] != id || a["state"] != "done" || a["exit_code"] != float64(0) || a["output_size"] != float64(21) {
			t.Fatalf("status --json: %v", a)
		}
	})

	t.Run("submit --json", func(t *testing.T) {
		a := jsonOf(t, rexec(t, nil, nil, "submit", "--url", url, "--json", "note", "--", "hi"))
		if a["name"] != "note" || a["state"] != "done" || a["id"] == "" {
			t.Fatalf("%v", a)
		}
	})

	t.Run("logs -f follows to the end", func(t *testing.T) {
		id := submitID(t, url, "lines", "--", "20", "20ms")
		rexec(t, nil, nil, "logs", "--url", url, "-f", id).want(t, 0, linesOutput(20), "")
		if st, err := cl.Status(context.Background(), id); err != nil || st.State != client.StateDone {
			t.Fatalf("logs -f ended before the run: %+v %v", st, err)
		}
	})

	t.Run("logs -f waits for a queued run", func(t *testing.T) {
		// 2s: the queue time is in whole seconds, so "1s" may be a moment away.
		id := submitID(t, url, "--queue", "2s", "lines", "--", "2", "0s")
		if st, _ := cl.Status(context.Background(), id); st.State != client.StateQueued || st.Waiting != "start_time" {
			t.Fatalf("not queued: %+v", st)
		}
		rexec(t, nil, nil, "logs", "--url", url, "-f", id).want(t, 0, linesOutput(2), "")
	})

	t.Run("logs of binary output, byte for byte", func(t *testing.T) {
		const n = 3 << 20
		id := submitID(t, url, "gen", "--", strconv.Itoa(n))
		r := rexec(t, nil, nil, "logs", "--url", url, "-f", id)
		if err := testchild.CheckGen([]byte(r.stdout), n); r.code != 0 || err != nil {
			t.Fatalf("exit %d, %v; stderr %q", r.code, err, r.stderr)
		}
	})

	t.Run("submit --wait exits as the run did", func(t *testing.T) {
		for _, tc := range []struct {
			args    []string
			code    int
			out     string
			errPart string
		}{
			{[]string{"code", "--", "0"}, 0, "", "rexec: run "},
			{[]string{"code", "--", "42"}, 42, "", "rexec: run "},
			{[]string{"kill", "--", "9"}, 128 + 9, "dying\n", "was killed by SIGKILL"},
			{[]string{"signal", "--", "USR1"}, 128 + 10, "dying\n", "was killed by SIGUSR1"},
			{[]string{"lines", "--", "2", "0s"}, 0, linesOutput(2), ""},
			{[]string{"note", "--", "x"}, 0, "", ""},
			{[]string{"gone"}, 0, "", ""}, // removed at its end, maybe before submit asks how it ended
			{[]string{"--timeout", "2s", "hang"}, 128 + 15, // 2 s: time for a -race child to start on a loaded machine
				"ready\n", "timed out (--timeout, or its script's -t) and was killed by SIGTERM"},
		} {
			t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
				r := rexec(t, nil, nil, append([]string{"submit", "--url", url, "--wait"}, tc.args...)...)
				if r.code != tc.code || r.stdout != tc.out || !strings.Contains(r.stderr, tc.errPart) {
					t.Fatalf("%+v; want exit %d, stdout %q, stderr with %q", r, tc.code, tc.out, tc.errPart)
				}
			})
		}
	})

	t.Run("submit --stdin", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "in")
		os.WriteFile(file, []byte("from a file\n"), 0o600)
		rexec(t, nil, nil, "submit", "--url", url, "--wait", "--stdin", file, "cat").want(t, 0, "from a file\n", "rexec: run ")
		rexec(t, strings.NewReader("from stdin"), nil, "submit", "--url", url, "--wait", "--stdin", "-", "cat").want(t, 0, "from stdin", "rexec: run ")
		big := strings.NewReader(strings.Repeat("x", client.MaxStdin+1))
		rexec(t, big, nil, "submit", "--url", url, "--stdin", "-", "cat").want(t, 2, "", "more than 1048576 bytes")
		rexec(t, strings.NewReader("\xff\xfe"), nil, "submit", "--url", url, "--stdin", "-", "cat").want(t, 2, "", "not text")
		rexec(t, strings.NewReader("x"), nil, "submit", "--url", url, "--stdin", "-", "note", "--", "x").want(t, 2, "", "(400 Bad Request, invalid_stdin)")
	})

	t.Run("status lists the active runs; cancel", func(t *testing.T) {
		running := submitID(t, url, "hang")
		waitState(t, url, running, client.StateRunning)
		queued := submitID(t, url, "hang")
		r := rexec(t, nil, nil, "status", "--url", url)
		var rows []string
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.HasPrefix(l, running) || strings.HasPrefix(l, queued) {
				rows = append(rows, strings.Join(strings.Fields(l), " "))
			}
		}
		if r.code != 0 || len(rows) != 2 || !strings.Contains(rows[0], " hang running ") ||
			!strings.HasSuffix(rows[1], "#1, waiting for a free slot") {
			t.Fatalf("status:\n%s", r.stdout)
		}
		a := jsonOf(t, rexec(t, nil, nil, "status", "--url", url, "--json"))
		if q, _ := a["queued"].(map[string]any); q[queued] == nil {
			t.Fatalf("status --json: %v", a)
		}
		r = rexec(t, nil, nil, "submit", "--url", url, "hang")
		r.want(t, 6, "", "(429 Too Many Requests, queue_full)")

		rexec(t, nil, nil, "cancel", "--url", url, queued).want(t, 0, "cancelled "+queued+"\n", "")
		if a := jsonOf(t, rexec(t, nil, nil, "cancel", "--url", url, "--json", running)); len(a) != 1 {
			t.Fatalf("cancel --json: %v", a)
		}
		st := waitState(t, url, running, client.StateDone)
		if st.Ended != client.EndedCancelled || st.Signal != "SIGTERM" {
			t.Fatalf("cancelled run: %+v", st)
		}
		rexec(t, nil, nil, "cancel", "--url", url, running).want(t, 5, "", "(409 Conflict, already_done)")
		r = rexec(t, nil, nil, "status", "--url", url, queued)
		if !strings.Contains(r.stdout, "done: cancelled\n") {
			t.Fatalf("status of the cancelled queued run:\n%s", r.stdout)
		}
	})

	t.Run("submit --wait on a run cancelled meanwhile", func(t *testing.T) {
		w := startRexec(t, "submit", "--url", url, "--wait", "hang")
		if l := w.line(t); l != "ready" {
			t.Fatalf("first line %q", l)
		}
		a, err := cl.Active(context.Background())
		if err != nil || len(a.Running) != 1 {
			t.Fatalf("active: %+v %v", a, err)
		}
		if err := cl.Cancel(context.Background(), a.Running[0].ID); err != nil {
			t.Fatal(err)
		}
		code, rest := w.wait(t)
		if code != 128+15 || rest != "" || !strings.Contains(w.stderr.String(), "was cancelled: was killed by SIGTERM") {
			t.Fatalf("exit %d, rest %q, stderr %q", code, rest, w.stderr.String())
		}
	})

	t.Run("Ctrl-C stops logs -f, not the run", func(t *testing.T) {
		id := submitID(t, url, "hang")
		w := startRexec(t, "logs", "--url", url, "-f", id)
		if l := w.line(t); l != "ready" {
			t.Fatalf("first line %q", l)
		}
		w.cmd.Process.Signal(syscall.SIGINT)
		code, _ := w.wait(t)
		if code != 130 || !strings.Contains(w.stderr.String(), "interrupted by SIGINT: stopped at byte 6; the run goes on (rexec logs -f "+id+" --offset 6)") {
			t.Fatalf("exit %d, stderr %q", code, w.stderr.String())
		}
		if st, _ := cl.Status(context.Background(), id); st.State != client.StateRunning {
			t.Fatalf("the run: %+v", st)
		}
		cl.Cancel(context.Background(), id)
		waitState(t, url, id, client.StateDone)
	})
}

func TestHistoryCommand(t *testing.T) {
	url := scriptsServer(t, "", detachedTab...)
	var ids []string // oldest first
	for i := range 5 {
		name := "code"
		if i%2 == 1 {
			name = "note"
		}
		ids = append(ids, submitID(t, url, name, "--", strconv.Itoa(i)))
	}
	for _, id := range ids {
		waitState(t, url, id, client.StateDone)
	}
	newest := slices.Clone(ids)
	slices.Reverse(newest)
	idsOf := func(r result) []string {
		var got []string
		for _, l := range strings.Split(r.stdout, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] != "ID" {
				got = append(got, f[0])
			}
		}
		return got
	}
	idsOfJSON := func(t *testing.T, r result) ([]string, string) {
		t.Helper()
		a := jsonOf(t, r)
		var got []string
		runs, _ := a["runs"].([]any)
		for _, run := range runs {
			got = append(got, run.(map[string]any)["id"].(string))
		}
		next, _ := a["next_cursor"].(string)
		return got, next
	}

	t.Run("newest first", func(t *testing.T) {
		r := rexec(t, nil, nil, "history", "--url", url)
		if r.code != 0 || !slices.Equal(idsOf(r), newest) || r.stderr != "" {
			t.Fatalf("%+v", r)
		}
		if !strings.Contains(r.stdout, " exit 4 ") && !strings.Contains(r.stdout, " exit 4\n") {
			t.Fatalf("no exit code:\n%s", r.stdout)
		}
	})
	t.Run("a page, and how to go on", func(t *testing.T) {
		r := rexec(t, nil, nil, "history", "--url", url, "--limit", "2")
		_, next := idsOfJSON(t, rexec(t, nil, nil, "history", "--url", url, "--limit", "2", "--json"))
		if r.code != 0 || !slices.Equal(idsOf(r), newest[:2]) || next == "" || !strings.Contains(r.stderr, "--cursor "+next) {
			t.Fatalf("%+v (next %q)", r, next)
		}
		got, _ := idsOfJSON(t, rexec(t, nil, nil, "history", "--url", url, "--limit", "2", "--json", "--cursor", next))
		if !slices.Equal(got, newest[2:4]) {
			t.Fatalf("second page %v, want %v", got, newest[2:4])
		}
	})
	t.Run("--all follows every page", func(t *testing.T) {
		r := rexec(t, nil, nil, "history", "--url", url, "--limit", "2", "--all")
		if r.code != 0 || !slices.Equal(idsOf(r), newest) || r.stderr != "" {
			t.Fatalf("%+v", r)
		}
		got, next := idsOfJSON(t, rexec(t, nil, nil, "history", "--url", url, "--limit", "2", "--all", "--json"))
		if !slices.Equal(got, newest) || next != "" {
			t.Fatalf("--all --json: %v %q", got, next)
		}
	})
	t.Run("filters", func(t *testing.T) {
		got, _ := idsOfJSON(t, rexec(t, nil, nil, "history", "--url", url, "--json", "--name", "note"))
		if !slices.Equal(got, []string{ids[3], ids[1]}) {
			t.Fatalf("--name note: %v", got)
		}
		got, _ = idsOfJSON(t, rexec(t, nil, nil, "history", "--url", url, "--json", "--state", "queued"))
		if len(got) != 0 {
			t.Fatalf("--state queued: %v", got)
		}
		got, _ = idsOfJSON(t, rexec(t, nil, nil, "history", "--url", url, "--json", "--since", "1h", "--until", time.Now().Add(time.Hour).Format(time.RFC3339)))
		if !slices.Equal(got, newest) {
			t.Fatalf("--since 1h: %v", got)
		}
		got, _ = idsOfJSON(t, rexec(t, nil, nil, "history", "--url", url, "--json", "--until", "1h"))
		if len(got) != 0 {
			t.Fatalf("--until 1h (ago): %v", got)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		rexec(t, nil, nil, "history", "--url", url, "--limit", "1001").want(t, 2, "", "(400 Bad Request, invalid_request): limit 1001")
		rexec(t, nil, nil, "history", "--url", url, "--cursor", "junk").want(t, 2, "", "(400 Bad Request, invalid_request): cursor")
		rexec(t, nil, nil, "history", "--url", url, "--state", "lost").want(t, 2, "", "--state")
		rexec(t, nil, nil, "history", "--url", url, "--since", "yesterday").want(t, 2, "", "--since")
	})
}

// TestScriptsCommandsExitCodes: each class of exit code, for each command
// where it can happen.
func TestScriptsCommandsExitCodes(t *testing.T) {
	url := scriptsServer(t, "", detachedTab...)
	authURL := scriptsServer(t, "s3cret", detachedTab...)
	noScripts := newServer(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String()
	ln.Close()
	done := submitID(t, url, "code", "--", "0")
	waitState(t, url, done, client.StateDone)

	for _, tc := range []struct {
		name    string
		env     []string
		args    []string
		code    int
		errPart string
	}{
		{"token from REXEC_TOKEN", []string{"REXEC_TOKEN=s3cret"}, []string{"status", "--url", authURL}, 0, ""},
		{"URL from REXEC_URL", []string{"REXEC_URL=" + url}, []string{"cancel", done}, 5, "(409 Conflict, already_done)"},

		{"bad URL", nil, []string{"scripts", "--url", "127.0.0.1:8910"}, 2, "--url"},
		{"no id", nil, []string{"logs", "--url", url}, 2, "expected \"<id>\""},
		{"negative offset", nil, []string{"logs", "--url", url, "--offset", "-1", done}, 2, "--offset"},
		{"bad --queue", nil, []string{"submit", "--url", url, "--queue", "soon", "code", "--", "0"}, 2, "--queue"},
		{"--json --wait", nil, []string{"submit", "--url", url, "--json", "--wait", "code", "--", "0"}, 2, "do not go together"},
		{"400 missing argument", nil, []string{"submit", "--url", url, "code"}, 2, "(400 Bad Request, invalid_args)"},
		{"416 offset past the end", nil, []string{"logs", "--url", url, "--offset", "1000", done}, 2, "(416 Requested Range Not Satisfiable, invalid_offset)"},

		{"401 scripts", nil, []string{"scripts", "--url", authURL}, 3, "(401 Unauthorized, unauthorized)"},
		{"401 submit", []string{"REXEC_TOKEN=wrong"}, []string{"submit", "--url", authURL, "note", "--", "x"}, 3, "401"},
		{"401 status", nil, []string{"status", "--url", authURL}, 3, "401"},
		{"401 logs", nil, []string{"logs", "--url", authURL, done}, 3, "401"},
		{"401 cancel", nil, []string{"cancel", "--url", authURL, done}, 3, "401"},
		{"401 history", nil, []string{"history", "--url", authURL}, 3, "401"},

		{"404 no such script", nil, []string{"submit", "--url", url, "nosuch"}, 4, "(404 Not Found, invalid_name)"},
		{"404 no such run: status", nil, []string{"status", "--url", url, "aaaaaaaaaaaaaaaaaaaaaaaaaa"}, 4, "(404 Not Found, invalid_id)"},
		{"404 no such run: logs", nil, []string{"logs", "--url", url, "-f", "nosuchrun"}, 4, "invalid_id"},
		{"404 no such run: cancel", nil, []string{"cancel", "--url", url, "nosuchrun"}, 4, "invalid_id"},
		{"404 a server without scripts", nil, []string{"scripts", "--url", noScripts}, 4, "(404 Not Found, no_scripts)"},

		{"409 cancel of a done run", nil, []string{"cancel", "--url", url, done}, 5, "(409 Conflict, already_done)"},

		{"unreachable: scripts", nil, []string{"scripts", "--url", closedURL}, 6, "connection refused (nothing was done)"},
		{"unreachable: submit", nil, []string{"submit", "--url", closedURL, "note", "--", "x"}, 6, "connection refused (nothing was done)"},
		{"unreachable: status", nil, []string{"status", "--url", closedURL, done}, 6, "connection refused"},
		{"unreachable: logs", nil, []string{"logs", "--url", closedURL, done}, 6, "connection refused"},
		{"unreachable: cancel", nil, []string{"cancel", "--url", closedURL, done}, 6, "connection refused"},
		{"unreachable: history", nil, []string{"history", "--url", closedURL}, 6, "connection refused"},

		{"another status: not rexec's API", nil, []string{"history", "--url", url + "/elsewhere"}, 7, "(501 Not Implemented)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rexec(t, nil, tc.env, tc.args...)
			if tc.code == 0 {
				r.want(t, 0, r.stdout, "")
				return
			}
			r.want(t, tc.code, "", tc.errPart)
		})
	}
}

// cuttingProxy forwards TCP connections to a server, and cuts the first
// answers of GET /scripts/v1/output it carries a few bytes into their body
// (with a reset, as a dead link or a killed proxy gives).
type cuttingProxy struct {
	ln     net.Listener
	target string
	after  int // bytes of body an answer gets before its cut

	mu   sync.Mutex
	cuts int // answers still to cut
	cut  int // answers cut
	wg   sync.WaitGroup
}

func newCuttingProxy(t *testing.T, targetURL string, cuts, after int) (*cuttingProxy, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, target: strings.TrimPrefix(targetURL, "http://"), after: after, cuts: cuts}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p, "http://" + ln.Addr().String()
}

func (p *cuttingProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(c)
		}()
	}
}

func (p *cuttingProxy) cutCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// forward carries one connection. An answer with a Rexec-Output-Offset
// header, while cuts remain, is cut p.after bytes into its body.
func (p *cuttingProxy) forward(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		io.Copy(s, c) // the client's requests
		s.(*net.TCPConn).CloseWrite()
	}()
	const marker = "\r\nRexec-Output-Offset:"
	sr, cw := bufio.NewReader(s), bufio.NewWriter(c)
	var seen []byte  // the end of what was forwarded, to find the marker in
	body := -1       // bytes of the answer's body to forward before the cut; -1 while not cutting
	headEnd := false // the answer to cut is in its body
	for {
		if sr.Buffered() == 0 && cw.Flush() != nil {
			return
		}
		b, err := sr.ReadByte()
		if err != nil {
			cw.Flush()
			return
		}
		cw.WriteByte(b)
		seen = append(seen, b)
		if len(seen) > len(marker) {
			seen = seen[1:]
		}
		switch {
		case body < 0 && string(seen) == marker:
			p.mu.Lock()
			if p.cuts > 0 {
				p.cuts--
				body = p.after
			}
			p.mu.Unlock()
		case body >= 0 && !headEnd:
			headEnd = strings.HasSuffix(string(seen), "\r\n\r\n")
		case body > 0:
			body--
		}
		if headEnd && body == 0 {
			cw.Flush()
			p.mu.Lock()
			p.cut++
			p.mu.Unlock()
			c.(*net.TCPConn).SetLinger(0) // a reset, as a dead link or a killed proxy gives
			return
		}
	}
}

func TestLogsResumeAfterCutConnections(t *testing.T) {
	url := scriptsServer(t, "", detachedTab...)

	t.Run("following a live run", func(t *testing.T) {
		// 40 lines of 8 or 9 bytes, 10 ms apart; each answer is cut 25
		// bytes into its chunked body, in the middle of a chunk.
		proxy, proxyURL := newCuttingProxy(t, url, 3, 25)
		id := submitID(t, url, "lines", "--", "40", "10ms")
		r := rexec(t, nil, nil, "logs", "--url", proxyURL, "-f", id)
		if r.code != 0 || r.stdout != linesOutput(40) {
			t.Fatalf("exit %d, stdout %q; stderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if n := proxy.cutCount(); n != 3 || strings.Count(r.stderr, "resuming at byte") != 3 {
			t.Fatalf("%d cuts; stderr:\n%s", n, r.stderr)
		}
	})
	t.Run("reading a done run's binary output", func(t *testing.T) {
		const n = 1 << 20
		id := submitID(t, url, "gen", "--", strconv.Itoa(n))
		waitState(t, url, id, client.StateDone)
		proxy, proxyURL := newCuttingProxy(t, url, 2, 100000)
		r := rexec(t, nil, nil, "logs", "--url", proxyURL, id)
		if err := testchild.CheckGen([]byte(r.stdout), n); r.code != 0 || err != nil || proxy.cutCount() != 2 {
			t.Fatalf("exit %d, %v, %d cuts; stderr:\n%s", r.code, err, proxy.cutCount(), r.stderr)
		}
	})
	t.Run("submit --wait through cuts", func(t *testing.T) {
		proxy, proxyURL := newCuttingProxy(t, url, 2, 30)
		r := rexec(t, nil, nil, "submit", "--url", proxyURL, "--wait", "lines", "--", "30", "10ms")
		if r.code != 0 || r.stdout != linesOutput(30) || proxy.cutCount() != 2 {
			t.Fatalf("exit %d, stdout %q, %d cuts; stderr:\n%s", r.code, r.stdout, proxy.cutCount(), r.stderr)
		}
	})
}

// TestLogsGivesUp: a server gone for good ends logs -f with 6 and the offset
// to resume from, after --retry-for.
func TestLogsGivesUp(t *testing.T) {
	srv, url := serverProcess(t, "--scripts", writeTab(t, "-e=TESTCHILD=hang hang '"+os.Args[0]+"'"))
	id := submitID(t, url, "hang")
	w := startRexec(t, "logs", "--url", url, "-f", "--retry-for", "1s", id)
	if l := w.line(t); l != "ready" {
		t.Fatalf("first line %q", l)
	}
	srv.Process.Kill()
	srv.Wait()
	code, _ := w.wait(t)
	stderr := w.stderr.String()
	if code != 6 || strings.Count(stderr, "resuming at byte 6") < 2 ||
		!strings.Contains(stderr, "gave up resuming after 1s") || !strings.Contains(stderr, "stopped at byte 6 (rexec logs -f "+id+" --offset 6)") {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
}

func writeTab(t *testing.T, lines ...string) string {
	t.Helper()
	tab := filepath.Join(t.TempDir(), "exectab")
	if err := os.WriteFile(tab, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestScriptsCommandsHelp(t *testing.T) {
	for _, cmd := range []string{"scripts", "submit", "status", "logs", "cancel", "history"} {
		r := rexec(t, nil, nil, cmd, "--help")
		for _, want := range []string{"Exit status:", "\n    0 ", "\n    2 ", "\n    3 ", "\n    4 ", "\n    5 ", "\n    6 ", "\n    7 ", "\n    130 ", "REXEC_URL", "REXEC_TOKEN"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("rexec %s --help does not document %q:\n%s", cmd, want, r.stdout)
			}
		}
	}
	r := rexec(t, nil, nil, "submit", "--help")
	for _, want := range []string{"0-255", "128+N", "\n    255 "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("rexec submit --help does not document %q", want)
		}
	}
}

func TestScriptsCommandLine(t *testing.T) {
	for k, v := range map[string]string{"REXEC_URL": "http://from-env:1", "REXEC_TOKEN": "tok", "REXEC_JSON": "true",
		"REXEC_WAIT": "true", "REXEC_FOLLOW": "true", "REXEC_OFFSET": "5", "REXEC_ALL": "true", "REXEC_LIMIT": "3",
		"REXEC_NAME": "x", "REXEC_STATE": "done", "REXEC_QUEUE": "1h", "REXEC_STDIN": "/etc/passwd", "REXEC_TIMEOUT": "1s"} {
		t.Setenv(k, v)
	}
	parse := func(t *testing.T, args ...string) *cli {
		t.Helper()
		var c cli
		p, err := newParser(&c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Parse(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return &c
	}
	t.Run("only REXEC_URL and REXEC_TOKEN are read", func(t *testing.T) {
		c := parse(t, "submit", "job")
		s := c.Submit
		if s.URL != "http://from-env:1" || s.Token != "tok" || s.JSON || s.Wait || s.Queue != "" || s.Stdin != "" || s.Timeout != 0 {
			t.Fatalf("%+v", s)
		}
		if l := parse(t, "logs", "x").Logs; l.Follow || l.Offset != 0 || l.Token != "tok" {
			t.Fatalf("%+v", l)
		}
		if h := parse(t, "history").History; h.All || h.Limit != 0 || h.Name != "" || h.State != "" || h.JSON {
			t.Fatalf("%+v", h)
		}
	})
	t.Run("a script's arguments after --", func(t *testing.T) {
		for args, want := range map[string][]string{
			"submit job":                 nil,
			"submit job -- -x y":         {"-x", "y"},
			"submit job -- -- y":         {"--", "y"},
			"submit --wait job -- a --b": {"a", "--b"},
		} {
			c := parse(t, strings.Fields(args)...)
			if c.Submit.Name != "job" || !slices.Equal(c.Submit.Args, want) {
				t.Errorf("%s: %q %q, want %q", args, c.Submit.Name, c.Submit.Args, want)
			}
		}
	})
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.Local)
	for _, tc := range []struct {
		in     string
		future bool
		want   time.Time
	}{
		{"2026-01-02T03:04:05Z", false, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"2026-01-02T03:04:05+02:00", true, time.Date(2026, 1, 2, 1, 4, 5, 0, time.UTC)},
		{"2026-01-02T03:04", false, time.Date(2026, 1, 2, 3, 4, 0, 0, time.Local)},
		{"2026-01-02", false, time.Date(2026, 1, 2, 0, 0, 0, 0, time.Local)},
		{"90s", true, now.Add(90 * time.Second)},
		{"24h", false, now.Add(-24 * time.Hour)},
		{"1d", false, now.Add(-24 * time.Hour)},
		{"1d12h", true, now.Add(36 * time.Hour)},
		{"0", true, now},
	} {
		got, err := parseWhen(tc.in, now, tc.future)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseWhen(%q, %v) = %v, %v; want %v", tc.in, tc.future, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "soon", "-1h", "+1h", "d", "1d-1h", "1x", "106751d", "2026-13-01"} {
		if got, err := parseWhen(bad, now, true); err == nil {
			t.Errorf("parseWhen(%q) = %v, want an error", bad, got)
		}
	}
}

// FuzzParseWhen: any text is a time, a duration from now in the direction
// asked, or an error; never a panic.
func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"2026-01-02T03:04:05Z", "2026-01-02T03:04", "2026-01-02", "90s", "1d12h", "0", "-1h", "1d-1h", "9999999d"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, derr := parseDays(s)
		for _, future := range []bool{false, true} {
			got, err := parseWhen(s, now, future)
			if err != nil || derr != nil {
				continue
			}
			if d < 0 || (future && !got.Equal(now.Add(d))) || (!future && !got.Equal(now.Add(-d))) {
				t.Fatalf("parseWhen(%q, %v) = %v; parseDays: %v", s, future, got, d)
			}
		}
	})
}

// The client refuses more stdin than the server takes, and no less.
func TestMaxStdinAgrees(t *testing.T) {
	if client.MaxStdin != launch.MaxStdin {
		t.Fatalf("client.MaxStdin %d, launch.MaxStdin %d", client.MaxStdin, launch.MaxStdin)
	}
}

// TestWithoutServer: a build without the server (not Linux) takes the
// server's command lines, and says the server is not there, with exit 2;
// the client commands parse as usual.
func TestWithoutServer(t *testing.T) {
	type stubCLI struct {
		Serve  noServerCmd `cmd:"" default:"withargs"`
		Run    runCmd      `cmd:""`
		Status statusCmd   `cmd:""`
	}
	parse := func(args ...string) (*kong.Context, error) {
		var c stubCLI
		p, err := kong.New(&c, kong.Name("rexec"), kong.DefaultEnvars("REXEC"), kong.Exit(func(int) {}))
		if err != nil {
			t.Fatal(err)
		}
		return p.Parse(args)
	}
	for _, args := range [][]string{{}, {"serve"}, {"serve", "-p", "1", "--scripts", "x"}, {"-p", "8910"}, {"--port=1", "-i", "::1"}, {"-v"}, {"bogus"}} {
		kctx, err := parse(args...)
		if err == nil {
			err = kctx.Run()
		} else if askedForServer(err) {
			err = &exitError{exitUsage, errNoServer}
		}
		var exit *exitError
		if !errors.As(err, &exit) || exit.code != exitUsage || exit.err != errNoServer {
			t.Errorf("%q: %v, want errNoServer", args, err)
		}
	}
	for _, args := range [][]string{{"run", "--bogus"}, {"status", "--bogus"}} {
		if _, err := parse(args...); err == nil || askedForServer(err) {
			t.Errorf("%q: %v, want kong's own error", args, err)
		}
	}
	if !strings.Contains(errNoServer.Error(), "Linux only") {
		t.Fatal(errNoServer)
	}
}
