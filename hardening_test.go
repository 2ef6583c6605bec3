//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// What the server keeps from its children, and how it behaves when it runs
// short of descriptors. Each test runs "rexec serve" as a process of its
// own, as it runs in production.

// listFDsEnv makes the test binary, started by a server as a child, list
// the descriptors it holds and exit (see listOwnFDs). It is read in an init
// function, before the test binary's own start-up can open anything.
const listFDsEnv = "LIST_OWN_FDS"

func init() {
	if os.Getenv(listFDsEnv) == "1" {
		os.Exit(listOwnFDs())
	}
}

// listOwnFDs prints "fd N TARGET" for each descriptor the process holds,
// the one it reads the list with excepted, and for each above stderr what a
// read at offset 0 gives. It uses system calls only: the os package would
// open descriptors of its own (the runtime's poller).
func listOwnFDs() int {
	dir, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open /proc/self/fd:", err)
		return 1
	}
	var names []string
	buf := make([]byte, 16<<10)
	for {
		n, err := syscall.ReadDirent(dir, buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "read /proc/self/fd:", err)
			return 1
		}
		if n <= 0 {
			break
		}
		_, _, names = syscall.ParseDirent(buf[:n], -1, names)
	}
	var lines []string
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == dir {
			continue
		}
		// A descriptor marked close-on-exec did not come through exec:
		// this process's own start-up opened it (the Go runtime's poller,
		// which a dependency's init may start: protobuf's hashes the
		// executable). What a server passes on never is.
		if flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0); errno == 0 && flags&syscall.FD_CLOEXEC != 0 {
			continue
		}
		target := make([]byte, 4096)
		n, _ := syscall.Readlink("/proc/self/fd/"+name, target)
		line := fmt.Sprintf("fd %d %s", fd, target[:max(n, 0)])
		if fd > 2 {
			data := make([]byte, 64)
			if n, err := syscall.Pread(fd, data, 0); n > 0 {
				line += " holds " + strconv.Quote(string(data[:n]))
			} else {
				line += fmt.Sprintf(" (read: %d, %v)", n, err)
			}
		}
		lines = append(lines, line)
	}
	syscall.Close(dir)
	for _, l := range lines {
		fmt.Println(l)
	}
	return 0
}

