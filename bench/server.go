package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// binaries are the programs the benchmark runs.
type binaries struct {
	rexec string // the server
	gen   string // the generator helper, bench/gen
}

// buildAll builds rexec (unless prebuilt is given) and the generator into
// dir, from the module root of the current directory.
func buildAll(ctx context.Context, dir, prebuilt string) (binaries, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return binaries{}, err
	}
	b := binaries{rexec: prebuilt, gen: filepath.Join(dir, "gen")}
	if b.rexec == "" {
		b.rexec = filepath.Join(dir, "rexec")
		if err := goBuild(ctx, root, b.rexec, "."); err != nil {
			return b, err
		}
	}
	if err := goBuild(ctx, root, b.gen, "./bench/gen"); err != nil {
		return b, err
	}
	return b, nil
}

// moduleRoot is the directory of the go.mod governing the current directory.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module: run from the rexec repository")
	}
	return filepath.Dir(gomod), nil
}

func goBuild(ctx context.Context, root, out, pkg string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	progress("built %s in %s", pkg, time.Since(start).Round(time.Millisecond))
	return nil
}

// server is the rexec process under test.
type server struct {
	cmd     *exec.Cmd
	pid     int
	name    string // in the notes on its log, when not the main server
	addr    string // host:port
	url     string // http://host:port, https:// with TLS
	logPath string
	exited  chan struct{} // closed once the process is reaped
	waitErr error         // valid once exited is closed
	onLine  func(raw []byte, level string)

	mu         sync.Mutex // guards the log counts
	levels     map[string]int
	runs       map[string]int // "run ended" lines by reason; "detached run ended" by script/ended
	badLines   []string       // the first warn/error lines
	stopped    bool           // we sent SIGTERM: an exit now is expected
	running    int            // processes the broker had at shutdown, -1 unknown
	endedAfter int            // runs that ended after the shutdown began
	cgroups    string         // the cgroup mode its start-up line names
}

// cgroupMode is the cgroup mode the server said at start-up it runs in
// ("v2", "hybrid", "v1", "off"), "" when it did not say.
func (s *server) cgroupMode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cgroups
}

// startServer starts rexec on 127.0.0.1 port 0, with the further flags
// args, and waits for its "listening" log line, which gives the address
// and the URL.
// Its log goes to a file in dir and is tallied by level.
func startServer(ctx context.Context, bin, dir string, args ...string) (*server, error) {
	s, err := launch(ctx, bin, launchSpec{logPath: filepath.Join(dir, "rexec.log"), wait: 10 * time.Second}, args...)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// launchSpec says how launch starts a server: its log file, its name in
// the report, how long it may take to listen, and what more is done with
// each line of its log (onLine, when set, after the tally).
type launchSpec struct {
	logPath string
	name    string
	wait    time.Duration
	onLine  func(raw []byte, level string)
}

// launch starts rexec on 127.0.0.1 port 0 as spec says, with the further
// flags args, and waits for its "listening" log line. A server that started
// but did not listen is returned stopped, with the error, for its log.
func launch(ctx context.Context, bin string, spec launchSpec, args ...string) (*server, error) {
	s := &server{
		name:    spec.name,
		logPath: spec.logPath,
		onLine:  spec.onLine,
		exited:  make(chan struct{}),
		levels:  map[string]int{},
		runs:    map[string]int{},
		running: -1,
	}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, append([]string{"-p", "0", "-i", "127.0.0.1"}, args...)...)
	s.cmd.Env = withoutRexecVars(os.Environ())
	s.cmd.SysProcAttr = &syscall.SysProcAttr{
		// A group of its own: a Ctrl-C at the terminal reaches only us, and
		// we stop the server ourselves, in order.
		Setpgid: true,
		// Should the benchmark die without stopping it, it is told too.
		Pdeathsig: syscall.SIGTERM,
	}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start rexec: %w", err)
	}
	s.pid = s.cmd.Process.Pid

	addr := make(chan logLine, 1)
	go func() {
		s.readLog(bufio.NewScanner(stderr), logFile, addr)
		logFile.Close()
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()

	t := time.NewTimer(spec.wait)
	defer t.Stop()
	select {
	case l := <-addr:
		s.addr, s.url = l.Addr, l.URL
		if s.url == "" { // a rexec from before TLS (-bin)
			s.url = "http://" + l.Addr
		}
		return s, nil
	case <-s.exited:
		return s, fmt.Errorf("%s exited before listening (%v); log in %s", s.label(), s.waitErr, s.logPath)
	case <-t.C:
		err = fmt.Errorf("%s did not log \"listening\" within %s", s.label(), spec.wait)
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	s.stop(&report{}) // what it logged is summed up by the caller, if it wants
	return s, err
}

// withoutRexecVars drops REXEC_* so that the caller's environment cannot
// change the server's settings.
func withoutRexecVars(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "REXEC_") {
			out = append(out, kv)
		}
	}
	return out
}

