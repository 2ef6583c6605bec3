//go:build linux

package main

import (
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/rs/zerolog"
)

// serveDebug serves Go's pprof handlers on addr, apart from the API (no
// token guards it: bind it to loopback). It returns a function that stops it.
func serveDebug(addr string, log zerolog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	log.Info().Str("addr", ln.Addr().String()).Msg("pprof listening")
	return func() { srv.Close() }, nil
}