// TestChildrenGetOnlyStdio: descriptors that whatever started the server
// left open (here a file holding a secret, a pipe and a listening socket, on
// fds 3, 4 and 5) never reach the commands it runs (closeInheritedFiles).
func TestChildrenGetOnlyStdio(t *testing.T) {
	const secret = "secret-content-of-an-inherited-file"
	held := filepath.Join(t.TempDir(), "held")
	if err := os.WriteFile(held, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sock, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	srv := startServer(t, func(cmd *exec.Cmd) { cmd.ExtraFiles = []*os.File{file, pw, sock} })
	// The server holds them where they were given.
	for fd, want := range map[int]string{3: held, 4: "pipe:", 5: "socket:"} {
		if got, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", srv.cmd.Process.Pid, fd)); err != nil || !strings.HasPrefix(got, want) {
			t.Fatalf("the server's fd %d is %q (%v), want %s...", fd, got, err, want)
		}
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Without cgroup-aware GOMAXPROCS, whose files the Go runtime of the
	// child would keep open.
	r := rexec(t, nil, nil, "run", "--url", srv.url, "-e", listFDsEnv+"=1", "-e", "GODEBUG=containermaxprocs=0", "--", exe)
	if r.code != 0 {
		t.Fatalf("the child that lists its descriptors: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var fds []int
	for l := range strings.Lines(r.stdout) {
		var fd int
		if _, err := fmt.Sscanf(l, "fd %d", &fd); err != nil {
			t.Fatalf("unexpected line %q in:\n%s", l, r.stdout)
		}
		fds = append(fds, fd)
	}
	if !slices.Equal(fds, []int{0, 1, 2}) || strings.Contains(r.stdout, secret) {
		t.Fatalf("the child holds descriptors %v, want exactly 0 1 2 (and never the secret):\n%s", fds, r.stdout)
	}
}

// TestChildrenCannotReadTheServersEnvironment: a server running as an
// ordinary user keeps REXEC_TOKEN in its environment, which /proc/PID/environ
// shows to every process of that user, its own children included, unless
// the server is not dumpable (hideFromChildren, PR_SET_DUMPABLE 0). Without
// that call, the child's cat of /proc/$PPID/environ prints the token.
func TestChildrenCannotReadTheServersEnvironment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to start the server as the user nobody")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, err1 := strconv.ParseUint(nobody.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(nobody.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		t.Skipf("user nobody has uid %q gid %q", nobody.Uid, nobody.Gid)
	}

	// nobody must be able to run the binary and enter its directory:
	// t.TempDir's folders are private to root.
	base := os.TempDir()
	if !searchableByAll(base) {
		base = "/tmp"
	}
	if !searchableByAll(base) {
		t.Skipf("neither %s nor /tmp can be entered by every user", os.TempDir())
	}
	dir, err := os.MkdirTemp(base, "rexec-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "rexec")
	copyFile(t, exe, bin, 0o755)

	const secret = "rexec-token-no-child-may-read"
	srv := startServer(t, func(cmd *exec.Cmd) {
		cmd.Path = bin
		cmd.Dir = dir
		cmd.Env = append(cmd.Env, "REXEC_TOKEN="+secret)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	})
	pid := srv.cmd.Process.Pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	wantUID := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d\n", uid, uid, uid, uid)
	if !strings.Contains(string(status), wantUID) {
		t.Fatalf("the server does not run as nobody (%s):\n%s", strings.TrimSpace(wantUID), status)
	}
	if environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err != nil || !strings.Contains(string(environ), "REXEC_TOKEN="+secret) {
		t.Fatalf("the token is not in the server's environment, so this test shows nothing (%v)", err)
	}

	// The child, a shell of the same user, first reads the environment of a
	// process of its own (a sibling, dumpable as any), to show that such
	// reads work here; then the server's.
	script := `echo "uid=$(id -u) ppid=$PPID"
sleep 30 >/dev/null 2>&1 & p=$!
sibling=unread
for i in $(seq 100); do # until the sibling's exec is over: mid-exec, environ reads empty
	if tr '\0' '\n' < /proc/$p/environ | grep -qx MARK=sibling; then sibling=read; break; fi
	sleep 0.1
done
echo sibling=$sibling
kill $p
cat /proc/$PPID/environ
s=$?
echo
echo "server-environ-exit=$s"`
	r := rexec(t, nil, []string{"REXEC_TOKEN=" + secret}, "run", "--url", srv.url, "-e", "MARK=sibling", "--", "sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, secret) || strings.Contains(r.stderr, secret) {
		t.Fatalf("a child read the server's token from /proc/%d/environ:\nstdout %q\nstderr %q", pid, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) < 3 || lines[0] != fmt.Sprintf("uid=%d ppid=%d", uid, pid) || lines[1] != "sibling=read" ||
		lines[len(lines)-1] == "server-environ-exit=0" || !strings.HasPrefix(lines[len(lines)-1], "server-environ-exit=") {
		t.Fatalf("want the child to run as uid %d under the server (pid %d), read its sibling's environment and fail to read the server's; stdout:\n%s\nstderr:\n%s",
			uid, pid, r.stdout, r.stderr)
	}
}

// TestTokenFile: --token-file takes the token from the file's first line;
// it and --token exclude each other; a file without a token is refused.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("tok3n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, nil, "--token-file", tokenFile)
	rexec(t, nil, nil, "run", "--url", srv.url, "--token", "tok3n", "--", "true").want(t, 0, "", "")
	rexec(t, nil, nil, "run", "--url", srv.url, "--token", "wrong", "--", "true").want(t, 3, "", "401")
	rexec(t, nil, nil, "run", "--url", srv.url, "--", "true").want(t, 3, "", "401")
	// The token is not in the log.
	if log := srv.log.String(); strings.Contains(log, "tok3n") {
		t.Errorf("the token is in the server's log:\n%s", log)
	}

	refused := func(t *testing.T, args ...string) result {
		t.Helper()
		cmd := rexecCmd(t, nil, append([]string{"serve", "-p", "0"}, args...)...)
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		code, ok := waitExit(cmd, 30*time.Second)
		if !ok {
			t.Fatalf("rexec serve %s still ran after 30 s instead of refusing; stderr:\n%s", strings.Join(args, " "), stderr.String())
		}
		return result{code: code, stderr: stderr.String()}
	}
	t.Run("--token and --token-file together", func(t *testing.T) {
		r := refused(t, "--token", "x", "--token-file", tokenFile)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--token-file") ||
			!strings.Contains(strings.ReplaceAll(r.stderr, "--token-file", ""), "--token") {
			t.Fatalf("exit %d, stderr %q; want %d and a message naming --token and --token-file", r.code, r.stderr, exitUsage)
		}
	})
	for name, content := range map[string]string{"empty": "", "empty first line": "\ntok3n\n", "blank": "  \t \n"} {
		t.Run("a file with no token: "+name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if r := refused(t, "--token-file", f); r.code != exitUsage || !strings.Contains(r.stderr, "--token-file") {
				t.Fatalf("exit %d, stderr %q; want %d and a message naming --token-file", r.code, r.stderr, exitUsage)
			}
		})
	}
	t.Run("a missing file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "none")
		if r := refused(t, "--token-file", f); r.code != exitUsage || !strings.Contains(r.stderr, f) {
			t.Fatalf("exit %d, stderr %q; want %d and a message naming %s", r.code, r.stderr, exitUsage, f)
		}
	})
}

