// Package cgroup gives each run a control group of its own: the one place
// that knows the kernel's cgroup files. A run's cgroup holds every process
// it starts, whatever they do (setsid, a double fork), so that ending the
// run kills them all; it carries the run's limits (memory, processes, CPU),
// and says at the end what the run used and whether the OOM killer struck.
//
// Hosts differ, and a Tree runs in one of four modes (Mode):
//
//   - v2: the unified hierarchy alone (systemd with Delegate=yes, a
//     container with a private cgroup namespace). A process is born in its
//     run's cgroup (clone3 with CLONE_INTO_CGROUP), ended with cgroup.kill,
//     limited by memory.max, pids.max and cpu.max, where those controllers
//     are delegated.
//   - hybrid: a v2 tree with no controllers, for tracking, beside v1
//     controller hierarchies (older systemd, many CI machines). The v2
//     cgroup tracks and kills as in v2; the limits and the memory figures
//     come from the v1 memory, pids, cpu and blkio hierarchies.
//   - v1: v1 hierarchies alone. The freezer stops the run's processes
//     before they are killed, so none can fork while the rest die.
//   - off: no cgroup can be made (no cgroup file system, no right to write
//     it, or --cgroup-root points at something unusable). Runs are killed
//     by process group, as before, and carry no limits.
//
// A process joins v1 hierarchies by its PID, which can be written only
// once it exists; to place it before it runs a single instruction of its
// program, it is started traced (PTRACE_TRACEME), stops at its exec, is
// written into its cgroups and only then let go (Group.Place).
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Mode is how a Tree places, limits and kills runs.
type Mode string

const (
	ModeV2     Mode = "v2"
	ModeHybrid Mode = "hybrid"
	ModeV1     Mode = "v1"
	ModeOff    Mode = "off"
	// ModeAuto, asked for, is the best mode the host offers.
	ModeAuto Mode = "auto"
)

// Config is what Open needs.
type Config struct {
	// Mode is the mode asked for: ModeAuto (or empty) for the best the host
	// offers; another mode is used only if the host offers it.
	Mode Mode
	// Root is the cgroup, as /proc/self/cgroup writes it ("/rexec"), or
	// the directory of a cgroup file system ("/sys/fs/cgroup/rexec"), under
	// which runs get their cgroups. Empty: a sub-tree named Name in the
	// cgroup the server runs in (on v1, in each hierarchy).
	Root string
	// Name is the default root's name: the same for every life of one
	// server (derived from its data directory), so that a server restarted
	// after a crash finds what its previous life left.
	Name string
	// Log receives the tree's warnings.
	Log zerolog.Logger
}

// Tree is the parent of every run's cgroup in one hierarchy or more.
type Tree struct {
	mode Mode
	v2   string            // the root's directory in the unified hierarchy; "" when unused
	v1   map[string]string // controller → the root's directory in its v1 hierarchy
	// limits are the limits the tree can enforce: a field is 1 when it can.
	limits Limits
	log    zerolog.Logger
	seq    atomic.Uint64
	prefix string
	// Found, set by Open, counts what a previous life of the server left in
	// the tree and Open killed: processes, and the cgroups that held them.
	Found, FoundGroups int
}

// v1Used are the v1 controllers a tree uses, in the order a run joins
// them: memory (limit, peak, OOM), pids (limit), cpu (quota), cpuacct (CPU
// time without v2), blkio (I/O), freezer (the kill without v2).
var v1Used = []string{"memory", "pids", "cpu", "cpuacct", "blkio", "freezer"}

