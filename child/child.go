// Package child starts and supervises one OS process: its own process group,
// argv, cwd, environment, stdin, output pumps (or a pipe that its caller
// reads itself, pipe.go, or a pseudo-terminal, tty.go), timeout, escalating
// kill and reap. It knows nothing of HTTP, aliases or other processes, except for
// the one rule on a group that a crash of the server left behind:
// KillIfStillOurs kills it only if its leader is still the process that was
// started (interrupted.go).
//
// The exit of the process is watched through a pidfd in one epoll set shared
// by all children (exits.go, internal/fdwatch), so a running child holds
// neither an OS thread (os/exec's Wait parks one in waitid for every child)
// nor a goroutine; nor does a pipe that has been quiet for a while (see
// quietPipe). The process is reaped only once the pidfd says it has exited,
// and only after its group has been signalled: while the leader is an
// unreaped zombie its PID (and so the group ID) cannot be reused, so no
// signal can reach an unrelated process.
package child

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rexec/rexec/cgroup"
)

// Stream says which of the child's outputs a chunk came from.
type Stream uint8

const (
	Stdout Stream = iota
	Stderr
)

func (s Stream) String() string {
	if s == Stderr {
		return "stderr"
	}
	return "stdout"
}

// StderrMode says what happens to the child's standard error.
type StderrMode uint8

const (
	// StderrDiscard sends stderr to /dev/null.
	StderrDiscard StderrMode = iota
	// StderrMerge points stderr at the stdout pipe (2>&1): one ordered stream.
	StderrMerge
	// StderrSeparate gives stderr a pipe of its own; its chunks carry Stderr.
	StderrSeparate
)

// Reason says how a run ended.
type Reason string

const (
	ReasonExit       Reason = "exit"       // the process ended by itself
	ReasonDisconnect Reason = "disconnect" // its client went away
	ReasonTimeout    Reason = "timeout"    // Spec.Timeout expired
	ReasonShutdown   Reason = "shutdown"   // the server is stopping
	ReasonCancelled  Reason = "cancelled"  // somebody asked for it to stop
	ReasonOOM        Reason = "oom"        // the OOM killer killed it, its cgroup at its memory limit
)

// Spec describes the process to start.
type Spec struct {
	// Path is the executable. Without a slash it is looked up in the PATH
	// of Env (or of the server when Env has none).
	Path string
	// Args are argv[1:], passed unchanged: no shell is involved.
	Args []string
	// Dir is the working directory; empty means the server's. With a Dir,
	// the process's PWD is set to it.
	Dir string
	// Env is the complete environment of the process.
	Env []string
	// Stdin is copied to the process's standard input, which is closed at
	// its EOF. Nil means an empty stdin (/dev/null).
	Stdin io.Reader
	// Stderr says where standard error goes.
	Stderr StderrMode
	// Timeout, when positive, kills the group with ReasonTimeout.
	Timeout time.Duration
	// Credential, when set, runs the process as that user and group.
	Credential *syscall.Credential
	// RawOutput leaves standard output to the caller: no pump reads it.
	// The caller reads it through Process.RawPipe (straight into a
	// socket's writes, say) and ends with Pipe.End at its EOF, or
	// Pipe.Discard when it stops reading before. Output then carries only
	// stderr's chunks, with StderrSeparate, and nothing otherwise.
	RawOutput bool
	// Limits are the run's limits, enforced by its cgroup: they need
	// Options.Cgroups, in a mode that enforces them.
	Limits cgroup.Limits
	// TTY runs the process on a pseudo-terminal of Rows by Cols cells
	// (0: 24 by 80; each at most MaxTTYSize), as the leader of a session
	// of its own (tty.go). Stderr must be StderrMerge, RawOutput off; Stdin
	// is typed into the terminal, its end as ^D.
	TTY        bool
	Rows, Cols int
}

// Options are the supervisor's settings, the same for every process.
type Options struct {
	// KillGrace is the time between SIGTERM and SIGKILL to the group.
	KillGrace time.Duration
	// OutputSize is the capacity, in chunks, of the output channel.
	OutputSize int
	// OnExit, when set, is called once the process is reaped and its
	// Status is final, before Done is closed.
	OnExit func(*Process)
	// Cgroups, when set and not off, gives each process a cgroup of its
	// own: everything it starts is killed with it, and Spec.Limits hold.
	// Without it a process is killed by its process group, which a process
	// that makes a session of its own escapes.
	Cgroups *cgroup.Tree
}

