package child

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/rexec/rexec/cgroup"
)

// cgroupEmptyWait bounds how long the end of a run waits, after its
// cgroup's kill, for the kernel to take its last processes: only one stuck
// in the kernel (uninterruptible I/O) takes longer, and its cgroup is left
// for the next start-up to remove.
const cgroupEmptyWait = 5 * time.Second

// makeCgroup makes the process's cgroup, with the spec's limits, when the
// options give a tree to make it in. Limits without a tree that enforces
// them fail: a run never runs without the limits it was given.
func (p *Process) makeCgroup(spec Spec) error {
	t := p.opts.Cgroups
	if t == nil || t.Mode() == cgroup.ModeOff {
		if !spec.Limits.IsZero() {
			return &StartError{Op: "cgroup", Err: fmt.Errorf("%w: limits need cgroups, which are off", cgroup.ErrLimit)}
		}
		return nil
	}
	g, err := t.New(spec.Limits)
	if err != nil {
		if errors.Is(err, cgroup.ErrLimit) {
			return &StartError{Op: "cgroup", Err: err}
		}
		// No room for one more cgroup (ENOSPC past cgroup.max.descendants,
		// ENOMEM): the server's condition, as a failed fork is.
		return &StartError{Op: "cgroup", Err: fmt.Errorf("%w: %w", syscall.EAGAIN, err)}
	}
	p.cg = g
	return nil
}

// startIn starts the process with start, in its cgroup when it has one.
func (p *Process) startIn(attr *syscall.ProcAttr, start func() (int, error)) (int, error) {
	if p.cg == nil {
		return start()
	}
	return p.cg.Start(attr.Sys, start)
}

// removeCgroup removes the cgroup of a process that did not start.
func (p *Process) removeCgroup() {
	if p.cg != nil {
		p.cg.Remove()
	}
}

// signalAll sends sig to the process group and to whatever else is in the
// cgroup (a process that left the group by setsid): each process once, so
// that a program counting its SIGINTs sees one.
func (p *Process) signalAll(sig syscall.Signal) {
	signalGroup(p.pid, sig)
	if p.cg != nil {
		p.cg.SignalOutside(sig, p.pid)
	}
}

// waitCgroup waits until the cgroup is empty or the deadline passes.
func (p *Process) waitCgroup(deadline time.Time) {
	if p.cg != nil {
		p.cg.WaitEmpty(time.Until(deadline))
	}
}

// endCgroup kills what is left in the cgroup, waits until it is empty,
// reads what the run used and removes the cgroup. It returns nil without a
// cgroup.
func (p *Process) endCgroup() *cgroup.Usage {
	if p.cg == nil {
		return nil
	}
	if !p.cg.Empty() {
		p.cg.Kill()
		p.cg.WaitEmpty(cgroupEmptyWait)
	}
	u := p.cg.Usage()
	p.cg.Remove()
	return &u
}
