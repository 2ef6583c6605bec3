package stream

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rexec/rexec/metrics"
	"github.com/rs/zerolog"
)

// Options are an Engine's settings.
type Options struct {
	// Heartbeat is how long an NDJSON stream may stay silent before a
	// heartbeat object is sent. It must be positive.
	Heartbeat time.Duration
	// ParkAfter is how long a stream whose head has been sent may stay
	// quiet before it is parked (park.go); zero or negative: never, and
	// no text stream reads its pipe itself.
	ParkAfter time.Duration
	// ShedResponse is the whole HTTP response written to a connection
	// accepted while the process is out of descriptors (shed.go).
	// Default: a bare 503.
	ShedResponse string
	// Logger receives the line that ends each run and the engine's errors.
	Logger zerolog.Logger
	// Metrics counts the streams held and parked and the bytes they send;
	// Runs the ends of their runs (the attached runs), with the status
	// that ends the log line. Nil counts nothing.
	Metrics *metrics.Streams
	Runs    *metrics.Runs
}

// Engine serves the streams of one http.Server. Its hooks, ConnContext,
// ConnState and both listeners of Listen, must all be that server's; a
// server without them (ConnContext above all) never has a stream parked.
type Engine struct {
	opts Options
	log  zerolog.Logger

	// Parked streams (park.go). parked is nil once Stop has run; stopped
	// holds then the streams that Wait cuts when its context ends.
	parkMu  sync.Mutex
	parked  map[*parkedStream]struct{}
	stopped map[*parkedStream]struct{}
	parkWG  sync.WaitGroup
	// handback is where a parked stream's connection goes back to the
	// server; idle are the ones given back with no request on them yet.
	handback *connQueue
	idleMu   sync.Mutex
	idle     map[net.Conn]struct{}
}

// New returns an engine with opts.
func New(opts Options) *Engine {
	if opts.ShedResponse == "" {
		opts.ShedResponse = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
	}
	return &Engine{opts: opts, log: opts.Logger, parked: map[*parkedStream]struct{}{},
		handback: newConnQueue(), idle: map[net.Conn]struct{}{}}
}

// The hooks of the http.Server.

// connKey carries a request's connection in its context: only a
// connection with a file descriptor can be parked.
type connKey struct{}

// ConnContext is the http.Server's ConnContext: it keeps the connection
// where its requests' streams find it.
func (e *Engine) ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// ConnState is the http.Server's ConnState: a connection given back after
// a parked stream is idle until it carries a request or closes.
func (e *Engine) ConnState(c net.Conn, st http.ConnState) {
	if st != http.StateNew {
		e.forgetIdle(c)
	}
}

// Listen listens on the TCP address addr and returns the two listeners
// the http.Server must serve: ln, whose Accept sheds the connections the
// process has no descriptor for (shed.go), and handback, through which
// the connections of parked streams come back for their next request.
// Closing ln does not close handback; http.Server.Shutdown closes both.
//
// With tlsConfig, ln serves TLS. Its connections are never parked (canPark
// wants the socket itself), so nothing comes back through handback; a
// connection shed is closed unanswered, as a plaintext 503 would only be
// a handshake error to its client.
func (e *Engine) Listen(addr string, tlsConfig *tls.Config) (ln, handback net.Listener, err error) {
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	e.handback.addr = tcp.Addr()
	if tlsConfig != nil {
		return tls.NewListener(newShedListener(tcp, "", e.log), tlsConfig), e.handback, nil
	}
	return newShedListener(tcp, e.opts.ShedResponse, e.log), e.handback, nil
}

// Shutting down, in this order: Stop, then http.Server.Shutdown (which
// waits for the streams still with net/http), then Wait.

// Stop makes the streams that go quiet from now on stay with net/http,
// and the parked ones close their connection at their end instead of
// serving another request; it closes the connections given back and
// still idle, which http.Server.Shutdown would otherwise wait 5 seconds
// for, taking them for new.
func (e *Engine) Stop() {
	e.parkMu.Lock()
	if e.parked != nil {
		e.stopped, e.parked = e.parked, nil
	}
	e.parkMu.Unlock()
	e.closeIdle()
}

// Wait waits for the parked streams to end, or for ctx, after which their
// connections are cut and it returns ctx's error at once, as
// http.Server.Close does: each stream's goroutine ends once its child is
// reaped, which may take the kill grace.
func (e *Engine) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { e.parkWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	e.parkMu.Lock()
	for ps := range e.stopped {
		ps.conn.Close()
		ps.hangup()
	}
	e.parkMu.Unlock()
	return ctx.Err()
}
