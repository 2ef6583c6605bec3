package child

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Linux refuses an exec (E2BIG) whose single argument or environment string
// is longer than MAX_ARG_STRLEN, or whose strings and pointers together
// exceed a quarter of the stack limit (at most 3/4 of 8 MiB).
const (
	maxArgStrlen = 32 * 4096
	maxArgTotal  = 6 << 20
	minArgTotal  = 32 * 4096
)

// CheckArgs reports, before anything is started, whether the operating
// system would refuse argv and env as too large: an error of kind
// ErrStartFailed and ErrArgTooLong, saying which argument. A caller that
// queues a run checks it when the run is asked for, rather than when it
// starts.
func CheckArgs(argv, env []string) error {
	total := 0
	for i, a := range argv {
		if len(a)+1 > maxArgStrlen {
			return &StartError{Op: "exec", Err: fmt.Errorf("argument %d is %d bytes, more than the %d one argument may hold: %w", i, len(a), maxArgStrlen-1, syscall.E2BIG)}
		}
		total += len(a) + 1 + 8
	}
	for _, kv := range env {
		if len(kv)+1 > maxArgStrlen {
			name, _, _ := strings.Cut(kv, "=")
			return &StartError{Op: "exec", Err: fmt.Errorf("environment variable %s is %d bytes, more than the %d one may hold: %w", name, len(kv), maxArgStrlen-1, syscall.E2BIG)}
		}
		total += len(kv) + 1 + 8
	}
	if limit := argTotalLimit(); total > limit {
		return &StartError{Op: "exec", Err: fmt.Errorf("arguments and environment take %d bytes, more than the %d the system allows: %w", total, limit, syscall.E2BIG)}
	}
	return nil
}

// argTotalLimit is read once: the server's stack limit does not change.
var argTotalLimit = sync.OnceValue(func() int {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_STACK, &rl) != nil || rl.Cur == ^uint64(0) {
		return maxArgTotal
	}
	return int(min(max(rl.Cur/4, minArgTotal), maxArgTotal))
})

// withPWD returns env with PWD set to dir, as a shell that changed into dir
// would have it: programs that read PWD (shells, pwd -L) see where they run.
// env is not modified.
func withPWD(env []string, dir string) []string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PWD=") {
			out = append(out, kv)
		}
	}
	return append(out, "PWD="+dir)
}
