package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// procStats is what /proc says about a process's footprint.
type procStats struct {
	rss     int64 // VmRSS, bytes
	anon    int64 // RssAnon, bytes: RSS less the pages of files (the binary's code)
	threads int
	fds     int
	targets map[string]int // what the fds are, for baselines only (see fdTargets)
}

func (p procStats) String() string {
	return fmt.Sprintf("RSS %s, %d threads, %d fds", mib(p.rss), p.threads, p.fds)
}

// readStats reads VmRSS and Threads from /proc/PID/status and counts the
// entries of /proc/PID/fd.
func readStats(pid int) (procStats, error) {
	var st procStats
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		switch key {
		case "VmRSS": // "  12345 kB"
			kb, _ := strconv.ParseInt(fields[0], 10, 64)
			st.rss = kb << 10
		case "RssAnon":
			kb, _ := strconv.ParseInt(fields[0], 10, 64)
			st.anon = kb << 10
		case "Threads":
			st.threads, _ = strconv.Atoi(fields[0])
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return st, err
	}
	st.fds = len(fds)
	return st, nil
}

// fdTargets lists what each of pid's fds points to ("socket:[123]",
// "/dev/null", "anon_inode:[pidfd]", ...), to name the ones that leak.
func fdTargets(pid int) map[string]int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	m := map[string]int{}
	for _, e := range entries {
		t, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if strings.HasPrefix(t, "socket:") || strings.HasPrefix(t, "pipe:") {
			t = t[:strings.IndexByte(t, ':')] // their inode numbers differ run to run
		}
		m[t]++
	}
	return m
}

// fdGrowth says which kinds of fds are more numerous in now than in before.
func fdGrowth(before, now map[string]int) string {
	var parts []string
	for t, n := range now {
		if n > before[t] {
			parts = append(parts, fmt.Sprintf("%s +%d", t, n-before[t]))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// childrenOf lists the processes whose parent is pid, zombies included: a
// child is gone only once it is reaped.
func childrenOf(pid int) []int {
	// /proc/PID/task/TID/children is exact but needs CONFIG_PROC_CHILDREN.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if len(tasks) > 0 {
		var kids []int
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					kids = append(kids, n)
				}
			}
		}
		return kids
	}
	// Otherwise scan every process's stat for its parent.
	var kids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, n)
		}
	}
	return kids
}

// waitNoChildren polls until pid has no child left or d passes, and returns
// how long it took and how many are left.
func waitNoChildren(pid int, d time.Duration) (time.Duration, int) {
	return waitChildrenAtMost(pid, d, 0)
}

// waitChildrenAtMost waits up to d until pid has at most k children, and
// returns how long it took and how many more than k are left.
func waitChildrenAtMost(pid int, d time.Duration, k int) (time.Duration, int) {
	start := time.Now()
	for {
		n := len(childrenOf(pid))
		if n <= k || time.Since(start) > d {
			return time.Since(start), max(n-k, 0)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settle waits until the server is back to its baseline number of fds (its
// side of closed connections and pipes are closed asynchronously), up to d,
// then returns its stats.
func settle(pid int, baseline procStats, d time.Duration) (procStats, error) {
	deadline := time.Now().Add(d)
	for {
		st, err := readStats(pid)
		if err != nil || st.fds <= baseline.fds || time.Now().After(deadline) {
			st.targets = fdTargets(pid)
			return st, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rssSampler samples a process's VmRSS every interval to find its peak.
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	peak int64
	n    int
}

func sampleRSS(pid int, interval time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if st, err := readStats(pid); err == nil {
				s.mu.Lock()
				s.peak = max(s.peak, st.rss)
				s.n++
				s.mu.Unlock()
			}
			select {
			case <-t.C:
			case <-s.stop:
				return
			}
		}
	}()
	return s
}

// finish stops sampling and returns the peak and the number of samples.
func (s *rssSampler) finish() (int64, int) {
	close(s.stop)
	<-s.done
	return s.peak, s.n
}
