//go:build linux

package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What the server holds that its children must not reach.

// closeInheritedFiles marks every descriptor above stderr close-on-exec:
// whatever started rexec may have left descriptors open (a secret file a
// wrapper opened on fd 7, a socket), and each child, whatever its user, gets
// exactly stdin, stdout and stderr. rexec's own descriptors are opened
// close-on-exec already. It returns how many it found open.
func closeInheritedFiles() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			continue // the directory's own descriptor, closed since
		}
		if flags&unix.FD_CLOEXEC == 0 {
			n++
		}
	}
	// One call covers descriptors opened since the listing, too.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return n, nil
	}
	// Kernels before 5.11: one by one.
	ents, err = os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
	return n, nil
}

// hideFromChildren makes the server's /proc entries (environ, where
// REXEC_TOKEN is; mem; fd) unreadable to processes of its own user without
// CAP_SYS_PTRACE, as its children are unless they run as root: the kernel
// then treats the server as it treats a setuid program. It also turns off
// core dumps, which would hold the token too.
func hideFromChildren() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}

// readTokenFile reads a token from the first line of path.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	token := strings.TrimSpace(line)
	if token == "" {
		return "", fmt.Errorf("--token-file %s: the first line is empty", path)
	}
	return token, nil
}

// tokenOnCommandLine reports whether args give --token itself (rather than
// REXEC_TOKEN or --token-file).
func tokenOnCommandLine(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--token" || strings.HasPrefix(a, "--token=") {
			return true
		}
	}
	return false
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
