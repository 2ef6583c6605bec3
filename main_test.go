//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
	"go.uber.org/goleak"
)

// asRexec makes the test binary run main(), as the rexec command: the tests
// run "rexec run", "rexec health" and "rexec serve" as real processes.
const asRexec = "REXEC_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	testchild.Main()
	if os.Getenv(asRexec) == "1" {
		main()
		os.Exit(0)
	}
	// Tests write only to temporary folders: a server started here with its
	// default --data-dir must not leave rexec-data/ in the checkout.
	_, err := os.Stat("rexec-data")
	before := err == nil
	code := m.Run()
	if _, err := os.Stat("rexec-data"); err == nil && !before && code == 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the tests left rexec-data/ in the checkout")
		os.RemoveAll("rexec-data")
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(testchild.LeakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newServer starts a real server in the test process on 127.0.0.1:0 and
// returns its URL.
func newServer(t *testing.T, token string) string {
	t.Helper()
	return testserver.Start(t, node.Config{Web: webapi.Config{Token: token}}).URL
}

// rexecCmd is the command "rexec args...", with env added to a clean
// environment (none of the caller's REXEC_* variables). The process is
// killed at the end of the test if it still runs.
func rexecCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	// In a folder of its own, with a state directory of its own: a
	// server's default --data-dir lands there, never in the checkout or
	// the home of whoever runs the tests.
	cmd.Dir = t.TempDir()
	cmd.Env = append(webapi.ServerEnv(os.Environ()), asRexec+"=1", testchild.RaceEnv)
	cmd.Env = append(cmd.Env, "XDG_STATE_HOME="+filepath.Join(cmd.Dir, "state"))
	cmd.Env = append(cmd.Env, env...)
	t.Cleanup(func() {
		if cmd.Process != nil && cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

type result struct {
	code           int
	stdout, stderr string
}

// rexec runs "rexec args..." to its end with stdin (nil: empty).
func rexec(t *testing.T, stdin io.Reader, env []string, args ...string) result {
	t.Helper()
	cmd := rexecCmd(t, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() }) // a failure bound only
	defer timer.Stop()
	cmd.Wait()
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		t.Fatalf("rexec %s: killed by %v; stderr:\n%s", strings.Join(args, " "), ws.Signal(), stderr.String())
	}
	return result{ws.ExitStatus(), stdout.String(), stderr.String()}
}

// want checks a result: the exit code, the exact stdout, and that stderr
// contains errPart ("" for an empty stderr).
func (r result) want(t *testing.T, code int, stdout, errPart string) {
	t.Helper()
	if r.code != code || r.stdout != stdout || (errPart == "" && r.stderr != "") || !strings.Contains(r.stderr, errPart) {
		t.Fatalf("exit %d, stdout %q, stderr %q;\nwant exit %d, stdout %q, stderr with %q", r.code, r.stdout, r.stderr, code, stdout, errPart)
	}
}

// startedRexec is a rexec process being driven by a test.
type startedRexec struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *syncBuffer
}

func startRexec(t *testing.T, args ...string) *startedRexec {
	t.Helper()
	cmd := rexecCmd(t, nil, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &startedRexec{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout), stderr: &syncBuffer{}}
	cmd.Stderr = r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return r
}

// line reads a line of the process's stdout, without a failure bound of
// its own: the process is killed by the test's end or by wait's bound.
func (r *startedRexec) line(t *testing.T) string {
	t.Helper()
	l, err := r.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("reading stdout: %q, %v; stderr:\n%s", l, err, r.stderr.String())
	}
	return strings.TrimSuffix(l, "\n")
}

// wait reads the rest of stdout and waits for the exit code.
func (r *startedRexec) wait(t *testing.T) (code int, rest string) {
	t.Helper()
	timer := time.AfterFunc(60*time.Second, func() { r.cmd.Process.Kill() })
	defer timer.Stop()
	b, _ := io.ReadAll(r.stdout)
	r.cmd.Wait()
	return r.cmd.ProcessState.ExitCode(), string(b)
}

// syncBuffer collects output written by another goroutine.
type syncBuffer = testserver.SyncBuffer

// serverProcess starts "rexec serve -p 0" as a process of its own, to be
// killed by the test, and returns its URL (https:// with TLS).
func serverProcess(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd, url, _ := serverProcessLog(t, args...)
	return cmd, url
}

// serverProcessLog is serverProcess that also returns the lines the server
// logged before it listened: what it says at start-up.
func serverProcessLog(t *testing.T, args ...string) (*exec.Cmd, string, []map[string]any) {
	t.Helper()
	var start []map[string]any
	cmd := rexecCmd(t, nil, append([]string{"serve", "-p", "0", "--kill-grace", "1s"}, args...)...)
	logr, logw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logr.Close() })
	cmd.Stderr = logw
	err = cmd.Start()
	logw.Close()
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(logr)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("the server ended before listening: %v", err)
		}
		var l struct{ Message, Addr, URL string }
		if json.Unmarshal(line, &l) == nil && l.Message == "listening" {
			go io.Copy(io.Discard, br) // the rest of its log, until it dies or the test ends
			return cmd, l.URL, start
		}
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			start = append(start, m)
		}
	}
}
