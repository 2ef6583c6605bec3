package child

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startSlack is how far the start of a process read back from /proc may be
// from the one recorded when it was started and still be the same process:
// /proc gives the boot time in whole seconds and the start in clock ticks
// since, and the caller records its own time.Now around the start.
const startSlack = 2 * time.Second

// KillIfStillOurs kills with SIGKILL the process group pgid of a run that a
// crash of the server interrupted, but only if the group's leader is still
// the process that run started: same PID and a start time within two
// seconds of the recorded one, started. After a reboot or PID reuse the PID
// names another process, which is left alone. It reports whether the group
// was signalled; a pid or pgid <= 0, or a zero started, kills nothing.
func KillIfStillOurs(pid, pgid int, started time.Time) bool {
	if pid <= 0 || pgid <= 0 || started.IsZero() {
		return false
	}
	at, ok := processStart(pid)
	if !ok {
		return false
	}
	if d := at.Sub(started); d < -startSlack || d > startSlack {
		return false
	}
	return syscall.Kill(-pgid, syscall.SIGKILL) == nil
}

// userHZ is the unit of /proc/PID/stat's start time: USER_HZ, 100 on every
// Linux architecture Go supports.
const userHZ = 100

// processStart is when process pid started, from /proc; false if it does
// not exist (or /proc cannot tell).
func processStart(pid int) (time.Time, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return time.Time{}, false
	}
	// Fields after the command name, which is in parentheses: the state is
	// field 3 of the line, the start time field 22.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return time.Time{}, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return time.Time{}, false
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	boot, ok := bootTime()
	if !ok {
		return time.Time{}, false
	}
	return boot.Add(time.Duration(ticks) * time.Second / userHZ), true
}

// bootTime is when the machine booted, from /proc/stat's btime.
func bootTime() (time.Time, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.Unix(s, 0), true
		}
	}
	return time.Time{}, false
}
