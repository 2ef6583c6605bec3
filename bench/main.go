// Command bench measures the rexec service against raw ceilings measured in
// the same run, on the same machine, and prints a table of both.
//
//	go run ./bench            # default sizes, about a minute
//	go run ./bench -quick     # small sizes, a smoke test of well under a minute
//	go run ./bench -leak      # also the long leak check
//
// The table goes to stdout, progress to stderr. The exit status is 0 when
// all went well, 3 when problems were seen (failed or refused runs, errors
// in the server's log, leaks, an unclean shutdown), 1 when the benchmark
// itself could not run.
//
// It builds rexec and a generator helper (bench/gen) into a temporary
// directory, starts rexec on 127.0.0.1 port 0 and talks to it over loopback
// only. Every measure is bounded in time and the server is always stopped
// with SIGTERM at the end, also on error or Ctrl-C.
//
// What is measured, and against which ceiling:
//
//   - spawn: round trips of POST /process running `true`, at concurrency 1
//     and 8, against os/exec running `true` in-process at the same
//     concurrency. This is the cost of the service per run.
//   - throughput: a generator writing 100-byte lines streamed through the
//     service, against the same generator read straight from a pipe.
//   - line latency: the delay from a child's write(2) of a timestamped line to
//     the client reading it, against the same child read from a pipe.
//   - held streams: the server's memory and threads per idle stream, and the
//     time from a client closing its connection to its child being gone.
//   - tls: the RSS per held stream, the throughput of one stream and the
//     latency of a request (GET /healthz, a run of `true`) on kept and new
//     connections, over TLS (HTTP/1.1 and HTTP/2) and over plain HTTP (as
//     it is, and with parking off), measured the same way in the same
//     phase, each on a fresh server of its own, with a CA and certificate
//     the bench makes. Its ratios are TLS / plain.
//   - plugins: calls per second to a singleton plugin command (examples/
//     go-plugin, built by the phase) on one session and on 8 at once,
//     against the same JSON-RPC exchange over the pipe of one process the
//     bench starts itself; and the time of a one-shot call to a
//     one_for_one command (a process per call), against a plain fork and
//     exec of the program doing that exchange. On a server of its own.
//   - leak check (-leak): fds, threads and RSS after many runs and cuts.
//   - history: GET /scripts/v1/runs on histories of 10^4, 10^5 and 10^6 runs
//     (-history), the first page and one deep in the cursor, with and
//     without filters, each on a server of its own. No ceiling.
//   - fleet: a fleet of three hosts on this machine (embedded JetStream,
//     routed on loopback) against a single host, both started by the
//     phase: detached runs per second through the shared queue, the output
//     of a run followed from another host (ceilings: the single host's
//     output file, and the raw pipeline), and the time from a kill -9 of a
//     host to its run being `lost`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	dur          time.Duration // length of each rate measure
	quick        bool
	mb           int           // throughput: megabytes (10^6 bytes) generated
	reps         int           // throughput: repetitions, best one kept
	lines        int           // line latency: number of lines
	every        time.Duration // line latency: interval between lines
	streams      int           // held streams: how many
	marginal     bool          // held streams: also measure the cost of 4x more
	kills        int           // held streams: how many disconnects are timed
	leak         bool
	leakRuns     int // leak check: sequential short runs
	leakCuts     int // leak check: runs cut by a disconnect
	noWrk        bool
	bin          string        // a prebuilt rexec binary instead of building one
	keep         bool          // keep the temporary directory (server log)
	timeout      time.Duration // bound on the whole benchmark
	concurrency  []int
	only         string        // comma-separated phases to run; empty runs all
	tlsRuns      int           // tls: requests timed per server, request and connection
	historySizes []int         // history: the sizes of the histories measured
	pluginDur    time.Duration // plugins: length of each calls/s measure
	pluginCalls  int           // plugins: one_for_one calls timed, and fork-execs
}

