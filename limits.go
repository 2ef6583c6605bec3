//go:build linux

package main

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// wantFiles is the open-file limit rexec asks for: every held stream costs
// three descriptors (the socket, the output pipe and the child's pidfd).
const wantFiles = 1 << 20

// raiseFileLimit lifts RLIMIT_NOFILE as far as the process may: the soft
// limit to the hard one (Go does that much at start-up), and with
// CAP_SYS_RESOURCE the hard limit too, up to fs.nr_open. It uses prlimit
// rather than syscall.Setrlimit so that Go still gives children the soft
// limit the server started with: old programs misbehave with a huge one.
// It returns the limits before and after.
func raiseFileLimit() (before, after unix.Rlimit, err error) {
	if err = unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &before); err != nil {
		return before, before, err
	}
	want := uint64(wantFiles)
	if b, rerr := os.ReadFile("/proc/sys/fs/nr_open"); rerr == nil {
		if n, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); perr == nil && n < want {
			want = n
		}
	}
	after = before
	if after.Max < want {
		try := unix.Rlimit{Cur: want, Max: want}
		if unix.Prlimit(0, unix.RLIMIT_NOFILE, &try, nil) == nil {
			after = try
		}
	}
	if after.Cur < after.Max {
		try := unix.Rlimit{Cur: after.Max, Max: after.Max}
		if err = unix.Prlimit(0, unix.RLIMIT_NOFILE, &try, nil); err == nil {
			after = try
		}
	}
	return before, after, err
}