const (
	defaultKillGrace = 5 * time.Second
	// chunkSize is the most one read from a pipe takes. Larger reads mean
	// fewer wake-ups and HTTP chunks on a fast stream (measured: 128 KiB
	// beats 64 KiB by ~15% and 256 KiB by nothing); a quiet child holds no
	// buffer at all.
	chunkSize = 128 << 10
	// pipeCloseWait bounds how long output is read after the whole group has
	// been sent SIGKILL: only a process that escaped the group (setsid) can
	// hold the pipe open that long, and it is not waited for.
	pipeCloseWait = time.Second
)

// Status is how a process ended. It is final once Done is closed.
type Status struct {
	// Code is the exit code, or -1 when a signal killed the process.
	Code int
	// Signal is the signal that killed the process, or 0.
	Signal syscall.Signal
	// Reason says why it ended.
	Reason Reason
	// Started is when the process started; Duration how long it ran.
	Started  time.Time
	Duration time.Duration
	// Usage is what its cgroup says it used; nil without a cgroup.
	Usage *cgroup.Usage
}

// Report is what the process's cgroup says it used, as the API writes it;
// nil without a cgroup.
func (s Status) Report() *cgroup.Report {
	if s.Usage == nil {
		return nil
	}
	return s.Usage.Report()
}

// SignalName is the signal's name, e.g. "SIGKILL", or "" when none.
func (s Status) SignalName() string {
	if s.Signal == 0 {
		return ""
	}
	if n := unix.SignalName(s.Signal); n != "" {
		return n
	}
	return fmt.Sprintf("SIG%d", int(s.Signal))
}

// ErrStartFailed is the kind of every error Start returns for a process that
// could not be started (no such executable or directory, permission denied).
// Two finer kinds tell why, when the reason is not the request's own:
var ErrStartFailed = errors.New("process could not be started")

// ErrNoResources is the kind of a failed start for want of something the
// machine or the server ran out of: file descriptors (EMFILE, ENFILE),
// processes (EAGAIN) or memory (ENOMEM). It is a condition of the server,
// not of the request: the same request may succeed later.
var ErrNoResources = errors.New("the server is out of resources")

// ErrArgTooLong is the kind of a failed start whose arguments and
// environment are larger than the operating system takes (E2BIG).
var ErrArgTooLong = errors.New("argument list too long")

// StartError is a failed start with the operating system's reason. It is of
// kind ErrStartFailed, and also ErrNoResources or ErrArgTooLong when the
// reason is one of theirs.
type StartError struct {
	Op  string // what failed: "exec", "cwd", "lookup", "pipe"
	Err error
}

func (e *StartError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *StartError) Unwrap() []error {
	switch {
	case errors.Is(e.Err, syscall.EMFILE), errors.Is(e.Err, syscall.ENFILE), errors.Is(e.Err, syscall.EAGAIN),
		errors.Is(e.Err, syscall.ENOMEM), errors.Is(e.Err, syscall.ENOBUFS):
		return []error{ErrStartFailed, ErrNoResources, e.Err}
	case errors.Is(e.Err, syscall.E2BIG):
		return []error{ErrStartFailed, ErrArgTooLong, e.Err}
	}
	return []error{ErrStartFailed, e.Err}
}

// Chunk is a piece of output as one read returned it. Its Data is valid
// until Release, which the receiver must call once it is done with it.
type Chunk struct {
	Stream Stream
	Data   []byte
	buf    *[]byte
}

// Release returns the chunk's buffer for reuse. Data must not be used after.
func (c Chunk) Release() {
	if c.buf != nil {
		bufPool.Put(c.buf)
	}
}

// bufPool holds read buffers. A pump takes one only once its pipe is
// readable, so a quiet child holds no buffer at all.
var bufPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// usePidfd is false only in tests of the fallback for kernels without pidfd
// (before 5.3), where the kernel leaves the PidFD field at -1 anyway.
var usePidfd = true