func parseFlags() config {
	var c config
	flag.DurationVar(&c.dur, "d", 5*time.Second, "duration of each rate measure (spawn)")
	flag.BoolVar(&c.quick, "quick", false, "small sizes and durations: a smoke test of well under a minute")
	flag.IntVar(&c.mb, "mb", 200, "throughput: megabytes (10^6 bytes) of 100-byte lines per run")
	flag.IntVar(&c.reps, "reps", 3, "throughput: runs of each side; the best is reported")
	flag.IntVar(&c.lines, "lines", 2000, "line latency: lines written by the child")
	flag.DurationVar(&c.every, "every", 2*time.Millisecond, "line latency: interval between lines")
	flag.IntVar(&c.streams, "streams", 200, "held streams: concurrent streams held open")
	flag.BoolVar(&c.marginal, "marginal", true, "held streams: also open 4x -streams more, for the RSS each further stream costs")
	flag.IntVar(&c.kills, "kills", 20, "held streams: disconnects timed until the child is gone")
	flag.BoolVar(&c.leak, "leak", false, "run the (long) leak check with -leak-runs and -leak-cuts")
	flag.IntVar(&c.leakRuns, "leak-runs", 0, "leak check: sequential short runs (default 100000 with -leak; setting it enables the check)")
	flag.IntVar(&c.leakCuts, "leak-cuts", 0, "leak check: runs cut by a disconnect (default 10000 with -leak; setting it enables the check)")
	flag.BoolVar(&c.noWrk, "no-wrk", false, "skip the wrk measure even if wrk is on PATH")
	flag.StringVar(&c.bin, "bin", "", "use this rexec binary instead of building one from the module root")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (binaries, server log)")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Minute, "give up after this long in all")
	flag.StringVar(&c.only, "only", "", "run only these phases, comma-separated: streams,spawn,throughput,latency,cgroups,tls,plugins,leak,history,fleet")
	flag.IntVar(&c.tlsRuns, "tls-runs", 200, "tls: requests timed per server, request (GET /healthz, run `true`) and kind of connection (kept, new, resumed)")
	flag.DurationVar(&c.pluginDur, "plugin-d", 3*time.Second, "plugins: duration of each calls/s measure (singleton, direct pipe)")
	flag.IntVar(&c.pluginCalls, "plugin-calls", 200, "plugins: one_for_one calls timed, and as many plain fork-execs")
	history := flag.String("history", "10000,100000,1000000", "history: the numbers of runs of the histories measured, comma-separated (10000 with -quick)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		// Only what was not given explicitly shrinks.
		quick := map[string]func(){
			"d":            func() { c.dur = time.Second },
			"mb":           func() { c.mb = 20 },
			"reps":         func() { c.reps = 2 },
			"lines":        func() { c.lines = 200 },
			"streams":      func() { c.streams = 50 },
			"kills":        func() { c.kills = 10 },
			"marginal":     func() { c.marginal = false },
			"history":      func() { *history = "10000" },
			"tls-runs":     func() { c.tlsRuns = 50 },
			"plugin-d":     func() { c.pluginDur = time.Second },
			"plugin-calls": func() { c.pluginCalls = 50 },
		}
		for name, shrink := range quick {
			if !set[name] {
				shrink()
			}
		}
	}
	if set["leak-runs"] || set["leak-cuts"] {
		c.leak = true
	}
	if c.leak {
		runs, cuts := 100000, 10000
		if c.quick {
			runs, cuts = 2000, 200
		}
		if !set["leak-runs"] {
			c.leakRuns = runs
		}
		if !set["leak-cuts"] {
			c.leakCuts = cuts
		}
	}
	for _, f := range strings.Split(*history, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1000 {
			fmt.Fprintf(os.Stderr, "bench: -history %q: give numbers of runs of 1000 or more, comma-separated\n", *history)
			os.Exit(2)
		}
		c.historySizes = append(c.historySizes, n)
	}
	c.kills = min(c.kills, c.streams)
	c.reps = max(c.reps, 1)
	c.tlsRuns = max(c.tlsRuns, 1)
	c.pluginCalls = max(c.pluginCalls, 1)
	c.concurrency = []int{1, 8}
	return c
}

func main() {
	cfg := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second Ctrl-C ends the benchmark at once
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	problems, err := run(ctx, cfg, os.Stdout)
	cancel()
	stop()
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	case problems > 0:
		os.Exit(3)
	}
}

// run does the whole benchmark and prints its report to out. Progress goes
// to stderr. The report is printed even when a phase fails or the run is
// interrupted, with whatever was measured. It returns the number of
// problems seen (failed requests, server errors, leaks).
func run(ctx context.Context, cfg config, out io.Writer) (problems int, err error) {
	rep := &report{}
	printHeader(out, cfg)

	tmp, err := os.MkdirTemp("", "rexec-bench-")
	if err != nil {
		return 0, err
	}
	defer func() {
		if cfg.keep {
			fmt.Fprintln(out, "kept", tmp)
		} else {
			os.RemoveAll(tmp)
		}
	}()

	bins, err := buildAll(ctx, tmp, cfg.bin)
	if err != nil {
		return 0, err
	}
	srv, err := startServer(ctx, bins.rexec, tmp)
	if err != nil {
		return 0, err
	}
	// Always stop the server, and report the table we have.
	defer func() {
		srv.stop(rep)
		srv.logSummary(rep)
		rep.print(out)
		problems = len(rep.problems)
		if err == nil && ctx.Err() != nil {
			err = context.Cause(ctx)
		}
	}()
	progress("rexec pid %d listening on %s", srv.pid, srv.addr)

	b := &bench{cfg: cfg, srv: srv, bins: bins, rep: rep, tmp: tmp}
	phases := []struct {
		name, key string
		fn        func(context.Context) error
	}{
		// Held streams first, on a fresh server: its RSS per stream is
		// then memory the streams made it take, not heap left free by
		// earlier phases and reused.
		{"held streams", "streams", b.heldStreams},
		{"spawn", "spawn", b.spawn},
		{"throughput", "throughput", b.throughput},
		{"line latency", "latency", b.latency},
		// Servers of its own, each fresh: the order does not matter.
		{"cgroups", "cgroups", b.cgroupsPhase},
		{"tls", "tls", b.tlsPhase},
		{"plugins", "plugins", b.pluginsPhase},
		{"leak check", "leak", b.leakCheck},
		{"history", "history", b.history},
		{"fleet", "fleet", b.fleetPhase},
	}
	for _, p := range phases {
		if cfg.only != "" && !slices.Contains(strings.Split(cfg.only, ","), p.key) {
			continue
		}
		if ctx.Err() != nil {
			return 0, context.Cause(ctx)
		}
		if !srv.alive() {
			return 0, errors.New("the server exited during the benchmark: see the problems above")
		}
		progress("== %s", p.name)
		if perr := p.fn(ctx); perr != nil {
			if ctx.Err() != nil {
				return 0, context.Cause(ctx)
			}
			rep.problem("%s: %v", p.name, perr)
		}
	}
	return 0, nil
}

// bench holds what every phase needs.
type bench struct {
	cfg  config
	srv  *server
	bins binaries
	rep  *report
	tmp  string
}

// progress prints a line of progress on stderr, so that stdout holds the
// report alone.
func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "# "+format+"\n", a...)
}
