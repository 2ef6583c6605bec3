package child

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// A run with a terminal (Spec.TTY) has a pseudo-terminal instead of pipes:
// its slave is the child's stdin, stdout and stderr, and the child is the
// leader of a session of its own with the slave as its controlling terminal,
// so isatty is true, programs colour and draw, and the line discipline is
// the terminal's (Ctrl-C typed as 0x03 interrupts, ^D ends a line's input).
// The master is ours: its reads are the output (Output, as for a pipe: a
// tty run never has a raw pipe), its writes are typed input. Once every
// process has closed the slave a read of the master fails with EIO, which
// ends the output as EOF ends a pipe's.
//
// The child starts through the same startIn as any other, so it is born in
// its cgroup and killed with it. Its session is its process group: the group
// kill reaches it as it reaches any run.

// Default and greatest size of a terminal, in character cells.
const (
	DefaultRows = 24
	DefaultCols = 80
	MaxTTYSize  = 1000
)

// ErrTTY is the kind of a terminal asked for wrongly: a size out of bounds,
// rows or cols without a terminal, stderr other than merged. Start and
// Resize return it, and so does CheckTTY before a start.
var ErrTTY = errors.New("invalid terminal")

// ErrNotTTY is Resize's answer for a run without a terminal.
var ErrNotTTY = errors.New("the run has no terminal")

// CheckTTY checks the terminal spec asks for, as Start does: rows and cols
// each 0 (the default, 24 by 80) or 1 to MaxTTYSize, only with TTY; stderr
// merged (the terminal is stdout and stderr at once); no raw pipe.
func CheckTTY(spec Spec) error {
	if !spec.TTY {
		if spec.Rows != 0 || spec.Cols != 0 {
			return fmt.Errorf("%w: rows and cols set the size of a terminal: ask for one (tty)", ErrTTY)
		}
		return nil
	}
	if err := checkSize(spec.Rows, spec.Cols, true); err != nil {
		return err
	}
	if spec.Stderr != StderrMerge {
		return fmt.Errorf("%w: a terminal is the run's stdout and stderr at once: stderr must be merged, not %s",
			ErrTTY, stderrName(spec.Stderr))
	}
	if spec.RawOutput {
		return fmt.Errorf("%w: a terminal's output is read by its pump, never as a raw pipe", ErrTTY)
	}
	return nil
}

// checkSize checks a terminal's size; zeros are the default when
// zeroOK.
func checkSize(rows, cols int, zeroOK bool) error {
	low := 1
	if zeroOK {
		low = 0
	}
	if rows < low || rows > MaxTTYSize || cols < low || cols > MaxTTYSize {
		return fmt.Errorf("%w: rows and cols must each be 1 to %d, not %d and %d", ErrTTY, MaxTTYSize, rows, cols)
	}
	return nil
}

func stderrName(m StderrMode) string {
	switch m {
	case StderrDiscard:
		return "discard"
	case StderrSeparate:
		return "separate"
	}
	return "merge"
}

// openTTY opens the run's pseudo-terminal at its size: the slave is the
// child's stdin, stdout and stderr, closed here once it has started; the
// master is the output, read as a pipe is, and a second descriptor of it,
// stdinW, is where input is typed.
func (p *Process) openTTY(std *stdio, spec Spec) error {
	master, slave, err := pty.Open()
	if err != nil {
		return &StartError{Op: "pty", Err: err}
	}
	std.childFiles = append(std.childFiles, slave)
	std.ours = append(std.ours, master)
	rows, cols := spec.Rows, spec.Cols
	if rows == 0 {
		rows = DefaultRows
	}
	if cols == 0 {
		cols = DefaultCols
	}
	// Fd puts the slave in blocking mode, as programs expect of their
	// stdio; it is no longer used from Go.
	fd := slave.Fd()
	if err := unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)}); err != nil {
		return &StartError{Op: "pty", Err: err}
	}
	std.files = [3]uintptr{fd, fd, fd}
	in, err := dupFile(master)
	if err != nil {
		return &StartError{Op: "pty", Err: err}
	}
	std.ours = append(std.ours, in)
	p.tty, p.stdinW = master, in
	p.pipes = append(p.pipes, &Pipe{p: p, f: master, s: Stdout})
	return nil
}

// dupFile is a second *os.File of f's open file (non-blocking, as f is, and
// so in the runtime's poller too): closing one leaves the other open.
func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	cerr := rc.Control(func(fd uintptr) { nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

// ttyAttr makes sys start the child as the leader of a session of its own,
// with its stdin (the slave) as its controlling terminal. A session leader
// cannot also be made a group leader (setpgid fails on it), nor need it be:
// a new session is a new process group, whose ID is the child's PID.
func ttyAttr(sys *syscall.SysProcAttr) {
	sys.Setpgid = false
	sys.Setsid = true
	sys.Setctty = true
	sys.Ctty = 0 // a descriptor of the child's
}

// feedTTY types r into the terminal, then the end of input: the terminal's
// VEOF character (^D), as a person at a terminal would, rather than a
// closed pipe: the terminal stays the child's. A line left without its
// newline takes a second ^D, the first only pushing it to the reader, as
// at a terminal. A nil r is an empty input: ^D at once. A write that fails
// (the child gone, the master closed after the reap) ends the feed without
// the ^D.
func (p *Process) feedTTY(r io.Reader) {
	defer p.stdinW.Close()
	w := &lastByteWriter{w: p.stdinW}
	if r != nil {
		if _, err := io.Copy(w, r); err != nil {
			return
		}
	}
	eof := []byte{veof(p.stdinW)}
	if w.n > 0 && w.last != '\n' {
		eof = append(eof, eof[0])
	}
	p.stdinW.Write(eof)
}

// lastByteWriter counts what it writes and keeps its last byte.
type lastByteWriter struct {
	w    io.Writer
	n    int64
	last byte
}

func (l *lastByteWriter) Write(b []byte) (int, error) {
	n, err := l.w.Write(b)
	if n > 0 {
		l.n += int64(n)
		l.last = b[n-1]
	}
	return n, err
}

// veof is the terminal's end-of-input character now (a program may have
// changed it), ^D when it cannot be read or is disabled.
func veof(f *os.File) byte {
	c := byte(4) // ^D
	rc, err := f.SyscallConn()
	if err != nil {
		return c
	}
	rc.Control(func(fd uintptr) {
		if t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS); err == nil && t.Cc[unix.VEOF] != 0 {
			c = t.Cc[unix.VEOF]
		}
	})
	return c
}

// Resize sets the size of the run's terminal, in character cells (each 1
// to MaxTTYSize): the kernel sends SIGWINCH to its foreground process group
// when the size changes. A run without a terminal is ErrNotTTY.
func (p *Process) Resize(rows, cols int) error {
	if p.tty == nil {
		return ErrNotTTY
	}
	if err := checkSize(rows, cols, false); err != nil {
		return err
	}
	rc, err := p.tty.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
	}); err != nil {
		return os.ErrProcessDone // the master is closed: the run is over
	}
	return ierr
}

// TTY reports whether the run has a terminal.
func (p *Process) TTY() bool { return p.tty != nil }