var devNull = sync.OnceValues(func() (*os.File, error) { return os.OpenFile(os.DevNull, os.O_RDWR, 0) })

// Process is one running (or finished) child.
type Process struct {
	pid   int
	pidfd int // -1 on kernels without pidfd
	opts  Options
	start time.Time

	out       chan Chunk
	pumpsLeft atomic.Int32
	pumpsDone chan struct{} // closed by the last pump, after closing out
	pipes     []*Pipe       // read ends of the output pipes
	rawPipe   *Pipe         // Spec.RawOutput: pipes[0], read by the caller
	discard   chan struct{} // closed by Discard
	discardMu sync.Once
	done      chan struct{} // closed after reap and OnExit
	stdinW    *os.File
	tty       *os.File      // the pseudo-terminal's master (Spec.TTY), else nil
	cg        *cgroup.Group // nil without cgroups

	mu         sync.Mutex // guards the fields below
	killReason Reason     // first reason a kill was asked for
	exited     bool       // the leader has exited (it may be an unreaped zombie)
	reaped     bool       // the leader is reaped: its PID may be reused, never signal it
	killTimer  *time.Timer
	timeout    *time.Timer
	status     Status
}

// Start starts the process described by spec in a process group of its own.
// A failed start returns an error of kind ErrStartFailed (see StartError).
func Start(spec Spec, opts Options) (*Process, error) {
	// argv is built here, not in resolve, so that it stays on the stack
	// (BenchmarkStart reports the allocations of a start).
	argv := append([]string{spec.Path}, spec.Args...)
	path, env, err := resolve(spec, argv)
	if err != nil {
		return nil, err
	}
	if err := CheckTTY(spec); err != nil {
		return nil, err
	}
	p := newProcess(opts.withDefaults())
	if err := p.makeCgroup(spec); err != nil {
		return nil, err
	}
	// The child's ends of its pipes are closed once it has started (or
	// failed to); ours only if the start fails.
	var std stdio
	defer std.closeChildEnds()
	if err := p.openStdio(&std, spec); err != nil {
		std.closeOurs()
		p.removeCgroup()
		return nil, err
	}
	if err := p.exec(spec, path, argv, env, std.files[:]); err != nil {
		std.closeOurs()
		p.removeCgroup()
		return nil, err
	}
	p.startPumps(spec)
	p.armTimeout(spec.Timeout)
	p.awaitExit()
	return p, nil
}

// withDefaults fills in the settings left zero (or negative).
func (o Options) withDefaults() Options {
	if o.KillGrace <= 0 {
		o.KillGrace = defaultKillGrace
	}
	if o.OutputSize < 0 {
		o.OutputSize = 0
	}
	return o
}

// resolve checks spec and its argv before anything is opened, and finds
// what to exec: the executable (looked up in PATH when spec.Path has no
// slash) and the environment (with PWD set to spec.Dir when there is one).
func resolve(spec Spec, argv []string) (path string, env []string, err error) {
	if err = checkDir(spec.Dir); err != nil {
		return "", nil, err
	}
	path, err = lookPath(spec.Path, spec.Env, spec.Dir)
	if err != nil {
		return "", nil, &StartError{Op: "lookup", Err: err}
	}
	env = spec.Env
	if spec.Dir != "" {
		env = withPWD(env, spec.Dir)
	}
	if err = CheckArgs(argv, env); err != nil {
		return "", nil, err
	}
	return path, env, nil
}

// checkDir fails unless dir is "" (the server's) or an existing directory.
func checkDir(dir string) error {
	if dir == "" {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return &StartError{Op: "cwd", Err: unwrapPathError(err)}
	}
	if !fi.IsDir() {
		return &StartError{Op: "cwd", Err: fmt.Errorf("%s: %w", dir, syscall.ENOTDIR)}
	}
	return nil
}

// newProcess is the Process of a start, before anything is opened for it.
func newProcess(opts Options) *Process {
	return &Process{
		opts:      opts,
		out:       make(chan Chunk, opts.OutputSize),
		pumpsDone: make(chan struct{}),
		discard:   make(chan struct{}),
		done:      make(chan struct{}),
	}
}

