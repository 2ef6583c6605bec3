package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Group is the cgroup of one run, in each hierarchy its tree uses.
type Group struct {
	t    *Tree
	name string
	v2   string            // its directory in the unified hierarchy, "" when unused
	v1   map[string]string // controller → its directory in that v1 hierarchy
	fd   int               // v2 directory, open for CLONE_INTO_CGROUP; -1 when none
}

// New makes the cgroup of one run with its limits, which must be ones the
// tree enforces (CanEnforce). The run's processes are placed in it by
// Start; Remove removes it once they are gone.
func (t *Tree) New(l Limits) (*Group, error) {
	if t == nil || t.mode == ModeOff {
		return nil, errors.New("cgroups are off")
	}
	if err := t.CanEnforce(l); err != nil {
		return nil, err
	}
	g := &Group{t: t, name: t.prefix + strconv.FormatUint(t.seq.Add(1), 36), v1: map[string]string{}, fd: -1}
	if err := g.make(l); err != nil {
		g.Remove()
		return nil, err
	}
	return g, nil
}

// make makes the group's directories and writes its limits.
func (g *Group) make(l Limits) error {
	t := g.t
	if t.v2 != "" {
		g.v2 = filepath.Join(t.v2, g.name)
		if err := os.Mkdir(g.v2, 0o755); err != nil {
			return err
		}
		if t.mode == ModeV2 {
			if err := g.writeV2Limits(l); err != nil {
				return err
			}
		}
		fd, err := unix.Open(g.v2, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		g.fd = fd
	}
	for _, c := range v1Used {
		root, ok := t.v1[c]
		// pids and cpu only for a run limited by them; the others always,
		// for the figures (memory, cpuacct, blkio) and the kill (freezer).
		if !ok || (c == "pids" && l.Pids == 0) || (c == "cpu" && l.CPU == 0) {
			continue
		}
		dir := filepath.Join(root, g.name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		g.v1[c] = dir
	}
	return g.writeV1Limits(l)
}

func (g *Group) writeV2Limits(l Limits) error {
	if l.Memory != 0 {
		if err := writeFile(filepath.Join(g.v2, "memory.max"), strconv.FormatInt(l.Memory, 10)); err != nil {
			return err
		}
		// Past its memory a run is killed, not let to swap the host to a
		// halt; a host without swap has no such file.
		if err := writeFile(filepath.Join(g.v2, "memory.swap.max"), "0"); err != nil && !notExist(err) {
			return err
		}
	}
	if l.Pids != 0 {
		if err := writeFile(filepath.Join(g.v2, "pids.max"), strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
	}
	if l.CPU != 0 {
		if err := writeFile(filepath.Join(g.v2, "cpu.max"), cpuMax(l.CPU)); err != nil {
			return err
		}
	}
	return nil
}

// cpuMax is cpu.max's "quota period" for milli thousandths of a core.
func cpuMax(milli int64) string {
	period := cpuPeriod.Microseconds()
	return strconv.FormatInt(milli*period/1000, 10) + " " + strconv.FormatInt(period, 10)
}

func (g *Group) writeV1Limits(l Limits) error {
	if d, ok := g.v1["memory"]; ok && l.Memory != 0 {
		if err := writeFile(filepath.Join(d, "memory.limit_in_bytes"), strconv.FormatInt(l.Memory, 10)); err != nil {
			return err
		}
		// memory and swap together: no swapping past the limit either.
		if err := writeFile(filepath.Join(d, "memory.memsw.limit_in_bytes"), strconv.FormatInt(l.Memory, 10)); err != nil && !notExist(err) {
			return err
		}
	}
	if d, ok := g.v1["pids"]; ok {
		if err := writeFile(filepath.Join(d, "pids.max"), strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
	}
	if d, ok := g.v1["cpu"]; ok {
		period := cpuPeriod.Microseconds()
		if err := writeFile(filepath.Join(d, "cpu.cfs_period_us"), strconv.FormatInt(period, 10)); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(d, "cpu.cfs_quota_us"), strconv.FormatInt(l.CPU*period/1000, 10)); err != nil {
			return err
		}
	}
	return nil
}

// Name is the group's name, the same in each hierarchy.
func (g *Group) Name() string { return g.name }

// Start starts a process in the group through start, which gets the
// attributes to start it with filled in and returns its PID. On v2 the
// process is born in the group (clone3 into the cgroup); when v1
// hierarchies are in use it is started traced, stops at its exec, is
// written into them, and is let go: it runs no instruction of its program
// outside its cgroups. The attributes' Ptrace asks for that, and start
// must be called on the goroutine Start runs on.
func (g *Group) Start(attr *syscall.SysProcAttr, start func() (int, error)) (int, error) {
	if g.fd >= 0 {
		attr.UseCgroupFD, attr.CgroupFD = true, g.fd
	}
	if len(g.v1) == 0 {
		return start()
	}
	// The tracer is the thread that forked: the detach must come from it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	attr.Ptrace = true
	pid, err := start()
	if err != nil {
		return 0, err
	}
	var info unix.Siginfo
	if err := ignoringEINTR(func() error {
		return unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WSTOPPED|unix.WNOWAIT|unix.WALL, nil)
	}); err != nil {
		return pid, fmt.Errorf("waiting for process %d to stop at its exec: %w", pid, err)
	}
	if code := siginfoCode(&info); code != _CLD_TRAPPED && code != _CLD_STOPPED {
		return pid, nil // killed before its exec's stop (its parent's death): nothing runs
	}
	perr := g.place(pid)
	if err := ignoringEINTR(func() error { return unix.PtraceDetach(pid) }); err != nil && perr == nil {
		perr = fmt.Errorf("releasing process %d: %w", pid, err)
	}
	if perr != nil {
		// It must not run outside its limits: kill it before it starts.
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return pid, perr
}

// The codes of a waitid's siginfo (<bits/siginfo-consts.h>).
const (
	_CLD_STOPPED = 5
	_CLD_TRAPPED = 4
)

// siginfoCode is si_code, the third int of a siginfo.
func siginfoCode(info *unix.Siginfo) int32 { return info.Code }

// place writes pid into the group's v1 cgroups.
func (g *Group) place(pid int) error {
	p := strconv.Itoa(pid)
	for _, c := range v1Used {
		if d, ok := g.v1[c]; ok {
			if err := writeFile(filepath.Join(d, "cgroup.procs"), p); err != nil {
				return err
			}
		}
	}
	return nil
}

// Kill kills every process in the group, whatever group or session it
// made for itself: cgroup.kill on v2; on v1, the freezer stops them all
// (none can fork any more), each is sent SIGKILL, and the group is thawed
// so that the signals are taken.
func (g *Group) Kill() { g.kill() }

func (g *Group) kill() {
	if g.v2 != "" {
		if err := writeFile(filepath.Join(g.v2, "cgroup.kill"), "1"); err == nil || notExist(err) {
			return
		}
	}
	fz, frozen := g.v1["freezer"]
	if frozen {
		frozen = writeFile(filepath.Join(fz, "freezer.state"), "FROZEN") == nil
		for i := 0; frozen && i < 100; i++ {
			if b, _ := os.ReadFile(filepath.Join(fz, "freezer.state")); strings.TrimSpace(string(b)) == "FROZEN" {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Without the freezer a process may fork between the read and the
	// kill: go round until nobody is left (its pids limit bounds it).
	for i := 0; i < 100; i++ {
		procs := g.procs()
		if len(procs) == 0 {
			break
		}
		for _, pid := range procs {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if frozen {
			break
		}
	}
	if frozen {
		writeFile(filepath.Join(fz, "freezer.state"), "THAWED")
	}
}

// procs lists the processes in the group.
func (g *Group) procs() []int {
	d := g.v2
	if d == "" {
		for _, c := range []string{"freezer", "memory", "pids", "cpuacct", "blkio", "cpu"} {
			if dd, ok := g.v1[c]; ok {
				d = dd
				break
			}
		}
	}
	if d == "" {
		return nil
	}
	pids, _ := readPids(filepath.Join(d, "cgroup.procs"))
	return pids
}

// Empty says whether no process is left in the group.
func (g *Group) Empty() bool {
	if g.v2 != "" {
		if n, ok := readKey(filepath.Join(g.v2, "cgroup.events"), "populated"); ok {
			return n == 0
		}
	}
	return len(g.procs()) == 0
}

// WaitEmpty waits, at most for d, until no process is left in the group,
// and says whether none is.
func (g *Group) WaitEmpty(d time.Duration) bool { return g.waitEmpty(d) }

func (g *Group) waitEmpty(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 20*time.Millisecond) {
		if g.Empty() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
	}
}

// Usage reads what the group's processes used. Read it once they are
// gone: the figures of a live run still move.
func (g *Group) Usage() Usage {
	var u Usage
	some := func(n int64, ok bool) *int64 {
		if !ok {
			return nil
		}
		return &n
	}
	if g.v2 != "" {
		if n, ok := readKey(filepath.Join(g.v2, "cpu.stat"), "usage_usec"); ok {
			d := time.Duration(n) * time.Microsecond
			u.CPU = &d
		}
		u.MemoryPeak = some(readInt(filepath.Join(g.v2, "memory.peak")))
		u.OOMKills, _ = readKey(filepath.Join(g.v2, "memory.events"), "oom_kill")
		u.PidsMax, _ = readKey(filepath.Join(g.v2, "pids.events"), "max")
		if r, w, ok := readIOStat(filepath.Join(g.v2, "io.stat")); ok {
			u.IORead, u.IOWrite = &r, &w
		}
	}
	if d, ok := g.v1["memory"]; ok {
		u.MemoryPeak = some(readInt(filepath.Join(d, "memory.max_usage_in_bytes")))
		u.OOMKills, _ = readKey(filepath.Join(d, "memory.oom_control"), "oom_kill")
	}
	if d, ok := g.v1["pids"]; ok {
		u.PidsMax, _ = readKey(filepath.Join(d, "pids.events"), "max")
	}
	if d, ok := g.v1["cpuacct"]; ok && u.CPU == nil {
		if n, ok := readInt(filepath.Join(d, "cpuacct.usage")); ok {
			c := time.Duration(n)
			u.CPU = &c
		}
	}
	if d, ok := g.v1["blkio"]; ok {
		if r, w, ok := readBlkio(filepath.Join(d, "blkio.throttle.io_service_bytes_recursive")); ok {
			u.IORead, u.IOWrite = &r, &w
		}
	}
	return u
}

// readIOStat sums rbytes and wbytes over the devices of a v2 io.stat.
func readIOStat(name string) (r, w int64, ok bool) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, 0, false
	}
	for _, f := range strings.Fields(string(b)) {
		k, v, found := strings.Cut(f, "=")
		if !found {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "rbytes":
			r += n
		case "wbytes":
			w += n
		}
	}
	return r, w, true
}

// readBlkio sums the Read and Write lines of a v1 io_service_bytes file.
func readBlkio(name string) (r, w int64, ok bool) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, _ := strconv.ParseInt(f[2], 10, 64)
		switch f[1] {
		case "Read":
			r += n
		case "Write":
			w += n
		}
	}
	return r, w, true
}

// Remove removes the group's directories; it fails while a process is
// left in it. It is idempotent.
func (g *Group) Remove() error { return g.remove() }

func (g *Group) remove() error {
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
	var errs []error
	rm := func(d string) {
		for i := 0; ; i++ {
			err := unix.Rmdir(d)
			// EBUSY for a moment after the last process left (its exit
			// is still being accounted).
			if err == unix.EBUSY && i < 50 {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil && err != unix.ENOENT {
				errs = append(errs, fmt.Errorf("removing %s: %w", d, err))
			}
			return
		}
	}
	for _, c := range v1Used {
		if d, ok := g.v1[c]; ok {
			rm(d)
		}
	}
	if g.v2 != "" {
		rm(g.v2)
	}
	return errors.Join(errs...)
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != syscall.EINTR {
			return err
		}
	}
}

// SignalOutside sends sig to every process in the group that is not in the
// process group pgid: with the same signal sent to -pgid, each process gets
// it once (a second SIGINT is not the first one again to a program that
// counts them). A process forked while the list is read is missed: this is
// the courtesy before Kill, not the kill.
func (g *Group) SignalOutside(sig syscall.Signal, pgid int) {
	for _, pid := range g.procs() {
		if p, err := syscall.Getpgid(pid); err == nil && p != pgid {
			syscall.Kill(pid, sig)
		}
	}
}
