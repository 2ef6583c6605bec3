// Package launch is the one rule that turns a run of an exectab script into
// what the broker starts: the process spec and the limit of runs at once.
// Both ways of running a script use it: an attached run (POST /process with
// "script", whose client holds the stream) and a detached run (/scripts/v1,
// queued by package detached). Whatever the API, a script takes stdin only
// with -i and at most MaxStdin bytes of it, its arguments are checked by its
// exectab line, its -t caps the run's time limit, a run has a terminal only
// with --tty and as CheckTTY allows, and its runs share one group of the
// broker, "script NAME", limited by its -s.
//
// A -n script starts no process: its run is a notification to monitors,
// which only the detached API records and publishes. Spec refuses it with
// ErrNoProcess, so that a path that streams a process says so.
package launch

import (
	"errors"
	"fmt"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/child"
)

// Error kinds; webapi maps them to statuses.
var (
	// ErrNoSuchScript: no script of that name is in the exectab in force.
	ErrNoSuchScript = errors.New("no such script")
	// ErrStdin: stdin given to a script without -i, or more than MaxStdin.
	ErrStdin = errors.New("stdin refused")
	// ErrNoStdin: stdin given to a script without -i. It is an ErrStdin.
	ErrNoStdin error = noStdin{}
	// ErrNoProcess: the script is -n, a notification that starts nothing.
	ErrNoProcess = errors.New("the script starts no process (-n): it only notifies monitors")
	// ErrTimeout: a negative time limit.
	ErrTimeout = errors.New("invalid timeout")
	// ErrTTY: a terminal for a script without --tty, or asked for wrongly
	// (CheckTTY). It is child.ErrTTY, the kind child.Start gives the same
	// mistakes, so that either is one kind to the API.
	ErrTTY = child.ErrTTY
)

// noStdin is ErrNoStdin: an ErrStdin, with its text.
type noStdin struct{}

func (noStdin) Error() string        { return ErrStdin.Error() }
func (noStdin) Is(target error) bool { return target == ErrStdin }

// MaxStdin bounds the stdin one run of a script may carry.
const MaxStdin = 1 << 20

// Request is a run of a script as a client asks for it.
type Request struct {
	Args []string
	// Stdin is how many bytes of stdin the request carries; an empty stdin
	// is none. LiveStdin says stdin streams in, of a length not known yet.
	Stdin     int64
	LiveStdin bool
	// Timeout, when positive, is the time limit the client asks for; the
	// script's -t caps it, and is the default.
	Timeout time.Duration
	// Limits are the limits the client asks for: lower than the script's
	// own, or none (Policy.ForScript).
	Limits cgroup.Limits
	// TTY asks for a terminal of Rows by Cols (0: the default), which the
	// script's --tty must allow.
	TTY        bool
	Rows, Cols int
}

// Lookup finds the script name in cat (nil: no exectab).
func Lookup(cat *catalog.Catalog, name string) (*catalog.Script, error) {
	sc, ok := cat.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w named %q", ErrNoSuchScript, name)
	}
	return sc, nil
}

// Check applies to req the rules every run of sc obeys, -n or not: stdin
// only with -i and at most MaxStdin bytes, a terminal only with --tty,
// arguments as the exectab line allows them, no negative time limit. It
// returns the arguments of the process (argv[1:]).
func Check(sc *catalog.Script, req Request) ([]string, error) {
	switch {
	case (req.Stdin > 0 || req.LiveStdin) && !sc.AllowStdin:
		return nil, fmt.Errorf("%w: script %q takes no stdin (its exectab line has no -i)", ErrNoStdin, sc.Name)
	case req.TTY && !sc.AllowTTY:
		return nil, fmt.Errorf("%w: script %q runs without a terminal (its exectab line has no --tty)", ErrTTY, sc.Name)
	case req.Stdin > MaxStdin:
		return nil, fmt.Errorf("%w: stdin of a script run is limited to %d bytes", ErrStdin, MaxStdin)
	case req.Timeout < 0:
		return nil, fmt.Errorf("%w: negative timeout", ErrTimeout)
	}
	return sc.Argv(req.Args)
}

// Spec is the process a run of sc starts: the script's path and working
// directory, the request's arguments in the script's argv, base (the
// server's environment) with the exectab's -e and then extra added, the
// script's user, its time limit, its limits by pol, the terminal req asks
// for, and stderr merged into stdout. The caller sets Stdin, and may choose
// another Stderr; CheckTTY then checks the terminal against it.
func Spec(sc *catalog.Script, req Request, pol *Policy, base []string, extra ...string) (child.Spec, error) {
	if sc.NoProcess {
		return child.Spec{}, fmt.Errorf("script %q: %w", sc.Name, ErrNoProcess)
	}
	args, err := Check(sc, req)
	if err != nil {
		return child.Spec{}, err
	}
	limits, err := pol.ForScript(sc, req.Limits)
	if err != nil {
		return child.Spec{}, err
	}
	cred, err := sc.Credential()
	if err != nil {
		return child.Spec{}, &child.StartError{Op: "credential", Err: err}
	}
	env := sc.Environ(base)
	if len(extra) > 0 {
		env = append(env[:len(env):len(env)], extra...) // never into a shared base
	}
	return child.Spec{Path: sc.Path, Args: args, Dir: sc.Dir, Env: env, Credential: cred,
		Stderr: child.StderrMerge, Timeout: Timeout(req.Timeout, sc), Limits: limits,
		TTY: req.TTY, Rows: req.Rows, Cols: req.Cols}, nil
}

// CheckTTY is the rule on the terminal of a run, a script's or a command's,
// once its spec is complete: its size (0, the default, or 1 to
// child.MaxTTYSize each, and only with a terminal) and its stderr (merged:
// the terminal is stdout and stderr at once). Its errors are ErrTTY.
func CheckTTY(spec child.Spec) error { return child.CheckTTY(spec) }

// Limit is the broker's limit for runs of sc, attached and detached alike:
// at most its -s at once.
func Limit(sc *catalog.Script) broker.Limit {
	return broker.Limit{Group: "script " + sc.Name, Max: sc.Concurrency}
}

// Timeout is the time limit of a run of sc that asked for requested (0:
// none): the script's -t caps it, and is the default.
func Timeout(requested time.Duration, sc *catalog.Script) time.Duration {
	if sc.Timeout > 0 && (requested <= 0 || requested > sc.Timeout) {
		return sc.Timeout
	}
	return max(requested, 0)
}