// logLine is what the benchmark reads from each JSON log line.
type logLine struct {
	Level   string `json:"level"`
	Message string `json:"message"`
	Addr    string `json:"addr"`
	URL     string `json:"url"`
	Reason  string `json:"reason"`
	Running *int   `json:"running"`
	Cgroups string `json:"cgroups"`
	Script  string `json:"script"` // of "detached run ended"
	Ended   string `json:"ended"`
}

// readLog copies the server's log to f, tallies it, and sends the
// "listening" line to addr.
func (s *server) readLog(sc *bufio.Scanner, f *os.File, addr chan<- logLine) {
	w := bufio.NewWriter(f)
	defer w.Flush()
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		b := sc.Bytes()
		w.Write(b)
		w.WriteByte('\n')
		var l logLine
		if json.Unmarshal(b, &l) != nil {
			l.Level = "not-json"
		}
		if l.Message == "listening" && l.Addr != "" {
			select {
			case addr <- l:
			default:
			}
		}
		s.mu.Lock()
		s.levels[l.Level]++
		if l.Message == "run ended" {
			s.runs[l.Reason]++
			if s.running >= 0 {
				s.endedAfter++
			}
		}
		if l.Message == "detached run ended" {
			s.runs[l.Script+"/"+l.Ended]++
		}
		if l.Running != nil {
			s.running = *l.Running
		}
		if l.Cgroups != "" {
			s.cgroups = l.Cgroups
		}
		switch l.Level {
		case "warn", "error", "fatal", "panic", "not-json":
			if len(s.badLines) < 10 {
				s.badLines = append(s.badLines, string(b))
			}
		}
		s.mu.Unlock()
		if s.onLine != nil {
			s.onLine(b, l.Level)
		}
	}
}

// label names the server in the report: "server", with its name if it
// has one.
func (s *server) label() string {
	if s.name == "" {
		return "server"
	}
	return "server (" + s.name + ")"
}

func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the server to exit: its shutdown
// terminates every child and waits up to its shutdown grace (10s) plus the
// kill grace (5s). After 20s it is killed.
func (s *server) stop(rep *report) {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	if !s.alive() {
		rep.problem("the %s had exited by itself before the end: %v", s.label(), s.waitErr)
		return
	}
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case <-s.exited:
		took := time.Since(start).Round(time.Millisecond)
		if s.waitErr != nil {
			rep.problem("%s exited with %v after SIGTERM (%s)", s.label(), s.waitErr, took)
		} else {
			rep.note("%s stopped cleanly %s after SIGTERM", s.label(), took)
		}
	case <-t.C:
		s.cmd.Process.Kill()
		<-s.exited
		rep.problem("%s did not stop within 20s of SIGTERM: killed", s.label())
	}
}

// logSummary reports the server's log: lines by level, runs by reason, and
// any warning or error line.
func (s *server) logSummary(rep *report) {
	<-s.exited // the log is complete
	s.mu.Lock()
	defer s.mu.Unlock()
	rep.note("%s log: %s; runs ended by reason: %s", s.label(), tally(s.levels), tally(s.runs))
	if stale := s.running - s.endedAfter; s.running >= 0 && stale > 0 {
		// Every run in flight at shutdown logs its end; the others were
		// entries left in the server's process table by runs long over.
		rep.problem("at shutdown the %s counted %d running processes, but only %d runs ended after it: %d stale entries",
			s.label(), s.running, s.endedAfter, stale)
	}
	for _, l := range s.badLines {
		rep.problem("%s logged: %s", s.label(), l)
	}
}

func tally(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}
