//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/client"
	"github.com/rexec/rexec/internal/testchild"
	"golang.org/x/sys/unix"
)

// fakeArgs are the arguments of "rexec run" that run the test binary as the
// fake child mode on the server.
func fakeArgs(mode string, args ...string) []string {
	path, env := testchild.Command(mode)
	return append([]string{"-e", env, "--", path}, args...)
}

func TestRunExitStatus(t *testing.T) {
	url := newServer(t, "")
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		errPart string
	}{
		{"0", fakeArgs("exit", "0"), 0, ""},
		{"1", fakeArgs("exit", "1"), 1, ""},
		{"42", fakeArgs("exit", "42"), 42, ""},
		{"SIGKILL", fakeArgs("selfkill", "9"), 128 + 9, "killed by SIGKILL"},
		{"SIGTERM", fakeArgs("selfkill", "15"), 128 + 15, "killed by SIGTERM"},
		{"SIGUSR1", []string{"--", "sh", "-c", "echo dying; kill -USR1 $$"}, 128 + int(syscall.SIGUSR1), "killed by SIGUSR1"},
		{"timeout", []string{"--timeout", "200ms", "--", "sleep", "100"}, 128 + 15, "timed out (--timeout) and was killed by SIGTERM"},
		{"oom", []string{"--memory", "32MiB", "--", "sh", "-c", "x=$(yes | head -c 200000000)"}, 128 + 9, "ran out of memory"},
		{"limit above 2^31 pids", []string{"--pids", "3000000000", "--", "true"}, 2, "pids"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := ""
			if strings.HasPrefix(tc.name, "SIG") {
				out = "dying\n"
			}
			rexec(t, nil, nil, append([]string{"run", "--url", url}, tc.args...)...).want(t, tc.code, out, tc.errPart)
		})
	}
}

func TestRunOutput(t *testing.T) {
	url := newServer(t, "")
	t.Run("stdout and stderr apart", func(t *testing.T) {
		r := rexec(t, nil, nil, "run", "--url", url, "--", "sh", "-c",
			`echo out1; echo err1 >&2; echo out2; echo err2 >&2; printf "no newline"`)
		r.want(t, 0, "out1\nout2\nno newline", "err1\nerr2\n")
		if r.stderr != "err1\nerr2\n" {
			t.Fatalf("stderr %q", r.stderr)
		}
	})
	t.Run("flags reach the command", func(t *testing.T) {
		dir := t.TempDir()
		r := rexec(t, nil, []string{"FROM_HERE=local value"}, "run", "--url", url, "--cwd", dir,
			"-e", "A=1,2", "-e", "B=x=y", "-e", "FROM_HERE", "--alias", "flags.test",
			"sh", "-c", `echo "$A|$B|$FROM_HERE|$(pwd)|$0|$1"`, "zero", "$(one)")
		r.want(t, 0, "1,2|x=y|local value|"+dir+"|zero|$(one)\n", "")
	})
	t.Run("stdin is empty without -i", func(t *testing.T) {
		rexec(t, strings.NewReader("not sent\n"), nil, "run", "--url", url, "--", "cat").want(t, 0, "", "")
	})
}

