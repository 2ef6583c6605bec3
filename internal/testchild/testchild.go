// Package testchild turns a test binary into the fake children that tests
// start as real processes (as os/exec's own tests do): call Main first thing
// in TestMain. When the environment variable TESTCHILD names a mode, the
// binary acts as that child and exits; otherwise Main returns.
package testchild

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// Env is the variable that selects a mode.
const Env = "TESTCHILD"

// Command returns the path of the test binary and the environment entry that
// makes it act as mode. Under -race, also pass RaceEnv, or every fake child
// sleeps a second at exit (ThreadSanitizer's atexit_sleep_ms).
func Command(mode string) (path string, env string) {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return exe, Env + "=" + mode
}

// LeakOptions are the goroutines that live as long as the program by design,
// for goleak.VerifyTestMain.
func LeakOptions() []goleak.Option {
	return []goleak.Option{goleak.IgnoreTopFunction("golang.org/x/sys/unix.EpollWait"),
		goleak.IgnoreAnyFunction("github.com/rexec/rexec/internal/fdwatch.(*watcher).loop")}
}

// RaceEnv stops the race detector's one-second sleep at exit of a child.
const RaceEnv = "GORACE=atexit_sleep_ms=0"

// Main runs the mode named by $TESTCHILD, if any, and exits.
func Main() {
	mode := os.Getenv(Env)
	if mode == "" {
		return
	}
	os.Exit(run(mode, os.Args[1:]))
}

