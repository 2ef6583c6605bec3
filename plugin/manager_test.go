package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creachadair/jrpc2"
	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/internal/testcgroup"
	"github.com/rs/zerolog"
)

// syncBuffer is a log the processes' goroutines write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeComponent is a command whose process is the test binary in mode.
func fakeComponent(id, mode string, strategy Strategy, timeout time.Duration) Component {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return Component{Plugin: "test", ID: id, Type: TypeCmd, Command: exe, Dir: os.TempDir(), Strategy: strategy,
		Timeout: timeout, Env: []string{"REXEC_TEST_PLUGIN=" + mode}}
}

// newTestManager returns a Manager of comps, closed at the test's end, and
// its log.
func newTestManager(t *testing.T, cfg Config, comps ...Component) (*Manager, *syncBuffer) {
	t.Helper()
	byID := map[string]Component{}
	for _, c := range comps {
		byID[c.FullID()] = c
	}
	log := &syncBuffer{}
	cfg.Lookup = func(id string) (Component, bool) { c, ok := byID[id]; return c, ok }
	cfg.Logger = zerolog.New(log)
	if cfg.KillGrace == 0 {
		cfg.KillGrace = 500 * time.Millisecond
	}
	m := NewManager(cfg)
	t.Cleanup(m.Close)
	return m, log
}

func callPid(t *testing.T, m *Manager, session string) int {
	t.Helper()
	res, err := m.Call(context.Background(), session, "", "pid", nil)
	if err != nil {
		t.Fatalf("pid: %v", err)
	}
	pid, err := strconv.Atoi(string(res))
	if err != nil {
		t.Fatalf("pid %s: %v", res, err)
	}
	return pid
}

func mustStart(t *testing.T, m *Manager, id string) string {
	t.Helper()
	s, err := m.Start(id, "")
	if err != nil {
		t.Fatalf("Start(%s): %v", id, err)
	}
	return s
}

