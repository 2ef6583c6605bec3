package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// linuxSignals are the numbers of the signals a server names ("SIGKILL"),
// as Linux numbers them on amd64, arm64 and most other architectures: the
// server runs on Linux, wherever its client runs, and a remote command
// killed by signal N gives the exit status 128+N as a shell there would.
var linuxSignals = map[string]int{
	"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGBUS": 7, "SIGFPE": 8,
	"SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12, "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15,
	"SIGSTKFLT": 16, "SIGCHLD": 17, "SIGCONT": 18, "SIGSTOP": 19, "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22,
	"SIGURG": 23, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27, "SIGWINCH": 28, "SIGIO": 29,
	"SIGPWR": 30, "SIGSYS": 31,
}

// signalNumber is the Linux number of a signal the server named: a name of
// linuxSignals, or "SIG<n>" for one without a name (real-time signals);
// 0 when it is neither.
func signalNumber(name string) int {
	if n, ok := linuxSignals[name]; ok {
		return n
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(name, "SIG")); err == nil && n > 0 && n < 128 {
		return n
	}
	return 0
}

// interruptible returns a context that SIGINT (Ctrl-C) or SIGTERM cancel,
// and caught, which says which of them did (nil when none did). stop ends
// the watch; call it when the command is done.
func interruptible() (ctx context.Context, caught func() os.Signal, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	got := make(chan os.Signal, 1) // the signal that cancelled ctx
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case s := <-sigs:
			got <- s
			cancel()
		case <-ctx.Done():
		}
	}()
	caught = func() os.Signal {
		select {
		case s := <-got:
			got <- s
			return s
		default:
			return nil
		}
	}
	stop = func() {
		signal.Stop(sigs)
		cancel()
		<-done
	}
	return ctx, caught, stop
}

// interrupted is the exit for a command that sig stopped: 128+N, as a shell
// gives (130 for SIGINT, 143 for SIGTERM), with what became of the work.
func interrupted(sig os.Signal, what string) error {
	name, n := "SIGTERM", 15
	if sig == syscall.SIGINT {
		name, n = "SIGINT", 2
	}
	return &exitError{128 + n, fmt.Errorf("interrupted by %s: %s", name, what)}
}
