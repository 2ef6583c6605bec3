package child

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rexec/rexec/internal/fdwatch"
)

// Pipe is our end of one of a process's output pipes, non-blocking and
// registered with the runtime's poller. A pump reads it into Output (the
// rest of this file), except the standard output of a process started with
// Spec.RawOutput: Process.RawPipe hands that one to the caller, who reads
// it with the methods below, as its one reader:
//
//   - Wait and Read are called by one goroutine at a time until End or
//     Discard. The reading may move to another goroutine (from a handler to
//     a parked stream's, say) when the move is ordered, by a go statement or
//     a channel.
//   - SetReadDeadline may be called from any goroutine at any time: to wake
//     a reader blocked in Wait or Read, say. After End or Discard it does
//     no harm: a pump sets deadlines of its own.
//   - The reader ends with End once Wait or Read has reported the end of
//     the output, or with Discard when it stops reading before: a pump then
//     reads the rest and drops it, so the child never blocks on a full
//     pipe. Only the first of them counts, and the reader must not Wait or
//     Read after it. Until one of them, Output stays open and the process
//     is not reaped (Done stays open).
//
// The reader never closes the pipe. The supervisor does, after the reap,
// or earlier when a process that escaped the group (setsid) holds it open
// after the group's SIGKILL: Wait and Read then fail with an error other
// than a deadline's, which ends the output as io.EOF does.
type Pipe struct {
	p     *Process
	f     *os.File
	s     Stream
	grown bool
	ended atomic.Bool     // a raw pipe's End or Discard has been called
	rc    syscall.RawConn // f's: set by the pump, or by Wait for a raw pipe
	fd    int             // set by the pump

	mu     sync.Mutex     // guards the fields below
	watch  *fdwatch.Watch // set while the pump waits in the fdwatch set
	closed bool           // closed by closePipe: never watch it again
}

// RawPipe is the pipe of standard output of a process started with
// Spec.RawOutput, for the caller to read (see Pipe); nil for any other.
func (p *Process) RawPipe() *Pipe { return p.rawPipe }

// Wait waits until the pipe holds output and returns how many bytes it
// holds, reading none of them. It returns io.EOF once the pipe is empty and
// every writer has closed it, os.ErrDeadlineExceeded past the read
// deadline, and another error once the supervisor has closed the pipe. A
// pipe found full is grown, as a pump grows the pipes it reads.
func (op *Pipe) Wait() (int, error) {
	if op.rc == nil {
		op.initConn()
	}
	// What the poller's callback found, in one struct: a smaller frame for
	// a parked stream to wait in, and one allocation fewer.
	var w struct {
		n   int
		eof bool
	}
	err := op.rc.Read(func(fd uintptr) bool {
		w.n, w.eof = pending(int(fd))
		op.growIfFull(fd, w.n)
		return w.n > 0 || w.eof // or wait for the poller
	})
	if err != nil {
		return 0, err
	}
	if w.eof {
		return 0, io.EOF
	}
	return w.n, nil
}

// initConn sets rc, at a raw pipe's first Wait. It is kept out of Wait,
// whose frame every parked stream waits in: inlined, it grew that frame by
// a word (two under -race).
//
//go:noinline
func (op *Pipe) initConn() {
	op.rc, _ = op.f.SyscallConn() // fails only for a nil *os.File
}

// (TIOCINQ is FIONREAD under its other name: the bytes a pipe holds.)

// pending returns how many bytes the pipe fd holds, or eof once it is empty
// with every writer gone; 0 and false while it is empty for now.
func pending(fd int) (n int, eof bool) {
	if n, err := unix.IoctlGetInt(fd, unix.TIOCINQ); err == nil && n > 0 {
		return n, false
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if k, _ := unix.Poll(pfd, 0); k <= 0 || pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) == 0 {
		return 0, false
	}
	// Hung up: what the last writer wrote before it closed may have come
	// in since the first look.
	if n, err := unix.IoctlGetInt(fd, unix.TIOCINQ); err == nil && n > 0 {
		return n, false
	}
	return 0, true
}

// Read reads up to len(b) bytes of output; once Wait has counted n bytes,
// a Read of up to n does not block. It honours the read deadline, and ends
// as Wait does: io.EOF, or an error once the supervisor has closed the
// pipe.
func (op *Pipe) Read(b []byte) (int, error) { return op.f.Read(b) }

// SetReadDeadline sets the deadline of Wait and Read; a time in the past
// wakes a reader blocked in either. The zero time is none.
func (op *Pipe) SetReadDeadline(t time.Time) error { return op.f.SetReadDeadline(t) }

