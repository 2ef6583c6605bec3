package child_test

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/internal/testcgroup"
	"github.com/rexec/rexec/internal/testchild"
)

// pidLine reads the pid a fake child prints on its first line.
func pidLine(t *testing.T, p *child.Process) int {
	t.Helper()
	pid, err := strconv.Atoi(firstLine(t, p))
	if err != nil {
		t.Fatalf("first line is not a pid: %v", err)
	}
	return pid
}

// A process that made a session of its own escapes its group's kill, not
// its cgroup's: cut the run, and it dies with it.
func TestCgroupKillsASetsidEscapee(t *testing.T) {
	testcgroup.Each(t, func(t *testing.T, tree *cgroup.Tree) {
		p := start(t, "escapee", child.Spec{}, child.Options{Cgroups: tree, KillGrace: 200 * time.Millisecond})
		esc := pidLine(t, p)
		p.Kill(child.ReasonCancelled)
		p.Discard()
		st := p.Wait()
		if !testchild.Gone(esc) {
			t.Fatalf("the setsid escapee %d outlived its run (%+v)", esc, st)
		}
		if st.Reason != child.ReasonCancelled || st.Usage == nil {
			t.Fatalf("status %+v, want reason cancelled and a usage", st)
		}
	})
}

// A double-forked daemon (its parent gone, a session of its own, no pipe
// held) dies when its run ends by itself.
func TestCgroupKillsADaemonAtTheRunsEnd(t *testing.T) {
	testcgroup.Each(t, func(t *testing.T, tree *cgroup.Tree) {
		p := start(t, "daemon", child.Spec{}, child.Options{Cgroups: tree, KillGrace: 200 * time.Millisecond})
		out, _ := collect(p)
		st := p.Wait()
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatalf("output %q", out)
		}
		if !testchild.Gone(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the daemon %d outlived its run", pid)
		}
		if st.Code != 0 || st.Reason != child.ReasonExit {
			t.Fatalf("status %+v, want a plain exit 0", st)
		}
	})
}

// Without cgroups, the group kill is all there is: the same escapee
// survives it. This is what the cgroup is for.
func TestWithoutCgroupsAnEscapeeSurvives(t *testing.T) {
	p := start(t, "escapee", child.Spec{}, child.Options{KillGrace: 200 * time.Millisecond})
	esc := pidLine(t, p)
	t.Cleanup(func() { syscall.Kill(esc, syscall.SIGKILL) })
	p.Kill(child.ReasonCancelled)
	p.Discard()
	if st := p.Wait(); st.Usage != nil {
		t.Fatalf("a usage without a cgroup: %+v", st.Usage)
	}
	if testchild.Gone(esc) {
		t.Fatal("the escapee died without a cgroup: this test no longer shows what cgroups add")
	}
}

func TestCgroupPidsLimitStopsAForkBomb(t *testing.T) {
	testcgroup.Each(t, func(t *testing.T, tree *cgroup.Tree) {
		if tree.Enforces().Pids == 0 {
			t.Skip("no pids controller in this mode")
		}
		p := start(t, "forkbomb", child.Spec{Limits: cgroup.Limits{Pids: 16}}, child.Options{Cgroups: tree, KillGrace: 200 * time.Millisecond})
		line := firstLine(t, p)
		if !strings.HasPrefix(line, "fork failed after") {
			t.Fatalf("first line %q, want a failed fork", line)
		}
		p.Kill(child.ReasonCancelled)
		p.Discard()
		st := p.Wait()
		if st.Usage == nil || st.Usage.PidsMax == 0 {
			t.Fatalf("usage %+v: the pids limit's hits are not counted", st.Usage)
		}
	})
}

func TestCgroupMemoryLimitEndsWithOOM(t *testing.T) {
	testcgroup.Each(t, func(t *testing.T, tree *cgroup.Tree) {
		if tree.Enforces().Memory == 0 {
			t.Skip("no memory controller in this mode")
		}
		p := start(t, "memhog", child.Spec{Args: []string{"512"}, Limits: cgroup.Limits{Memory: 64 << 20}}, child.Options{Cgroups: tree})
		out, _ := collect(p)
		st := p.Wait()
		if st.Reason != child.ReasonOOM || st.Signal != syscall.SIGKILL {
			t.Fatalf("status %+v (output %q), want reason oom by SIGKILL", st, out)
		}
		// The peak is the limit's, give or take the pages the kernel
		// charged while it reclaimed.
		if u := st.Usage; u.OOMKills == 0 || u.MemoryPeak == nil || *u.MemoryPeak > 66<<20 || *u.MemoryPeak < 48<<20 {
			t.Fatalf("usage %+v, want an OOM kill and a peak near the 64 MiB limit", u.Report())
		}
	})
}

func TestCgroupCPULimitHoldsARun(t *testing.T) {
	testcgroup.Each(t, func(t *testing.T, tree *cgroup.Tree) {
		if tree.Enforces().CPU == 0 {
			t.Skip("no cpu controller in this mode")
		}
		// Two threads spinning for 2 s would use up to 4 s of CPU here; a
		// fifth of a core allows 0.4 s.
		p := start(t, "spin", child.Spec{Args: []string{"2s", "2"}, Limits: cgroup.Limits{CPU: 200}}, child.Options{Cgroups: tree})
		collect(p)
		st := p.Wait()
		if st.Usage == nil || st.Usage.CPU == nil {
			t.Fatalf("no CPU time in %+v", st.Usage)
		}
		ratio := st.Usage.CPU.Seconds() / st.Duration.Seconds()
		t.Logf("CPU %v over %v: %.3f of a core (limit 0.2)", *st.Usage.CPU, st.Duration, ratio)
		if ratio > 0.3 {
			t.Fatalf("used %.3f of a core, above its limit of 0.2", ratio)
		}
	})
}

func TestCgroupUsageIsRecorded(t *testing.T) {
	testcgroup.Each(t, func(t *testing.T, tree *cgroup.Tree) {
		p := start(t, "memhog", child.Spec{Args: []string{"40"}}, child.Options{Cgroups: tree})
		out, _ := collect(p)
		st := p.Wait()
		if st.Code != 0 || !strings.Contains(string(out), "held 40") {
			t.Fatalf("status %+v output %q", st, out)
		}
		u := st.Usage
		if u == nil || u.CPU == nil || *u.CPU <= 0 {
			t.Fatalf("usage %+v: no CPU time", u)
		}
		if tree.Enforces().Memory != 0 && (u.MemoryPeak == nil || *u.MemoryPeak < 40<<20) {
			t.Fatalf("memory peak %v, want at least 40 MiB", u.MemoryPeak)
		}
	})
}

func TestLimitsWithoutCgroupsAreRefused(t *testing.T) {
	path, env := testchild.Command("exit")
	_, err := child.Start(child.Spec{Path: path, Args: []string{"0"}, Env: []string{env}, Limits: cgroup.Limits{Pids: 10}}, child.Options{})
	if err == nil || !strings.Contains(err.Error(), "cgroups") {
		t.Fatalf("start with a limit and no cgroups: %v", err)
	}
}
