package webapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testhttp"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/store"
	"github.com/rexec/rexec/webapi"
)

// detachedServer is a real server with detached runs on a store in a temp
// dir. Its scripts run the test binary as fake children (see exectab).
type detachedServer struct {
	url     string
	token   string // the admin token, when the server has one
	dir     string
	store   *store.Store
	runs    *detached.Manager
	scripts *atomic.Pointer[catalog.Catalog] // swap it to reload
	node    *testserver.Server
}

func newDetachedServer(t *testing.T, dir string, lines ...string) *detachedServer {
	t.Helper()
	return newDetachedServerWith(t, dir, detached.Config{}, lines...)
}

func newDetachedServerWith(t *testing.T, dir string, cfg detached.Config, lines ...string) *detachedServer {
	t.Helper()
	return newDetachedServerToken(t, dir, cfg, "", lines...)
}

func newDetachedServerToken(t *testing.T, dir string, cfg detached.Config, token string, lines ...string) *detachedServer {
	t.Helper()
	return newDetachedServerFull(t, dir, cfg, webapi.Config{Token: token}, lines...)
}

// newDetachedServerFull is a detached server with web's settings and
// cfg's (their wiring is the node's).
func newDetachedServerFull(t *testing.T, dir string, cfg detached.Config, web webapi.Config, lines ...string) *detachedServer {
	t.Helper()
	return newDetachedNode(t, node.Config{DataDir: dir, Detached: cfg, Web: web}, lines...)
}

// newDetachedNode is a detached server on a node with nc's settings, and
// the test's defaults for what nc leaves zero: a short scheduling tick, a
// 1 MiB output cap, a short busy timeout (only tests that lock the
// database from outside ever wait on it), a small event feed.
func newDetachedNode(t *testing.T, nc node.Config, lines ...string) *detachedServer {
	t.Helper()
	scripts := exectab(t, lines...)
	nc.Scripts = scripts
	if nc.Detached.Tick == 0 {
		nc.Detached.Tick = 50 * time.Millisecond
	}
	if nc.Store.MaxOutput == 0 {
		nc.Store.MaxOutput = 1 << 20
	}
	if nc.Store.BusyTimeout == 0 {
		nc.Store.BusyTimeout = 300 * time.Millisecond
	}
	if nc.EventReplay == 0 {
		nc.EventReplay, nc.EventQueue = 100, 64
	}
	if nc.Broker.Child.KillGrace == 0 {
		nc.Broker.Child.KillGrace = time.Second
	}
	n := testserver.Start(t, nc)
	return &detachedServer{url: n.URL, token: nc.Web.Token, dir: n.Store.Dir(), store: n.Store, runs: n.Runs, scripts: scripts, node: n}
}

type apiAnswer map[string]any

func (s *detachedServer) call(t *testing.T, method, path string, body any) (int, apiAnswer) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a apiAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
	}
	if _, ok := a["success"]; !ok {
		t.Fatalf("%s %s: no success field in %v", method, path, a)
	}
	return resp.StatusCode, a
}

func (s *detachedServer) submit(t *testing.T, body map[string]any) string {
	t.Helper()
	code, a := s.call(t, "POST", "/scripts/v1/run", body)
	if code != 200 || a["success"] != true {
		t.Fatalf("run %v: %d %v", body, code, a)
	}
	return a["id"].(string)
}

func (s *detachedServer) status(t *testing.T, id string) apiAnswer {
	t.Helper()
	code, a := s.call(t, "GET", "/scripts/v1/status/"+id, nil)
	if code != 200 {
		t.Fatalf("status %s: %d %v", id, code, a)
	}
	return a
}