// End tells the process that its reader has reached the end of the output:
// io.EOF, or an error once the supervisor closed the pipe. Output closes
// and the supervisor goes on.
func (op *Pipe) End() {
	if op.ended.CompareAndSwap(false, true) {
		op.p.pumpEnded()
	}
}

// Discard tells the process that its reader has stopped before the end of
// the output: a pump takes the pipe over and drops what is left.
func (op *Pipe) Discard() {
	if op.ended.CompareAndSwap(false, true) {
		op.p.Discard()
		go op.p.startPump(op)
	}
}

// A pipe found full (a pump's read took defaultPipeSize bytes or more, or a
// raw pipe's Wait found as many) is grown to bigPipeSize: a child that
// writes fast then runs ahead of the reader instead of blocking every 64
// KiB, which roughly doubles the throughput of a big stream. Only chatty
// children pay for the fcntl; a failure (beyond /proc/sys/fs/pipe-max-size)
// leaves the pipe as it was.
const (
	defaultPipeSize = 64 << 10
	bigPipeSize     = 1 << 20
)

// growIfFull grows the pipe, once, when n bytes (read at once, or found
// waiting) say that it was full.
func (op *Pipe) growIfFull(fd uintptr, n int) {
	if !op.grown && n >= defaultPipeSize {
		op.grown = true
		unix.FcntlInt(fd, unix.F_SETPIPE_SZ, bigPipeSize)
	}
}

// quietPipe is how long a pump waits for output on a goroutine of its own.
// A pipe quiet for longer is watched in the fdwatch set instead, and its
// pump goroutine ends until output comes: a child that prints nothing for
// minutes costs no goroutine for its output, while one that writes a line
// every few milliseconds never leaves the runtime's poller.
const quietPipe = 50 * time.Millisecond

func (p *Process) startPump(op *Pipe) {
	rc, err := op.f.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) { op.fd = int(fd) })
	}
	if err != nil {
		p.pumpEnded()
		return
	}
	op.rc = rc
	p.pump(op)
}

// pump reads one pipe until EOF and sends what it reads to out. It returns
// early, with the pipe watched in the fdwatch set, when the pipe is quiet;
// the watch calls pump again once there is output or EOF.
func (p *Process) pump(op *Pipe) {
	for {
		op.f.SetReadDeadline(time.Now().Add(quietPipe))
		c, err := op.read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if p.waitQuietly(op) {
				return
			}
			continue
		}
		if err != nil {
			p.pumpEnded()
			return
		}
		select {
		case p.out <- c:
		case <-p.discard:
			c.Release()
		}
	}
}

// read returns the next chunk of the pipe: io.EOF at its end.
func (op *Pipe) read() (Chunk, error) {
	var c Chunk
	var rerr error
	err := op.rc.Read(func(fd uintptr) bool {
		for {
			b := bufPool.Get().(*[]byte)
			n, e := syscall.Read(int(fd), *b)
			switch {
			case e == syscall.EINTR:
				bufPool.Put(b)
				continue
			case e == syscall.EAGAIN:
				bufPool.Put(b)
				return false // wait for the poller to say readable
			case e != nil:
				bufPool.Put(b)
				rerr = e
			case n == 0:
				bufPool.Put(b)
				rerr = io.EOF
			default:
				c = Chunk{Stream: op.s, Data: (*b)[:n], buf: b}
				op.growIfFull(fd, n)
			}
			return true
		}
	})
	if err == nil {
		err = rerr
	}
	return c, err
}

// waitQuietly hands a quiet pipe to the fdwatch set. It reports false when
// the pump must go on waiting itself (the pipe is being closed, or the set
// refused it).
func (p *Process) waitQuietly(op *Pipe) bool {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.closed {
		return false
	}
	w, err := fdwatch.Add(op.fd, unix.EPOLLIN, func() {
		op.mu.Lock()
		op.watch = nil
		op.mu.Unlock()
		p.pump(op)
	})
	if err != nil {
		return false
	}
	op.watch = w
	return true
}

// closePipe closes a pipe whose pump may be running or waiting in the
// fdwatch set; a waiting pump ends here, since nothing will wake it.
func (p *Process) closePipe(op *Pipe) {
	op.mu.Lock()
	w := op.watch
	op.watch = nil
	op.closed = true
	op.mu.Unlock()
	stopped := w != nil && w.Stop()
	op.f.Close()
	if stopped {
		p.pumpEnded()
	}
}

// pumpEnded counts a pump out; the last one closes out.
func (p *Process) pumpEnded() {
	if p.pumpsLeft.Add(-1) == 0 {
		close(p.out)
		close(p.pumpsDone)
	}
}
