package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ParseCerts reads the certificates of a PEM file. It refuses a file with
// none, or with a block that is not a certificate, rather than skip it.
func ParseCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a %q PEM block where certificates were expected", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("holds no PEM certificate")
	}
	return certs, nil
}

// ClientFiles name what a client uses: the CAs it trusts the server's
// certificate with (instead of the system's), and its own certificate and
// key for a server that asks for one. Each may be empty.
type ClientFiles struct {
	CACert, Cert, Key string
}

// ClientConfig is the tls.Config of a client with f, or nil when f names
// nothing.
func ClientConfig(f ClientFiles) (*tls.Config, error) {
	if f == (ClientFiles{}) {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CACert != "" {
		pool, _, err := readCAs(f.CACert, "CA certificate file")
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.Cert != "" && f.Key != "":
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s and key %s: %w", f.Cert, f.Key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case f.Cert != "" || f.Key != "":
		return nil, errors.New("a client certificate needs its key: give both --cert and --key")
	}
	return cfg, nil
}

// Mutual is the tls.Config of a peer that both accepts and dials, such as
// a fleet's hosts on their routes: it presents f.Cert (with f.Key) on
// either side and verifies the other side's certificate with f.ClientCA,
// whichever side it is on. With f.ClientCA empty (a client of a server
// whose certificate the system's CAs verify), only the certificate is
// presented; with f.Cert empty, only the CAs are trusted.
func Mutual(f Files) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("certificate %s and key %s: %w", f.Cert, f.Key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if f.ClientCA != "" {
		pool, _, err := readCAs(f.ClientCA, "CA file")
		if err != nil {
			return nil, err
		}
		cfg.RootCAs, cfg.ClientCAs, cfg.ClientAuth = pool, pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