// waitState polls until the run is in state (or the bound passes).
func (s *detachedServer) waitState(t *testing.T, id, state string) apiAnswer {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		a := s.status(t, id)
		if a["state"] == state {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s never reached %s: %v", id, state, a)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *detachedServer) output(t *testing.T, id, query string) (string, http.Header, http.Header) {
	t.Helper()
	resp, err := http.Get(s.url + "/scripts/v1/output/" + id + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("output: %d %s", resp.StatusCode, b)
	}
	return string(b), resp.Header, resp.Trailer
}

func TestDetachedRuns(t *testing.T) {
	s := newDetachedServer(t, t.TempDir(),
		"-e=TESTCHILD=args echo EXE @@1",
		"-e=TESTCHILD=exit fail EXE 3",
		"-e=TESTCHILD=hang -s=1 -m=3 one EXE",
		"-e=TESTCHILD=lines slow EXE 5 100ms",
		"-e=TESTCHILD=cat -i reads EXE",
		"-e=TESTCHILD=args -r tidy EXE",
		"-n note @@1",
	)

	t.Run("run, status, output", func(t *testing.T) {
		id := s.submit(t, map[string]any{"name": "echo", "args": []string{"$(id); rm -rf /"}})
		a := s.waitState(t, id, "done")
		if a["ended"] != "exit" || a["exit_code"] != float64(0) || a["name"] != "echo" {
			t.Fatalf("status %v", a)
		}
		out, h, tr := s.output(t, id, "")
		if out != "\"$(id); rm -rf /\"\n" || h.Get("Rexec-Output-Offset") != "0" || tr.Get("Rexec-Output-End") != strconv.Itoa(len(out)) {
			t.Fatalf("output %q offset %q end %q", out, h.Get("Rexec-Output-Offset"), tr.Get("Rexec-Output-End"))
		}
		id = s.submit(t, map[string]any{"name": "fail"})
		if a := s.waitState(t, id, "done"); a["exit_code"] != float64(3) || a["ended"] != "exit" {
			t.Fatalf("status %v", a)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			body   map[string]any
			status int
			code   string
		}{
			{map[string]any{"name": "nope"}, 404, "invalid_name"},
			{map[string]any{"name": "echo"}, 400, "invalid_args"},
			{map[string]any{"name": "echo", "args": []string{"a"}, "stdin": "x"}, 400, "invalid_stdin"},
			{map[string]any{"name": "echo", "bogus": 1}, 400, "invalid_request"},
		} {
			code, a := s.call(t, "POST", "/scripts/v1/run", tc.body)
			if code != tc.status || a["errorcode"] != tc.code || a["success"] != false {
				t.Errorf("%v: %d %v, want %d %s", tc.body, code, a, tc.status, tc.code)
			}
		}
		if code, a := s.call(t, "GET", "/scripts/v1/status/aaaaaaaaaaaaaaaaaaaaaaaaaa", nil); code != 404 || a["errorcode"] != "invalid_id" {
			t.Errorf("unknown id: %d %v", code, a)
		}
		if code, a := s.call(t, "GET", "/scripts/v1/run", nil); code != 405 || a["success"] != false {
			t.Errorf("GET run: %d %v", code, a)
		}
	})
	t.Run("stdin with -i", func(t *testing.T) {
		id := s.submit(t, map[string]any{"name": "reads", "stdin": "fed\n"})
		s.waitState(t, id, "done")
		if out, _, _ := s.output(t, id, ""); out != "fed\n" {
			t.Fatalf("output %q", out)
		}
	})
	t.Run("queue: -s one at a time, first in first out, -m full, cancel", func(t *testing.T) {
		a := s.submit(t, map[string]any{"name": "one"})
		s.waitState(t, a, "running")
		b := s.submit(t, map[string]any{"name": "one"})
		c := s.submit(t, map[string]any{"name": "one"})
		if p := s.status(t, b)["position"]; p != float64(1) {
			t.Fatalf("b position %v", p)
		}
		if p := s.status(t, c)["position"]; p != float64(2) {
			t.Fatalf("c position %v", p)
		}
		if code, ans := s.call(t, "POST", "/scripts/v1/run", map[string]any{"name": "one"}); code != 429 || ans["errorcode"] != "queue_full" {
			t.Fatalf("-m=3: %d %v", code, ans)
		}
		code, list := s.call(t, "GET", "/scripts/v1/status", nil)
		if code != 200 || len(list["queued"].(map[string]any)) != 2 || list["running"].(map[string]any)[a] == nil {
			t.Fatalf("list %v", list)
		}
		// Cancel the queued b: c moves up.
		if code, ans := s.call(t, "POST", "/scripts/v1/cancel/"+b, nil); code != 200 || ans["success"] != true {
			t.Fatalf("cancel queued: %d %v", code, ans)
		}
		if st := s.status(t, b); st["state"] != "done" || st["ended"] != "cancelled" {
			t.Fatalf("b %v", st)
		}
		if p := s.status(t, c)["position"]; p != float64(1) {
			t.Fatalf("c position after cancel %v", p)
		}
		// Cancel the running a: its group is terminated, c starts.
		if code, ans := s.call(t, "POST", "/scripts/v1/cancel/"+a, nil); code != 200 {
			t.Fatalf("cancel running: %d %v", code, ans)
		}
		if st := s.waitState(t, a, "done"); st["ended"] != "cancelled" || st["signal"] != "SIGTERM" {
			t.Fatalf("a %v", st)
		}
		s.waitState(t, c, "running")
		if code, ans := s.call(t, "POST", "/scripts/v1/cancel/"+a, nil); code != 409 || ans["errorcode"] != "already_done" {
			t.Fatalf("cancel done: %d %v", code, ans)
		}
		s.call(t, "POST", "/scripts/v1/cancel/"+c, nil)
		s.waitState(t, c, "done")
	})
	t.Run("scheduled start", func(t *testing.T) {
		at := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
		id := s.submit(t, map[string]any{"name": "echo", "args": []string{"later"}, "queue": at.Unix()})
		if st := s.status(t, id); st["state"] != "queued" || st["start_at"] != float64(at.Unix()) {
			t.Fatalf("scheduled %v", st)
		}
		st := s.waitState(t, id, "done")
		started := time.Unix(int64(st["started"].(float64)), 0)
		// Never early; the upper bound only catches a run that waits for
		// something else than its time (a loaded machine may add seconds).
		if started.Before(at) || started.After(at.Add(10*time.Second)) {
			t.Fatalf("started %v, scheduled %v", started, at)
		}
	})
	t.Run("follow output and resume from an offset", func(t *testing.T) {
		id := s.submit(t, map[string]any{"name": "slow"})
		s.waitState(t, id, "running")
		resp, err := http.Get(s.url + "/scripts/v1/output/" + id + "?follow=1")
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		first, _ := br.ReadString('\n') // arrives while the run goes on
		rest, _ := io.ReadAll(br)
		resp.Body.Close()
		whole := first + string(rest)
		if whole != "line 0\nline 1\nline 2\nline 3\nline 4\n" || resp.Trailer.Get("Rexec-Output-End") != strconv.Itoa(len(whole)) {
			t.Fatalf("followed %q, end %q", whole, resp.Trailer.Get("Rexec-Output-End"))
		}
		out, h, _ := s.output(t, id, "?offset="+strconv.Itoa(len(first)))
		if first+out != whole || h.Get("Rexec-Output-Offset") != strconv.Itoa(len(first)) {
			t.Fatalf("resumed %q after %q", out, first)
		}
		if code, ans := s.call(t, "GET", "/scripts/v1/output/"+id+"?offset=9999", nil); code != 416 || ans["errorcode"] != "invalid_offset" {
			t.Fatalf("offset past the end: %d %v", code, ans)
		}
	})
	t.Run("progress", func(t *testing.T) {
		// The "lines" child prints "line N": no progress. A script printing
		// progress lines is run through sh.
		id := s.submit(t, map[string]any{"name": "echo", "args": []string{"[1/3] First task"}})
		st := s.waitState(t, id, "done")
		p := st["progress"].(map[string]any)
		// The fake child quotes its argument, so this is not a progress line.
		if p["task"] != float64(0) {
			t.Fatalf("progress from a quoted line: %v", p)
		}
	})
	t.Run("-r removes a successful run, -n starts nothing", func(t *testing.T) {
		id := s.submit(t, map[string]any{"name": "tidy"})
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, _ := s.call(t, "GET", "/scripts/v1/status/"+id, nil)
			if code == 404 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("-r run still in the history")
			}
			time.Sleep(20 * time.Millisecond)
		}
		id = s.submit(t, map[string]any{"name": "note", "args": []string{"hello"}})
		if st := s.status(t, id); st["state"] != "done" || st["exit_code"] != float64(0) {
			t.Fatalf("-n run %v", st)
		}
	})
}

