// Package tlsfiles serves TLS from PEM files that can be read again while
// the server runs: a certificate and its key, and optionally the CAs whose
// client certificates identify a caller (mutual TLS).
//
// A reload replaces what new handshakes use, whole, and only once every
// file has been read and checked; connections already open keep the
// certificate they were made with, so a reload drops none. A bad file
// leaves the previous set in force.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// Files names the PEM files of a server.
type Files struct {
	// Cert is the server's certificate chain, leaf first; Key its private
	// key. Both are required.
	Cert, Key string
	// ClientCA, when set, holds the CA certificates that client
	// certificates are verified against. A client may still connect
	// without one (the bearer token or a guest key then identifies it),
	// but one it presents must verify, or the handshake fails.
	ClientCA string
}

// Loaded describes the files in force, for the log.
type Loaded struct {
	Subject   string    // the server certificate's subject
	DNSNames  []string  // and its names
	NotAfter  time.Time // when it expires
	ClientCAs int       // certificates in the client CA file; 0 without one
}

// Server hands out the TLS settings of the files last loaded.
type Server struct {
	files Files
	cur   atomic.Pointer[loadedConfig]
}

type loadedConfig struct {
	cfg  *tls.Config
	info Loaded
}

// Load reads the files and returns a Server for them.
func Load(files Files) (*Server, Loaded, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, Loaded{}, errors.New("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
	}
	s := &Server{files: files}
	info, err := s.Reload()
	if err != nil {
		return nil, Loaded{}, err
	}
	return s, info, nil
}

// Reload reads the files again. On an error, the set in force stays.
func (s *Server) Reload() (Loaded, error) {
	cfg, info, err := read(s.files)
	if err != nil {
		return Loaded{}, err
	}
	s.cur.Store(&loadedConfig{cfg, info})
	return info, nil
}

// Current describes the files in force.
func (s *Server) Current() Loaded { return s.cur.Load().info }

// Config is the tls.Config of a listener: each handshake takes the files
// loaded last.
func (s *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load().cfg, nil
		},
	}
}

// MutualTLS reports whether client certificates are verified.
func (s *Server) MutualTLS() bool { return s.files.ClientCA != "" }

// nextProtos offers HTTP/2 first, as net/http's own TLS listener does.
var nextProtos = []string{"h2", "http/1.1"}

func read(f Files) (*tls.Config, Loaded, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, Loaded{}, fmt.Errorf("TLS certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	leaf := cert.Leaf
	if leaf == nil { // LoadX509KeyPair fills it in since Go 1.23
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, Loaded{}, fmt.Errorf("TLS certificate %s: %w", f.Cert, err)
		}
	}
	info := Loaded{Subject: leaf.Subject.String(), DNSNames: leaf.DNSNames, NotAfter: leaf.NotAfter}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   nextProtos,
		Certificates: []tls.Certificate{cert},
	}
	if f.ClientCA != "" {
		pool, n, err := readCAs(f.ClientCA, "TLS client CA file")
		if err != nil {
			return nil, Loaded{}, err
		}
		cfg.ClientCAs, cfg.ClientAuth, info.ClientCAs = pool, tls.VerifyClientCertIfGiven, n
	}
	return cfg, info, nil
}

// readCAs reads a PEM file of CA certificates, what naming it in errors. A
// file with none, or with anything that is not a certificate, is refused: a
// typo must not become a pool that verifies nobody, or a half-read one.
func readCAs(name, what string) (*x509.CertPool, int, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", what, err)
	}
	certs, err := ParseCerts(b)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", what, name, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, len(certs), nil
}

// Subject is who a verified client certificate says the caller is, its
// subject as RFC 2253 writes it ("CN=ci,O=example"); "" when the
// connection is not TLS or its client presented no certificate that
// verified.
func Subject(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].Subject.String()
}
