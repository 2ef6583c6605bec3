package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// report collects the table's rows, notes and problems seen on the way.
type report struct {
	mu       sync.Mutex
	rows     []row
	tables   []table
	notes    []string
	problems []string
}

// table is a table of its own, printed after the main one: a phase's
// figures for several set-ups side by side.
type table struct {
	title  string
	header []string   // the figure's column first
	rows   [][]string // as many cells as the header
	foot   []string   // lines printed under it
}

// addTable adds t to the report, after the main table.
func (r *report) addTable(t table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tables = append(r.tables, t)
}

// row is one figure. ratio is ours/ceiling: for a rate, the fraction of the
// ceiling reached; for a latency, how many times slower.
type row struct {
	figure, ours, ceiling, ratio string
}

func (r *report) add(figure, ours, ceiling, ratio string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, row{figure, ours, ceiling, ratio})
	progress("%s: ours %s, ceiling %s, ratio %s", figure, ours, ceiling, ratio)
}

// compare adds a row of two numbers measured the same way, with their ratio.
func (r *report) compare(figure, format string, ours, ceiling float64) {
	r.add(figure, fmt.Sprintf(format, ours), fmt.Sprintf(format, ceiling), ratio(ours, ceiling))
}

// single adds a row that has no ceiling.
func (r *report) single(figure, ours string) { r.add(figure, ours, "-", "-") }

func (r *report) note(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := fmt.Sprintf(format, a...)
	r.notes = append(r.notes, s)
	progress("note: %s", s)
}

func (r *report) problem(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := fmt.Sprintf(format, a...)
	r.problems = append(r.problems, s)
	progress("PROBLEM: %s", s)
}

func ratio(ours, ceiling float64) string {
	if ceiling == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", ours/ceiling)
}

func (r *report) print(out io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "figure\tours\tceiling\tratio\t")
	for _, x := range r.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", x.figure, x.ours, x.ceiling, x.ratio)
	}
	tw.Flush()
	fmt.Fprintln(out, "ratio = ours / ceiling: the fraction of the ceiling for rates, times slower for latencies.")
	for _, t := range r.tables {
		fmt.Fprintln(out)
		fmt.Fprintln(out, t.title)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		for _, cells := range append([][]string{t.header}, t.rows...) {
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
		tw.Flush()
		for _, l := range t.foot {
			fmt.Fprintln(out, l)
		}
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(out, "\nnotes:")
		for _, n := range r.notes {
			fmt.Fprintln(out, "  -", n)
		}
	}
	if len(r.problems) == 0 {
		fmt.Fprintln(out, "\nproblems: none")
		return
	}
	fmt.Fprintf(out, "\nproblems (%d):\n", len(r.problems))
	for _, p := range r.problems {
		fmt.Fprintln(out, "  -", p)
	}
}

// printHeader prints what the numbers depend on: date, kernel, CPUs, Go,
// the file descriptor limit and the settings.
func printHeader(out io.Writer, cfg config) {
	var uts unix.Utsname
	kernel := "?"
	if unix.Uname(&uts) == nil {
		kernel = unix.ByteSliceToString(uts.Release[:])
	}
	fmt.Fprintf(out, "rexec bench  %s  kernel %s  nproc %d  GOMAXPROCS %d  %s %s/%s  rexec %s\n",
		time.Now().Format(time.RFC3339), kernel, runtime.NumCPU(), runtime.GOMAXPROCS(0),
		runtime.Version(), runtime.GOOS, runtime.GOARCH, gitDescribe())
	fmt.Fprintf(out, "nofile %s; settings: -d %s, -mb %d x%d, -lines %d every %s, -streams %d (-kills %d)",
		checkNofile(), cfg.dur, cfg.mb, cfg.reps, cfg.lines, cfg.every, cfg.streams, cfg.kills)
	fmt.Fprintf(out, ", -history %v, -tls-runs %d, -plugin-d %s, -plugin-calls %d",
		cfg.historySizes, cfg.tlsRuns, cfg.pluginDur, cfg.pluginCalls)
	if cfg.leak {
		fmt.Fprintf(out, ", leak %d runs + %d cuts", cfg.leakRuns, cfg.leakCuts)
	}
	if cfg.quick {
		fmt.Fprint(out, " (-quick)")
	}
	fmt.Fprintln(out)
}

// checkNofile makes sure RLIMIT_NOFILE's soft limit is its hard limit. Go
// raises it at startup on Linux, so this only verifies, and raises it if
// that did not happen. Children started by os/exec get the original limit
// back; the server raises its own the same way.
func checkNofile() string {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err != nil {
			return fmt.Sprintf("%d/%d (could not raise: %v)", lim.Cur, lim.Max, err)
		}
		return fmt.Sprintf("%d/%d (raised from %d)", raised.Cur, raised.Max, lim.Cur)
	}
	return fmt.Sprintf("%d/%d", lim.Cur, lim.Max)
}

// gitDescribe names the commit the tree is at, and whether it has changes.
func gitDescribe() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "(no git)"
	}
	return strings.TrimSpace(string(out))
}

// percentile returns the p-th percentile (0..100) of sorted by nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*p/100)) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func kib(b int64) string { return fmt.Sprintf("%.0f KiB", float64(b)/1024) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
