package child_test

import (
	"bufio"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/internal/testchild"
)

// TestKillIfStillOurs: the group a crash left behind is killed while its
// leader is the process the run started, and left alone otherwise.
func TestKillIfStillOurs(t *testing.T) {
	t.Run("same process", func(t *testing.T) {
		leader, started, gc := startLeftover(t)
		pid := leader.Process.Pid
		if !child.KillIfStillOurs(pid, pid, started) {
			t.Fatal("reported not killed")
		}
		var exitErr *exec.ExitError
		if err := leader.Wait(); !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("leader ended with %v, want SIGKILL", err)
		}
		if !testchild.WaitGone(gc, 5*time.Second) {
			t.Fatalf("grandchild %d in the group survived", gc)
		}
	})
	t.Run("started at another time", func(t *testing.T) {
		leader, started, gc := startLeftover(t)
		pid := leader.Process.Pid
		for _, off := range []time.Duration{-3 * time.Second, 3 * time.Second, 24 * time.Hour} {
			if child.KillIfStillOurs(pid, pid, started.Add(off)) {
				t.Errorf("recorded start %v off: reported killed", off)
			}
		}
		time.Sleep(100 * time.Millisecond)
		if testchild.Gone(pid) || testchild.Gone(gc) {
			t.Fatalf("leader %d gone: %v, grandchild %d gone: %v", pid, testchild.Gone(pid), gc, testchild.Gone(gc))
		}
	})
	t.Run("no such process", func(t *testing.T) {
		path, env := testchild.Command("exit")
		cmd := exec.CommandContext(t.Context(), path, "0")
		cmd.Env = []string{env, testchild.RaceEnv}
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		started, pid := time.Now(), cmd.Process.Pid // reaped: the PID names nobody
		if child.KillIfStillOurs(pid, pid, started) {
			t.Fatalf("PID %d of a reaped process: reported killed", pid)
		}
	})
}

// startLeftover starts, outside package child and in a process group of its
// own, a fake child that starts a grandchild: what a run interrupted by a
// crash of the server leaves behind. It returns the leader, its start as the
// server records it (just after the start) and the grandchild's PID.
func startLeftover(t *testing.T) (leader *exec.Cmd, started time.Time, grandchild int) {
	t.Helper()
	path, env := testchild.Command("grandchild")
	cmd := exec.CommandContext(t.Context(), path)
	cmd.Env = []string{env, testchild.RaceEnv}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started = time.Now()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			// Not reaped yet, so its PID still names its group.
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the grandchild's PID: %v", err)
	}
	gc, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("grandchild's PID %q", line)
	}
	return cmd, started, gc
}