// TestReloadOfAFIFODoesNotBlockShutdown: an exectab replaced by a FIFO is
// refused at SIGHUP instead of blocking the reload for ever (opening a FIFO
// waits for a writer); the old scripts stay in force, and SIGTERM still
// stops the server. (That reloads run off the signal loop shows only with
// a reload that blocks, on a hung network file system say: with the FIFO
// refused at once, this test cannot tell.)
func TestReloadOfAFIFODoesNotBlockShutdown(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "exectab")
	if err := os.WriteFile(tab, []byte("ok /bin/echo ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, nil, "--scripts", tab, "--data-dir", filepath.Join(dir, "data"))
	runOK := func(when string) {
		t.Helper()
		if r := rexec(t, nil, nil, "run", "--url", srv.url, "--alias", "ok", "--script", "ok"); r.code != 0 || r.stdout != "ok\n" {
			t.Errorf("script ok %s: exit %d, stdout %q, stderr %q", when, r.code, r.stdout, r.stderr)
		}
	}
	runOK("before the reload")

	if err := os.Remove(tab); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(tab, 0o644); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Process.Signal(syscall.SIGHUP)
	l, ok := srv.waitLine(20*time.Second, func(l logLine) bool { return strings.Contains(l.Message, "exectab reload") })
	switch {
	case !ok:
		t.Errorf("no word of the reload 20 s after SIGHUP: it is blocked on the FIFO; log:\n%s", srv.log.String())
	case l.Level != "error" || !strings.Contains(l.Message, "failed") || !strings.Contains(l.Error, "regular file"):
		t.Errorf("the reload of a FIFO: %+v; want an error saying it is not a regular file", l)
	}
	runOK("after the failed reload")

	srv.cmd.Process.Signal(syscall.SIGTERM)
	code, ok := waitExit(srv.cmd, 20*time.Second)
	if !ok {
		t.Fatalf("the server still ran 20 s after SIGTERM; log:\n%s", srv.log.String())
	}
	if code != 0 {
		t.Fatalf("the server exited %d after SIGTERM; log:\n%s", code, srv.log.String())
	}
}

// TestConsoleLogHasNoColourInAFile: --log-format console writes colour
// escape codes to a terminal, never into a file.
func TestConsoleLogHasNoColourInAFile(t *testing.T) {
	// serveConsole runs a console-logging server with stderr on errFile
	// until it has logged that it listens, then stops it, and returns
	// what read returns then.
	serveConsole := func(t *testing.T, errFile *os.File, read func() string) string {
		t.Helper()
		cmd := rexecCmd(t, nil, "serve", "-p", "0", "-v", "--log-format", "console")
		cmd.Stderr = errFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(read(), "listening") {
			if time.Now().After(deadline) {
				t.Fatalf("no \"listening\" in the log after 60 s:\n%q", read())
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Its signal handlers are set up only after "listening" is
		// logged: SIGTERM may end it at once, or after "stopped".
		cmd.Process.Signal(syscall.SIGTERM)
		if _, ok := waitExit(cmd, 20*time.Second); !ok {
			t.Fatalf("the server still ran 20 s after SIGTERM; log:\n%q", read())
		}
		return read()
	}

	t.Run("a file", func(t *testing.T) {
		name := filepath.Join(t.TempDir(), "log")
		f, err := os.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		read := func() string { b, _ := os.ReadFile(name); return string(b) }
		log := serveConsole(t, f, read)
		if !strings.Contains(log, "listening") || strings.Contains(log, "\x1b[") {
			t.Fatalf("want a log free of escape codes:\n%q", log)
		}
	})

	t.Run("a terminal", func(t *testing.T) {
		master, slave, err := openPty()
		if err != nil {
			t.Skipf("no pseudo-terminal: %v", err)
		}
		defer master.Close()
		defer slave.Close()
		var out syncBuffer
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(&out, master) }()
		defer wg.Wait()
		defer master.Close() // ends the copy
		log := serveConsole(t, slave, func() string {
			// Once the listening line is whole.
			s := out.String()
			if i := strings.Index(s, "listening"); i < 0 || !strings.Contains(s[i:], "\n") {
				return ""
			}
			return s
		})
		if !strings.Contains(log, "\x1b[") {
			t.Fatalf("no colour on a terminal:\n%q", log)
		}
	})
}

// openPty opens a pseudo-terminal: its master, with its reads on the
// runtime's poller (Close ends them), and its slave.
func openPty() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	rc, err := master.SyscallConn()
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	var n uint32
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr == nil {
			n, ierr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
		}
	}); err != nil || ierr != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlockpt/ptsname: %v %v", err, ierr)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

