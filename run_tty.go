package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/rexec/rexec/client"
	"golang.org/x/term"
)

// "rexec run -t" and "rexec run -it": the command runs on a terminal of its
// own on the server, attached over a WebSocket (client.Attach). With -i and
// a terminal here, this terminal stands for the remote one, as with ssh: raw
// mode, so that every key (Ctrl-C, Ctrl-Z, Ctrl-D, arrows) is a byte for the
// remote line discipline; its size, sent at the start and on each change;
// and restored on every way out. Exit codes are those of "rexec run".

// runTTY runs spec on a remote terminal, with this process's stdin
// forwarded when stdin is set.
func (c *runCmd) runTTY(cl *client.Client, spec client.Spec, stdin bool) error {
	in := int(os.Stdin.Fd())
	raw := stdin && term.IsTerminal(in)
	if stdin && !raw {
		// As ssh says "Pseudo-terminal will not be allocated", but the
		// remote terminal is there all the same: only this end is not one.
		fmt.Fprintln(os.Stderr, "rexec: stdin is not a terminal: it is forwarded as it comes, with no raw mode here (the remote command still runs on a terminal)")
	}
	sizeFd, sized := localTerminal()
	if sized {
		spec.Rows, spec.Cols = terminalSize(sizeFd)
	}
	spec.TTY = true
	if t, ok := os.LookupEnv("TERM"); ok && spec.Script == "" {
		// The remote terminal is this one: programs there draw for it (as
		// ssh sends TERM). A script's environment is its exectab's.
		if _, set := spec.Env["TERM"]; !set {
			if spec.Env == nil {
				spec.Env = map[string]string{}
			}
			spec.Env["TERM"] = t
		}
	}

	// SIGINT and SIGTERM are forwarded to the remote command once it runs;
	// a second one, or one before it runs, closes the connection, so the
	// server kills it. SIGHUP (this terminal is gone) closes it at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	started := make(chan *client.Session, 1)
	var ended atomic.Pointer[os.Signal] // the signal that closed the connection
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		var sess *client.Session
		forwarded := false
		for {
			select {
			case sess = <-started:
			case sig := <-sigs:
				select {
				case sess = <-started: // it ran before the signal came
				default:
				}
				if name := forwardedSignal(sig); name != "" && sess != nil && !forwarded {
					forwarded = true
					sess.Signal(name)
					continue
				}
				ended.Store(&sig)
				cancel()
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { cancel(); <-watching }()

	sess, err := cl.Attach(ctx, spec)
	if err != nil {
		if sig := ended.Load(); sig != nil {
			return signalled(*sig)
		}
		return runFailure(c.URL, err)
	}
	defer sess.Close()
	started <- sess

	if raw {
		state, err := term.MakeRaw(in)
		if err != nil {
			return &exitError{exitRunOther, fmt.Errorf("raw mode on stdin: %w", err)}
		}
		// Every way out passes here: the end, an error, a lost server,
		// a signal (caught above, never left to kill the process).
		defer term.Restore(in, state)
	}
	if sized {
		stop := watchSize(ctx, sizeFd, newResizer(spec.Rows, spec.Cols, sess.Resize))
		defer stop()
	}
	if stdin {
		go forwardStdin(sess, os.Stdin)
	} else {
		sess.CloseStdin() // without -i the command's stdin is empty
	}

	werr := copyOutput(os.Stdout, sess)
	if werr != nil {
		sess.Close()
	}
	st, err := sess.Wait()
	switch {
	case werr == nil && err == nil:
		return exitStatus(st)
	case ended.Load() != nil:
		// Before a failure to write: a terminal that hangs up fails
		// writes too.
		return signalled(*ended.Load())
	case werr != nil:
		return &exitError{exitRunOther, fmt.Errorf("writing the output: %w (the connection is closed, so the server kills the remote command)", werr)}
	}
	return runFailure(c.URL, err)
}

// newResizer returns the function that watchSize calls with the terminal's
// size: it sends each size that differs from the last one sent, starting
// from rows x cols (those of the start).
func newResizer(rows, cols int, resize func(rows, cols int) error) func(rows, cols int) {
	return func(r, c int) {
		if r > 0 && c > 0 && (r != rows || c != cols) {
			rows, cols = r, c
			resize(r, c)
		}
	}
}

// copyOutput writes the session's output to w as it comes, until its end
// or a failure to read it (which Wait then returns). Its error is w's.
func copyOutput(w io.Writer, sess *client.Session) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := sess.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return nil
		}
	}
}

// forwardStdin sends what in reads to the session, and its end as the end
// of the command's input. A Read blocked when the run ends stays so; the
// process exits.
func forwardStdin(sess *client.Session, in io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := sess.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				sess.CloseStdin()
			}
			return
		}
	}
}

// localTerminal is the descriptor of this process's terminal, for its
// size: stdin's, or else stdout's or stderr's; false when none is one.
func localTerminal() (int, bool) {
	for _, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		if fd := int(f.Fd()); term.IsTerminal(fd) {
			return fd, true
		}
	}
	return 0, false
}

// terminalSize is the size of terminal fd, within what the server takes;
// 0, 0 (the server's default) when it cannot be read.
func terminalSize(fd int) (rows, cols int) {
	cols, rows, err := term.GetSize(fd)
	if err != nil || rows <= 0 || cols <= 0 {
		return 0, 0
	}
	return min(rows, client.MaxTTYSize), min(cols, client.MaxTTYSize)
}

// forwardedSignal is the name a caught signal is sent to the remote
// command as; "" for SIGHUP, which ends the session.
func forwardedSignal(sig os.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGTERM:
		return "TERM"
	}
	return ""
}

// signalled is the exit of a session that sig closed: 128+N, as a shell
// gives (129 for SIGHUP).
func signalled(sig os.Signal) error {
	if sig == syscall.SIGHUP {
		return &exitError{128 + signalNumber("SIGHUP"), errors.New("hung up (SIGHUP): the connection is closed, so the server kills the remote command")}
	}
	return interrupted(sig, "the connection is closed, so the server kills the remote command")
}
