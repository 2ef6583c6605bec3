package child_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/internal/testchild"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	testchild.Main()
	goleak.VerifyTestMain(m, testchild.LeakOptions()...)
}

// start runs the test binary as the fake child mode with args.
func start(t *testing.T, mode string, spec child.Spec, opts child.Options) *child.Process {
	t.Helper()
	path, env := testchild.Command(mode)
	spec.Path = path
	spec.Env = append(spec.Env, env, testchild.RaceEnv)
	p, err := child.Start(spec, opts)
	if err != nil {
		t.Fatalf("start %s: %v", mode, err)
	}
	t.Cleanup(func() {
		p.Kill(child.ReasonShutdown)
		if pipe := p.RawPipe(); pipe != nil {
			pipe.Discard()
		} else {
			p.Discard()
		}
		p.Wait()
	})
	return p
}

// collect reads all output until the channel closes.
func collect(p *child.Process) (stdout, stderr []byte) {
	for c := range p.Output() {
		if c.Stream == child.Stderr {
			stderr = append(stderr, c.Data...)
		} else {
			stdout = append(stdout, c.Data...)
		}
		c.Release()
	}
	return stdout, stderr
}

// firstLine waits for the first chunk and returns it as a string.
func firstLine(t *testing.T, p *child.Process) string {
	t.Helper()
	select {
	case c := <-p.Output():
		defer c.Release()
		return strings.TrimSpace(string(c.Data))
	case <-time.After(10 * time.Second):
		t.Fatal("no output from child")
		return ""
	}
}

func TestExitCodes(t *testing.T) {
	for _, code := range []int{0, 1, 42} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			p := start(t, "exit", child.Spec{Args: []string{strconv.Itoa(code)}}, child.Options{})
			collect(p)
			st := p.Wait()
			if st.Code != code || st.Signal != 0 || st.Reason != child.ReasonExit {
				t.Fatalf("status = %+v, want code %d, no signal, reason exit", st, code)
			}
		})
	}
}

func TestKilledBySignalIsReported(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			p := start(t, "selfkill", child.Spec{Args: []string{strconv.Itoa(int(sig))}}, child.Options{})
			collect(p)
			st := p.Wait()
			if st.Code != -1 || st.Signal != sig {
				t.Fatalf("status = %+v, want code -1 and signal %v", st, sig)
			}
			if want := "SIG"; !strings.HasPrefix(st.SignalName(), want) {
				t.Fatalf("SignalName = %q", st.SignalName())
			}
		})
	}
}

func TestOutputIsByteExact(t *testing.T) {
	const n = 50 << 20
	p := start(t, "gen", child.Spec{Args: []string{strconv.Itoa(n)}}, child.Options{OutputSize: 8})
	out, _ := collect(p)
	if st := p.Wait(); st.Code != 0 {
		t.Fatalf("status %+v", st)
	}
	if err := testchild.CheckGen(out, n); err != nil {
		t.Fatal(err)
	}
}

