package webapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testhttp"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/node"
)

// needCgroups skips a test on a machine that offers no cgroups for runs,
// except under CI, whose machines do.
func needCgroups(t *testing.T, s *testServer, limits ...string) {
	t.Helper()
	tree := s.Node.Cgroups
	if tree.Mode() == cgroup.ModeOff {
		if os.Getenv("CI") != "" && os.Geteuid() == 0 {
			t.Fatal("cgroups are off on a CI machine, which offers them")
		}
		t.Skip("cgroups are off here")
	}
	for _, l := range limits {
		if !strings.Contains(tree.LimitNames(), l) {
			t.Skipf("no %s limit in cgroup mode %s", l, tree.Mode())
		}
	}
}

// ndjsonEnd reads an NDJSON stream to its end object.
func ndjsonEnd(t *testing.T, body io.Reader) (lines []string, end map[string]any) {
	t.Helper()
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if l, ok := m["line"].(string); ok {
			lines = append(lines, l)
		}
		if _, ok := m["reason"]; ok {
			return lines, m
		}
	}
	t.Fatalf("no end object (lines %q)", lines)
	return nil, nil
}

// A fork bomb is stopped by the run's pids limit, and the server goes on
// serving while it runs.
func TestForkBombHeldByPidsLimit(t *testing.T) {
	s := newServer(t, serverOpts{killGrace: 300 * time.Millisecond})
	needCgroups(t, s, "pids")
	body := fake("bomb", "forkbomb")
	body["pids"] = 32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := s.post(t, ctx, body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "fork failed after") {
		t.Fatalf("first line %q (%v), want a failed fork", line, err)
	}
	n, _ := strconv.Atoi(strings.Fields(line)[3])
	if n >= 32 {
		t.Fatalf("%d children started under a limit of 32", n)
	}
	// The server still serves: a probe, and another run.
	if r, err := http.Get(s.url + "/healthz"); err != nil || r.StatusCode != 200 {
		t.Fatalf("healthz during the fork bomb: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	r2, out := s.run(t, fake("other", "echo", "still here"))
	if wantStatus(t, r2, out, 200); string(out) != "still here\n" {
		t.Fatalf("another run: %q", out)
	}
	req, _ := http.NewRequest("DELETE", s.url+"/process/bomb", nil)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode/100 != 2 {
		t.Fatalf("cancel: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	io.Copy(io.Discard, br)
	if got := resp.Trailer.Get("Process-End-Reason"); got != "cancelled" {
		t.Fatalf("Process-End-Reason %q, want cancelled", got)
	}
	waitLog(t, s, `"pids_limit_hits"`)
}

// A memory hog ends with reason oom: in the trailers, the NDJSON end
// object, the metrics, and a detached run's status and done event.
func TestMemoryHogEndsWithOOM(t *testing.T) {
	nc := node.Config{EventReplay: 100, EventQueue: 64}
	nc.Scripts = exectab(t, "-e=TESTCHILD=memhog --memory=48MiB hog EXE 400")
	ts := testserver.Start(t, nc)
	s := &testServer{Server: ts, url: ts.URL, logs: ts.Logs}
	needCgroups(t, s, "memory")

	// Attached, text: the trailers.
	body := fake("hog", "memhog", "400")
	body["memory"] = "48MiB"
	resp, out := s.run(t, body)
	wantStatus(t, resp, out, 200)
	if got := resp.Trailer.Get("Process-End-Reason"); got != "oom" || resp.Trailer.Get("Process-Signal") != "SIGKILL" {
		t.Fatalf("trailers %v, want reason oom by SIGKILL", resp.Trailer)
	}
	// Attached, NDJSON: the end object with the usage.
	body["alias"] = "hog2"
	resp = s.post(t, context.Background(), body, "Accept", "application/x-ndjson")
	_, end := ndjsonEnd(t, resp.Body)
	usage, _ := end["usage"].(map[string]any)
	if end["reason"] != "oom" || usage["oom_kills"] == nil || usage["memory_peak"] == nil {
		t.Fatalf("end object %v, want reason oom and the usage", end)
	}
	// Detached: status and the done event.
	code, sse := openSSE(t, s.url, "", "/scripts/v1/events?name=hog", "")
	if code != 200 {
		t.Fatalf("events: %d", code)
	}
	r, err := http.Post(s.url+"/scripts/v1/run", "application/json", strings.NewReader(`{"name":"hog"}`))
	if err != nil {
		t.Fatal(err)
	}
	var a struct{ ID string }
	json.NewDecoder(r.Body).Decode(&a)
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("run: %d", r.StatusCode)
	}
	for {
		e := testhttp.ReadEvent(t, sse)
		var ev map[string]any
		json.Unmarshal([]byte(e.Data), &ev)
		if ev["state"] != "done" {
			continue
		}
		if ev["ended"] != "oom" || ev["usage"] == nil {
			t.Fatalf("done event %v, want ended oom with the usage", ev)
		}
		break
	}
	_, st := getAs(t, s.url, "", "/scripts/v1/status/"+a.ID)
	if st["ended"] != "oom" || st["signal"] != "SIGKILL" || st["usage"] == nil {
		t.Fatalf("status %v, want ended oom", st)
	}
	_, _, metrics := request(t, s.url, "GET", "/metrics", "")
	var oom []string
	for line := range strings.Lines(metrics) {
		if strings.Contains(line, `ended="oom"`) && !strings.HasSuffix(line, " 0\n") {
			oom = append(oom, line)
		}
	}
	if len(oom) != 2 {
		t.Fatalf("metrics count OOM ends as %q, want the attached and the detached ones", oom)
	}
}

// A process that made a session of its own dies when its client goes away,
// and a double-forked daemon when its run ends.
func TestEscapeesDieWithTheirRun(t *testing.T) {
	s := newServer(t, serverOpts{killGrace: 300 * time.Millisecond})
	needCgroups(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	resp := s.post(t, ctx, fake("esc", "escapee"))
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	esc, _ := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || esc == 0 {
		t.Fatalf("first line %q: %v", line, err)
	}
	t.Cleanup(func() { syscall.Kill(esc, syscall.SIGKILL) })
	cancel() // the client goes away
	if !testchild.WaitGone(esc, 10*time.Second) {
		t.Fatalf("the setsid escapee %d outlived its cut run", esc)
	}

	resp2, out := s.run(t, fake("daemon", "daemon"))
	wantStatus(t, resp2, out, 200)
	d, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if d == 0 {
		t.Fatalf("output %q", out)
	}
	t.Cleanup(func() { syscall.Kill(d, syscall.SIGKILL) })
	if !testchild.Gone(d) {
		t.Fatalf("the daemon %d outlived its run, which ended", d)
	}
	if got := resp2.Trailer.Get("Process-End-Reason"); got != "exit" {
		t.Fatalf("Process-End-Reason %q", got)
	}
}

// Limits above the server's caps are refused before anything starts, as
// are bad values and a script's run asking for more than its line allows.
func TestLimitsAboveCapsAreRefused(t *testing.T) {
	nc := node.Config{Limits: launch.Policy{Max: cgroup.Limits{Memory: 256 << 20, Pids: 100, CPU: 1000}}}
	nc.Scripts = exectab(t, "-e=TESTCHILD=echo --pids=50 small EXE hi")
	ts := testserver.Start(t, nc)
	s := &testServer{Server: ts, url: ts.URL, logs: ts.Logs}
	needCgroups(t, s, "memory", "pids", "cpu")
	for _, tc := range []struct {
		field string
		value any
		want  string
	}{
		{"memory", "1GiB", "above --max-memory=256MiB"},
		{"pids", 101, "above --max-pids=100"},
		{"cpu", 1.5, "above --max-cpu=1"},
		{"cpu", "2000m", "above --max-cpu=1"},
		{"memory", "lots", "not a size"},
		{"memory", 1024, "below the least a run needs"},
		{"pids", -1, "not a whole number"},
		{"pids", 2.5, "not a whole number"},
		{"pids", "seven", "not a whole number"},
		{"cpu", "0.0001", "below a thousandth"},
		{"cpu", true, "must be a string or a number"},
		{"memory", map[string]any{}, "must be a string or a number"},
	} {
		body := fake("capped", "echo", "x")
		body[tc.field] = tc.value
		resp, out := s.run(t, body)
		wantError(t, resp, out, 400, tc.want)
	}
	// Within the caps it runs.
	body := fake("capped", "echo", "x")
	body["memory"], body["pids"], body["cpu"] = "128MiB", 20, "0.5"
	resp, out := s.run(t, body)
	if wantStatus(t, resp, out, 200); string(out) != "x\n" {
		t.Fatalf("output %q", out)
	}
	// A script's run may lower its line's limit, not raise it.
	resp, out = s.run(t, map[string]any{"alias": "s", "script": "small", "pids": 60})
	wantError(t, resp, out, 400, "above script small's --pids=50")
	resp, out = s.run(t, map[string]any{"alias": "s", "script": "small", "pids": 10})
	wantStatus(t, resp, out, 200)
}

// Without cgroups (a root that cannot be used), runs are still killed by
// process group, and limits are refused rather than ignored.
func TestWithoutCgroupsTheGroupKillRemains(t *testing.T) {
	ts := testserver.Start(t, node.Config{Cgroups: cgroup.Config{Root: "/sys/kernel/not-a-cgroup"}})
	s := &testServer{Server: ts, url: ts.URL, logs: ts.Logs}
	if m := ts.Node.Cgroups.Mode(); m != cgroup.ModeOff {
		t.Fatalf("mode %s with an unusable root, want off", m)
	}
	waitLog(t, s, `"cgroups":"off"`)
	ctx, cancel := context.WithCancel(context.Background())
	resp := s.post(t, ctx, fake("gc", "grandchild"))
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	gc, _ := strconv.Atoi(strings.TrimSpace(line))
	if gc == 0 {
		t.Fatalf("first line %q", line)
	}
	t.Cleanup(func() { syscall.Kill(gc, syscall.SIGKILL) })
	cancel()
	if !testchild.WaitGone(gc, 10*time.Second) {
		t.Fatalf("the grandchild %d in the run's group outlived its cut run", gc)
	}
	body := fake("lim", "echo", "x")
	body["memory"] = "64MiB"
	r, out := s.run(t, body)
	wantError(t, r, out, 400, "cgroups are off")
}
