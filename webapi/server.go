// Package webapi owns HTTP and nothing else: routing, authentication,
// decoding and validating requests, and mapping error kinds to statuses (in
// errors.go, one place). A started run's stream, with its trailers, is
// package stream's. It never touches a process or a descriptor directly,
// only the handles the broker gives it.
package webapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/console"
	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/internal/tlsfiles"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/metrics"
	"github.com/rexec/rexec/store"
	"github.com/rexec/rexec/stream"
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
	// Limits is the rule on runs' limits (cgroups): defaults, and caps on
	// what a request may ask. Nil sets none, and refuses limits.
	Limits *launch.Policy
	// Runs serves the detached runs of /scripts/v1; nil: the API answers
	// that this server runs no scripts.
	Runs *detached.Manager
	// Events is the feed that GET /scripts/v1/events and /monitor stream,
	// and POST /plugins/v1/events publishes to; nil: the server has no
	// feed (it runs no scripts and no plugins).
	Events feed.Feed
	// Guests keeps the guest keys; nil: there are none.
	Guests Guests
	// Plugins runs the plugin commands of /plugins/v1; nil: the server has
	// none. A server with plugins has Events: commands emit and receive
	// client events.
	Plugins PluginHost
	// SelfURL is how processes on this machine reach the server (the
	// machines it lists to plugins and XML-RPC callers).
	SelfURL func() string
	// Fleet is the fleet this host belongs to, for GET /fleet/v1/machines
	// and the machines callers list; nil: a single host, a fleet of one.
	Fleet Fleet
	// Console serves the web console (GET / and /console/...), which needs
	// no key to load: the person signs in in the page. Nil: no console.
	Console http.Handler
	// BasePath is a path prefix ("/rexec") the server is also served
	// under, for a reverse proxy that keeps the prefix: a request under
	// it is served as if without it. "" for none.
	BasePath string
	// ParkAfter is how long a stream whose head has been sent may stay
	// quiet before it is parked: served off net/http, which saves most of
	// a held stream's memory (package stream). Default 25ms; negative:
	// never.
	ParkAfter time.Duration
	// AllowedHosts are the names the server answers to in the Host
	// header besides IP literals and localhost; ".example.com" allows a
	// domain and its subdomains, "*" any name (guard.go).
	AllowedHosts []string
	// AllowedOrigins are the browser origins whose requests are served
	// besides the server's own; "*" any origin (guard.go).
	AllowedOrigins []string
	// BodyTimeout is how long a client may take to send a request body,
	// per MiB of the body's limit, and at least this long. Default 5s.
	BodyTimeout time.Duration
	// Ready, when set, says whether the server can take work that needs
	// its store (GET /readyz); nil: always ready.
	Ready func(context.Context) error
	// Monitors caps the event monitors (SSE, WebSocket and output
	// followers); zero values take the defaults.
	Monitors MonitorLimits
	// Metrics, when set, is served as GET /metrics, which needs the token
	// as every request does, and counts what the server and its streams
	// decide (refusals, monitors, streams, the ends of attached runs).
	Metrics *metrics.Metrics
	// MetricsAddr, when set, is an address of its own where GET /metrics
	// is served without the token, for a Prometheus scraper (metrics.go).
	MetricsAddr string
	// TLS, when set, makes Addr serve HTTPS (HTTP/2 and HTTP/1.1) with it
	// (package tlsfiles builds one whose files a reload replaces).
	TLS *tls.Config
	// MutualTLS says that TLS verifies client certificates: a request
	// over a connection whose certificate verified is the admin's, as with
	// the token, and the certificate's subject is recorded as who asked.
	// Without a token, a request needs such a certificate (or a guest
	// key). It needs TLS.
	MutualTLS bool
}

// MonitorLimits cap what event monitors can make the server hold.
type MonitorLimits struct {
	// Max is the most monitors open at once on the server. Default 256.
	Max int
	// PerKey is the most monitors open at once with one key (the admin
	// token counts as one key). Default 32.
	PerKey int
	// Names is the most script names one WebSocket monitor may watch.
	// Default 64.
	Names int
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
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = 5 * time.Second
	}
	if c.Monitors.Max <= 0 {
		c.Monitors.Max = 256
	}
	if c.Monitors.PerKey <= 0 {
		c.Monitors.PerKey = 32
	}
	if c.Monitors.Names <= 0 {
		c.Monitors.Names = 64
	}
}

// ValidateSiteRules checks allowed hosts and origins as Config takes them.
func ValidateSiteRules(hosts, origins []string) error {
	_, err := newSiteGuard(hosts, origins)
	return err
}

