package cgroup

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Limits are what one run may use. A zero field is no limit.
type Limits struct {
	// Memory is the most memory, in bytes, the run's processes may hold
	// together (memory.max; memory.limit_in_bytes on v1). Above it the
	// kernel reclaims, then its OOM killer kills one of them.
	Memory int64
	// Pids is the most processes (and threads) the run may have at once
	// (pids.max): a fork past it fails with EAGAIN.
	Pids int64
	// CPU is the CPU time the run may use, in thousandths of a core
	// (cpu.max; cpu.cfs_quota_us on v1): 1500 is one and a half cores.
	CPU int64
}

// Bounds of a limit: below these a run cannot even start (exec, the dynamic
// loader and a shell need a few MiB), and above them the kernel's files
// take no value.
const (
	MinMemory = 4 << 20
	MinPids   = 2
	MinCPU    = 10 // 1% of a core: the kernel's smallest quota is 1 ms per 100 ms period
	maxLimit  = 1 << 62
	// cpuPeriod is the period of the CPU quota, the kernel's default.
	cpuPeriod = 100 * time.Millisecond
)

// ErrLimit is the kind of every error about a limit's value or a limit that
// cannot be enforced.
var ErrLimit = errors.New("invalid limit")

// IsZero says whether l sets no limit at all.
func (l Limits) IsZero() bool { return l == Limits{} }

// Check fails unless each limit set is within its bounds.
func (l Limits) Check() error {
	switch {
	case l.Memory < 0 || l.Pids < 0 || l.CPU < 0:
		return fmt.Errorf("%w: a limit cannot be negative", ErrLimit)
	case l.Memory != 0 && l.Memory < MinMemory:
		return fmt.Errorf("%w: memory %s is below the least a run needs, %s", ErrLimit, FormatSize(l.Memory), FormatSize(MinMemory))
	case l.Pids != 0 && l.Pids < MinPids:
		return fmt.Errorf("%w: pids %d is below the least a run needs, %d", ErrLimit, l.Pids, MinPids)
	case l.CPU != 0 && l.CPU < MinCPU:
		return fmt.Errorf("%w: cpu %s is below the least the kernel takes, %s", ErrLimit, FormatCPU(l.CPU), FormatCPU(MinCPU))
	case l.Memory > maxLimit || l.Pids > maxLimit || l.CPU > maxLimit/1000:
		return fmt.Errorf("%w: a limit is too large", ErrLimit)
	}
	return nil
}

// Or is l with each limit it leaves unset taken from d.
func (l Limits) Or(d Limits) Limits {
	if l.Memory == 0 {
		l.Memory = d.Memory
	}
	if l.Pids == 0 {
		l.Pids = d.Pids
	}
	if l.CPU == 0 {
		l.CPU = d.CPU
	}
	return l
}

// Within fails when a limit l sets is above the same limit of caps. A limit
// l leaves unset is not checked: whoever applies l fills it from below the
// caps (a default, a script's own, the cap itself). what names the limits
// in the message ("the request's") and capName the source of a cap
// ("--max-memory").
func (l Limits) Within(caps Limits, what string, capName func(field string) string) error {
	check := func(field string, v, c int64, format func(int64) string) error {
		if c == 0 || v == 0 || v <= c {
			return nil
		}
		return fmt.Errorf("%w: %s %s limit (%s) is above %s=%s", ErrLimit, what, field, format(v), capName(field), format(c))
	}
	if err := check("memory", l.Memory, caps.Memory, FormatSize); err != nil {
		return err
	}
	if err := check("pids", l.Pids, caps.Pids, func(n int64) string { return strconv.FormatInt(n, 10) }); err != nil {
		return err
	}
	return check("cpu", l.CPU, caps.CPU, FormatCPU)
}

// Min is l with each limit lowered to the same limit of m where m sets a
// lower one.
func (l Limits) Min(m Limits) Limits {
	low := func(a, b int64) int64 {
		if a == 0 || (b != 0 && b < a) {
			return b
		}
		return a
	}
	return Limits{Memory: low(l.Memory, m.Memory), Pids: low(l.Pids, m.Pids), CPU: low(l.CPU, m.CPU)}
}

// ParseSize reads a size in bytes: "1048576", "512KiB", "1MiB", "2GiB"
// (KB/MB/GB and K/M/G are read as the binary units too).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffixes []string
		mult     int64
	}{
		{[]string{"TiB", "TB", "T"}, 1 << 40},
		{[]string{"GiB", "GB", "G"}, 1 << 30},
		{[]string{"MiB", "MB", "M"}, 1 << 20},
		{[]string{"KiB", "KB", "K"}, 1 << 10},
		{[]string{"B"}, 1},
	}
	mult := int64(1)
