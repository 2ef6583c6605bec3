package child_test

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/internal/testcgroup"
	"github.com/rexec/rexec/internal/testchild"
)

// ttyRun is a run of the tty mode on a terminal, its output as it came so
// far, and the writer of its stdin (nil: none was given).
type ttyRun struct {
	t     *testing.T
	p     *child.Process
	out   strings.Builder
	stdin *io.PipeWriter
}

// startTTY starts the tty mode on a terminal of spec's size, with a live
// stdin when live is set.
func startTTY(t *testing.T, spec child.Spec, opts child.Options, live bool) *ttyRun {
	t.Helper()
	spec.TTY, spec.Stderr = true, child.StderrMerge
	r := &ttyRun{t: t}
	if live {
		pr, pw := io.Pipe()
		spec.Stdin, r.stdin = pr, pw
		t.Cleanup(func() { pw.Close() })
	}
	r.p = start(t, "tty", spec, opts)
	return r
}

// waitFor reads output until it holds want, and returns it all.
func (r *ttyRun) waitFor(want string) string {
	r.t.Helper()
	timeout := time.After(20 * time.Second)
	for !strings.Contains(r.out.String(), want) {
		select {
		case c, ok := <-r.p.Output():
			if !ok {
				r.t.Fatalf("output ended without %q: %q", want, r.out.String())
			}
			r.out.Write(c.Data)
			c.Release()
		case <-timeout:
			r.t.Fatalf("no %q in the output: %q", want, r.out.String())
		}
	}
	return r.out.String()
}

// rest reads the output to its end and returns all of it, and the status.
func (r *ttyRun) rest() (string, child.Status) {
	out, _ := collect(r.p)
	r.out.Write(out)
	return r.out.String(), r.p.Wait()
}

func (r *ttyRun) typeIn(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.stdin, s); err != nil {
		r.t.Fatalf("typing %q: %v", s, err)
	}
}

