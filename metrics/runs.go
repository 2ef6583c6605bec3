package metrics

import (
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rexec/rexec/child"
)

// Kind is how a run is held: by its client's connection (POST /process) or
// by nobody (a detached run of /scripts/v1). It is the label "kind".
type Kind uint8

const (
	Attached Kind = iota // "attached"
	Detached             // "detached"
	numKinds
)

var kindNames = [numKinds]string{"attached", "detached"}

func (k Kind) String() string { return kindNames[k] }

// Ended is how a run ended, the label "ended": what the server saw, the
// same for attached and detached runs.
type Ended uint8

const (
	ExitZero    Ended = iota // "exit_zero": the process exited by itself with code 0
	ExitNonzero              // "exit_nonzero": ... with another code
	Signal                   // "signal": a signal the server did not send killed it
	Timeout                  // "timeout": killed at its time limit
	Disconnect               // "disconnect": killed because its client went away (attached runs)
	Shutdown                 // "shutdown": killed because the server stopped (a detached run's "interrupted")
	Cancelled                // "cancelled": stopped on request (DELETE /process/ALIAS, /scripts/v1/cancel), or a detached run cancelled while queued
	StartFailed              // "start_failed": its process could not be started
	OOM                      // "oom": the OOM killer killed it, its cgroup at its memory limit
	Lost                     // "lost": the fleet's host that ran it stopped (a detached run, counted by the host that marked it)
	numEnded
)

var endedNames = [numEnded]string{"exit_zero", "exit_nonzero", "signal", "timeout", "disconnect", "shutdown",
	"cancelled", "start_failed", "oom", "lost"}

func (e Ended) String() string { return endedNames[e] }

// EndOf is how a process that ran ended, from its Status: the reason the
// server killed it when it did (the first one given), else its exit. It is
// the one rule for both kinds of runs, and the one the log line's "reason"
// follows.
func EndOf(st child.Status) Ended {
	switch st.Reason {
	case child.ReasonTimeout:
		return Timeout
	case child.ReasonDisconnect:
		return Disconnect
	case child.ReasonShutdown:
		return Shutdown
	case child.ReasonCancelled:
		return Cancelled
	case child.ReasonOOM:
		return OOM
	}
	switch {
	case st.Signal != 0:
		return Signal
	case st.Code == 0:
		return ExitZero
	}
	return ExitNonzero
}

// spawn failure reasons, the label "reason" of rexec_spawn_failures_total.
const (
	spawnNoResources = iota // "no_resources": out of descriptors, processes or memory (the server's condition)
	spawnStartFailed        // "start_failed": anything else (no such command or directory, permission denied, E2BIG)
	numSpawnReasons
)

var spawnReasonNames = [numSpawnReasons]string{"no_resources", "start_failed"}

// Runs counts runs: started, ended and how, how long they ran, and failed
// spawns. The broker counts attached runs' starts and every spawn failure,
// package stream the ends of attached runs (it holds their status), and
// package detached its runs. A nil *Runs counts nothing.
//
// Each (kind, script) pair has its series resolved once and cached, so
// counting a run costs a map read and an atomic add, and allocates nothing.
type Runs struct {
	started  *prometheus.CounterVec
	ended    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	spawnVec *prometheus.CounterVec
	spawn    [numKinds][numSpawnReasons]prometheus.Counter

	// series is read without a lock and replaced whole (under mu) when a
	// pair is added or scripts are dropped.
	mu     sync.Mutex
	series atomic.Pointer[map[seriesKey]*runSeries]
}

type seriesKey struct {
	kind   Kind
	script string
}

// runSeries are one (kind, script)'s resolved series.
type runSeries struct {
	started  prometheus.Counter
	ended    [numEnded]prometheus.Counter
	duration prometheus.Observer
}

// DurationBuckets are the upper bounds, in seconds, of
// rexec_run_duration_seconds: from a command that exits at once to a
// nightly job.
var DurationBuckets = []float64{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600}

