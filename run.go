package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rexec/rexec/client"
)

// runCmd is "rexec run": it runs one command on a server and behaves, to
// whoever called it, like that command run here: its stdout on stdout, its
// stderr on stderr, its exit status; a lost end is never a success.
type runCmd struct {
	serverFlags `embed:""`
	Token       string        `env:"REXEC_TOKEN" help:"The server's bearer token (prefer REXEC_TOKEN: ps shows the command line)."`
	Alias       string        `env:"-" help:"Unique name of the run on the server (default: the command's base name, '-' and a random suffix)."`
	Cwd         string        `env:"-" help:"Working directory on the server (default: the server's)."`
	Env         []string      `short:"e" env:"-" sep:"none" placeholder:"KEY=VALUE" help:"Set a variable in the command's environment (repeatable). A bare KEY sends this machine's value of KEY."`
	Timeout     time.Duration `env:"-" help:"Have the server terminate the command after this long (e.g. 10m); default none."`
	Stdin       bool          `short:"i" env:"-" help:"Forward this stdin to the command, live, as it is read; its end closes the command's stdin. Without -i the command's stdin is empty. With -t: see -t."`
	TTY         bool          `short:"t" name:"tty" env:"-" help:"Run the command on a terminal of its own on the server (a pseudo-terminal), as ssh -t and docker run -t do: its stdout and stderr come as one stream, here on stdout. -it is the interactive pair (rexec run -it -- bash): when stdin is a terminal, it is put in raw mode and stands for the remote one: every key goes there (Ctrl-C interrupts the remote foreground command, not rexec), the remote size follows this window's, and this terminal is restored on every exit. -t alone streams the output and leaves the command's stdin empty. -it with a stdin that is not a terminal forwards it as it comes, without raw mode, and says so on stderr. TERM is sent as it is here, as ssh does, unless -e sets it."`
	Script      string        `env:"-" placeholder:"NAME" help:"Run this script of the server's exectab instead of a command; what follows -- are its arguments."`
	Memory      string        `env:"-" placeholder:"SIZE" help:"Memory limit of the run on the server (e.g. 512MiB): past it the kernel's OOM killer ends it (exit 137, reason oom). Default: the server's."`
	Pids        int           `env:"-" placeholder:"N" help:"Most processes and threads the run may have at once on the server. Default: the server's."`
	CPU         string        `name:"cpu" env:"-" placeholder:"CORES" help:"CPU the run may use on the server, in cores (0.5, 2, 250m). Default: the server's."`
	Command     []string      `arg:"" optional:"" passthrough:"partial" help:"The command and its arguments (after --), or the script's arguments with --script."`
}

// Exit codes of "rexec run" besides the remote command's own; see Help.
const (
	exitRunUsage       = exitUsage // bad command line, or 400/413
	exitRunAuth        = 3         // 401, 403
	exitRunStartFailed = 4         // 404: no such command or directory, permission denied
	exitRunConflict    = 5         // 409: the alias is running
	exitRunUnavailable = 6         // 503, or no connection: nothing ran
	exitRunOther       = 7         // another HTTP status, or an answer that is not rexec's
	exitRunLost        = 255       // the run's end was never received
)

func (c *runCmd) Help() string {
	return `Runs COMMAND on a rexec server and streams its stdout here to stdout and its stderr to stderr, line by line, as they come. Newlines are as the command wrote them. Output is text: bytes that are not valid UTF-8 arrive as U+FFFD.

Without -t, Ctrl-C (SIGINT) or SIGTERM closes the connection, so the server kills the command's process group.

With -t the command runs on a terminal on the server, over a WebSocket (GET /process/attach), and its output comes byte for byte as the terminal shows it (stdout and stderr together, lines ending in \r\n). With -it and a terminal here, rexec behaves like ssh: raw mode, so Ctrl-C, Ctrl-Z and Ctrl-D are keys for the remote terminal (they interrupt, stop or end the remote foreground command, never rexec); the remote terminal takes this window's size at the start and on each change; this terminal's settings are restored however rexec ends. A SIGINT or SIGTERM sent to rexec itself is forwarded to the remote command; a second one closes the connection, so the server kills the command. SIGHUP (this terminal is gone) closes it at once.

Exit status:

    0-255   the remote command's exit code
    128+N   the remote command was killed by signal N (137: SIGKILL; 143: SIGTERM, as on --timeout)
    2       bad command line, or the server refused the request as invalid (400, 413)
    3       refused: not authorized (401: wrong or missing --token / REXEC_TOKEN) or forbidden (403: an ad-hoc command on a --scripts-only server)
    4       the command could not be started (404): no such command or directory, permission denied
    5       a run with this --alias is running (409)
    6       the server is busy or shutting down (503), the script runs as many times at once as it may (429), or the server could not be reached: nothing ran
    7       any other error: another HTTP status, or an answer that is not rexec's
    130     interrupted by SIGINT (143: by SIGTERM; 129: by SIGHUP, with -t); the remote command is killed
    255     the run's end was never received (connection lost, server gone): its status is unknown

The codes 2-7 and 255 print the reason on stderr, so they can be told from the same code of the remote command.`
}

func (c *runCmd) Validate() error {
	if _, err := c.spec(); err != nil {
		return err
	}
	return c.serverFlags.validate()
}