// waitFor polls cond until it holds, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A singleton is shared: every session talks to the same process. A
// one_for_one gives each session its own.
func TestStrategies(t *testing.T) {
	single := fakeComponent("single", "serve", Singleton, time.Minute)
	each := fakeComponent("each", "serve", OneForOne, time.Minute)
	m, _ := newTestManager(t, Config{}, single, each)

	a, b := mustStart(t, m, "test/single"), mustStart(t, m, "test/single")
	if pa, pb := callPid(t, m, a), callPid(t, m, b); pa != pb {
		t.Errorf("singleton: pids %d and %d", pa, pb)
	}
	c, d := mustStart(t, m, "test/each"), mustStart(t, m, "test/each")
	pc, pd := callPid(t, m, c), callPid(t, m, d)
	if pc == pd {
		t.Errorf("one_for_one: both sessions on pid %d", pc)
	}
	if again := callPid(t, m, c); again != pc {
		t.Errorf("one_for_one: a session moved from pid %d to %d", pc, again)
	}
	// Stopping a one_for_one session stops its process; a singleton's
	// stays for its other sessions.
	if err := m.Stop(c, ""); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(a, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 processes", func() bool { return m.Stats().Procs == 2 })
	if callPid(t, m, b) == 0 {
		t.Fatal("no pid")
	}
	if _, err := m.Call(context.Background(), c, "", "pid", nil); !errors.Is(err, ErrNoSuchSession) {
		t.Errorf("a call on a stopped session: %v", err)
	}

	// A session is its owner's: another key finds none.
	mine, err := m.Start("test/single", "guest-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Call(context.Background(), mine, "guest-2", "pid", nil); !errors.Is(err, ErrNoSuchSession) {
		t.Errorf("another owner's call: %v", err)
	}
	if err := m.Stop(mine, ""); !errors.Is(err, ErrNoSuchSession) {
		t.Errorf("another owner's stop: %v", err)
	}
	if _, err := m.Call(context.Background(), mine, "guest-1", "pid", nil); err != nil {
		t.Errorf("the owner's call: %v", err)
	}
}

// Without a timeout a process serves one call, then stops; with one, it
// stops after that long without a call, and a call in flight is never cut.
func TestTimeouts(t *testing.T) {
	once := fakeComponent("once", "serve", OneForOne, 0)
	idle := fakeComponent("idle", "serve", Singleton, 300*time.Millisecond)
	m, _ := newTestManager(t, Config{}, once, idle)

	s := mustStart(t, m, "test/once")
	callPid(t, m, s)
	if _, err := m.Call(context.Background(), s, "", "pid", nil); !errors.Is(err, ErrNoSuchSession) || !strings.Contains(err.Error(), "served its one call") {
		t.Errorf("a second call to a process without a timeout: %v", err)
	}
	res, err := m.CallOnce(context.Background(), "test/once", "", "echo", json.RawMessage(`{"a":1}`))
	if err != nil || string(res) != `{"a":1}` {
		t.Errorf("CallOnce: %s %v", res, err)
	}

	s = mustStart(t, m, "test/idle")
	pid := callPid(t, m, s)
	// A call longer than the idle timeout is not cut by it.
	if res, err := m.Call(context.Background(), s, "", "sleep", json.RawMessage(`[600]`)); err != nil || string(res) != `"slept"` {
		t.Fatalf("a call longer than the idle timeout: %s %v", res, err)
	}
	if again := callPid(t, m, s); again != pid {
		t.Errorf("the process changed during a call: %d then %d", pid, again)
	}
	waitFor(t, "stopped when idle", func() bool { return m.Stats().Procs == 0 })
	if _, err := m.Call(context.Background(), s, "", "pid", nil); !errors.Is(err, ErrNoSuchSession) {
		t.Errorf("a call after the idle stop: %v", err)
	}
	if s2 := mustStart(t, m, "test/idle"); callPid(t, m, s2) == pid {
		t.Error("a new start after the idle stop reused the old pid")
	}
}

// Past its deadline a call fails and the process is killed; a process that
// crashes fails its call, and the next start gets a new one.
func TestDeadlineAndCrash(t *testing.T) {
	comp := fakeComponent("cmd", "serve", Singleton, time.Minute)
	// A deadline a process's start under -race on a loaded machine fits
	// in, and far from the sleep's 5 s.
	m, _ := newTestManager(t, Config{CallTimeout: 1500 * time.Millisecond}, comp)

	s := mustStart(t, m, "test/cmd")
	pid := callPid(t, m, s)
	start := time.Now()
	if _, err := m.Call(context.Background(), s, "", "sleep", json.RawMessage(`[5000]`)); !errors.Is(err, ErrDeadline) {
		t.Fatalf("a call past its deadline: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the call failed after %v, its deadline is 1.5s", d)
	}
	waitFor(t, "the killed process gone", func() bool { return m.Stats().Procs == 0 })
	if err := syscallKill0(pid); err == nil {
		t.Errorf("pid %d still there after its deadline", pid)
	}

	s = mustStart(t, m, "test/cmd")
	if _, err := m.Call(context.Background(), s, "", "exit", json.RawMessage(`[3]`)); !errors.Is(err, ErrEnded) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("a call whose process exits: %v", err)
	}
	waitFor(t, "the crashed process gone", func() bool { return m.Stats().Procs == 0 })
	if _, err := m.Call(context.Background(), s, "", "pid", nil); !errors.Is(err, ErrNoSuchSession) || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("a call on the session of a crashed process: %v", err)
	}
	callPid(t, m, mustStart(t, m, "test/cmd"))
}

// A process that answers and exits at once (a one-shot script) has its
// answer taken, never "the process has ended": the end of its stdout comes
// right behind the answer, and must not overtake it. Many rounds, since
// the two race.
func TestAnswerThenExit(t *testing.T) {
	comp := fakeComponent("once", "once", OneForOne, 0)
	m, _ := newTestManager(t, Config{}, comp)
	for i := range 150 {
		if i%2 == 0 {
			res, err := m.CallOnce(context.Background(), "test/once", "", "echo", json.RawMessage(fmt.Sprintf("[%d]", i)))
			if err != nil || string(res) != fmt.Sprintf("[%d]", i) {
				t.Fatalf("round %d: %s, %v", i, res, err)
			}
			continue
		}
		_, err := m.CallOnce(context.Background(), "test/once", "", "fail", nil)
		var rpcErr *jrpc2.Error
		if !errors.As(err, &rpcErr) || rpcErr.Message != "it went wrong" {
			t.Fatalf("round %d: the plugin's error is lost: %v", i, err)
		}
	}
}

