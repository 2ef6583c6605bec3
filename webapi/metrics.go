package webapi

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"
)

// GET /metrics: the node's metrics (package metrics) in Prometheus's text
// format.
//
// On the server's address it is an endpoint like the others: Host and
// Origin are checked, and with a token it needs the admin token (a guest key
// gets 403). With Config.MetricsAddr it is also served on an address of its
// own without the token, for a scraper that is not given one: nothing else
// is served there, and Host and Origin are still checked, or any web page
// could read it through DNS rebinding. What it shows there is what the
// metrics hold: counts, script names of the exectab, the build; never an
// alias, a command, an argument or a key.

// handleMetrics is GET /metrics.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if !probeMethod(w, r) {
		return
	}
	if s.cfg.Metrics == nil {
		writeError(w, http.StatusNotFound, "this server keeps no metrics")
		return
	}
	s.cfg.Metrics.Handler().ServeHTTP(w, r)
}

// serveMetricsOnly is the whole of the MetricsAddr listener: the Host and
// Origin checks, then GET /metrics, without credentials.
func (s *Server) serveMetricsOnly(w http.ResponseWriter, r *http.Request) {
	if code, msg := s.guard.check(r); code != "" {
		s.refuse(w, r, http.StatusForbidden, code, msg)
		return
	}
	if r.URL.Path != "/metrics" {
		writeError(w, http.StatusNotFound, "only GET /metrics is served on this address")
		return
	}
	s.handleMetrics(w, r)
}

// openMetrics listens on Config.MetricsAddr, if set, and serves /metrics
// there in the background. A non-loopback address is served, with a
// warning: it is the point of the option (a scraper elsewhere on a private
// network), and what it shows is counts, never secrets.
func (s *Server) openMetrics() error {
	if s.cfg.MetricsAddr == "" {
		return nil
	}
	if s.cfg.Metrics == nil {
		return errors.New("webapi: MetricsAddr without Metrics")
	}
	ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	s.metricsLn = ln
	s.metricsHTTP = &http.Server{
		Handler:           http.HandlerFunc(s.serveMetricsOnly),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second, // a scrape is short; no stream is served here
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(httpErrorLog{s.log}, "", 0),
	}
	s.metricsServed = make(chan error, 1)
	go func() { s.metricsServed <- s.metricsHTTP.Serve(ln) }()
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		s.log.Info().Str("addr", ln.Addr().String()).Msg("serving GET /metrics without a token")
	} else {
		s.log.Warn().Str("addr", ln.Addr().String()).Msg("serving GET /metrics without a token on an address other machines may reach: " +
			"anyone who reaches it reads the metrics (script names, run counts, the build); keep it on a private network or behind a firewall")
	}
	return nil
}

// MetricsAddr is the address GET /metrics is served on without a token
// (useful with port 0), or "" when there is none.
func (s *Server) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

// closeMetrics stops the MetricsAddr listener, letting a scrape in progress
// end within ctx.
func (s *Server) closeMetrics(ctx context.Context) {
	if s.metricsHTTP == nil {
		return
	}
	if err := s.metricsHTTP.Shutdown(ctx); err != nil {
		s.metricsHTTP.Close()
	}
	<-s.metricsServed
	s.metricsHTTP = nil
}