// TestOutOfDescriptors: a server out of descriptors says so. With one
// descriptor left, the connection is accepted but the child cannot be
// started: 503 with Retry-After, naming the condition (not 404, which would
// tell the client its command does not exist). With none left, accept(2)
// itself fails: the listener gives up its reserve descriptor to answer 503
// rather than leave the client waiting. With descriptors back, it serves
// again, and SIGTERM stops it.
//
// The test lowers the server's soft RLIMIT_NOFILE under it (prlimit), to
// just above or at the lowest descriptor it does not hold, computed from
// /proc/PID/fd.
func TestOutOfDescriptors(t *testing.T) {
	srv := startServer(t, nil)
	pid := srv.cmd.Process.Pid
	addr := strings.TrimPrefix(srv.url, "http://")
	var orig unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &orig); err != nil {
		t.Fatal(err)
	}
	// The soft limit only: raising a hard limit back takes
	// CAP_SYS_RESOURCE, which root in a container may lack.
	setLimit := func(t *testing.T, n int) {
		t.Helper()
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(n), Max: orig.Max}, nil); err != nil {
			t.Fatalf("prlimit %d: %v", n, err)
		}
		t.Logf("RLIMIT_NOFILE %d; descriptors: %s", n, fdTable(pid))
	}
	restore := func(t *testing.T) {
		t.Helper()
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &orig, nil); err != nil {
			t.Fatalf("prlimit back to %+v: %v", orig, err)
		}
	}
	// Each run its own alias: a request left hanging by a failure must
	// not make the next one a 409.
	runs := 0
	run := func() string { runs++; return fmt.Sprintf(`{"alias":"a%d","cmd":"true"}`, runs) }
	// How long a shortage lasts after the answers the test waits for.
	const shortage = 250 * time.Millisecond
	// What a shed connection is told (stream/shed.go, with webapi's
	// text): the answer of the listener, not of the handler.
	shed := func(msg string) bool { return strings.Contains(msg, "out of file descriptors") }

	// oneLeft leaves the server exactly one descriptor below its limit:
	// the connection's. Starting the child needs more (its output pipe,
	// the fork's error pipe, a pidfd). It returns the handler's answer.
	oneLeft := func(t *testing.T) (*http.Response, string) {
		t.Helper()
		defer restore(t)
		var tried []string
		for range 5 {
			free := freeFDs(t, pid, 1)
			setLimit(t, free[0]+1)
			resp, msg, err := rawProcess(addr, run(), 15*time.Second)
			time.Sleep(shortage) // the server's accept loop runs into it meanwhile
			restore(t)
			if err != nil {
				t.Fatalf("no answer with one descriptor left: %v; server's descriptors: %s", err, fdTable(pid))
			}
			if resp.StatusCode == http.StatusOK || shed(msg) { // the count moved under us: again
				tried = append(tried, fmt.Sprintf("limit %d: %s %q", free[0]+1, resp.Status, msg))
				continue
			}
			return resp, msg
		}
		t.Fatalf("never got the handler's answer with one descriptor left: %s; server's descriptors: %s", strings.Join(tried, "; "), fdTable(pid))
		return nil, ""
	}
	servesAgain := func(t *testing.T) {
		t.Helper()
		restore(t)
		resp, msg, err := rawProcess(addr, run(), 30*time.Second)
		if err != nil {
			t.Fatalf("the first request with descriptors back: %v", err)
		}
		if resp.StatusCode != http.StatusOK || resp.Trailer.Get("Process-Exit-Code") != "0" {
			t.Fatalf("the first request with descriptors back: %s %q, exit code %q; want 200 and 0; server's descriptors: %s",
				resp.Status, msg, resp.Trailer.Get("Process-Exit-Code"), fdTable(pid))
		}
	}

	// One run first, so that what the server opens once for all children
	// (/dev/null, the exit watcher) is open.
	if resp, msg, err := rawProcess(addr, run(), 30*time.Second); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the first run: %v %q %v", resp, msg, err)
	}

	t.Run("a child cannot be started: 503", func(t *testing.T) {
		resp, msg := oneLeft(t)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(msg, "too many open files") {
			t.Fatalf("with one descriptor left: %s, Retry-After %q, error %q; want 503, a Retry-After and an error naming \"too many open files\"",
				resp.Status, resp.Header.Get("Retry-After"), msg)
		}
	})
	t.Run("with descriptors back, it serves again", servesAgain)

	t.Run("a connection cannot be accepted: 503", func(t *testing.T) {
		defer restore(t)
		// The listener's reserve must be below the limit, with no free
		// descriptor below it either: fill the gaps below it (left by
		// whatever was closed since it was opened) with idle connections.
		fillGapsBelowReserve(t, pid, addr)
		setLimit(t, freeFDs(t, pid, 1)[0]) // not one left
		// Twice: the listener takes its reserve back after using it.
		for i := range 2 {
			resp, msg, err := rawProcess(addr, run(), 15*time.Second)
			if err != nil {
				t.Fatalf("connection %d, with no descriptor left: no answer (%v); server's descriptors: %s", i+1, err, fdTable(pid))
			}
			if resp.Proto != "HTTP/1.1" || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
				!strings.Contains(msg, "too many open files") {
				t.Fatalf("connection %d, with no descriptor left: %s %s, Retry-After %q, error %q", i+1, resp.Proto, resp.Status,
					resp.Header.Get("Retry-After"), msg)
			}
		}
		time.Sleep(shortage)
	})
	t.Run("with descriptors back, it serves again after that", servesAgain)

	t.Run("SIGTERM stops it after a shortage", func(t *testing.T) {
		oneLeft(t)
		srv.cmd.Process.Signal(syscall.SIGTERM)
		code, ok := waitExit(srv.cmd, 20*time.Second) // --shutdown-grace is 10 s
		if !ok || code != 0 {
			t.Fatalf("after SIGTERM: exit %d, within 20 s: %v; log:\n%s", code, ok, srv.log.String())
		}
	})
}

