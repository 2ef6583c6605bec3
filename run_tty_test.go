//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/webapi"
	"golang.org/x/sys/unix"
)

// tmuxSession is a tmux server of a test's own (its socket in a temporary
// folder), with one session, killed when the test ends.
type tmuxSession struct {
	sock, conf string
	env        []string
}

// newTmux starts a detached session of cols x rows running command in dir.
// It skips the test when tmux is missing, unless CI is set: CI installs
// tmux (.ci/run), so there its absence is a failure.
func newTmux(t *testing.T, dir string, cols, rows int, command string) *tmuxSession {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("tmux is not installed (under CI=true this test fails instead)")
		}
		t.Fatal("tmux is not installed: .ci/run installs it for this test")
	}
	var env []string
	for _, kv := range webapi.ServerEnv(os.Environ()) {
		if !strings.HasPrefix(kv, "TMUX=") && !strings.HasPrefix(kv, "TMUX_PANE=") {
			env = append(env, kv)
		}
	}
	// Its own settings, none of the user's: a pane that dies stays, for
	// its last screen.
	conf := filepath.Join(dir, "tmux.conf")
	if err := os.WriteFile(conf, []byte("set -g remain-on-exit on\nset -g status off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &tmuxSession{sock: filepath.Join(dir, "tmux.sock"), conf: conf, env: env}
	s.run(t, "new-session", "-d", "-s", "rexec", "-c", dir, "-x", fmt.Sprint(cols), "-y", fmt.Sprint(rows), command)
	t.Cleanup(func() {
		cmd := exec.Command("tmux", "-f", s.conf, "-S", s.sock, "kill-server")
		cmd.Env = s.env
		cmd.Run()
	})
	return s
}

// run runs a tmux command on the session's server and returns its output.
func (s *tmuxSession) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("tmux", append([]string{"-f", s.conf, "-S", s.sock}, args...)...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is the pane's text, its history included.
func (s *tmuxSession) screen(t *testing.T) string {
	t.Helper()
	return s.run(t, "capture-pane", "-p", "-J", "-S", "-", "-t", "rexec")
}

// typeLine types text and Enter into the pane, as a person would.
func (s *tmuxSession) typeLine(t *testing.T, text string) {
	t.Helper()
	s.run(t, "send-keys", "-t", "rexec", "-l", text)
	s.run(t, "send-keys", "-t", "rexec", "Enter")
}

// waitScreen waits until ok says yes to the pane's text.
func (s *tmuxSession) waitScreen(t *testing.T, what string, ok func(screen string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a failure bound only
	for {
		screen := s.screen(t)
		if ok(screen) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; the pane:\n%s", what, screen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLine waits for a line of the pane that is exactly line.
func (s *tmuxSession) waitLine(t *testing.T, line string) {
	t.Helper()
	s.waitScreen(t, fmt.Sprintf("a line %q", line), func(screen string) bool { return hasLine(screen, line) })
}

func hasLine(screen, line string) bool {
	for _, l := range strings.Split(screen, "\n") {
		if strings.TrimRight(l, " ") == line {
			return true
		}
	}
	return false
}

// lastLine is the last line of screen that is not blank.
func lastLine(screen string) string {
	lines := strings.Split(strings.TrimRight(screen, " \n"), "\n")
	return strings.TrimRight(lines[len(lines)-1], " ")
}

// paneSize is the pane's "ROWS COLS", as stty size prints it.
func (s *tmuxSession) paneSize(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(s.run(t, "display-message", "-p", "-t", "rexec", "#{pane_height} #{pane_width}"))
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestRunTTYInTmux is issue 16's acceptance test: "rexec run -it" in a
// terminal (a tmux pane) gives a remote shell as ssh does: a prompt, a
// command that runs, a resize that stty size sees, Ctrl-C that interrupts
// the remote command only, "exit 3" that makes rexec exit 3, and the local
// terminal as it was before.
func TestRunTTYInTmux(t *testing.T) {
	url := newServer(t, "")
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const prompt = "rexec-prompt$ "
	// The pane runs this script: the terminal's settings before and
	// after rexec, rexec's exit code, then a wait for the test's end.
	script := fmt.Sprintf(`stty -g > before
%s=1 %s %s run --url %s -it -e %s -- /bin/sh -i
code=$?
stty -g > after
echo "EXIT=$code" > exit.tmp && mv exit.tmp exit
exec sleep 600
`, asRexec, testchild.RaceEnv, shellQuote(exe), shellQuote(url), shellQuote("PS1="+prompt))
	if err := os.WriteFile(filepath.Join(dir, "session.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	tm := newTmux(t, dir, 100, 30, "sh session.sh")

	// command types cmd once the shell waits at its prompt: typed
	// earlier, its echo would come before the prompt, and its output
	// after it, on the same line.
	command := func(cmd string) {
		t.Helper()
		tm.waitScreen(t, "the remote prompt", func(screen string) bool { return lastLine(screen) == strings.TrimSpace(prompt) })
		tm.typeLine(t, cmd)
	}

	// A prompt, in a terminal of the pane's size.
	command("stty size")
	tm.waitLine(t, tm.paneSize(t))

	// A command runs.
	command("echo hello-$((6*7))")
	tm.waitLine(t, "hello-42")

	// A resize reaches the remote terminal. The new size goes out on
	// SIGWINCH, maybe after the keys typed next: ask until it shows.
	before := tm.paneSize(t)
	tm.run(t, "resize-window", "-t", "rexec", "-x", "90", "-y", "20")
	size := tm.paneSize(t)
	if size == before {
		t.Fatalf("the pane is still %s after resize-window", size)
	}
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 1; !hasLine(tm.screen(t), size); attempt++ {
		if time.Now().After(deadline) {
			t.Fatalf("stty size never said %s; the pane:\n%s", size, tm.screen(t))
		}
		command("stty size")
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}

	// Ctrl-C interrupts the remote command, not rexec nor the remote
	// shell: the shell answers again well before sleep 100 would end.
	// The command says it started once it is the terminal's foreground
	// (an interactive sh puts its child there before the child runs), so
	// that Ctrl-C does not come too early for it, as it might after an
	// echo of the shell's own.
	command("sh -c 'echo sleep-start''ed; exec sleep 100'")
	tm.waitLine(t, "sleep-started")
	tm.run(t, "send-keys", "-t", "rexec", "C-c")
	command("echo after-$((1+1))")
	tm.waitLine(t, "after-2")
	if _, err := os.Stat(filepath.Join(dir, "exit")); err == nil {
		t.Fatalf("rexec ended on Ctrl-C; the pane:\n%s", tm.screen(t))
	}

	// "exit 3" makes rexec exit 3, with this terminal as it was.
	command("exit 3")
	exitFile := filepath.Join(dir, "exit")
	tm.waitScreen(t, "rexec's end", func(string) bool {
		b, err := os.ReadFile(exitFile)
		return err == nil && strings.HasSuffix(string(b), "\n")
	})
	if b, _ := os.ReadFile(exitFile); string(b) != "EXIT=3\n" {
		t.Fatalf("rexec: %q, want EXIT=3; the pane:\n%s", b, tm.screen(t))
	}
	settingsBefore, err1 := os.ReadFile(filepath.Join(dir, "before"))
	settingsAfter, err2 := os.ReadFile(filepath.Join(dir, "after"))
	if err1 != nil || err2 != nil || len(settingsBefore) == 0 || string(settingsBefore) != string(settingsAfter) {
		t.Fatalf("the terminal's settings (stty -g): before %q, after %q (%v, %v)", settingsBefore, settingsAfter, err1, err2)
	}
	if m := regexp.MustCompile(`(?m)^rexec: .*$`).FindString(tm.screen(t)); m != "" {
		t.Fatalf("rexec complained: %s", m)
	}
}

// localPty is a terminal for a rexec process started by a test: rexec gets
// its tty end as stdin, stdout and stderr, and as its controlling
// terminal; the test reads the screen from the other end.
type localPty struct {
	ptmx, tty *os.File
	screen    *syncBuffer
	copied    chan struct{}
}

func newLocalPty(t *testing.T) *localPty {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 25, Cols: 81}); err != nil {
		t.Fatal(err)
	}
	p := &localPty{ptmx: ptmx, tty: tty, screen: &syncBuffer{}, copied: make(chan struct{})}
	go func() {
		defer close(p.copied)
		io.Copy(p.screen, ptmx) // until ptmx is closed
	}()
	t.Cleanup(func() {
		tty.Close()
		ptmx.Close()
		<-p.copied
	})
	return p
}

// start starts "rexec args..." on the terminal.
func (p *localPty) start(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := rexecCmd(t, nil, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.tty, p.tty, p.tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// termios is the terminal's settings, as rexec must leave them.
func (p *localPty) termios(t *testing.T) unix.Termios {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(p.tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return *tio
}

// waitFor waits until the screen shows want.
func (p *localPty) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a failure bound only
	for !strings.Contains(p.screen.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the screen:\n%s", want, p.screen.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitCode waits for cmd's end.
func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() }) // a failure bound only
	defer timer.Stop()
	cmd.Wait()
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		t.Fatalf("rexec killed by %v", ws.Signal())
	}
	return ws.ExitStatus()
}

// TestRunTTYWaysOut checks each way "rexec run -it" ends on a terminal:
// the exit code, and the terminal's settings as they were before.
func TestRunTTYWaysOut(t *testing.T) {
	url := newServer(t, "")
	run := func(args ...string) []string {
		return append([]string{"run", "--url", url, "-it"}, args...)
	}
	for _, tc := range []struct {
		name   string
		remote []string
		// do acts once the remote command is ready; it returns the
		// server to kill, if any.
		do      func(t *testing.T, p *localPty, rexec *exec.Cmd)
		code    int
		message string // on the screen at the end
	}{
		{"the remote exit code, after a resize", fakeArgs("tty"), func(t *testing.T, p *localPty, rexec *exec.Cmd) {
			pty.Setsize(p.ptmx, &pty.Winsize{Rows: 40, Cols: 120})
			p.waitFor(t, "winch 40 120")
			rexec.Process.Signal(syscall.SIGTERM) // forwarded: the child says "term" and exits 3
		}, 3, "term"},
		{"Ctrl-C is the remote's", fakeArgs("tty"), func(t *testing.T, p *localPty, rexec *exec.Cmd) {
			p.ptmx.Write([]byte{0x03})
		}, 128 + int(syscall.SIGINT), "killed by SIGINT"},
		{"a second SIGTERM closes the connection", fakeArgs("tty", "ignore-term"), func(t *testing.T, p *localPty, rexec *exec.Cmd) {
			rexec.Process.Signal(syscall.SIGTERM)
			p.ptmx.Write([]byte("x\r")) // the child has seen the first when it reads this
			p.waitFor(t, `read "x\n"`)
			rexec.Process.Signal(syscall.SIGTERM)
		}, 128 + int(syscall.SIGTERM), "interrupted by SIGTERM"},
		{"SIGHUP", fakeArgs("tty"), func(t *testing.T, p *localPty, rexec *exec.Cmd) {
			rexec.Process.Signal(syscall.SIGHUP)
		}, 129, "hung up (SIGHUP)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newLocalPty(t)
			before := p.termios(t)
			rexec := p.start(t, run(tc.remote...)...)
			p.waitFor(t, "size 25 81\r\nready\r\n")
			if p.termios(t) == before {
				t.Fatal("the terminal is not in raw mode during the run")
			}
			tc.do(t, p, rexec)
			if code := exitCode(t, rexec); code != tc.code {
				t.Fatalf("exit %d, want %d; the screen:\n%s", code, tc.code, p.screen.String())
			}
			p.waitFor(t, tc.message)
			if p.termios(t) != before {
				t.Fatalf("the terminal's settings were not restored; the screen:\n%s", p.screen.String())
			}
		})
	}

	t.Run("a terminal wider than the server takes, and Ctrl-D", func(t *testing.T) {
		p := newLocalPty(t)
		if err := pty.Setsize(p.ptmx, &pty.Winsize{Rows: 25, Cols: 1200}); err != nil {
			t.Fatal(err)
		}
		rexec := p.start(t, run(fakeArgs("tty")...)...)
		p.waitFor(t, "size 25 1000\r\nready\r\n")
		p.ptmx.Write([]byte{0x04}) // the remote's end of input
		if code := exitCode(t, rexec); code != 0 {
			t.Fatalf("exit %d; the screen:\n%s", code, p.screen.String())
		}
		p.waitFor(t, "eof")
	})

	t.Run("the server gone", func(t *testing.T) {
		server, url := serverProcess(t)
		p := newLocalPty(t)
		before := p.termios(t)
		rexec := p.start(t, "run", "--url", url, "-it", "--", "sh", "-c", "echo ready; exec sleep 100")
		p.waitFor(t, "ready")
		server.Process.Kill()
		server.Wait()
		if code := exitCode(t, rexec); code != exitRunLost {
			t.Fatalf("exit %d, want %d; the screen:\n%s", code, exitRunLost, p.screen.String())
		}
		p.waitFor(t, "the run's end was never received")
		if p.termios(t) != before {
			t.Fatal("the terminal's settings were not restored")
		}
	})
}

// TestRunTTYWithoutTerminal is -t and -it where stdin is not a terminal.
func TestRunTTYWithoutTerminal(t *testing.T) {
	url := newServer(t, "")
	t.Run("-it forwards stdin as it comes", func(t *testing.T) {
		r := rexec(t, strings.NewReader("typed\n"), nil, append([]string{"run", "--url", url, "-it"}, fakeArgs("tty")...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "isatty true true true\r\n") || !strings.Contains(r.stdout, `read "typed\n"`) ||
			!strings.Contains(r.stdout, "eof\r\n") || !strings.Contains(r.stderr, "stdin is not a terminal") {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("-t alone: the command's stdin is empty", func(t *testing.T) {
		r := rexec(t, strings.NewReader("not sent\n"), nil, append([]string{"run", "--url", url, "-t"}, fakeArgs("tty")...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "ready\r\neof\r\n") || strings.Contains(r.stdout, "not sent") || r.stderr != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("TERM goes along", func(t *testing.T) {
		rexec(t, nil, []string{"TERM=xterm-test"}, "run", "--url", url, "-t", "--", "sh", "-c", `echo "$TERM"`).want(t, 0, "xterm-test\r\n", "")
		rexec(t, nil, []string{"TERM=xterm-test"}, "run", "--url", url, "-t", "-e", "TERM=mine", "--", "sh", "-c", `echo "$TERM"`).want(t, 0, "mine\r\n", "")
	})
	t.Run("exit codes as rexec run's", func(t *testing.T) {
		rexec(t, nil, nil, "run", "--url", url, "-t", "--", "sh", "-c", "exit 42").want(t, 42, "", "")
		rexec(t, nil, nil, "run", "--url", url, "-t", "--", "sh", "-c", "kill -KILL $$").want(t, 137, "", "killed by SIGKILL")
		rexec(t, nil, nil, "run", "--url", url, "-t", "--", "no-such-command-rexec").want(t, exitRunStartFailed, "", "(404 Not Found)")
		rexec(t, nil, nil, "run", "--url", url, "-t", "--alias", "a b", "--", "true").want(t, exitRunUsage, "", "(400 Bad Request)")
		authURL := newServer(t, "s3cret")
		rexec(t, nil, nil, "run", "--url", authURL, "-t", "--", "true").want(t, exitRunAuth, "", "(401 Unauthorized)")
		rexec(t, nil, []string{"REXEC_TOKEN=s3cret"}, "run", "--url", authURL, "-t", "--", "true").want(t, 0, "", "")
	})
}