// spec is the run the command line asks for.
func (c *runCmd) spec() (client.Spec, error) {
	args := c.Command
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 && c.Script == "" {
		return client.Spec{}, errors.New("no command: rexec run [flags] -- COMMAND [ARGS...] (or --script NAME)")
	}
	if c.Timeout < 0 {
		return client.Spec{}, errors.New("--timeout must be positive")
	}
	if c.Pids < 0 {
		return client.Spec{}, errors.New("--pids must be positive")
	}
	var env map[string]string
	for _, kv := range c.Env {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return client.Spec{}, fmt.Errorf("-e %q: want KEY=VALUE or KEY", kv)
		}
		if !ok {
			if v, ok = os.LookupEnv(k); !ok {
				return client.Spec{}, fmt.Errorf("-e %s: %s is not set here", k, k)
			}
		}
		if env == nil {
			env = map[string]string{}
		}
		env[k] = v
	}
	if c.Script != "" {
		return client.Spec{Alias: c.Alias, Script: c.Script, Args: args, Cwd: c.Cwd, Env: env, Timeout: c.Timeout,
			Memory: c.Memory, Pids: c.Pids, CPU: c.CPU}, nil
	}
	return client.Spec{Alias: c.Alias, Cmd: args[0], Args: args[1:], Cwd: c.Cwd, Env: env, Timeout: c.Timeout,
		Memory: c.Memory, Pids: c.Pids, CPU: c.CPU}, nil
}

func (c *runCmd) Run() error {
	spec, err := c.spec()
	if err != nil {
		return &exitError{exitRunUsage, err}
	}
	cl, err := c.serverFlags.client(c.Token)
	if err != nil {
		return &exitError{exitRunUsage, err}
	}
	defer cl.CloseIdleConnections()
	if c.TTY {
		return c.runTTY(cl, spec, c.Stdin)
	}
	if c.Stdin {
		spec.Stdin = os.Stdin
	}

	// SIGINT and SIGTERM cancel the run: its connection closes, and the
	// server kills the remote group.
	ctx, caught, stop := interruptible()
	defer stop()

	st, err := runAndCopy(ctx, cl, spec)
	if err == nil {
		return exitStatus(st)
	}
	if sig := caught(); sig != nil {
		return interrupted(sig, "the connection is closed, so the server kills the remote command")
	}
	return runFailure(c.URL, err)
}

// runAndCopy starts the run and copies its output here until it ends.
func runAndCopy(ctx context.Context, cl *client.Client, spec client.Spec) (client.Status, error) {
	run, err := cl.Start(ctx, spec)
	if err != nil {
		return client.Status{}, err
	}
	defer run.Close()
	return run.Copy(os.Stdout, os.Stderr)
}

// exitStatus is the exit the remote command's end calls for: its code, or
// 128+N when signal N killed it, as shells do.
func exitStatus(st client.Status) error {
	var how string
	switch {
	case st.Signal != "":
		how = "was killed by " + st.Signal
	case st.ExitCode < 0 || st.ExitCode > 255:
		return &exitError{exitRunOther, fmt.Errorf("the server reported exit code %d", st.ExitCode)}
	default:
		how = fmt.Sprintf("exited with code %d", st.ExitCode)
	}
	code := st.ExitCode
	if st.Signal != "" {
		code = 128 + signalNumber(st.Signal)
	}
	switch {
	case st.Reason == client.ReasonTimeout:
		return &exitError{code, fmt.Errorf("the remote command timed out (--timeout) and %s", how)}
	case st.Reason == client.ReasonShutdown:
		return &exitError{code, fmt.Errorf("the server shut down during the run; the remote command %s", how)}
	case st.Reason == client.ReasonOOM:
		return &exitError{code, fmt.Errorf("the remote command ran out of memory: the OOM killer ended it at its memory limit (--memory) and it %s", how)}
	case st.Signal != "":
		return &exitError{code, fmt.Errorf("the remote command %s", how)}
	case code != 0:
		return &exitError{code, nil} // silent, as the command itself would be
	}
	return nil
}

// exitForStatus is the exit code of the client commands for a refusal with
// this HTTP status: the same classes for "rexec run" and the commands of
// detached runs (scriptscmd.go), which name them for what they refuse.
func exitForStatus(status int) int {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusRequestedRangeNotSatisfiable:
		return exitRunUsage
	case http.StatusUnauthorized, http.StatusForbidden:
		return exitRunAuth
	case http.StatusNotFound:
		return exitRunStartFailed
	case http.StatusConflict:
		return exitRunConflict
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return exitRunUnavailable
	}
	return exitRunOther
}

// runFailure is the exit for a run that did not end with a status.
func runFailure(url string, err error) error {
	var se *client.ServerError
	switch {
	case errors.As(err, &se):
		return &exitError{exitForStatus(se.StatusCode), fmt.Errorf("the server refused the run (%d %s): %s", se.StatusCode, http.StatusText(se.StatusCode), se.Message)}
	case errors.Is(err, client.ErrUnreachable):
		return &exitError{exitRunUnavailable, fmt.Errorf("%s: %w (nothing ran)", url, err)}
	case errors.Is(err, client.ErrRunLost):
		return &exitError{exitRunLost, fmt.Errorf("%w; exit status unknown: the remote command was killed, or still runs if the server died", err)}
	}
	return &exitError{exitRunOther, err}
}