// fillGapsBelowReserve opens idle connections to the server at addr, process
// pid, until no descriptor below its reserve (the listener's /dev/null,
// stream/shed.go) is free, each connection taking the lowest free one. They
// are closed at the end of the test.
func fillGapsBelowReserve(t *testing.T, pid int, addr string) {
	t.Helper()
	for range 10 {
		held := openFDs(t, pid)
		top := -1 // the highest /dev/null above stderr: the reserve is one of them
		for _, fd := range held {
			if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd)); fd > 2 && target == os.DevNull {
				top = fd
			}
		}
		if top < 0 {
			t.Fatalf("no /dev/null among the server's descriptors: where is the listener's reserve? %s", fdTable(pid))
		}
		gaps := freeFDs(t, pid, top)
		gaps = slices.DeleteFunc(gaps, func(fd int) bool { return fd > top })
		if len(gaps) == 0 {
			return
		}
		for range gaps {
			c, err := net.DialTimeout("tcp", addr, 15*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			// A request and its answer: the server has accepted the
			// connection, which then waits, idle, for the next one.
			c.SetDeadline(time.Now().Add(15 * time.Second))
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /healthz with descriptors to spare: %s", resp.Status)
			}
			c.SetDeadline(time.Time{})
		}
	}
	t.Fatalf("gaps below the listener's reserve remain: %s", fdTable(pid))
}