func newRuns() *Runs {
	r := &Runs{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "runs_started_total",
			Help: "Runs whose process started, by kind (attached, detached) and script (\"\" for an ad-hoc command).",
		}, []string{"kind", "script"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "runs_ended_total",
			Help: "Runs that ended, by kind, script and how (ended: exit_zero, exit_nonzero, signal, timeout, disconnect, shutdown, cancelled, start_failed). " +
				"start_failed runs, and detached runs cancelled while queued, never started.",
		}, []string{"kind", "script", "ended"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "run_duration_seconds",
			Help:    "How long the processes of runs ran, from start to reap, by kind and script.",
			Buckets: DurationBuckets,
		}, []string{"kind", "script"}),
	}
	spawn := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "spawn_failures_total",
		Help: "Processes that could not be started, by kind and reason (no_resources: out of descriptors, processes or memory, " +
			"a detached run then stays queued; start_failed: no such command or directory, permission denied...).",
	}, []string{"kind", "reason"})
	for k := range numKinds {
		for s := range numSpawnReasons {
			r.spawn[k][s] = spawn.WithLabelValues(kindNames[k], spawnReasonNames[s])
		}
	}
	r.series.Store(&map[seriesKey]*runSeries{})
	r.spawnVec = spawn
	return r
}

func (r *Runs) register(reg prometheus.Registerer) {
	reg.MustRegister(r.started, r.ended, r.duration, r.spawnVec)
}

// of returns the series of (kind, script), resolving them on first use.
func (r *Runs) of(kind Kind, script string) *runSeries {
	k := seriesKey{kind, script}
	if s := (*r.series.Load())[k]; s != nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := *r.series.Load()
	if s := cur[k]; s != nil {
		return s
	}
	kn := kind.String()
	s := &runSeries{
		started:  r.started.WithLabelValues(kn, script),
		duration: r.duration.WithLabelValues(kn, script),
	}
	for e := range numEnded {
		s.ended[e] = r.ended.WithLabelValues(kn, script, endedNames[e])
	}
	next := maps.Clone(cur)
	next[k] = s
	r.series.Store(&next)
	return s
}

// Started counts a run of script whose process started.
func (r *Runs) Started(kind Kind, script string) {
	if r == nil {
		return
	}
	r.of(kind, script).started.Inc()
}

// Ended counts a run of script whose process ended as st says, and how
// long it ran.
func (r *Runs) Ended(kind Kind, script string, st child.Status) {
	if r == nil {
		return
	}
	s := r.of(kind, script)
	s.ended[EndOf(st)].Inc()
	s.duration.Observe(st.Duration.Seconds())
}

// EndedUnstarted counts a run of script that ended without a process:
// StartFailed, or (detached) Cancelled while queued.
func (r *Runs) EndedUnstarted(kind Kind, script string, how Ended) {
	if r == nil {
		return
	}
	r.of(kind, script).ended[how].Inc()
}

// SpawnFailed counts a process of kind that could not be started, with the
// error child.Start returned.
func (r *Runs) SpawnFailed(kind Kind, err error) {
	if r == nil {
		return
	}
	reason := spawnStartFailed
	if errors.Is(err, child.ErrNoResources) {
		reason = spawnNoResources
	}
	r.spawn[kind][reason].Inc()
}

// KeepScripts drops the series of every script not in scripts (the
// exectab in force, after a reload), so that the series stay as many as
// the exectab's scripts however often it changes. The ad-hoc series
// (script "") stay. A run of a dropped script still running when it ends
// brings its series back, until the next reload.
func (r *Runs) KeepScripts(scripts []string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := make(map[string]bool, len(scripts)+1)
	keep[""] = true
	for _, s := range scripts {
		keep[s] = true
	}
	cur := *r.series.Load()
	next := make(map[seriesKey]*runSeries, len(cur))
	var gone []string
	for k, s := range cur {
		if keep[k.script] {
			next[k] = s
		} else if !slices.Contains(gone, k.script) {
			gone = append(gone, k.script)
		}
	}
	r.series.Store(&next)
	for _, script := range gone {
		l := prometheus.Labels{"script": script}
		r.started.DeletePartialMatch(l)
		r.ended.DeletePartialMatch(l)
		r.duration.DeletePartialMatch(l)
	}
}