func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	notExec := dir + "/script"
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		spec child.Spec
		want error
	}{
		{"no such executable", child.Spec{Path: "no-such-command-rexec"}, nil},
		{"no such path", child.Spec{Path: "/no/such/file"}, syscall.ENOENT},
		{"no such cwd", child.Spec{Path: "true", Dir: dir + "/missing"}, syscall.ENOENT},
		{"cwd is a file", child.Spec{Path: "true", Dir: notExec}, syscall.ENOTDIR},
		{"not executable", child.Spec{Path: notExec}, syscall.EACCES},
		{"a directory", child.Spec{Path: dir}, syscall.EACCES},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := child.Start(tc.spec, child.Options{})
			if !errors.Is(err, child.ErrStartFailed) {
				t.Fatalf("err = %v, want kind ErrStartFailed", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestStdin(t *testing.T) {
	t.Run("given", func(t *testing.T) {
		p := start(t, "cat", child.Spec{Stdin: strings.NewReader("hello\nworld")}, child.Options{})
		out, _ := collect(p)
		if string(out) != "hello\nworld" {
			t.Fatalf("out = %q", out)
		}
	})
	t.Run("absent is empty", func(t *testing.T) {
		p := start(t, "cat", child.Spec{}, child.Options{})
		out, _ := collect(p)
		if st := p.Wait(); len(out) != 0 || st.Code != 0 {
			t.Fatalf("out = %q, status %+v", out, st)
		}
	})
	t.Run("larger than a pipe", func(t *testing.T) {
		in := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
		p := start(t, "cat", child.Spec{Stdin: bytes.NewReader(in)}, child.Options{})
		out, _ := collect(p)
		if !bytes.Equal(out, in) {
			t.Fatalf("got %d bytes back, want %d", len(out), len(in))
		}
	})
}

func TestStderrModes(t *testing.T) {
	t.Run("discard", func(t *testing.T) {
		p := start(t, "both", child.Spec{}, child.Options{})
		out, errb := collect(p)
		if string(out) != "out 0\nout 1\nout 2\n" || len(errb) != 0 {
			t.Fatalf("stdout %q stderr %q", out, errb)
		}
	})
	t.Run("merge", func(t *testing.T) {
		p := start(t, "both", child.Spec{Stderr: child.StderrMerge}, child.Options{})
		out, errb := collect(p)
		if string(out) != "out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\n" || len(errb) != 0 {
			t.Fatalf("stdout %q stderr %q", out, errb)
		}
	})
	t.Run("separate", func(t *testing.T) {
		p := start(t, "both", child.Spec{Stderr: child.StderrSeparate}, child.Options{})
		out, errb := collect(p)
		if string(out) != "out 0\nout 1\nout 2\n" || string(errb) != "err 0\nerr 1\nerr 2\n" {
			t.Fatalf("stdout %q stderr %q", out, errb)
		}
	})
}

func TestKillTerminatesTheWholeGroup(t *testing.T) {
	p := start(t, "grandchild", child.Spec{}, child.Options{KillGrace: 5 * time.Second})
	gc, err := strconv.Atoi(firstLine(t, p))
	if err != nil {
		t.Fatal(err)
	}
	p.Kill(child.ReasonDisconnect)
	p.Discard()
	st := p.Wait()
	if st.Signal != syscall.SIGTERM || st.Reason != child.ReasonDisconnect {
		t.Fatalf("status = %+v, want SIGTERM, disconnect", st)
	}
	if !testchild.WaitGone(gc, 5*time.Second) {
		t.Fatalf("grandchild %d survived", gc)
	}
}

func TestKillEscalatesToSIGKILL(t *testing.T) {
	grace := 300 * time.Millisecond
	p := start(t, "ignore-term", child.Spec{}, child.Options{KillGrace: grace})
	firstLine(t, p)
	began := time.Now()
	p.Kill(child.ReasonDisconnect)
	p.Kill(child.ReasonTimeout) // idempotent: the first reason stays
	st := p.Wait()
	if st.Signal != syscall.SIGKILL || st.Reason != child.ReasonDisconnect {
		t.Fatalf("status = %+v, want SIGKILL, disconnect", st)
	}
	if waited := time.Since(began); waited < grace {
		t.Fatalf("SIGKILL after %v, before the grace of %v", waited, grace)
	}
}

func TestTimeout(t *testing.T) {
	p := start(t, "hang", child.Spec{Timeout: 100 * time.Millisecond}, child.Options{})
	collect(p)
	st := p.Wait()
	if st.Reason != child.ReasonTimeout || st.Signal != syscall.SIGTERM {
		t.Fatalf("status = %+v, want timeout by SIGTERM", st)
	}
}

func TestTermHonouredKeepsItsExitCodeAndOutput(t *testing.T) {
	p := start(t, "term-exit", child.Spec{}, child.Options{})
	if l := firstLine(t, p); l != "ready" {
		t.Fatalf("first line %q", l)
	}
	p.Kill(child.ReasonShutdown)
	out, _ := collect(p)
	st := p.Wait()
	if string(out) != "bye\n" || st.Code != 7 || st.Reason != child.ReasonShutdown {
		t.Fatalf("out %q status %+v", out, st)
	}
}

func TestLeftoversAreClearedWhenTheLeaderExits(t *testing.T) {
	// The leader exits at once, leaving a grandchild that holds stdout open.
	p := start(t, "grandchild", child.Spec{Args: []string{"exit"}}, child.Options{KillGrace: 5 * time.Second})
	out, _ := collect(p)
	st := p.Wait()
	if st.Code != 0 || st.Reason != child.ReasonExit {
		t.Fatalf("status %+v", st)
	}
	gc, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("output %q", out)
	}
	if !testchild.WaitGone(gc, 5*time.Second) {
		t.Fatalf("grandchild %d left behind", gc)
	}
}

func TestDiscardUnblocksAChattyChild(t *testing.T) {
	p := start(t, "gen", child.Spec{Args: []string{strconv.Itoa(20 << 20)}}, child.Options{OutputSize: 1})
	p.Discard() // nobody will read: the child must still run to its end
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("child blocked on its output after Discard")
	}
	if st := p.Status(); st.Code != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestOnExitRunsBeforeDone(t *testing.T) {
	called := make(chan struct{})
	path, env := testchild.Command("exit")
	p, err := child.Start(child.Spec{Path: path, Env: []string{env, testchild.RaceEnv}, Args: []string{"3"}},
		child.Options{OnExit: func(p *child.Process) { close(called) }})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	select {
	case <-called:
	default:
		t.Fatal("Done closed before OnExit ran")
	}
}

// TestNoThreadPerChild: waiting for a child must not hold an OS thread, or
// thousands of streams would hit Go's 10,000-thread limit.
func TestNoThreadPerChild(t *testing.T) {
	const n = 64
	before := threads(t)
	procs := make([]*child.Process, n)
	for i := range procs {
		procs[i] = start(t, "hang", child.Spec{}, child.Options{KillGrace: time.Second})
	}
	for _, p := range procs {
		firstLine(t, p)
	}
	during := threads(t)
	if during-before > n/4 {
		t.Fatalf("threads went from %d to %d with %d children waiting", before, during, n)
	}
	for _, p := range procs {
		p.Kill(child.ReasonShutdown)
	}
	for _, p := range procs {
		if st := p.Wait(); st.Signal != syscall.SIGTERM {
			t.Fatalf("status %+v", st)
		}
	}
}

func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Skip("no thread count")
	return 0
}

// TestFallbackWithoutPidfd: on kernels without pidfd the exit is awaited
// by waitid in a goroutine; statuses, group kill and leftovers must not
// change.
func TestFallbackWithoutPidfd(t *testing.T) {
	child.WithoutPidfd(func() {
		p := start(t, "exit", child.Spec{Args: []string{"42"}}, child.Options{})
		collect(p)
		if st := p.Wait(); st.Code != 42 {
			t.Fatalf("status %+v", st)
		}
		p = start(t, "selfkill", child.Spec{Args: []string{"9"}}, child.Options{})
		collect(p)
		if st := p.Wait(); st.Signal != syscall.SIGKILL {
			t.Fatalf("status %+v", st)
		}
		p = start(t, "grandchild", child.Spec{}, child.Options{KillGrace: time.Second})
		gc, _ := strconv.Atoi(firstLine(t, p))
		p.Kill(child.ReasonDisconnect)
		p.Discard()
		if st := p.Wait(); st.Signal != syscall.SIGTERM || !testchild.WaitGone(gc, 5*time.Second) {
			t.Fatalf("status %+v, grandchild %d gone: %v", st, gc, testchild.Gone(gc))
		}
	})
}

// TestQuietPipeWakesForOutput: a pipe quiet for longer than its pump waits
// is watched in the fdwatch set; output and EOF must still come through, in
// order, every time it wakes.
func TestQuietPipeWakesForOutput(t *testing.T) {
	p := start(t, "lines", child.Spec{Args: []string{"4", "120ms"}}, child.Options{})
	out, _ := collect(p)
	if string(out) != "line 0\nline 1\nline 2\nline 3\n" {
		t.Fatalf("output %q", out)
	}
	if st := p.Wait(); st.Code != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestEscapedHolderOfTheOutput: a process that left the group (setsid) and
// keeps the output pipe open must not keep the run from ending, also when
// the pump is waiting in the fdwatch set rather than on a goroutine.
func TestEscapedHolderOfTheOutput(t *testing.T) {
	p, err := child.Start(child.Spec{Path: "sh", Args: []string{"-c", "setsid sleep 30 & sleep 0.3; echo $!"}, Env: []string{"PATH=" + os.Getenv("PATH")}, Stderr: child.StderrMerge},
		child.Options{KillGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for c := range p.Output() {
		out = append(out, c.Data...)
		c.Release()
	}
	st := p.Wait()
	escaped, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("output %q", out)
	}
	syscall.Kill(escaped, syscall.SIGKILL)
	if st.Code != 0 || st.Reason != child.ReasonExit {
		t.Fatalf("status %+v", st)
	}
}

// TestQuietChildrenHoldNoGoroutine: a child that prints nothing for a while
// has its pipe watched in the fdwatch set, not by a goroutine of its own.
func TestQuietChildrenHoldNoGoroutine(t *testing.T) {
	const n = 50
	before := runtime.NumGoroutine()
	for range n {
		p := start(t, "hang", child.Spec{}, child.Options{})
		if line := firstLine(t, p); line != "ready" {
			t.Fatalf("first line %q", line)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		extra := runtime.NumGoroutine() - before
		if extra < n/5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d quiet children hold %d goroutines", n, extra)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRawOutput: the caller reads the pipe itself; the run ends once it has
// read to EOF and said so.
func TestRawOutput(t *testing.T) {
	const n = 3 << 20
	p := start(t, "gen", child.Spec{Args: []string{strconv.Itoa(n)}, RawOutput: true}, child.Options{})
	out, err := io.ReadAll(p.RawPipe())
	if err != nil {
		t.Fatal(err)
	}
	p.RawPipe().End()
	if st := p.Wait(); st.Code != 0 {
		t.Fatalf("status %+v", st)
	}
	if _, ok := <-p.Output(); ok {
		t.Fatal("Output delivered a chunk of a raw process")
	}
	if err := testchild.CheckGen(out, n); err != nil {
		t.Fatal(err)
	}
}

// TestRawOutputDiscard: a caller that stops reading hands the pipe to a
// pump that drops the rest, so the child still runs to its end.
func TestRawOutputDiscard(t *testing.T) {
	p := start(t, "gen", child.Spec{Args: []string{strconv.Itoa(20 << 20)}, RawOutput: true}, child.Options{})
	var b [100]byte
	if _, err := io.ReadFull(p.RawPipe(), b[:]); err != nil {
		t.Fatal(err)
	}
	p.RawPipe().Discard()
	p.RawPipe().End() // after Discard: does nothing
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("child blocked on its output after Discard")
	}
	if st := p.Status(); st.Code != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestRawOutputSeparateStderr: with raw output, a separate stderr comes on
// Output, its chunks only, while the caller reads stdout from the pipe.
func TestRawOutputSeparateStderr(t *testing.T) {
	p := start(t, "both", child.Spec{RawOutput: true, Stderr: child.StderrSeparate}, child.Options{})
	var stderr []byte
	gotErr := make(chan struct{})
	go func() {
		defer close(gotErr)
		for c := range p.Output() {
			if c.Stream != child.Stderr {
				t.Errorf("a chunk of stream %v on Output", c.Stream)
			}
			stderr = append(stderr, c.Data...)
			c.Release()
		}
	}()
	stdout, err := io.ReadAll(p.RawPipe())
	if err != nil {
		t.Fatal(err)
	}
	p.RawPipe().End()
	<-gotErr
	if st := p.Wait(); st.Code != 0 {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(string(stdout), "out") || strings.Contains(string(stdout), "err") {
		t.Errorf("stdout %q", stdout)
	}
	if !strings.Contains(string(stderr), "err") || strings.Contains(string(stderr), "out") {
		t.Errorf("stderr %q", stderr)
	}
}