// Open finds what the host offers, makes the tree's root, and kills what a
// previous life of the server left in it. It never fails: a host that
// offers nothing, or a Root that cannot be used, gives a tree in ModeOff,
// with the reason in Reason.
func Open(cfg Config) (*Tree, error) {
	t := &Tree{mode: ModeOff, v1: map[string]string{}, log: cfg.Log,
		prefix: "run-" + strconv.FormatInt(time.Now().UnixNano()/1e6, 36) + "-"}
	if cfg.Mode == ModeOff {
		return t, nil
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeAuto
	}
	if cfg.Name == "" {
		cfg.Name = "rexec"
	}
	h, err := readHierarchies()
	if err != nil {
		return t, fmt.Errorf("cgroups: %w", err)
	}
	var errs []error
	if h.v2 != nil && cfg.Mode != ModeV1 {
		dir, err := rootDir(*h.v2, cfg)
		if err == nil {
			err = t.openV2(dir, cfg.Mode)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("v2 %s: %w", h.v2.mount, err))
		}
	}
	if cfg.Mode != ModeV2 && (t.v2 == "" || !t.v2Limits()) {
		for _, c := range v1Used {
			m, ok := h.v1[c]
			if !ok || (t.v2 != "" && (c == "cpuacct" || c == "freezer")) {
				continue // with v2, CPU time and the kill are v2's
			}
			dir, err := rootDir(m, cfg)
			if err == nil {
				err = mkdirCgroup(dir)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("v1 %s: %w", c, err))
				continue
			}
			t.v1[c] = dir
		}
	}
	t.settle(cfg.Mode)
	if t.mode == ModeOff {
		if len(errs) == 0 {
			errs = append(errs, errors.New("no cgroup hierarchy offers what this mode needs"))
		}
		return t, fmt.Errorf("cgroups off: %w", errors.Join(errs...))
	}
	t.cleanup()
	return t, nil
}

