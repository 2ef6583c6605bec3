// Package metrics defines every metric one rexec node exposes (names, labels
// and the bounded sets of their values), keeps them in a Prometheus registry
// of the node's own, and serves it (Handler) for GET /metrics. The parts
// count what they own through the small types here, injected like the
// logger: the broker, stream and detached runs through Runs and Streams,
// webapi through Web; a nil one counts nothing. State that has an owner
// (runs running, runs queued) is read from it at each scrape (Census), so
// it cannot drift.
//
// No label carries user input: kinds, ends, reasons and monitor types are
// fixed sets, and a script label is a name of the exectab ("" for an ad-hoc
// command), never an alias, a command or an argument. It knows nothing of
// HTTP routing, authentication or processes beyond how one ended.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rexec/rexec/internal/buildinfo"
)

// namespace prefixes rexec's own metric names.
const namespace = "rexec"

// Metrics is one node's registry and the collectors its parts count with.
// The registry is the node's own, never Prometheus's global one: a process
// (a test) may run many nodes.
type Metrics struct {
	Runs    *Runs
	Streams *Streams
	Web     *Web

	reg     *prometheus.Registry
	handler http.Handler
}

// New makes a node's metrics: rexec's own, the build's (rexec_build_info),
// and the Go runtime's and the process's (go_*, process_*).
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{Runs: newRuns(), Streams: newStreams(), Web: newWeb(), reg: reg}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(buildinfo.Read()),
	)
	m.Runs.register(reg)
	m.Streams.register(reg)
	m.Web.register(reg)
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A collector that fails (the process's, where /proc is odd) costs
		// its own metrics, not the scrape.
		ErrorHandling: promhttp.ContinueOnError,
		// A scrape costs a little CPU: a client that asks in a loop
		// (maybe unauthenticated, on --metrics-addr) gets 503 beyond these.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	return m
}

// Handler serves the metrics in Prometheus's text format (or what the
// scraper negotiates). It checks nothing: whoever routes it decides who
// may read them.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Registry is the node's registry, for tests and for collectors of parts
// outside this package.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// buildInfo is rexec_build_info: 1, with the build as labels.
func buildInfo(in buildinfo.Info) prometheus.Collector {
	version := in.Version
	if version == "" {
		version = "unknown"
	}
	modified := "false"
	if in.Modified {
		modified = "true"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "build_info",
		Help:      "The build of rexec: its module version, VCS revision (modified: built from a tree with uncommitted changes) and Go version. Always 1.",
		ConstLabels: prometheus.Labels{"version": version, "revision": in.Revision, "modified": modified,
			"goversion": in.GoVersion},
	})
	g.Set(1)
	return g
}