func TestRunRefused(t *testing.T) {
	url := newServer(t, "")
	authURL := newServer(t, "s3cret")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String()
	ln.Close()

	// A running alias, for the 409.
	c, err := client.New(url, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	spec := client.Spec{Alias: "busy", Cmd: "sh", Args: []string{"-c", "echo ready; exec sleep 100"}}
	held, err := c.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if ev, err := held.Next(); err != nil || ev.Line != "ready" {
		t.Fatalf("held run: %+v %v", ev, err)
	}

	for _, tc := range []struct {
		name    string
		env     []string
		args    []string
		code    int
		errPart string
	}{
		{"401 without token", nil, []string{"--url", authURL, "true"}, 3, "(401 Unauthorized): unauthorized"},
		{"401 wrong token", []string{"REXEC_TOKEN=nope"}, []string{"--url", authURL, "true"}, 3, "401"},
		{"token from REXEC_TOKEN", []string{"REXEC_TOKEN=s3cret"}, []string{"--url", authURL, "true"}, 0, ""},
		{"URL from REXEC_URL", []string{"REXEC_URL=" + url}, []string{"true"}, 0, ""},
		{"404 no such command", nil, []string{"--url", url, "no-such-command-rexec"}, 4, "(404 Not Found): lookup: no-such-command-rexec: executable file not found"},
		{"404 no such directory", nil, []string{"--url", url, "--cwd", "/no/such/dir", "true"}, 4, "/no/such/dir"},
		{"409 alias running", nil, []string{"--url", url, "--alias", "busy", "true"}, 5, "(409 Conflict)"},
		{"400 bad alias", nil, []string{"--url", url, "--alias", "a b", "true"}, 2, "(400 Bad Request): field \"alias\""},
		{"unreachable", nil, []string{"--url", closedURL, "true"}, 6, "connection refused (nothing ran)"},
		{"bad URL", nil, []string{"--url", "127.0.0.1:8910", "true"}, 2, "--url"},
		{"no command", nil, []string{"--url", url, "--"}, 2, "no command"},
		{"bad -e", nil, []string{"--url", url, "-e", "=x", "true"}, 2, "-e"},
		{"-e of an unset variable", nil, []string{"--url", url, "-e", "REXEC_TEST_UNSET", "true"}, 2, "not set here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rexec(t, nil, tc.env, append([]string{"run"}, tc.args...)...).want(t, tc.code, "", tc.errPart)
		})
	}
}

func TestRunServerKilledMidRun(t *testing.T) {
	server, url := serverProcess(t)
	r := startRexec(t, "run", "--url", url, "--", "sh", "-c", "echo $$; exec sleep 100")
	pid, err := strconv.Atoi(r.line(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) }) // in case the test fails
	server.Process.Kill()
	server.Wait()
	code, rest := r.wait(t)
	if code != 255 || rest != "" || !strings.Contains(r.stderr.String(), "the run's end was never received") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, rest, r.stderr.String())
	}
	// The kernel kills the leader when the server dies (Pdeathsig).
	if !testchild.WaitGone(pid, 10*time.Second) {
		t.Fatalf("remote process %d outlived a server killed with SIGKILL", pid)
	}
}

// A server killed with SIGKILL leaves its runs' escapees alive (the
// parent-death signal reaches only each run's leader); its next life, with
// the same data directory, finds them in its cgroups, kills them and says
// how many it found.
func TestRestartKillsWhatTheLastLifeLeft(t *testing.T) {
	dir := t.TempDir()
	server, url, start := serverProcessLog(t, "--data-dir", dir)
	if modeOf(start) == "off" {
		if os.Getenv("CI") != "" && os.Geteuid() == 0 {
			t.Fatal("cgroups are off on a CI machine, which offers them")
		}
		t.Skip("cgroups are off here")
	}
	r := startRexec(t, append([]string{"run", "--url", url}, fakeArgs("escapee")...)...)
	esc, err := strconv.Atoi(r.line(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(esc, syscall.SIGKILL) }) // in case the test fails
	server.Process.Kill()
	server.Wait()
	r.wait(t)
	time.Sleep(200 * time.Millisecond) // the leader's parent-death signal
	if testchild.Gone(esc) {
		t.Fatalf("the escapee %d died with the server: nothing left to test", esc)
	}

	_, _, start = serverProcessLog(t, "--data-dir", dir)
	var found float64
	for _, l := range start {
		if strings.Contains(fmt.Sprint(l["message"]), "previous life") {
			found, _ = l["processes"].(float64)
		}
	}
	if found < 1 {
		t.Fatalf("the restarted server said nothing of what it found: %v", start)
	}
	if !testchild.WaitGone(esc, 10*time.Second) {
		t.Fatalf("the escapee %d outlived the server's restart", esc)
	}
}