// settle chooses the mode from the hierarchies opened and what was asked,
// and which limits it can enforce.
func (t *Tree) settle(asked Mode) {
	_, freezer := t.v1["freezer"]
	switch {
	case t.v2 != "" && len(t.v1) == 0 && asked != ModeHybrid:
		t.mode = ModeV2
	case t.v2 != "" && len(t.v1) > 0 && (asked == ModeAuto || asked == ModeHybrid):
		t.mode = ModeHybrid
	case t.v2 == "" && freezer && (asked == ModeAuto || asked == ModeV1):
		t.mode = ModeV1
	default:
		t.mode, t.v2, t.v1 = ModeOff, "", map[string]string{}
		return
	}
	if t.v2 != "" && asked == ModeV1 {
		t.v2 = ""
	}
	if t.mode == ModeV2 {
		return // openV2 set the limits
	}
	_, mem := t.v1["memory"]
	_, pids := t.v1["pids"]
	_, cpu := t.v1["cpu"]
	t.limits = Limits{Memory: b2i(mem), Pids: b2i(pids), CPU: b2i(cpu)}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// v2Limits says whether the v2 root enforces every limit, so that no v1
// hierarchy is needed.
func (t *Tree) v2Limits() bool {
	return t.limits.Memory != 0 && t.limits.Pids != 0 && t.limits.CPU != 0
}

// openV2 makes dir the v2 root and enables in it the controllers its parent
// offers. A cgroup with processes of its own cannot hand controllers to its
// children (the kernel's "no internal processes" rule), so when the server
// is alone in the cgroup it would make dir in, or in dir itself (a cgroup
// delegated to it, as systemd's Delegate=yes does), it first moves itself
// into a leaf of that cgroup, "server".
func (t *Tree) openV2(dir string, asked Mode) error {
	parent := filepath.Dir(dir)
	for _, d := range []string{parent, dir} {
		if err := mkdirCgroup(d); err != nil {
			return err
		}
		if err := leaveForLeaf(d); err != nil {
			return err
		}
		if asked != ModeHybrid {
			enableControllers(d)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		return errors.New("no cgroup.kill (a kernel before 5.14)")
	}
	t.v2 = dir
	if asked == ModeHybrid {
		return nil
	}
	enabled, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	on := strings.Fields(string(enabled))
	t.limits = Limits{Memory: b2i(slices.Contains(on, "memory")), Pids: b2i(slices.Contains(on, "pids")),
		CPU: b2i(slices.Contains(on, "cpu"))}
	return nil
}

// leaveForLeaf moves the server out of cgroup d into d/server when it is
// the only process there and d is not the hierarchy's root (which the rule
// spares): then d can hand controllers to its children.
func leaveForLeaf(d string) error {
	procs, err := readPids(filepath.Join(d, "cgroup.procs"))
	if err != nil || len(procs) != 1 || procs[0] != os.Getpid() {
		return nil
	}
	if _, err := os.Stat(filepath.Join(d, "cgroup.type")); err != nil {
		return nil // the root: no rule to obey
	}
	leaf := filepath.Join(d, "server")
	if err := mkdirCgroup(leaf); err != nil {
		return err
	}
	if err := moveSelf(leaf); err != nil {
		return fmt.Errorf("moving the server into %s: %w", leaf, err)
	}
	return nil
}

// enableControllers enables in d's children the controllers runs use that
// d offers. Each may fail alone (one d's parent keeps, a cgroup with
// processes); what is enabled in the end is read back by the caller.
func enableControllers(d string) {
	offered, _ := os.ReadFile(filepath.Join(d, "cgroup.controllers"))
	for _, c := range strings.Fields(string(offered)) {
		if c == "memory" || c == "pids" || c == "cpu" || c == "io" {
			writeFile(filepath.Join(d, "cgroup.subtree_control"), "+"+c)
		}
	}
}

// moveSelf moves every thread of the server into the cgroup to.
func moveSelf(to string) error {
	return writeFile(filepath.Join(to, "cgroup.procs"), strconv.Itoa(os.Getpid()))
}

// Mode is the tree's mode.
func (t *Tree) Mode() Mode { return t.mode }

// Enforces says which limits the tree can enforce: a field is non-zero when
// it can.
func (t *Tree) Enforces() Limits { return t.limits }

// CanEnforce fails, of kind ErrLimit, when l sets a limit the tree cannot
// enforce.
func (t *Tree) CanEnforce(l Limits) error {
	var missing []string
	if l.Memory != 0 && t.limits.Memory == 0 {
		missing = append(missing, "memory")
	}
	if l.Pids != 0 && t.limits.Pids == 0 {
		missing = append(missing, "pids")
	}
	if l.CPU != 0 && t.limits.CPU == 0 {
		missing = append(missing, "cpu")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: this server cannot enforce a %s limit (cgroup mode %s)", ErrLimit, strings.Join(missing, ", "), t.mode)
	}
	return nil
}

// Describe says, for the start-up log, where the tree is.
func (t *Tree) Describe() string {
	var b strings.Builder
	if t.v2 != "" {
		b.WriteString(t.v2)
	}
	for _, c := range v1Used {
		if d, ok := t.v1[c]; ok {
			if b.Len() > 0 {
				b.WriteString(" ")
			}
			b.WriteString(d)
		}
	}
	return b.String()
}

// Limits names the limits the tree enforces, "memory,pids,cpu".
func (t *Tree) LimitNames() string {
	var n []string
	if t.limits.Memory != 0 {
		n = append(n, "memory")
	}
	if t.limits.Pids != 0 {
		n = append(n, "pids")
	}
	if t.limits.CPU != 0 {
		n = append(n, "cpu")
	}
	return strings.Join(n, ",")
}

// cleanup kills what a previous life of the server left in the tree's
// runs' cgroups, and removes them.
func (t *Tree) cleanup() {
	names := map[string]bool{}
	for _, dir := range t.dirs() {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), "run-") {
				names[e.Name()] = true
			}
		}
	}
	for name := range names {
		g := &Group{t: t, name: name, v1: map[string]string{}, fd: -1}
		if t.v2 != "" {
			g.v2 = filepath.Join(t.v2, name)
		}
		for c, d := range t.v1 {
			if dir := filepath.Join(d, name); isDir(dir) {
				g.v1[c] = dir
			}
		}
		if n := len(g.procs()); n > 0 {
			t.Found += n
			t.FoundGroups++
		}
		g.kill()
		g.waitEmpty(5 * time.Second)
		if err := g.remove(); err != nil {
			t.log.Warn().Err(err).Str("cgroup", name).Msg("a cgroup left by a previous life of the server cannot be removed")
		}
	}
}

// dirs are the tree's root directories.
func (t *Tree) dirs() []string {
	var d []string
	if t.v2 != "" {
		d = append(d, t.v2)
	}
	for _, c := range v1Used {
		if dir, ok := t.v1[c]; ok {
			d = append(d, dir)
		}
	}
	return d
}