// Server is the HTTP front of a broker.
type Server struct {
	cfg    Config
	broker *broker.Broker
	// started is when the server was made: a single host's start in the
	// list of machines.
	started time.Time
	log     zerolog.Logger
	http    *http.Server
	ln      net.Listener

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
	monitorsMu     sync.Mutex
	monitors       map[string]map[*func()]struct{}
	monitorCount   int            // open monitors, under monitorsMu
	monitorsPerKey map[string]int // open monitors by key, under monitorsMu
	tokenHash      [sha256.Size]byte
	guard          *siteGuard
	guardErr       error

	// attached counts the open WebSockets of GET /process/attach, which
	// net/http's Shutdown does not wait for (hijacked); once attachClosed
	// no more are taken (attach.go).
	attachMu     sync.Mutex
	attachClosed bool
	attached     sync.WaitGroup

	// stream serves the streams of /process; its hooks are s.http's and
	// its listeners are the ones Open serves.
	stream *stream.Engine

	// metrics counts refusals and monitors (nil: nothing); metricsHTTP
	// serves Config.MetricsAddr, when set (metrics.go).
	metrics       *metrics.Web
	metricsHTTP   *http.Server
	metricsLn     net.Listener
	metricsServed chan error
}

// New returns a server for b. Call Open to start listening.
func New(cfg Config, b *broker.Broker) *Server {
	cfg.setDefaults()
	s := &Server{cfg: cfg, broker: b, log: cfg.Logger, started: time.Now(), serveErr: make(chan error, 2), closing: make(chan struct{}),
		monitors: map[string]map[*func()]struct{}{}, monitorsPerKey: map[string]int{}}
	if cfg.Token != "" {
		s.tokenHash = sha256.Sum256([]byte(cfg.Token))
	}
	s.guard, s.guardErr = newSiteGuard(cfg.AllowedHosts, cfg.AllowedOrigins)
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	so := stream.Options{Heartbeat: cfg.Heartbeat, ParkAfter: cfg.ParkAfter, ShedResponse: shedResponse, Logger: s.log}
	if cfg.Metrics != nil {
		s.metrics, so.Metrics, so.Runs = cfg.Metrics.Web, cfg.Metrics.Streams, cfg.Metrics.Runs
	}
	s.stream = stream.New(so)
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: it would cut every stream longer than it.
		BaseContext: func(net.Listener) context.Context { return s.baseCtx },
		ConnContext: s.stream.ConnContext,
		ConnState:   s.stream.ConnState,
		ErrorLog:    log.New(httpErrorLog{s.log}, "", 0),
	}
	return s
}

// Handler is the server's routing and authentication, for tests and for
// embedding.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() { // the routing table, routes.go
		mux.HandleFunc(rt.pattern, rt.handler)
	}
	return s.underBasePath(s.authenticate(mux))
}

// underBasePath serves h at the root and, with a base path, under it too:
// "/rexec/scripts/v1/run" as "/scripts/v1/run". "/rexec" alone redirects to
// "/rexec/", where the console's relative links resolve under the prefix.
func (s *Server) underBasePath(h http.Handler) http.Handler {
	base := s.cfg.BasePath
	if base == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, base)
		switch {
		case ok && rest == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			http.Redirect(w, r, base+"/", http.StatusMovedPermanently)
			return
		case ok && strings.HasPrefix(rest, "/"):
			r2 := new(http.Request)
			*r2 = *r
			u := *r.URL
			u.Path, u.RawPath = rest, ""
			r2.URL = &u
			r = r2
		}
		h.ServeHTTP(w, r)
	})
}