// A command whose processes keep ending before they answer is refused for
// a while, with an error that says so, instead of being forked in a loop.
func TestBreaker(t *testing.T) {
	comp := fakeComponent("crash", "crash", OneForOne, time.Minute)
	m, _ := newTestManager(t, Config{BreakerFailures: 3, BreakerCooldown: time.Hour}, comp)
	for i := range 3 {
		s, err := m.Start("test/crash", "")
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		if _, err := m.Call(context.Background(), s, "", "pid", nil); err == nil {
			t.Fatalf("call %d to a process that exits at once answered", i)
		}
		waitFor(t, "the process gone", func() bool { return m.Stats().Procs == 0 })
	}
	if _, err := m.Start("test/crash", ""); !errors.Is(err, ErrBreakerOpen) || !strings.Contains(err.Error(), "3 processes in a row") {
		t.Fatalf("a 4th start: %v", err)
	}
}

// The seed's messages: no "jsonrpc" member, an error that is a string.
func TestRelaxedMessages(t *testing.T) {
	m, _ := newTestManager(t, Config{}, fakeComponent("cmd", "serve", Singleton, time.Minute))
	s := mustStart(t, m, "test/cmd")
	_, err := m.Call(context.Background(), s, "", "fail", nil)
	var rpcErr *jrpc2.Error
	if !errors.As(err, &rpcErr) || rpcErr.Message != "it went wrong" {
		t.Fatalf("an error that is a string: %#v", err)
	}
	if _, err := m.Call(context.Background(), s, "", "nosuch", nil); !errors.As(err, &rpcErr) || rpcErr.Code != jrpc2.MethodNotFound {
		t.Errorf("an unknown method: %v", err)
	}
	callPid(t, m, s) // the process still serves
}

// Output on stdout that is not a message ends the process, and the log and
// the error show what it printed.
func TestProtocolErrors(t *testing.T) {
	m, log := newTestManager(t, Config{}, fakeComponent("cmd", "serve", Singleton, time.Minute))
	for _, c := range []struct{ method, want string }{
		{"noise", `debug: hello from the plugin`},
		{"long", `a line longer than 1048576 bytes`},
	} {
		s := mustStart(t, m, "test/cmd")
		_, err := m.Call(context.Background(), s, "", c.method, nil)
		var pe *ProtocolError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a protocol error with %q", c.method, err, c.want)
		}
		waitFor(t, "the process gone", func() bool { return m.Stats().Procs == 0 })
	}
	_ = log
}