// stdio is the standard files of a process being started: what the child
// gets as descriptors 0, 1 and 2, and both ends of the pipes opened for
// them.
type stdio struct {
	files      [3]uintptr
	childEnds  []int      // closed once the child has started, or failed to
	childFiles []*os.File // the same, held as files (a terminal's slave)
	ours       []*os.File // closed only if the start fails
}

// openStdio opens the pipes spec asks for, /dev/null standing in for the
// rest, or its terminal (openTTY), and hands p its ends: stdinW and the
// output pipes.
func (p *Process) openStdio(std *stdio, spec Spec) error {
	if spec.TTY {
		return p.openTTY(std, spec)
	}
	null, err := devNull()
	if err != nil {
		return &StartError{Op: "open " + os.DevNull, Err: err}
	}
	nullFd := null.Fd()
	std.files = [3]uintptr{nullFd, 0, nullFd}
	if spec.Stdin != nil {
		if p.stdinW, std.files[0], err = std.pipe(false); err != nil {
			return err
		}
	}
	outR, outW, err := std.pipe(true)
	if err != nil {
		return err
	}
	std.files[1] = outW
	p.pipes = append(p.pipes, &Pipe{p: p, f: outR, s: Stdout})
	switch spec.Stderr {
	case StderrMerge:
		std.files[2] = outW
	case StderrSeparate:
		errR, errW, err := std.pipe(true)
		if err != nil {
			return err
		}
		std.files[2] = errW
		p.pipes = append(p.pipes, &Pipe{p: p, f: errR, s: Stderr})
	}
	return nil
}

// pipe returns our end of a new pipe, registered with the runtime's poller,
// and the child's, left blocking as programs expect of their stdio.
func (std *stdio) pipe(weRead bool) (*os.File, uintptr, error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, 0, &StartError{Op: "pipe", Err: err}
	}
	mine, theirs := fds[0], fds[1]
	if !weRead {
		mine, theirs = theirs, mine
	}
	std.childEnds = append(std.childEnds, theirs)
	if err := syscall.SetNonblock(mine, true); err != nil {
		syscall.Close(mine)
		return nil, 0, &StartError{Op: "pipe", Err: err}
	}
	f := os.NewFile(uintptr(mine), "pipe")
	std.ours = append(std.ours, f)
	return f, uintptr(theirs), nil
}

// closeChildEnds closes the child's ends of the pipes: it has its copies.
func (std *stdio) closeChildEnds() {
	for _, fd := range std.childEnds {
		syscall.Close(fd)
	}
	for _, f := range std.childFiles {
		f.Close()
	}
}

// closeOurs closes our ends of the pipes, after a failed start.
func (std *stdio) closeOurs() {
	for _, f := range std.ours {
		f.Close()
	}
}

// exec forks and execs path with files as its descriptors 0, 1 and 2, as
// the leader of a new process group, and records its PID and pidfd (-1 on a
// kernel without pidfd).
func (p *Process) exec(spec Spec, path string, argv, env []string, files []uintptr) error {
	pidfd := -1
	var pidfdp *int
	if usePidfd {
		pidfdp = &pidfd
	}
	attr := &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			PidFD:      pidfdp,
			Credential: spec.Credential,
			// If the server dies without a chance to clean up (SIGKILL,
			// the OOM killer), the kernel kills the leader too. Linux ties
			// this to the thread that forked, but the Go runtime never ends
			// its threads unless a goroutine locked to one exits, which
			// rexec never does. What the leader started itself survives it:
			// run rexec under an init (tini) or in its own cgroup for that.
			Pdeathsig: syscall.SIGKILL,
		},
	}
	if spec.TTY {
		ttyAttr(attr.Sys)
	}
	p.start = time.Now()
	pid, err := p.startIn(attr, func() (int, error) {
		pid, _, err := syscall.StartProcess(path, argv, attr)
		return pid, err
	})
	if err != nil {
		if pid > 0 {
			// Started, but it could not be placed in its cgroup: it was
			// killed before it ran; reap it.
			var ws syscall.WaitStatus
			ignoringEINTR2(func() (int, error) { return syscall.Wait4(pid, &ws, syscall.WALL, nil) })
			if pidfd >= 0 {
				syscall.Close(pidfd)
			}
			return &StartError{Op: "cgroup", Err: err}
		}
		forgetPath(spec.Path)
		return execError(path, spec.Credential, err)
	}
	p.pid = pid
	p.pidfd = pidfd
	p.status.Started = p.start
	return nil
}