// Open listens on the configured address (and on MetricsAddr, if set) and
// serves in the background.
func (s *Server) Open() error {
	if s.guardErr != nil {
		return s.guardErr
	}
	if err := s.openMetrics(); err != nil {
		return err
	}
	ln, handback, err := s.stream.Listen(s.cfg.Addr, s.cfg.TLS)
	if err != nil {
		s.closeMetrics(context.Background())
		return err
	}
	s.ln = ln
	go func() { s.serveErr <- s.http.Serve(ln) }()
	go func() { s.serveErr <- s.http.Serve(handback) }()
	return nil
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close shuts the HTTP side down: it stops accepting, ends the monitors
// and followers, refuses the interactive runs that have not started, and
// waits for the streams and interactive runs to end. They end when their
// processes do: whoever owns the broker shuts it down alongside (package
// node does), which terminates every group so that each stream ends with
// its trailers. When ctx ends first, the remaining connections are cut.
func (s *Server) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		s.closeMetrics(ctx)
		s.stream.Stop()
		err = s.http.Shutdown(ctx)
		if err != nil {
			s.cancelBase()
			s.http.Close()
		}
		if perr := s.stream.Wait(ctx); err == nil {
			err = perr
		}
		if aerr := s.waitAttached(ctx); err == nil {
			err = aerr
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

// handleHealthz is the liveness probe: the server answers. It says nothing
// of whether it can take work (see handleReadyz).
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	if !probeMethod(w, r) {
		return
	}
	writeProbe(w, http.StatusOK, map[string]any{"status": "ok"})
}

// handleReadyz is the readiness probe, for load balancers and Kubernetes:
// 503 while the server is shutting down or its store cannot take writes
// (locked by another process, disk full), so that traffic goes elsewhere
// until it can.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if !probeMethod(w, r) {
		return
	}
	select {
	case <-s.closing:
		w.Header().Set("Retry-After", "1")
		writeProbe(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "error": "server is shutting down"})
		return
	default:
	}
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			_, _, msg := kindOf(err)
			w.Header().Set("Retry-After", retryAfter)
			writeProbe(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "error": msg})
			return
		}
	}
	writeProbe(w, http.StatusOK, map[string]any{"status": "ready"})
}

func probeMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
		return false
	}
	return true
}