// modeOf is the cgroup mode a server's start-up log names.
func modeOf(start []map[string]any) string {
	for _, l := range start {
		if m, ok := l["cgroups"].(string); ok {
			return m
		}
	}
	return ""
}

func TestRunStdin(t *testing.T) {
	url := newServer(t, "")
	t.Run("live: a line comes back before stdin closes", func(t *testing.T) {
		r := startRexec(t, "run", "--url", url, "-i", "--", "cat")
		if _, err := r.stdin.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		if l := r.line(t); l != "ping" {
			t.Fatalf("echo %q", l)
		}
		r.stdin.Write([]byte("last"))
		r.stdin.Close()
		if code, rest := r.wait(t); code != 0 || rest != "last" {
			t.Fatalf("exit %d, rest %q, stderr %q", code, rest, r.stderr.String())
		}
	})
	t.Run("binary, byte-exact", func(t *testing.T) {
		in := make([]byte, 6<<20)
		for i := range in {
			in[i] = byte(i*31 + i>>12)
		}
		dst := filepath.Join(t.TempDir(), "copy")
		rexec(t, bytes.NewReader(in), nil, "run", "--url", url, "-i", "--", "sh", "-c", `cat > "$0"`, dst).want(t, 0, "", "")
		if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, in) {
			t.Fatalf("%d bytes arrived, want %d identical (%v)", len(got), len(in), err)
		}
	})
	t.Run("tar c dir | rexec run -i -- tar x -C dst", func(t *testing.T) {
		if _, err := exec.LookPath("tar"); err != nil {
			t.Skip("no tar")
		}
		src, dst := t.TempDir(), t.TempDir()
		os.MkdirAll(filepath.Join(src, "sub"), 0o755)
		files := map[string][]byte{"a.txt": []byte("hello\n"), "sub/b.bin": bytes.Repeat([]byte{0, 1, 2, 255}, 300000)}
		for name, data := range files {
			os.WriteFile(filepath.Join(src, name), data, 0o644)
		}
		archive, err := exec.Command("tar", "c", "-C", src, ".").Output()
		if err != nil {
			t.Fatal(err)
		}
		rexec(t, bytes.NewReader(archive), nil, "run", "--url", url, "-i", "--", "tar", "x", "-C", dst).want(t, 0, "", "")
		for name, data := range files {
			if got, _ := os.ReadFile(filepath.Join(dst, name)); !bytes.Equal(got, data) {
				t.Errorf("%s: %d bytes, want %d", name, len(got), len(data))
			}
		}
	})
}

func TestRunInterruptKillsTheRemoteGroup(t *testing.T) {
	url := newServer(t, "")
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			r := startRexec(t, "run", "--url", url, "--", "sh", "-c", "echo $$; sleep 100 & sleep 100; wait")
			pid, err := strconv.Atoi(r.line(t))
			if err != nil {
				t.Fatal(err)
			}
			r.cmd.Process.Signal(sig)
			if code, _ := r.wait(t); code != 128+int(sig) || !strings.Contains(r.stderr.String(), "interrupted by") {
				t.Fatalf("exit %d, stderr %q", code, r.stderr.String())
			}
			if !testchild.WaitGone(pid, 10*time.Second) {
				t.Fatalf("remote shell %d survived", pid)
			}
			// Its background job was in its group: gone too.
			if kids := groupMembers(pid); len(kids) > 0 {
				deadline := time.Now().Add(10 * time.Second)
				for len(groupMembers(pid)) > 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if kids := groupMembers(pid); len(kids) > 0 {
					t.Fatalf("processes %v of the remote group survived", kids)
				}
			}
		})
	}
}

// groupMembers are the live processes of process group pgid.
func groupMembers(pgid int) []int {
	var live []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid && !testchild.Gone(pid) {
			live = append(live, pid)
		}
	}
	return live
}