// execError is the StartError of a failed exec of path. An EPERM when
// switching user or group says what that takes.
func execError(path string, cred *syscall.Credential, err error) error {
	if cred != nil && err == syscall.EPERM {
		return &StartError{Op: "exec", Err: fmt.Errorf("%s as uid %d gid %d: %w (switching user or group needs root, or CAP_SETUID and CAP_SETGID)",
			path, cred.Uid, cred.Gid, err)}
	}
	return &StartError{Op: "exec", Err: fmt.Errorf("%s: %w", path, err)}
}

// startPumps starts reading the output pipes, each on a goroutine of its own
// (none with RawOutput: the caller reads), and feeding stdin (a terminal's
// always: its end is typed).
func (p *Process) startPumps(spec Spec) {
	p.pumpsLeft.Store(int32(len(p.pipes)))
	pumped := p.pipes
	if spec.RawOutput {
		p.rawPipe, pumped = p.pipes[0], p.pipes[1:]
	}
	for _, op := range pumped {
		go p.startPump(op)
	}
	switch {
	case p.tty != nil:
		go p.feedTTY(spec.Stdin)
	case p.stdinW != nil:
		go p.feedStdin(spec.Stdin)
	}
}

// armTimeout kills the group with ReasonTimeout once d has passed; d <= 0
// is no timeout.
func (p *Process) armTimeout(d time.Duration) {
	if d <= 0 {
		return
	}
	p.mu.Lock()
	p.timeout = time.AfterFunc(d, func() { p.Kill(ReasonTimeout) })
	p.mu.Unlock()
}

// awaitExit has supervise run once the leader exits: when its pidfd turns
// readable in the fdwatch set, or, without a pidfd, after a goroutine's
// waitid.
func (p *Process) awaitExit() {
	if p.pidfd >= 0 && watchExit(p) == nil {
		return
	}
	// A watch refused cannot happen short of running out of memory for
	// epoll; the process runs, so supervise it the old way rather than
	// lose it.
	go p.superviseWithoutPidfd()
}

// Pid is the process ID, which is also its process group ID.
func (p *Process) Pid() int { return p.pid }

// Output delivers the process's output as it is read. It is closed once every
// output pipe has reached EOF. Each chunk must be Released. With
// Spec.RawOutput it delivers only stderr's chunks (with StderrSeparate), and
// is closed once stderr has reached EOF and the caller is done with the raw
// pipe (Pipe.End, or Pipe.Discard and the drain to EOF).
func (p *Process) Output() <-chan Chunk { return p.out }

// Done is closed once the process is reaped and its Status is final.
func (p *Process) Done() <-chan struct{} { return p.done }

// Status is how the process ended; valid once Done is closed.
func (p *Process) Status() Status {
	<-p.done
	return p.status
}

// Wait waits for the process to be reaped and returns its Status.
func (p *Process) Wait() Status { return p.Status() }

// Discard tells the pumps that nobody reads Output any more: output is read
// and dropped from now on, so the child is never blocked by a full pipe.
// A raw pipe (Spec.RawOutput) has no pump to tell until its reader gives
// it up with Pipe.Discard.
func (p *Process) Discard() {
	p.discardMu.Do(func() { close(p.discard) })
}

// Kill terminates the process group: SIGTERM now, SIGKILL after KillGrace;
// a run with a terminal gets SIGHUP just before the SIGTERM, as at a
// terminal's hang-up. It is idempotent; the first reason given is the one
// Status reports. Killing a process that has already exited or been reaped
// does nothing.
func (p *Process) Kill(reason Reason) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped || p.exited || p.killReason != "" {
		return
	}
	p.killReason = reason
	if p.tty != nil {
		p.signalAll(syscall.SIGHUP)
	}
	p.signalAll(syscall.SIGTERM)
	p.killTimer = time.AfterFunc(p.opts.KillGrace, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.reaped {
			signalGroup(p.pid, syscall.SIGKILL)
			if p.cg != nil {
				p.cg.Kill()
			}
		}
	})
}

