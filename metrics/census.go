package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Census is where the gauges of runs in progress are read, at each scrape,
// from the owners of that state: nothing is counted at the transitions, so
// nothing can drift. Any func may be nil.
type Census struct {
	// Scripts are the names of the exectab in force: each has its series,
	// at 0 when none of its runs runs or waits.
	Scripts func() []string
	// Running counts the processes running now by script ("" for ad-hoc
	// commands), attached and detached: the broker's table.
	Running func() (attached, detached map[string]int)
	// Queued counts the detached runs queued now by script: the manager
	// of detached runs.
	Queued func() map[string]int
	// CertExpiry is when the TLS certificate in force expires (nil
	// without TLS): a reload that renews it moves the gauge.
	CertExpiry func() time.Time
}

var (
	runningDesc = prometheus.NewDesc(namespace+"_runs_running",
		"Runs whose process runs now, by kind (attached, detached) and script (\"\" for an ad-hoc command).",
		[]string{"kind", "script"}, nil)
	queuedDesc = prometheus.NewDesc(namespace+"_runs_queued",
		"Detached runs queued now, waiting for a slot, a start time, resources or a script a reload removed, by script.",
		[]string{"script"}, nil)
	certExpiryDesc = prometheus.NewDesc(namespace+"_tls_cert_expiry_timestamp_seconds",
		"When the TLS certificate in force expires, in UNIX seconds (only with --tls-cert): alert on it minus time().",
		nil, nil)
)

// Watch registers the gauges that c reads. A node calls it once, when its
// parts are open.
func (m *Metrics) Watch(c Census) error {
	if m == nil {
		return nil
	}
	if err := m.reg.Register(censusCollector{c}); err != nil {
		return fmt.Errorf("metrics: the gauges of runs in progress: %w", err)
	}
	return nil
}

type censusCollector struct{ c Census }

func (cc censusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- runningDesc
	ch <- queuedDesc
	if cc.c.CertExpiry != nil {
		ch <- certExpiryDesc
	}
}

// Collect sends a series for each script in force and each script with
// something running or queued (the runs of a script a reload removed
// remain, as long as they do), and the ad-hoc commands' attached series.
func (cc censusCollector) Collect(ch chan<- prometheus.Metric) {
	var names []string
	if cc.c.Scripts != nil {
		names = cc.c.Scripts()
	}
	var attached, detached, queued map[string]int
	if cc.c.Running != nil {
		attached, detached = cc.c.Running()
	}
	if cc.c.Queued != nil {
		queued = cc.c.Queued()
	}
	running := func(kind Kind, counts map[string]int, always ...string) {
		seen := map[string]bool{}
		emit := func(script string) {
			if !seen[script] {
				seen[script] = true
				ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, float64(counts[script]), kind.String(), script)
			}
		}
		for _, s := range always {
			emit(s)
		}
		for _, s := range names {
			emit(s)
		}
		for s := range counts {
			emit(s)
		}
	}
	if cc.c.CertExpiry != nil {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(cc.c.CertExpiry().Unix()))
	}
	running(Attached, attached, "")
	running(Detached, detached)
	seen := map[string]bool{}
	for _, s := range names {
		seen[s] = true
		ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(queued[s]), s)
	}
	for s, n := range queued {
		if !seen[s] {
			ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(n), s)
		}
	}
}