// rawProcess sends POST /process with body on a connection of its own, one
// the server is asked to close, and reads its answer and the server's close
// within d: once it returns, the server's descriptor for it is free. msg is
// the "error" of a JSON error body.
func rawProcess(addr, body string, d time.Duration) (resp *http.Response, msg string, err error) {
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	req := "POST /process HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nConnection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := io.WriteString(c, req); err != nil {
		return nil, "", err
	}
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, "", err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return resp, "", fmt.Errorf("waiting for the server's close: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if err := json.Unmarshal(b, &e); err != nil {
			return resp, "", fmt.Errorf("error body %q: %w", b, err)
		}
		msg = e.Error
	}
	return resp, msg, nil
}

// freeFDs returns the n lowest descriptor numbers that process pid does not
// use, once its set of descriptors has stopped changing (what a finished
// request held is closed a moment after its answer).
func freeFDs(t *testing.T, pid, n int) []int {
	t.Helper()
	held := openFDs(t, pid)
	for stable, deadline := 0, time.Now().Add(10*time.Second); stable < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		now := openFDs(t, pid)
		if slices.Equal(now, held) {
			stable++
		} else {
			held, stable = now, 0
		}
	}
	var free []int
	for fd := 0; len(free) < n; fd++ {
		if !slices.Contains(held, fd) {
			free = append(free, fd)
		}
	}
	return free
}

// openFDs lists the descriptors process pid holds, in order.
func openFDs(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil {
			fds = append(fds, fd)
		}
	}
	slices.Sort(fds)
	return fds
}

// fdTable describes process pid's descriptors, for a failure message.
func fdTable(pid int) string {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		fmt.Fprintf(&b, "%s=%s ", e.Name(), target)
	}
	var lim unix.Rlimit
	unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim)
	fmt.Fprintf(&b, "(RLIMIT_NOFILE %d)", lim.Cur)
	return b.String()
}

// loggedServer is "rexec serve" run as a process of its own, its JSON log
// (stderr) kept.
type loggedServer struct {
	cmd     *exec.Cmd
	url     string
	log     *syncBuffer
	logDone chan struct{} // closed when the log reaches its end
}

// logLine is what the tests read of a line of the server's log.
type logLine struct {
	Level, Message, Error, Addr string
}

// startServer starts "rexec serve -p 0 --kill-grace 1s args..." after setup
// (if not nil) has adjusted the command, and returns once the server logs
// that it listens. The process is killed at the end of the test if it still
// runs.
func startServer(t *testing.T, setup func(*exec.Cmd), args ...string) *loggedServer {
	t.Helper()
	cmd := rexecCmd(t, nil, append([]string{"serve", "-p", "0", "--kill-grace", "1s"}, args...)...)
	if setup != nil {
		setup(cmd)
	}
	logr, logw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logw
	err = cmd.Start()
	logw.Close()
	if err != nil {
		logr.Close()
		t.Fatal(err)
	}
	s := &loggedServer{cmd: cmd, log: &syncBuffer{}, logDone: make(chan struct{})}
	go func() {
		defer close(s.logDone)
		io.Copy(s.log, logr)
		logr.Close()
	}()
	l, ok := s.waitLine(60*time.Second, func(l logLine) bool { return l.Message == "listening" })
	if !ok {
		t.Fatalf("the server did not listen; its log:\n%s", s.log.String())
	}
	s.url = "http://" + l.Addr
	return s
}

// waitLine waits up to d for a line of the log that match accepts, and
// reports whether one came (false too when the log ended without it).
func (s *loggedServer) waitLine(d time.Duration, match func(logLine) bool) (logLine, bool) {
	deadline := time.Now().Add(d)
	for {
		ended := false
		select {
		case <-s.logDone:
			ended = true
		default:
		}
		for line := range strings.Lines(s.log.String()) {
			var l logLine
			if strings.HasSuffix(line, "\n") && json.Unmarshal([]byte(line), &l) == nil && match(l) {
				return l, true
			}
		}
		if ended || time.Now().After(deadline) {
			return logLine{}, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitExit waits up to d for cmd, started, to exit, and returns its exit
// code. When d passes first it kills cmd and reports false.
func waitExit(cmd *exec.Cmd, d time.Duration) (code int, inTime bool) {
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), true
	case <-timer.C:
		cmd.Process.Kill()
		<-done
		return cmd.ProcessState.ExitCode(), false
	}
}

// searchableByAll reports whether every user may enter dir and each folder
// above it.
func searchableByAll(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// copyFile copies src to a new file dst with mode perm.
func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, perm); err != nil { // whatever the umask
		t.Fatal(err)
	}
}
