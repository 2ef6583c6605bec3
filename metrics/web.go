package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// RefusalReasons are the values of the label "reason" of
// rexec_auth_refusals_total: the errorcodes with which webapi refuses a
// request before serving it, for its credentials (401) or for whom it
// comes from (403). Any other code counts as "other".
var RefusalReasons = []string{
	"unauthorized",     // no credential, a wrong one, or the admin token in the URL
	"forbidden",        // a guest key outside the /scripts/v1 API it is limited to
	"forbidden_host",   // a Host the server does not answer to (DNS rebinding)
	"forbidden_origin", // a browser page of another site
	"other",
}

// MonitorType is the label "type" of the monitor metrics.
type MonitorType uint8

const (
	EventStream MonitorType = iota // "events": GET /scripts/v1/events (Server-Sent Events)
	WebSocket                      // "websocket": GET /scripts/v1/monitor
	numMonitorTypes
)

var monitorTypeNames = [numMonitorTypes]string{"events", "websocket"}

// DropReasons are the values of the label "reason" of
// rexec_monitors_dropped_total: why the server ended a monitor. Any other
// value counts as "other".
var DropReasons = []string{
	"too_slow",       // it fell more than --event-queue events behind
	"revoked",        // its guest key was deleted or expired
	"too_many_names", // it asked to watch more than --monitor-names names (WebSocket)
	"shutdown",       // the server is closing
	"other",
}

// Web counts what webapi decides: requests refused by authentication, and
// the event monitors connected, open and dropped by the server. A nil *Web
// counts nothing.
type Web struct {
	refusals  map[string]prometheus.Counter // every RefusalReasons, resolved
	connected [numMonitorTypes]prometheus.Counter
	open      [numMonitorTypes]prometheus.Gauge
	dropped   [numMonitorTypes]map[string]prometheus.Counter // every DropReasons, resolved
	vecs      []prometheus.Collector
}

func newWeb() *Web {
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "auth_refusals_total",
		Help: "Requests refused by authentication, before any handler, by reason (unauthorized, forbidden, forbidden_host, forbidden_origin).",
	}, []string{"reason"})
	connected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "monitors_connected_total",
		Help: "Event monitors admitted, by type (events: Server-Sent Events; websocket).",
	}, []string{"type"})
	open := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "monitors_open",
		Help: "Event monitors open now, by type.",
	}, []string{"type"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "monitors_dropped_total",
		Help: "Event monitors ended by the server, by type and reason (too_slow, revoked, too_many_names, shutdown).",
	}, []string{"type", "reason"})
	w := &Web{refusals: map[string]prometheus.Counter{}, vecs: []prometheus.Collector{refusals, connected, open, dropped}}
	for _, r := range RefusalReasons {
		w.refusals[r] = refusals.WithLabelValues(r)
	}
	for t := range numMonitorTypes {
		tn := monitorTypeNames[t]
		w.connected[t] = connected.WithLabelValues(tn)
		w.open[t] = open.WithLabelValues(tn)
		w.dropped[t] = map[string]prometheus.Counter{}
		for _, r := range DropReasons {
			w.dropped[t][r] = dropped.WithLabelValues(tn, r)
		}
	}
	return w
}

func (w *Web) register(reg prometheus.Registerer) { reg.MustRegister(w.vecs...) }

// Refused counts a request refused by authentication with errorcode code.
func (w *Web) Refused(code string) {
	if w == nil {
		return
	}
	c, ok := w.refusals[code]
	if !ok {
		c = w.refusals["other"]
	}
	c.Inc()
}

// MonitorOpened counts a monitor of type t admitted and open; the function
// it returns counts it closed, once whatever the number of calls.
func (w *Web) MonitorOpened(t MonitorType) (closed func()) {
	if w == nil {
		return func() {}
	}
	w.connected[t].Inc()
	w.open[t].Inc()
	return sync.OnceFunc(w.open[t].Dec)
}

// MonitorDropped counts a monitor of type t that the server ended, for
// reason (one of DropReasons).
func (w *Web) MonitorDropped(t MonitorType, reason string) {
	if w == nil {
		return
	}
	c, ok := w.dropped[t][reason]
	if !ok {
		c = w.dropped[t]["other"]
	}
	c.Inc()
}
