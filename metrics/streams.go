package metrics

import "github.com/prometheus/client_golang/prometheus"

// Streams counts the streams of attached runs (package stream): how many
// are held open, how many of those are parked (served off net/http), and
// the bytes of output they sent. A nil *Streams counts nothing. Each call
// is one atomic operation and allocates nothing.
type Streams struct {
	held, parked prometheus.Gauge
	bytes        prometheus.Counter
}

func newStreams() *Streams {
	return &Streams{
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "streams_held",
			Help: "Streams of attached runs open now: from the run's start until its end, parked ones included.",
		}),
		parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "streams_parked",
			Help: "Streams of attached runs parked now: quiet, served off net/http by one small goroutine each.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "stream_bytes_total",
			Help: "Bytes of output sent to the clients of attached runs (the commands' output, without HTTP or NDJSON framing).",
		}),
	}
}

func (s *Streams) register(reg prometheus.Registerer) {
	reg.MustRegister(s.held, s.parked, s.bytes)
}

// Held counts a stream in (+1) or out (-1).
func (s *Streams) Held(delta int) {
	if s != nil {
		s.held.Add(float64(delta))
	}
}

// Parked counts a parked stream in (+1) or out (-1).
func (s *Streams) Parked(delta int) {
	if s != nil {
		s.parked.Add(float64(delta))
	}
}

// Wrote counts n bytes of output sent.
func (s *Streams) Wrote(n int) {
	if s != nil && n > 0 {
		s.bytes.Add(float64(n))
	}
}