func writeProbe(w http.ResponseWriter, status int, v map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// authenticate checks, on every request and before any of its body is
// read: that it is not a browser's request on behalf of another site
// (guard.go), then the credentials. It also bounds the time the request's
// body may take to arrive.
//
// With a token (--token), every request but the probes (GET /healthz and
// /readyz) needs it as "Authorization: Bearer <token>", or a guest key
// (guests.go) on the /scripts/v1 API (and to read GET /openapi.json), as a
// bearer token or, for WebSocket clients that cannot set headers and on
// /scripts/v1 only, as ?apikey= (the admin token is never accepted in a
// URL, where logs and browser histories keep it); the request
// then carries the guest, whose rights the handlers check. With mutual TLS
// (--tls-client-ca), a client certificate that verified stands in for the
// token when the request carries no key (identity.go). Without either,
// every request is the admin's, and credentials are ignored.
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
// made it), or nil after answering 401, 403 or 503 itself.
//
//go:noinline
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) *http.Request {
	if code, msg := s.guard.check(r); code != "" && !(code == codeForbiddenOrigin && s.consoleNavigation(r)) {
		s.refuse(w, r, http.StatusForbidden, code, msg)
		return nil
	}
	if hasBody(r) {
		// The handler that reads the body sets the deadline of its own
		// limit; this one bounds a body that nothing reads, which net/http
		// reads before answering so as to reuse the connection.
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.bodyTimeout(s.cfg.MaxBody + launch.MaxStdin)))
	}
	if isProbe(r) || isCallback(r.URL.Path) { // a callback carries its run's own token, checked by the handler
		return r
	}
	if s.cfg.Console != nil && isConsole(r) {
		return r // the page and its files: the person signs in in the page
	}
	if !s.authRequired() {
		return r
	}
	scripts := isScriptsAPI(r.URL.Path)
	key, from := credential(r, scripts)
	if len(r.Header.Values(apiKeyHeader)) > 0 {
		// The Cloud Storage Server SDK sends its key only on the first
		// request of a connection it keeps alive: a connection per request
		// makes it send the key each time (identity.go). So does any
		// client that sends the header, whatever the path.
		w.Header().Set("Connection", "close")
	}
	subject := ""
	if s.cfg.MutualTLS {
		subject = tlsfiles.Subject(r.TLS)
	}
	if key == "" && subject != "" {
		return withSubject(r, subject) // the certificate stands in for the token
	}
	h := sha256.Sum256([]byte(key))
	if key != "" && s.cfg.Token != "" && subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) == 1 {
		if from == fromURL {
			s.refuse(w, r, http.StatusUnauthorized, "unauthorized", "the admin token is not accepted in the URL (?apikey= is for guest keys): "+
				"send it as Authorization: Bearer <token>")
			return nil
		}
		return withSubject(r, subject)
	}
	if key != "" && s.cfg.Guests != nil {
		g, err := s.cfg.Guests.GuestByKeyHash(r.Context(), h[:])
		switch {
		case err == nil && !g.Expired(time.Now()):
			// Besides its rights on /scripts/v1 and its perms on
			// /plugins/v1, a key may read the API's contract.
			if (!scripts && !isPluginsAPI(r.URL.Path) && r.URL.Path != openAPIPath) || strings.HasPrefix(r.URL.Path, "/scripts/v1/guest/") {
				s.refuse(w, r, http.StatusForbidden, "forbidden", "a guest key may only use its rights on the /scripts/v1 API and its perms on /plugins/v1")
				return nil
			}
			return r.WithContext(context.WithValue(r.Context(), guestKey{}, &g))
		case err != nil && !errors.Is(err, store.ErrNotFound):
			// The key could not be checked: a condition of the server.
			status, code, msg := kindOf(err)
			if status == http.StatusInternalServerError {
				s.log.Error().Err(err).Msg("checking a guest key")
				status, code, msg = http.StatusServiceUnavailable, "unavailable", "the key could not be checked; try again"
			}
			s.refuse(w, r, status, code, msg)
			return nil
		}
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="rexec"`)
	msg := errUnauthorized.Error()
	switch {
	case seedClient(r):
		msg = errUnauthorizedAPIKey.Error()
	case s.cfg.MutualTLS:
		msg = errUnauthorizedTLS.Error()
	}
	s.refuse(w, r, http.StatusUnauthorized, "unauthorized", msg)
	return nil
}

// credential is the key a request carries and where it came from:
// "Authorization: Bearer <key>" (the scheme in any case, RFC 9110), else
// "X-APIKey: <key>" (the header the Cloud Storage Server SDK sends), else on
// the /scripts/v1 API ?apikey=. Another Authorization scheme carries no key.
func credential(r *http.Request, scripts bool) (key string, from keySource) {
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(a), " ")
		if strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(rest), fromBearer
		}
		return "", fromNowhere
	}
	if k := r.Header.Get(apiKeyHeader); k != "" {
		return strings.TrimSpace(k), fromAPIKeyHeader
	}
	if scripts {
		if k := r.URL.Query().Get("apikey"); k != "" {
			return k, fromURL
		}
	}
	return "", fromNowhere
}

// isProbe reports whether r is a health or readiness probe, which needs no
// credentials (orchestrators send none).
func isProbe(r *http.Request) bool {
	return (r.URL.Path == "/healthz" || r.URL.Path == "/readyz") && (r.Method == http.MethodGet || r.Method == http.MethodHead)
}

// consoleNavigation reports whether r is a browser opening the console's
// page from a link on another site: a top-level navigation, whose answer
// that site never reads. The page, loaded so, holds no key (the tab's
// session storage is its own), and its own requests are checked as any.
func (s *Server) consoleNavigation(r *http.Request) bool {
	return s.cfg.Console != nil && r.URL.Path == "/" && r.Method == http.MethodGet &&
		r.Header.Get("Sec-Fetch-Mode") == "navigate" && r.Header.Get("Sec-Fetch-Dest") == "document"
}

// isConsole reports whether r asks for the web console's page or one of
// its files, which hold no secret and need no key.
func isConsole(r *http.Request) bool {
	p := r.URL.Path
	clean := path.Clean(p) == strings.TrimSuffix(p, "/") // no "..", ".", "//"
	return (p == "/" || strings.HasPrefix(p, console.Prefix) && clean) && (r.Method == http.MethodGet || r.Method == http.MethodHead)
}

// hasBody reports whether r may have a body still to read.
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// aLongTimeAgo is a deadline in the past: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// refuse answers a request that is refused before its body was read, in the
// shape of the API the path belongs to. When there is a body, the
// connection is closed after the answer, without reading the body: net/http
// would otherwise read it to reuse the connection, and a client that never
// sends it would hold the connection.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		s.metrics.Refused(code)
	}
	if hasBody(r) {
		w.Header().Set("Connection", "close")
		http.NewResponseController(w).SetReadDeadline(aLongTimeAgo)
	}
	if isScriptsAPI(r.URL.Path) || isPluginsAPI(r.URL.Path) || isFleetAPI(r.URL.Path) {
		writeScriptsError(w, r, status, code, msg)
		return
	}
	writeError(w, status, msg)
}

// bodyTimeout is how long a body of at most limit bytes may take to arrive.
func (s *Server) bodyTimeout(limit int64) time.Duration {
	mib := (limit + 1<<20 - 1) >> 20
	return s.cfg.BodyTimeout * time.Duration(max(mib, 1))
}

// httpErrorLog sends net/http's own complaints to the structured log.
type httpErrorLog struct{ log zerolog.Logger }

func (l httpErrorLog) Write(p []byte) (int, error) {
	l.log.Debug().Str("component", "http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
