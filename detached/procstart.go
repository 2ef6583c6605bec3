package detached

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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

// killIfStillOurs: temporary, until child has it.
func killIfStillOurs(pid, pgid int, startedAt time.Time) bool {
	if pgid <= 0 || startedAt.IsZero() {
		return false
	}
	started, ok := processStart(pid)
	if !ok {
		return false
	}
	if d := started.Sub(startedAt); d < -2*time.Second || d > 2*time.Second {
		return false
	}
	return syscall.Kill(-pgid, syscall.SIGKILL) == nil
}