outer:
	for _, u := range units {
		for _, suf := range u.suffixes {
			if num, ok := strings.CutSuffix(t, suf); ok {
				t, mult = strings.TrimSpace(num), u.mult
				break outer
			}
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size such as 1048576, 512KiB or 1MiB", s)
	}
	return n * mult, nil
}

// FormatSize writes n bytes in the largest binary unit that divides it.
func FormatSize(n int64) string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// ParseCPU reads a number of cores, "1", "0.5", "1.25", or thousandths of a
// core with an m, "250m" (as Kubernetes writes them), into thousandths.
func ParseCPU(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if m, ok := strings.CutSuffix(t, "m"); ok {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n < 0 || n > maxLimit/1000 {
			return 0, fmt.Errorf("%q is not a CPU amount such as 0.5, 2 or 250m", s)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f > maxLimit/1e6 {
		return 0, fmt.Errorf("%q is not a CPU amount such as 0.5, 2 or 250m", s)
	}
	n := int64(math.Round(f * 1000))
	if n == 0 && f != 0 {
		return 0, fmt.Errorf("%q is below a thousandth of a core", s)
	}
	return n, nil
}

// CoresOf is a CPU limit in thousandths as a number of cores, 1500 → 1.5.
func CoresOf(milli int64) float64 { return float64(milli) / 1000 }

// FormatCPU writes thousandths of a core as cores, 1500 → "1.5".
func FormatCPU(milli int64) string {
	return strconv.FormatFloat(CoresOf(milli), 'f', -1, 64)
}

// Usage is what a run used, read from its cgroup once it has ended. A
// figure the kernel does not give in the server's mode is nil.
type Usage struct {
	// MemoryPeak is the most memory its processes held at once, in bytes.
	MemoryPeak *int64
	// CPU is the CPU time its processes used, user and system.
	CPU *time.Duration
	// IORead and IOWrite are the bytes its processes read from and wrote to
	// block devices (not the page cache, not pipes or sockets).
	IORead, IOWrite *int64
	// OOMKills is how many of its processes the OOM killer killed.
	OOMKills int64
	// PidsMax is how many times a fork failed on its pids limit.
	PidsMax int64
}

// Report is Usage as the API, the history and the NDJSON end line write it:
// bytes and milliseconds, a figure the kernel did not give left out.
type Report struct {
	MemoryPeak    *int64 `json:"memory_peak,omitempty"` // bytes
	CPUMillis     *int64 `json:"cpu_ms,omitempty"`
	IORead        *int64 `json:"io_read,omitempty"`  // bytes
	IOWrite       *int64 `json:"io_write,omitempty"` // bytes
	OOMKills      int64  `json:"oom_kills,omitempty"`
	PidsLimitHits int64  `json:"pids_limit_hits,omitempty"`
}

// Report is u as the API writes it.
func (u Usage) Report() *Report {
	r := &Report{MemoryPeak: u.MemoryPeak, IORead: u.IORead, IOWrite: u.IOWrite, OOMKills: u.OOMKills, PidsLimitHits: u.PidsMax}
	if u.CPU != nil {
		ms := u.CPU.Milliseconds()
		r.CPUMillis = &ms
	}
	return r
}

// Log adds to a run's log line (attached or detached alike) what its
// cgroup says it used, and says when its pids limit stopped a fork or the
// OOM killer struck. A nil u adds nothing.
func (u *Usage) Log(ev *zerolog.Event) *zerolog.Event {
	if u == nil {
		return ev
	}
	if u.MemoryPeak != nil {
		ev = ev.Int64("memory_peak", *u.MemoryPeak)
	}
	if u.CPU != nil {
		ev = ev.Int64("cpu_ms", u.CPU.Milliseconds())
	}
	if u.IORead != nil && u.IOWrite != nil {
		ev = ev.Int64("io_read", *u.IORead).Int64("io_write", *u.IOWrite)
	}
	if u.OOMKills > 0 {
		ev = ev.Int64("oom_kills", u.OOMKills)
	}
	if u.PidsMax > 0 {
		ev = ev.Int64("pids_limit_hits", u.PidsMax).Str("pids_limit", "a fork failed: the run reached its pids limit")
	}
	return ev
}