func run(mode string, args []string) int {
	out := os.Stdout
	switch mode {
	case "echo": // each argument on a line of its own
		for _, a := range args {
			fmt.Fprintln(out, a)
		}
	case "exit": // exit with code args[0]
		code, _ := strconv.Atoi(args[0])
		return code
	case "cat": // stdin to stdout
		io.Copy(out, os.Stdin)
	case "lines": // args[0] lines, each written alone, args[1] apart
		n, _ := strconv.Atoi(args[0])
		d, _ := time.ParseDuration(args[1])
		for i := 0; i < n; i++ {
			fmt.Fprintf(out, "line %d\n", i)
			time.Sleep(d)
		}
	case "gen": // args[0] bytes of a repeating pattern, in odd-sized writes
		n, _ := strconv.Atoi(args[0])
		writeGen(out, n)
	case "quiet-gen": // sleep args[0], write args[1] bytes as gen does, exit with code args[2]
		d, _ := time.ParseDuration(args[0])
		time.Sleep(d)
		n, _ := strconv.Atoi(args[1])
		writeGen(out, n)
		code, _ := strconv.Atoi(args[2])
		return code
	case "longline": // one line of args[0] 'x' bytes, then "end\n"
		n, _ := strconv.Atoi(args[0])
		out.WriteString(strings.Repeat("x", n) + "\nend\n")
	case "both": // interleaved stdout and stderr lines
		for i := 0; i < 3; i++ {
			fmt.Fprintf(os.Stdout, "out %d\n", i)
			time.Sleep(5 * time.Millisecond)
			fmt.Fprintf(os.Stderr, "err %d\n", i)
			time.Sleep(5 * time.Millisecond)
		}
	case "env": // the environment, one variable a line
		for _, kv := range os.Environ() {
			fmt.Fprintln(out, kv)
		}
	case "args": // argv[1:] as they arrived, NUL-free, one a line, quoted
		for _, a := range args {
			fmt.Fprintf(out, "%q\n", a)
		}
	case "hang": // say ready, then wait forever
		fmt.Fprintln(out, "ready")
		select {}
	case "late-ready": // sleep args[0], say ready, then wait forever
		d, _ := time.ParseDuration(args[0])
		time.Sleep(d)
		fmt.Fprintln(out, "ready")
		select {}
	case "ignore-term": // ignore SIGTERM, say ready, wait forever
		signal.Ignore(syscall.SIGTERM)
		fmt.Fprintln(out, "ready")
		select {}
	case "term-exit": // on SIGTERM print "bye" and exit 7
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		fmt.Fprintln(out, "ready")
		<-ch
		fmt.Fprintln(out, "bye")
		return 7
	case "grandchild": // start a grandchild that hangs, print its pid, hang
		self, _ := os.Executable()
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), Env+"=hang")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(out, cmd.Process.Pid)
		if len(args) > 0 && args[0] == "exit" {
			return 0 // leave the grandchild behind, holding stdout
		}
		select {}
	case "callback": // post progress and a result back to rexec, print the token, then wait for stdin's end
		url, id, token := os.Getenv("REXEC_URL"), os.Getenv("REXEC_RUN_ID"), os.Getenv("REXEC_RUN_TOKEN")
		post := func(what, body string) string {
			req, _ := http.NewRequest("POST", url+"/scripts/v1/"+what+"/"+id, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err.Error()
			}
			resp.Body.Close()
			return resp.Status
		}
		fmt.Fprintln(out, "token", token)
		fmt.Fprintln(out, "progress", post("progress", `{"task":2,"task_total":5,"task_title":"from the script"}`))
		fmt.Fprintln(out, "result", post("result", `{"answer":42}`))
		if len(args) > 0 && args[0] == "wait" {
			time.Sleep(2 * time.Second)
		}
	case "progress-mix": // a task line, a progress callback, a subtask line, then wait for stdin's end
		url, id, token := os.Getenv("REXEC_URL"), os.Getenv("REXEC_RUN_ID"), os.Getenv("REXEC_RUN_TOKEN")
		fmt.Fprintln(out, "[1/3] From a line")
		time.Sleep(400 * time.Millisecond) // past the save interval: the line's progress is saved
		req, _ := http.NewRequest("POST", url+"/scripts/v1/progress/"+id,
			strings.NewReader(`{"task":2,"task_total":3,"task_title":"From the callback"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			fmt.Fprintln(os.Stderr, "progress-mix: callback failed:", err)
			return 3
		}
		resp.Body.Close()
		fmt.Fprintln(out, "[50%] Half of it")
		io.Copy(io.Discard, os.Stdin)
	case "escapee": // start a grandchild in a session of its own (setsid), holding no pipe; print its pid; args[0] "exit" or hang
		self, _ := os.Executable()
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), Env+"=hang")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(out, cmd.Process.Pid)
		if len(args) > 0 && args[0] == "exit" {
			return 0
		}
		select {}
	case "daemon": // double-fork a daemon (setsid, parent gone, no pipe held), print its pid, exit
		self, _ := os.Executable()
		cmd := exec.Command(self, "exit")
		cmd.Env = append(os.Environ(), Env+"=escapee")
		b, err := cmd.Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		out.Write(b)
	case "forkbomb": // start hanging children until a fork fails; print how many, then hang
		self, _ := os.Executable()
		n := 0
		for ; n < 10000; n++ {
			cmd := exec.Command(self)
			cmd.Env = append(os.Environ(), Env+"=hang")
			if err := cmd.Start(); err != nil {
				fmt.Fprintln(out, "fork failed after", n, err)
				break
			}
		}
		fmt.Fprintln(out, "started", n)
		select {}
	case "memhog": // touch args[0] MiB, one MiB at a time, then print "held"
		n, _ := strconv.Atoi(args[0])
		var keep [][]byte
		for i := range n {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = byte(i + 1)
			}
			keep = append(keep, b)
		}
		fmt.Fprintln(out, "held", len(keep))
	case "spin": // burn CPU on args[1] threads for args[0], then print the wall time
		d, _ := time.ParseDuration(args[0])
		threads := 1
		if len(args) > 1 {
			threads, _ = strconv.Atoi(args[1])
		}
		deadline := time.Now().Add(d)
		done := make(chan struct{})
		for range threads {
			go func() {
				for time.Now().Before(deadline) {
				}
				done <- struct{}{}
			}()
		}
		for range threads {
			<-done
		}
		fmt.Fprintln(out, "spun")
	case "tty": // on a terminal: report it, then what is typed and the signals it gets (see tty); args[0] "ignore-term"
		return tty(out, len(args) > 0 && args[0] == "ignore-term")
	case "selfkill": // kill itself with signal args[0]
		n, _ := strconv.Atoi(args[0])
		fmt.Fprintln(out, "dying")
		syscall.Kill(os.Getpid(), syscall.Signal(n))
		select {}
	default:
		fmt.Fprintf(os.Stderr, "testchild: unknown mode %q\n", mode)
		return 2
	}
	return 0
}

// tty is the mode of a child on a terminal. It prints "isatty" and whether
// each of stdin, stdout and stderr is a terminal, "size ROWS COLS" of
// stdin's and "ready"; then, as they come, "read %q" for each read of stdin
// (a line, in the terminal's canonical mode), "winch ROWS COLS" on SIGWINCH,
// "usr1" on SIGUSR1, and "hup" or "term" before exiting 3 on SIGHUP or
// SIGTERM; at stdin's end, "eof" and exit 0. SIGINT is left to its default:
// Ctrl-C kills it. With ignoreTerm it ignores SIGTERM: which of SIGHUP and
// SIGTERM sent together it sees first is not certain, the hang-up is.
func tty(out *os.File, ignoreTerm bool) int {
	isatty := func(fd int) bool { _, err := unix.IoctlGetTermios(fd, unix.TCGETS); return err == nil }
	size := func() string {
		ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%d %d", ws.Row, ws.Col)
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGWINCH, syscall.SIGUSR1, syscall.SIGHUP, syscall.SIGTERM)
	if ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	fmt.Fprintf(out, "isatty %v %v %v\n", isatty(0), isatty(1), isatty(2))
	fmt.Fprintf(out, "size %s\n", size())
	fmt.Fprintln(out, "ready")
	eof := make(chan struct{})
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := os.Stdin.Read(b)
			if n > 0 {
				fmt.Fprintf(out, "read %q\n", b[:n])
			}
			if err != nil {
				close(eof)
				return
			}
		}
	}()
	for {
		select {
		case <-eof:
			fmt.Fprintln(out, "eof")
			return 0
		case s := <-sigs:
			switch s {
			case syscall.SIGWINCH:
				fmt.Fprintf(out, "winch %s\n", size())
			case syscall.SIGUSR1:
				fmt.Fprintln(out, "usr1")
			case syscall.SIGHUP:
				fmt.Fprintln(out, "hup")
				return 3
			case syscall.SIGTERM:
				fmt.Fprintln(out, "term")
				return 3
			}
		}
	}
}

// genByte is byte i of what the gen modes write.
func genByte(i int) byte { return byte(i*7 + i/251) }

// writeGen writes n bytes of the gen pattern in 12,345-byte writes.
func writeGen(out io.Writer, n int) {
	w := bufio.NewWriterSize(out, 12345)
	for i := range n {
		w.WriteByte(genByte(i))
	}
	w.Flush()
}

// CheckGen says how out differs from the n bytes the gen modes write, or
// returns nil.
func CheckGen(out []byte, n int) error {
	if len(out) != n {
		return fmt.Errorf("%d bytes, want %d", len(out), n)
	}
	for i := range out {
		if out[i] != genByte(i) {
			return fmt.Errorf("byte %d = %d, want %d", i, out[i], genByte(i))
		}
	}
	return nil
}

// Gone reports whether pid no longer names a live process: it does not exist
// or is a zombie waiting for a parent that is not the caller.
func Gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// WaitGone polls until pid is gone or d passes; it reports whether it went.
func WaitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if Gone(pid) {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return Gone(pid)
}