// A plugin's stderr goes to the log, a line at a time, tagged.
func TestStderrLogged(t *testing.T) {
	m, log := newTestManager(t, Config{}, fakeComponent("cmd", "serve", Singleton, time.Minute))
	s := mustStart(t, m, "test/cmd")
	if _, err := m.Call(context.Background(), s, "", "stderr", json.RawMessage(`[3]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stderr in the log", func() bool { return strings.Contains(log.String(), "line 2 of stderr") })
	if !strings.Contains(log.String(), `"plugin":"test/cmd"`) {
		t.Errorf("stderr lines are not tagged with the plugin: %s", log)
	}
	// A flood is bounded: 100 lines a second, the rest counted.
	if _, err := m.Call(context.Background(), s, "", "stderr", json.RawMessage(`[5000]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the flood noticed", func() bool { return strings.Contains(log.String(), "the rest of this second is dropped") })
	if n := strings.Count(log.String(), "of stderr"); n > 300 {
		t.Errorf("%d stderr lines logged of a flood of 5000", n)
	}
}

// A plugin calls the server back, and gets the handler's answer.
func TestCallback(t *testing.T) {
	cfg := Config{Callback: func(comp Component, _ Peer) jrpc2.Handler {
		return func(ctx context.Context, req *jrpc2.Request) (any, error) {
			if req.Method() != "machines.list" {
				return nil, jrpc2.Errorf(jrpc2.MethodNotFound, "no method %s", req.Method())
			}
			return []map[string]string{{"name": "here", "for": comp.FullID()}}, nil
		}
	}}
	m, _ := newTestManager(t, cfg, fakeComponent("cmd", "serve", Singleton, time.Minute))
	s := mustStart(t, m, "test/cmd")
	res, err := m.Call(context.Background(), s, "", "call", json.RawMessage(`["machines.list",{}]`))
	if err != nil || !strings.Contains(string(res), `"for":"test/cmd"`) {
		t.Fatalf("a callback: %s %v", res, err)
	}
	res, err = m.Call(context.Background(), s, "", "call", json.RawMessage(`["secrets.read",{}]`))
	if err != nil || !strings.Contains(string(res), `"code":-32601`) {
		t.Fatalf("a refused callback: %s %v", res, err)
	}
}

// Without a handler, a plugin's calls to the server are answered "method
// not found", never left unanswered.
func TestCallbackRefused(t *testing.T) {
	m, _ := newTestManager(t, Config{}, fakeComponent("cmd", "serve", Singleton, time.Minute))
	s := mustStart(t, m, "test/cmd")
	res, err := m.Call(context.Background(), s, "", "call", json.RawMessage(`["machines.list",{}]`))
	if err != nil || !strings.Contains(string(res), `"code":-32601`) {
		t.Fatalf("a callback without a handler: %s %v", res, err)
	}
}

// Many calls and starts leave no process, descriptor or goroutine behind
// (goleak checks the goroutines at the end of the package).
func TestNoLeaks(t *testing.T) {
	single := fakeComponent("single", "serve", Singleton, time.Minute)
	once := fakeComponent("once", "serve", OneForOne, 0)
	m, _ := newTestManager(t, Config{}, single, once)
	fds := openFDs(t)
	s := mustStart(t, m, "test/single")
	for i := range 1000 {
		if _, err := m.Call(context.Background(), s, "", "echo", json.RawMessage("["+strconv.Itoa(i)+"]")); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	for i := range 50 {
		if _, err := m.CallOnce(context.Background(), "test/once", "", "pid", nil); err != nil {
			t.Fatalf("one-shot call %d: %v", i, err)
		}
	}
	m.Stop(s, "")
	m.Close()
	if st := m.Stats(); st.Procs != 0 || st.Sessions != 0 {
		t.Errorf("after Close: %+v", st)
	}
	waitFor(t, "the descriptors back", func() bool { return openFDs(t) <= fds })
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// syscallKill0 reports whether pid is gone (an error) or still there (nil).
func syscallKill0(pid int) error { return syscall.Kill(pid, 0) }

// A command that cannot start says so without the server's paths (the log
// has them).
func TestStartFailed(t *testing.T) {
	gone := fakeComponent("gone", "serve", OneForOne, 0)
	gone.Command = filepath.Join(t.TempDir(), "removed-after-loading")
	m, log := newTestManager(t, Config{}, gone)
	_, err := m.CallOnce(context.Background(), "test/gone", "", "pid", nil)
	if !errors.Is(err, ErrStartFailed) || strings.Contains(err.Error(), gone.Command) {
		t.Fatalf("a command that cannot start: %v", err)
	}
	if !strings.Contains(log.String(), "removed-after-loading") {
		t.Errorf("the log does not say why: %s", log)
	}
}

// A plugin's process runs in a cgroup of its own, as a run does, under the
// server's tree, and its end removes it.
func TestProcessInItsCgroup(t *testing.T) {
	testcgroup.Each(t, func(t *testing.T, tree *cgroup.Tree) {
		m, _ := newTestManager(t, Config{Cgroups: tree}, fakeComponent("each", "serve", OneForOne, time.Minute))
		s := mustStart(t, m, "test/each")
		pid := callPid(t, m, s)
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			t.Fatal(err)
		}
		var group string
		for line := range strings.Lines(string(b)) {
			if _, path, ok := strings.Cut(strings.TrimSpace(line), "::"); ok || strings.Contains(line, ":pids:") || strings.Contains(line, ":memory:") {
				if !ok {
					path = line[strings.LastIndex(line, ":")+1:]
				}
				if strings.Contains(path, "/run-") {
					group = strings.TrimSpace(path)
				}
			}
		}
		if group == "" || !strings.Contains(tree.Describe(), strings.Split(group, "/")[len(strings.Split(group, "/"))-2]) {
			t.Fatalf("plugin process %d in cgroups %q, not in a run's cgroup of the tree %s", pid, b, tree.Describe())
		}
		if err := m.Stop(s, ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the process to end", func() bool { return m.Stats().Procs == 0 })
	})
}