// Signal sends sig to the process group and to everything else in the
// cgroup, as Kill does, without killing: SIGINT, SIGUSR1 ... for the
// program to handle; each process gets it once. A run that has been reaped
// is os.ErrProcessDone: its PID may name another process by now.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	p.signalAll(sig)
	return nil
}

func signalGroup(pid int, sig syscall.Signal) {
	// ESRCH (nobody left) is success; nothing else can fail for our own child.
	syscall.Kill(-pid, sig)
}

func (p *Process) feedStdin(r io.Reader) {
	// Errors end the feed: EPIPE when the child closed its stdin or exited,
	// ErrClosed when the supervisor closed the pipe after reaping.
	io.Copy(p.stdinW, r)
	p.stdinW.Close()
}

// supervise runs once the leader has exited (it is still an unreaped zombie):
// it clears the rest of its group, reaps it and publishes its Status.
func (p *Process) supervise() {
	p.mu.Lock()
	p.exited = true
	p.mu.Unlock()

	// The leader is a zombie now, so its PID still names the group. Ask
	// whatever it left behind to stop, let it finish its output within the
	// grace, then insist.
	// A process that left the group (setsid) but not the cgroup is asked
	// too, and given the same grace.
	p.signalAll(syscall.SIGTERM)
	graceEnd := time.Now().Add(p.opts.KillGrace)
	select {
	case <-p.pumpsDone:
	default:
		t := time.NewTimer(p.opts.KillGrace)
		select {
		case <-p.pumpsDone:
		case <-t.C:
		}
		t.Stop()
	}
	p.waitCgroup(graceEnd)
	signalGroup(p.pid, syscall.SIGKILL)
	usage := p.endCgroup()
	select {
	case <-p.pumpsDone:
	case <-time.After(pipeCloseWait):
		// Held open by a process outside the group: stop reading.
		for _, op := range p.pipes {
			p.closePipe(op)
		}
		<-p.pumpsDone
	}

	p.mu.Lock()
	p.reaped = true
	if p.killTimer != nil {
		p.killTimer.Stop()
	}
	if p.timeout != nil {
		p.timeout.Stop()
	}
	reason := p.killReason
	p.mu.Unlock()

	// The leader is a zombie: this wait returns at once.
	var ws syscall.WaitStatus
	_, err := ignoringEINTR2(func() (int, error) { return syscall.Wait4(p.pid, &ws, 0, nil) })
	st := Status{Started: p.start, Duration: time.Since(p.start), Code: -1, Reason: reason}
	if st.Reason == "" {
		st.Reason = ReasonExit
	}
	if err == nil {
		switch {
		case ws.Exited():
			st.Code = ws.ExitStatus()
		case ws.Signaled():
			st.Signal = ws.Signal()
		}
	}
	if usage != nil {
		st.Usage = usage
		if st.Reason == ReasonExit && st.Signal == syscall.SIGKILL && usage.OOMKills > 0 {
			st.Reason = ReasonOOM
		}
	}
	if p.pidfd >= 0 {
		syscall.Close(p.pidfd)
	}
	for _, op := range p.pipes {
		op.f.Close()
	}
	if p.stdinW != nil {
		p.stdinW.Close()
	}
	p.status = st
	if p.opts.OnExit != nil {
		p.opts.OnExit(p)
	}
	close(p.done)
}

// superviseWithoutPidfd is the fallback for kernels before 5.3: a goroutine
// blocks a thread in waitid until the leader exits (without reaping it).
func (p *Process) superviseWithoutPidfd() {
	var info unix.Siginfo
	ignoringEINTR(func() error {
		return unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
	})
	p.supervise()
}

func ignoringEINTR2[T any](fn func() (T, error)) (T, error) {
	for {
		v, err := fn()
		if err != syscall.EINTR {
			return v, err
		}
	}
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != syscall.EINTR {
			return err
		}
	}
}

// unwrapPathError turns "fork/exec /x: no such file" into "/x: no such file".
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
