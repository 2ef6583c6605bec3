package child

import (
	"golang.org/x/sys/unix"

	"github.com/rexec/rexec/internal/fdwatch"
)

// watchExit starts p's supervisor once p's leader exits, which its pidfd
// reports by turning readable. The pidfd waits in the one epoll set of
// package fdwatch: a running child costs no goroutine and no thread for its
// exit, where a goroutine parked on each pidfd cost 2-4 KiB of stack apiece.
// The supervisor closes the pidfd after the reap; the watch has fired by
// then, so it needs no Stop.
func watchExit(p *Process) error {
	_, err := fdwatch.Add(p.pidfd, unix.EPOLLIN, p.supervise)
	return err
}