// hierarchy is one mounted cgroup hierarchy and the server's place in it.
type hierarchy struct {
	mount string // where it is mounted
	own   string // the directory of the server's cgroup in it
}

type hierarchies struct {
	v2 *hierarchy
	v1 map[string]hierarchy // by controller
}

// readHierarchies reads /proc/self/mountinfo and /proc/self/cgroup.
func readHierarchies() (hierarchies, error) {
	h := hierarchies{v1: map[string]hierarchy{}}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return h, err
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return h, err
	}
	paths := map[string]string{} // "" for v2, else a controller
	sc := bufio.NewScanner(bytes.NewReader(own))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			paths[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	sc = bufio.NewScanner(bytes.NewReader(mi))
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if sep < 6 || len(f) < sep+4 {
			continue
		}
		root, mount, fstype, super := unescape(f[3]), unescape(f[4]), f[sep+1], f[sep+3]
		switch fstype {
		case "cgroup2":
			if p, ok := paths[""]; ok && h.v2 == nil {
				h.v2 = &hierarchy{mount: mount, own: within(mount, root, p)}
			}
		case "cgroup":
			for _, c := range strings.Split(super, ",") {
				if p, ok := paths[c]; ok && slices.Contains(v1Used, c) {
					if _, seen := h.v1[c]; !seen {
						h.v1[c] = hierarchy{mount: mount, own: within(mount, root, p)}
					}
				}
			}
		}
	}
	return h, nil
}

// within is the directory of cgroup path p in a hierarchy mounted at mount
// from its cgroup root.
func within(mount, root, p string) string {
	rel, ok := strings.CutPrefix(p, root)
	if !ok {
		rel = p
	}
	return filepath.Join(mount, rel)
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// rootDir is the tree's root in hierarchy h: cfg.Root (a cgroup path, or a
// directory of h's file system), or the server's own cgroup there and Name
// under it.
func rootDir(h hierarchy, cfg Config) (string, error) {
	if cfg.Root == "" {
		return filepath.Join(h.own, cfg.Name), nil
	}
	if !filepath.IsAbs(cfg.Root) {
		return "", fmt.Errorf("--cgroup-root %q: not an absolute path", cfg.Root)
	}
	root := filepath.Clean(cfg.Root)
	if root == h.mount || strings.HasPrefix(root, h.mount+"/") {
		return root, nil
	}
	if strings.HasPrefix(root, "/sys/") || strings.HasPrefix(root, "/proc/") || strings.HasPrefix(root, "/dev/") {
		return "", fmt.Errorf("--cgroup-root %q: not in a cgroup file system", cfg.Root)
	}
	return filepath.Join(h.mount, root), nil
}

// mkdirCgroup makes dir (and its parents) and checks that it is a cgroup:
// a directory the kernel gave cgroup.procs.
func mkdirCgroup(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC && st.Type != unix.CGROUP_SUPER_MAGIC {
		return fmt.Errorf("%s is not in a cgroup file system", dir)
	}
	if err := unix.Access(filepath.Join(dir, "cgroup.procs"), unix.W_OK); err != nil {
		return fmt.Errorf("%s/cgroup.procs: %w", dir, err)
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// writeFile writes s to a cgroup file, which takes it in one write.
func writeFile(name, s string) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", s, name, err)
	}
	return nil
}

// readPids reads a cgroup.procs file.
func readPids(name string) ([]int, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids, nil
}

// readInt reads a file holding one number; ok is false when it cannot.
func readInt(name string) (int64, bool) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// readKey reads the number after key in a flat keyed file ("oom_kill 3").
func readKey(name, key string) (int64, bool) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// notExist says whether err is a missing file or cgroup.
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOENT)
}

// Close removes the tree's root directories where no cgroup is left in
// them; a root still holding a run's cgroup stays, for the next start-up.
func (t *Tree) Close() error {
	var errs []error
	for _, d := range t.dirs() {
		if err := unix.Rmdir(d); err != nil && err != unix.ENOENT && err != unix.EBUSY && err != unix.ENOTEMPTY {
			errs = append(errs, fmt.Errorf("removing %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
