// Package webapi owns HTTP and nothing else: routing, authentication,
// decoding and validating requests, mapping error kinds to statuses (in
// errors.go, one place), and writing streams with their trailers. It never
// touches a process directly, only the handles the broker gives it.
package webapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/runs"
	"github.com/rs/zerolog"
)

// Config holds the server's settings. Zero values take the defaults.
type Config struct {
	// Addr is the address to listen on, e.g. "127.0.0.1:8910".
	Addr string
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every request but GET /healthz.
	Token string
	// MaxBody limits a request body. Default 1 MiB.
	MaxBody int64
	// Heartbeat is how long an NDJSON stream may stay silent before a
	// heartbeat object is sent. Default 15s.
	Heartbeat time.Duration
	// Env is the environment every child starts from. Default: the
	// server's, without REXEC_* variables.
	Env []string
	// Logger receives one line per run and the server's errors.
	Logger zerolog.Logger
	// Scripts returns the exectab catalogue in force, read at every
	// request so that a reload takes effect at once. Nil: no scripts.
	Scripts func() *catalog.Catalog
	// ScriptsOnly refuses ad-hoc commands (403): only scripts run.
	ScriptsOnly bool
	// Runs serves the detached runs of /scripts/v1; nil: the API answers
	// that this server runs no scripts.
	Runs *runs.Manager
	// Events is the feed that GET /scripts/v1/events streams.
	Events *feed.Hub
	// Guests keeps the guest keys; nil: there are none.
	Guests Guests
	// ParkAfter is how long a stream whose head has been sent may stay
	// quiet before it is parked: served off net/http, which saves most of
	// a held stream's memory (park.go). Default 25ms; negative: never.
	ParkAfter time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxBody <= 0 {
		c.MaxBody = 1 << 20
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.Env == nil {
		c.Env = ServerEnv(os.Environ())
	}
	if c.ParkAfter == 0 {
		c.ParkAfter = 25 * time.Millisecond
	}
}

// Server is the HTTP front of a broker.
type Server struct {
	cfg    Config
	broker *broker.Broker
	log    zerolog.Logger
	http   *http.Server
	ln     net.Listener

	// baseCtx is the parent of every request's context; it is cancelled
	// only when a shutdown runs out of time.
	baseCtx    context.Context
	cancelBase context.CancelFunc
	serveErr   chan error
	closeOnce  sync.Once
	// closing is closed when Close begins: streams that wait for events
	// rather than for a process (monitors, output followers) end then.
	closing chan struct{}
	// monitors are the open event streams of guests, by guest id, so that
	// deleting a key ends them at once.
	monitorsMu sync.Mutex
	monitors   map[string]map[*func()]struct{}
	tokenHash  [sha256.Size]byte

	// Parked streams (park.go): nil once the server is closing.
	parkMu  sync.Mutex
	parked  map[*parkedStream]struct{}
	parkWG  sync.WaitGroup
	requeue *connQueue // where a parked stream's connection goes back
	idleMu  sync.Mutex
	idle    map[net.Conn]struct{} // given back, no request on them yet
}

// New returns a server for b. Call Open to start listening.
func New(cfg Config, b *broker.Broker) *Server {
	cfg.setDefaults()
	s := &Server{cfg: cfg, broker: b, log: cfg.Logger, serveErr: make(chan error, 2), closing: make(chan struct{}),
		monitors: map[string]map[*func()]struct{}{}, parked: map[*parkedStream]struct{}{},
		idle: map[net.Conn]struct{}{}}
	if cfg.Token != "" {
		s.tokenHash = sha256.Sum256([]byte(cfg.Token))
	}
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: it would cut every stream longer than it.
		BaseContext: func(net.Listener) context.Context { return s.baseCtx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: s.trackIdle,
		ErrorLog:  log.New(httpErrorLog{s.log}, "", 0),
	}
	return s
}

// Handler is the server's routing and authentication, for tests and for
// embedding.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/process", s.handleProcess)
	mux.HandleFunc("/healthz", s.handleHealthz)
	s.routeScripts(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotImplemented, "not implemented: "+r.URL.Path+" (the API is POST /process and /scripts/v1)")
	})
	return s.authenticate(mux)
}

// Open listens on the configured address and serves in the background.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	s.ln = ln
	s.requeue = newConnQueue(ln.Addr())
	go func() { s.serveErr <- s.http.Serve(ln) }()
	go func() { s.serveErr <- s.http.Serve(s.requeue) }()
	return nil
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close shuts down: it stops accepting, terminates every child's group
// (TERM, then KILL after the kill grace) so that each stream ends with its
// trailers, and waits for the streams to end. When ctx ends first, the
// remaining connections are cut.
func (s *Server) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		parked := s.stopParking()
		s.closeIdle()
		brokerDone := make(chan error, 1)
		go func() { brokerDone <- s.broker.Shutdown(ctx) }()
		err = s.http.Shutdown(ctx)
		if err != nil {
			s.cancelBase()
			s.http.Close()
		}
		if perr := s.waitParked(ctx, parked); err == nil {
			err = perr
		}
		if berr := <-brokerDone; err == nil {
			err = berr
		}
		s.cancelBase()
		for range 2 {
			if serr := <-s.serveErr; err == nil && !errors.Is(serr, http.ErrServerClosed) {
				err = serr
			}
		}
	})
	return err
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// authenticate requires the bearer token, when one is set, on every request
// but GET /healthz. The comparison is constant-time over hashes, so neither
// the token's content nor its length leaks through timing.
//
// A guest key (see guests.go) is accepted instead, on the /scripts/v1 API
// only, as a bearer token or, for WebSocket clients that cannot set headers,
// as ?apikey=; the request then carries the guest, whose rights the handlers
// check. Without --token every request is the admin's.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The checks run in a function of their own, whose frame is gone
		// before the handler runs: a held stream parks on this stack for
		// its whole life, and a deeper stack costs every stream memory.
		if r = s.authorize(w, r); r != nil {
			next.ServeHTTP(w, r)
		}
	})
}

// authorize returns the request to serve (carrying its guest, if a guest key
// made it), or nil after answering 401 or 403 itself.
//
//go:noinline
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) *http.Request {
	if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) ||
		isCallback(r.URL.Path) { // a running script's own run token, checked by the handler
		return r
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	scripts := strings.HasPrefix(r.URL.Path, "/scripts/v1/")
	if !ok && scripts {
		got = r.URL.Query().Get("apikey")
	}
	h := sha256.Sum256([]byte(got))
	if s.cfg.Token != "" && subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) == 1 {
		return r
	}
	if got != "" && s.cfg.Guests != nil {
		g, err := s.cfg.Guests.GuestByKeyHash(r.Context(), h[:])
		if err == nil && !g.Expired(time.Now()) {
			if !scripts || strings.HasPrefix(r.URL.Path, "/scripts/v1/guest/") {
				writeError(w, http.StatusForbidden, "a guest key may only use its rights on the /scripts/v1 API")
				return nil
			}
			return r.WithContext(context.WithValue(r.Context(), guestKey{}, &g))
		}
	}
	if s.cfg.Token == "" && got == "" {
		return r
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="rexec"`)
	writeError(w, http.StatusUnauthorized, errUnauthorized.Error())
	return nil
}

// httpErrorLog sends net/http's own complaints to the structured log.
type httpErrorLog struct{ log zerolog.Logger }

func (l httpErrorLog) Write(p []byte) (int, error) {
	l.log.Debug().Str("component", "http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