func TestHealth(t *testing.T) {
	url := newServer(t, "s3cret") // /healthz needs no token
	rexec(t, nil, nil, "health", "--url", url).want(t, 0, "ok\n", "")
	rexec(t, nil, []string{"REXEC_URL=" + url}, "health").want(t, 0, "ok\n", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	rexec(t, nil, nil, "health", "--url", closed).want(t, 1, "", "unhealthy")
	rexec(t, nil, nil, "health", "--url", url+"/nothing-here").want(t, 1, "", "unhealthy")
}

func TestRunHelpDocumentsExitCodes(t *testing.T) {
	r := rexec(t, nil, nil, "run", "--help")
	for _, code := range []string{"128+N", "\n    2 ", "\n    3 ", "\n    4 ", "\n    5 ", "\n    6 ", "\n    7 ", "\n    130 ", "\n    255 ", "REXEC_URL", "REXEC_TOKEN"} {
		if !strings.Contains(r.stdout, code) {
			t.Errorf("rexec run --help does not document %q:\n%s", code, r.stdout)
		}
	}
}

func TestCommandLine(t *testing.T) {
	for k, v := range map[string]string{"REXEC_URL": "http://from-env:1", "REXEC_TOKEN": "tok",
		"REXEC_INSECURE": "true", "REXEC_ALIAS": "no", "REXEC_STDIN": "true", "REXEC_ENV": "NO=1", "REXEC_TIMEOUT": "junk",
		"REXEC_CWD": "/no"} {
		t.Setenv(k, v)
	}
	parse := func(t *testing.T, args ...string) (*cli, string) {
		t.Helper()
		var c cli
		p, err := newParser(&c)
		if err != nil {
			t.Fatal(err)
		}
		kctx, err := p.Parse(args)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return &c, kctx.Command()
	}
	t.Run("bare flags still serve", func(t *testing.T) {
		c, cmd := parse(t, "-i", "::1", "-p", "0")
		if cmd != "serve" || c.Serve.IP != "::1" || c.Serve.Port != 0 || c.Serve.Token != "tok" {
			t.Fatalf("%s %+v", cmd, c.Serve)
		}
	})
	t.Run("run reads only REXEC_URL, REXEC_TOKEN and the TLS files", func(t *testing.T) {
		s := newTLSSetup(t)
		t.Setenv("REXEC_CACERT", s.caFile)
		t.Setenv("REXEC_CERT", s.client.CertFile)
		t.Setenv("REXEC_KEY", s.client.KeyFile)
		c, cmd := parse(t, "run", "--", "ls", "-l")
		r := c.Run
		if cmd != "run <command>" || r.URL != "http://from-env:1" || r.Token != "tok" || r.Alias != "" || r.Stdin || r.Env != nil || r.Timeout != 0 || r.Cwd != "" ||
			r.CACert != s.caFile || r.Cert != s.client.CertFile || r.Key != s.client.KeyFile {
			t.Fatalf("%s %+v", cmd, r)
		}
		if c, _ := parse(t, "health"); c.Health.Insecure || c.Health.CACert != s.caFile {
			t.Fatalf("health %+v", c.Health)
		}
	})
	t.Run("run's -i, -e and the command", func(t *testing.T) {
		for _, args := range [][]string{
			{"run", "-i", "-e", "A=1,2", "-e", "B", "--", "sh", "-c", "x -y"},
			{"run", "-i", "-e", "A=1,2", "-e", "B", "sh", "-c", "x -y"}, // no --: flags end at the command
		} {
			t.Setenv("B", "b")
			c, _ := parse(t, args...)
			spec, err := c.Run.spec()
			if err != nil || !c.Run.Stdin || spec.Cmd != "sh" || !slices.Equal(spec.Args, []string{"-c", "x -y"}) ||
				spec.Env["A"] != "1,2" || spec.Env["B"] != "b" || len(spec.Env) != 2 {
				t.Fatalf("%v: %+v %v", args, spec, err)
			}
		}
		c, _ := parse(t, "run", "--", "--", "x")
		if spec, _ := c.Run.spec(); spec.Cmd != "--" || !slices.Equal(spec.Args, []string{"x"}) {
			t.Fatalf("a command named --: %+v", spec)
		}
	})
}