func TestDetachedProgress(t *testing.T) {
	dir := t.TempDir()
	script := dir + "/progress.sh"
	os.WriteFile(script, []byte("#!/bin/sh\necho '[1/3] First'\necho '[50%] Half'\necho noise\necho '[2] Second'\nsleep 30\n"), 0o755)
	s := newDetachedServer(t, t.TempDir(), "p "+script)
	id := s.submit(t, map[string]any{"name": "p"})
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := s.status(t, id)
		p := st["progress"].(map[string]any)
		if p["task"] == float64(2) {
			if p["task_total"] != float64(3) || p["task_title"] != "Second" {
				t.Fatalf("progress %v", p)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress never reached task 2: %v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.call(t, "POST", "/scripts/v1/cancel/"+id, nil)
	s.waitState(t, id, "done")
}

// TestDetachedRecovery: runs that were running when rexec died are marked
// interrupted at the next start and their process group killed; queued runs
// are queued again and run.
func TestDetachedRecovery(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A "running" run whose process still exists, in a group of its own.
	orphan := exec.Command("sleep", "100")
	orphan.SysProcAttr = &syscallSetpgid
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	defer orphan.Process.Kill()
	running := store.Run{Script: "echo", Args: []string{"x"}}
	st.Create(context.Background(), &running)
	st.MarkStarted(context.Background(), running.ID, orphan.Process.Pid, time.Now())
	queued := store.Run{Script: "echo", Args: []string{"from before"}}
	st.Create(context.Background(), &queued)
	st.Close()

	s := newDetachedServer(t, dir, "-e=TESTCHILD=args echo EXE @@1")
	if a := s.status(t, running.ID); a["state"] != "done" || a["ended"] != "interrupted" {
		t.Fatalf("running run after restart: %v", a)
	}
	waited := make(chan error, 1)
	go func() { waited <- orphan.Wait() }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the interrupted run's process group was not killed")
	}
	s.waitState(t, queued.ID, "done")
	if out, _, _ := s.output(t, queued.ID, ""); out != "\"from before\"\n" {
		t.Fatalf("queued run's output %q", out)
	}
}

// TestDetachedLimitsUnderConcurrentRequests: 20 requests at once on a script
// with -s=2 -m=5: five are accepted, fifteen get 429, and never more than two
// run at once.
func TestDetachedLimitsUnderConcurrentRequests(t *testing.T) {
	s := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=lines -s=2 -m=5 busy EXE 3 50ms")
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	var ids []string
	for range 20 {
		wg.Go(func() {
			code, a := s.call(t, "POST", "/scripts/v1/run", map[string]any{"name": "busy"})
			mu.Lock()
			defer mu.Unlock()
			codes[code]++
			if code == 200 {
				ids = append(ids, a["id"].(string))
			}
		})
	}
	wg.Wait()
	if codes[200] != 5 || codes[429] != 15 {
		t.Fatalf("answers %v, want 5 accepted and 15 refused", codes)
	}
	// The list is one read of the history: a snapshot of what runs.
	maxRunning := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, list := s.call(t, "GET", "/scripts/v1/status", nil)
		running, queued := len(list["running"].(map[string]any)), len(list["queued"].(map[string]any))
		maxRunning = max(maxRunning, running)
		if running+queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs not done in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, id := range ids {
		if st := s.status(t, id); st["state"] != "done" || st["exit_code"] != float64(0) {
			t.Fatalf("run %s: %v", id, st)
		}
	}
	if maxRunning > 2 {
		t.Fatalf("%d runs at once, -s=2", maxRunning)
	}
}

func TestDetachedRetention(t *testing.T) {
	s := newDetachedServerWith(t, t.TempDir(), detached.Config{Retain: time.Millisecond, RetainEvery: 100 * time.Millisecond},
		"-e=TESTCHILD=exit old EXE 0")
	id := s.submit(t, map[string]any{"name": "old"})
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, _ := s.call(t, "GET", "/scripts/v1/status/"+id, nil)
		if code == 404 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("an old run was never deleted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDetachedRunAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	s := newDetachedServer(t, t.TempDir(), "-u=nobody -g=nogroup who /bin/sh -c \"id -u; id -g\"")
	id := s.submit(t, map[string]any{"name": "who"})
	st := s.waitState(t, id, "done")
	out, _, _ := s.output(t, id, "")
	if st["exit_code"] != float64(0) || out != "65534\n65534\n" {
		t.Fatalf("id -u -g as nobody:nogroup: %v, output %q", st, out)
	}
}

// TestDetachedShutdown: a normal shutdown records running runs as
// interrupted and keeps queued runs queued.
func TestDetachedShutdown(t *testing.T) {
	dir := t.TempDir()
	d := newDetachedNode(t, node.Config{DataDir: dir, Detached: detached.Config{Tick: 20 * time.Millisecond}},
		"-e=TESTCHILD=hang -s=1 h EXE")
	running, _, err := d.runs.Submit(context.Background(), detached.Request{Script: "h"})
	if err != nil {
		t.Fatal(err)
	}
	queued, _, err := d.runs.Submit(context.Background(), detached.Request{Script: "h"})
	if err != nil {
		t.Fatal(err)
	}
	d.waitState(t, running.ID, "running")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.node.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if r, _ := st.Get(context.Background(), running.ID); r.State != store.StateDone || r.Ended != store.EndedInterrupted {
		t.Fatalf("running run after shutdown: %+v", r)
	}
	if r, _ := st.Get(context.Background(), queued.ID); r.State != store.StateQueued {
		t.Fatalf("queued run after shutdown: %+v", r)
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	id, event string
	data      map[string]any
}

func readSSE(t *testing.T, br *bufio.Reader) sseEvent {
	t.Helper()
	e := testhttp.ReadEvent(t, br)
	ev := sseEvent{id: e.ID, event: e.Event}
	json.Unmarshal([]byte(e.Data), &ev.data)
	return ev
}

func TestEventsStream(t *testing.T) {
	s := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=exit job EXE 3", "-e=TESTCHILD=exit other EXE 0", "-n note @@1 @@2")
	open := func(query, last string) (*http.Response, *bufio.Reader) {
		req, _ := http.NewRequest("GET", s.url+"/scripts/v1/events"+query, nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type %q", ct)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp, bufio.NewReader(resp.Body)
	}
	_, jobs := open("?name=job", "")
	_, all := open("", "")
	s.submit(t, map[string]any{"name": "other"})
	id := s.submit(t, map[string]any{"name": "job"})
	var first sseEvent
	for i, want := range []string{"queued", "running", "done"} {
		e := readSSE(t, jobs)
		if e.event != want || e.data["run"] != id || e.data["name"] != "job" {
			t.Fatalf("event %d: %+v, want %s of %s", i, e, want, id)
		}
		if i == 0 {
			first = e
		}
		if want == "done" && (e.data["exit_code"] != float64(3) || e.data["ended"] != "exit") {
			t.Fatalf("done event %+v", e)
		}
	}
	// The unfiltered monitor saw the other script too, first.
	if e := readSSE(t, all); e.data["name"] != "other" {
		t.Fatalf("all: %+v", e)
	}
	// A monitor that reconnects with the last id it saw gets what it missed.
	_, again := open("?name=job", first.id)
	if e := readSSE(t, again); e.event != "running" || e.data["run"] != id {
		t.Fatalf("resumed: %+v", e)
	}
	if e := readSSE(t, again); e.event != "done" {
		t.Fatalf("resumed: %+v", e)
	}
	// A -n script's event carries its arguments as given.
	_, notes := open("?name=note", "")
	s.submit(t, map[string]any{"name": "note", "args": []string{"a b", "$(id)"}})
	if e := readSSE(t, notes); e.event != "done" || fmt.Sprint(e.data["args"]) != "[a b $(id)]" {
		t.Fatalf("-n event %+v", e)
	}
}

func TestCallbackAPI(t *testing.T) {
	s := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=callback -s=2 cb EXE @@1")
	a := s.submit(t, map[string]any{"name": "cb", "args": []string{"wait"}})
	b := s.submit(t, map[string]any{"name": "cb", "args": []string{"wait"}})
	s.waitState(t, a, "running")
	s.waitState(t, b, "running")

	// Wait for run a to have posted, then read its token from its output.
	var token string
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _, _ := s.output(t, a, "")
		if strings.Contains(out, "result ") {
			if !strings.Contains(out, "progress 200 OK\n") || !strings.Contains(out, "result 200 OK\n") {
				t.Fatalf("the script's callbacks failed:\n%s", out)
			}
			token = strings.TrimPrefix(strings.SplitN(out, "\n", 2)[0], "token ")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no callbacks: %q", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := s.status(t, a)
	p := st["progress"].(map[string]any)
	if p["task"] != float64(2) || p["task_total"] != float64(5) || p["task_title"] != "from the script" {
		t.Fatalf("progress %v", p)
	}
	if r, _ := json.Marshal(st["result"]); string(r) != `{"answer":42}` {
		t.Fatalf("result %s", r)
	}
	post := func(what, id, tok, body string) (int, apiAnswer) {
		req, _ := http.NewRequest("POST", s.url+"/scripts/v1/"+what+"/"+id, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans apiAnswer
		json.NewDecoder(resp.Body).Decode(&ans)
		return resp.StatusCode, ans
	}
	if code, ans := post("result", b, token, `{"x":1}`); code != 403 || ans["errorcode"] != "invalid_token" {
		t.Fatalf("run a's token on run b: %d %v", code, ans)
	}
	for _, body := range []string{`[1]`, `"s"`, `nope`, ``} {
		if code, _ := post("result", a, token, body); code != 400 {
			t.Fatalf("result %q: %d, want 400", body, code)
		}
	}
	if code, _ := post("result", a, token, `{"big":"`+strings.Repeat("x", 70<<10)+`"}`); code != 413 {
		t.Fatalf("70 KiB result: %d, want 413", code)
	}
	if code, _ := post("progress", a, token, `{"subtask_percent":101}`); code != 400 {
		t.Fatalf("bad progress: %d", code)
	}
	done := s.waitState(t, a, "done")
	if r, _ := json.Marshal(done["result"]); string(r) != `{"answer":42}` {
		t.Fatalf("result after the end %s", r)
	}
	if code, _ := post("result", a, token, `{"late":true}`); code != 403 {
		t.Fatalf("token after the run ended: %d, want 403", code)
	}
	s.waitState(t, b, "done")
}

func TestEventsIncludeProgress(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "steps.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho '[1/2] First'\nsleep 0.3\necho '[2] Second'\n"), 0o755)
	s := newDetachedServer(t, t.TempDir(), "steps "+script)
	resp, err := http.Get(s.url + "/scripts/v1/events?name=steps")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	id := s.submit(t, map[string]any{"name": "steps"})
	var states []string
	var titles []string
	for {
		e := readSSE(t, br)
		states = append(states, e.event)
		if p, ok := e.data["progress"].(map[string]any); ok {
			titles = append(titles, p["task_title"].(string))
		}
		if e.event == "done" {
			if e.data["run"] != id {
				t.Fatalf("done of %v", e.data["run"])
			}
			break
		}
	}
	got := strings.Join(states, ",")
	if !strings.HasPrefix(got, "queued,running,progress") || !strings.HasSuffix(got, "progress,done") ||
		titles[0] != "First" || titles[len(titles)-1] != "Second" {
		t.Fatalf("events %s, titles %v", got, titles)
	}
}

// A queued run waits for the broker's slot, not for a tick: whoever held
// the slot (an attached run of the script, another detached run), the run
// starts when it frees. The tick here is an hour, so only the freed slot
// can start it. A client's alias cannot take a detached run's place.
func TestQueuedRunStartsWhenSlotFrees(t *testing.T) {
	s := newDetachedServerWith(t, t.TempDir(), detached.Config{Tick: time.Hour},
		"-e=TESTCHILD=hang -s=1 one EXE")
	hang, _ := testchild.Command("hang")

	t.Run("after an attached run", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		body, _ := json.Marshal(map[string]any{"alias": "holder", "script": "one"})
		req, _ := http.NewRequestWithContext(ctx, "POST", s.url+"/process", bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != "ready\n" {
			t.Fatalf("attached run: %q %v", line, err)
		}
		id := s.submit(t, map[string]any{"name": "one"})
		if a := s.status(t, id); a["state"] != "queued" || a["waiting"] != "slot" {
			t.Fatalf("while the attached run holds the slot: %v", a)
		}
		cancel() // the client goes: its run is killed, its slot freed
		s.waitState(t, id, "running")
		s.call(t, "POST", "/scripts/v1/cancel/"+id, nil)
		s.waitState(t, id, "done")
	})
	t.Run("after a detached run, with its alias taken", func(t *testing.T) {
		first := s.submit(t, map[string]any{"name": "one"})
		s.waitState(t, first, "running")
		second := s.submit(t, map[string]any{"name": "one"})
		if a := s.status(t, second); a["state"] != "queued" {
			t.Fatalf("second run: %v", a)
		}
		// Detached runs once took the alias run-<id>: a client that
		// took it first made the run fail to start.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		body, _ := json.Marshal(map[string]any{"alias": "run-" + second, "cmd": hang,
			"envs": map[string]string{"TESTCHILD": "hang"}})
		req, _ := http.NewRequestWithContext(ctx, "POST", s.url+"/process", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("ad-hoc run with the alias: %d", resp.StatusCode)
		}
		s.call(t, "POST", "/scripts/v1/cancel/"+first, nil)
		a := s.waitState(t, second, "running")
		if a["ended"] != nil {
			t.Fatalf("second run: %v", a)
		}
		s.call(t, "POST", "/scripts/v1/cancel/"+second, nil)
		if a := s.waitState(t, second, "done"); a["ended"] != "cancelled" {
			t.Fatalf("second run ended %v", a["ended"])
		}
	})
}

// TestQueueLimitCountsRunsNotDone: a script's -m counts the runs queued and
// running; a run that ended, was cancelled or failed to start leaves room.
func TestQueueLimitCountsRunsNotDone(t *testing.T) {
	s := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=exit -m=1 quick EXE 0",
		"-e=TESTCHILD=hang -m=1 -s=1 slow EXE", "-m=1 missing /no/such/program")
	for i := range 5 {
		id := s.submit(t, map[string]any{"name": "quick"})
		if a := s.waitState(t, id, "done"); a["ended"] != "exit" {
			t.Fatalf("run %d: %v", i, a)
		}
		id = s.submit(t, map[string]any{"name": "missing"})
		if a := s.waitState(t, id, "done"); a["ended"] != "start_failed" {
			t.Fatalf("run %d of a missing program: %v", i, a)
		}
		id = s.submit(t, map[string]any{"name": "slow"})
		if code, ans := s.call(t, "POST", "/scripts/v1/run", map[string]any{"name": "slow"}); code != 429 || ans["errorcode"] != "queue_full" {
			t.Fatalf("-m=1 with one running: %d %v", code, ans)
		}
		s.call(t, "POST", "/scripts/v1/cancel/"+id, nil)
		s.waitState(t, id, "done")
	}
}