func TestTTYIsATerminal(t *testing.T) {
	t.Run("default size", func(t *testing.T) {
		r := startTTY(t, child.Spec{}, child.Options{}, false)
		out, st := r.rest()
		// No stdin is an empty one: ^D at once.
		for _, want := range []string{"isatty true true true\r\n", "size 24 80\r\n", "eof\r\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("output %q lacks %q", out, want)
			}
		}
		if st.Code != 0 || st.Reason != child.ReasonExit {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("asked size", func(t *testing.T) {
		r := startTTY(t, child.Spec{Rows: 50, Cols: 132}, child.Options{}, false)
		if out, _ := r.rest(); !strings.Contains(out, "size 50 132\r\n") {
			t.Fatalf("output %q", out)
		}
	})
}

// The end of stdin is typed as ^D: twice after a line without its newline
// (once to push it, once for the end), as at a terminal.
func TestTTYStdinEndIsCtrlD(t *testing.T) {
	r := startTTY(t, child.Spec{Stdin: strings.NewReader("hello\nworld")}, child.Options{}, false)
	out, st := r.rest()
	for _, want := range []string{`read "hello\n"`, `read "world"`, "eof"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if st.Code != 0 {
		t.Fatalf("status %+v, output %q", st, out)
	}
}

func TestTTYResize(t *testing.T) {
	r := startTTY(t, child.Spec{}, child.Options{}, true)
	r.waitFor("ready")
	if err := r.p.Resize(50, 132); err != nil {
		t.Fatal(err)
	}
	r.waitFor("winch 50 132")
	for _, size := range [][2]int{{0, 80}, {24, 0}, {1001, 80}, {24, -1}} {
		if err := r.p.Resize(size[0], size[1]); !errors.Is(err, child.ErrTTY) {
			t.Errorf("Resize(%d, %d) = %v, want ErrTTY", size[0], size[1], err)
		}
	}
	r.stdin.Close()
	if out, st := r.rest(); st.Code != 0 || !strings.Contains(out, "eof") {
		t.Fatalf("status %+v, output %q", st, out)
	}

	plain := start(t, "exit", child.Spec{Args: []string{"0"}}, child.Options{})
	if err := plain.Resize(24, 80); !errors.Is(err, child.ErrNotTTY) {
		t.Fatalf("Resize of a run without a terminal: %v", err)
	}
}

// Ctrl-C is a byte typed like any other: the terminal's line discipline
// turns it into SIGINT for the foreground process group.
func TestTTYCtrlCInterrupts(t *testing.T) {
	r := startTTY(t, child.Spec{}, child.Options{}, true)
	r.waitFor("ready")
	r.typeIn("\x03")
	if out, st := r.rest(); st.Signal != syscall.SIGINT || st.Reason != child.ReasonExit {
		t.Fatalf("status %+v, output %q, want killed by SIGINT", st, out)
	}
}

// Signal reaches the group and the rest of the cgroup, each process once.
func TestTTYSignal(t *testing.T) {
	testcgroup.Each(t, func(t *testing.T, tree *cgroup.Tree) {
		r := startTTY(t, child.Spec{}, child.Options{Cgroups: tree}, true)
		r.waitFor("ready")
		if err := r.p.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		r.waitFor("usr1")
		r.stdin.Close()
		if out, _ := r.rest(); strings.Count(out, "usr1") != 1 {
			t.Fatalf("output %q: the signal came more than once", out)
		}
		if err := r.p.Signal(syscall.SIGUSR1); !errors.Is(err, os.ErrProcessDone) {
			t.Fatalf("Signal after the reap: %v, want os.ErrProcessDone", err)
		}
	})
	r := startTTY(t, child.Spec{}, child.Options{}, true)
	r.waitFor("ready")
	if err := r.p.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	r.waitFor("usr1")
	r.stdin.Close()
	r.rest()
	if err := r.p.Signal(syscall.SIGUSR1); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("Signal after the reap: %v, want os.ErrProcessDone", err)
	}
}

// A kill hangs the terminal up: SIGHUP, with the SIGTERM (which the child
// ignores here: it could see either first).
func TestTTYKillHangsUp(t *testing.T) {
	r := startTTY(t, child.Spec{Args: []string{"ignore-term"}}, child.Options{}, true)
	r.waitFor("ready")
	r.p.Kill(child.ReasonCancelled)
	out, st := r.rest()
	if !strings.Contains(out, "hup") {
		t.Errorf("output %q, want the hang-up", out)
	}
	if st.Code != 3 || st.Reason != child.ReasonCancelled {
		t.Fatalf("status %+v", st)
	}
}

func TestTTYRefused(t *testing.T) {
	path, env := testchild.Command("exit")
	base := child.Spec{Path: path, Args: []string{"0"}, Env: []string{env}, TTY: true, Stderr: child.StderrMerge}
	for name, change := range map[string]func(*child.Spec){
		"stderr discarded":  func(s *child.Spec) { s.Stderr = child.StderrDiscard },
		"stderr apart":      func(s *child.Spec) { s.Stderr = child.StderrSeparate },
		"rows past the max": func(s *child.Spec) { s.Rows = child.MaxTTYSize + 1 },
		"negative cols":     func(s *child.Spec) { s.Cols = -1 },
		"a size, no tty":    func(s *child.Spec) { s.TTY, s.Rows = false, 30 },
		"a raw pipe":        func(s *child.Spec) { s.RawOutput = true },
	} {
		t.Run(name, func(t *testing.T) {
			spec := base
			change(&spec)
			if err := child.CheckTTY(spec); !errors.Is(err, child.ErrTTY) {
				t.Errorf("CheckTTY: %v, want ErrTTY", err)
			}
			p, err := child.Start(spec, child.Options{})
			if err == nil {
				p.Wait()
				t.Fatal("started")
			}
			if !errors.Is(err, child.ErrTTY) || errors.Is(err, child.ErrStartFailed) {
				t.Fatalf("Start: %v, want ErrTTY alone", err)
			}
		})
	}
	if err := child.CheckTTY(child.Spec{TTY: true, Stderr: child.StderrMerge, Rows: child.MaxTTYSize, Cols: 1}); err != nil {
		t.Fatalf("a terminal of 1000 by 1: %v", err)
	}
}

// A run with a terminal starts through the same path into its cgroup as any
// other, and dies with it.
func TestTTYRunsInItsCgroup(t *testing.T) {
	testcgroup.Each(t, func(t *testing.T, tree *cgroup.Tree) {
		r := startTTY(t, child.Spec{}, child.Options{Cgroups: tree, KillGrace: 200 * time.Millisecond}, true)
		out := r.waitFor("ready")
		if !strings.Contains(out, "isatty true true true") {
			t.Fatalf("output %q", out)
		}
		cg, err := os.ReadFile("/proc/" + strconv.Itoa(r.p.Pid()) + "/cgroup")
		if err != nil || !strings.Contains(string(cg), "rexec-test-") {
			t.Fatalf("the run is in no cgroup of the tree: %q %v", cg, err)
		}
		r.p.Kill(child.ReasonDisconnect)
		_, st := r.rest()
		if st.Reason != child.ReasonDisconnect || st.Usage == nil {
			t.Fatalf("status %+v, want reason disconnect and a usage", st)
		}
		if !testchild.Gone(r.p.Pid()) {
			t.Fatal("the run outlived its kill")
		}
	})
}
