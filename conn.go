package main

import (
	"crypto/tls"
	"fmt"

	"github.com/rexec/rexec/client"
)

// serverFlags are how every client command reaches its server: the URL and,
// for https://, the TLS files.
type serverFlags struct {
	URL    string `default:"http://127.0.0.1:8910" env:"REXEC_URL" help:"The server's URL: http://HOST:PORT, or https://HOST:PORT for a server with TLS."`
	CACert string `name:"cacert" type:"path" env:"REXEC_CACERT" placeholder:"FILE" help:"Trust the server's TLS certificate with these PEM CA certificates instead of the system's."`
	Cert   string `name:"cert" type:"path" env:"REXEC_CERT" placeholder:"FILE" help:"Show this PEM client certificate to a server with mutual TLS (--tls-client-ca); needs --key. It stands in for the token."`
	Key    string `name:"key" type:"path" env:"REXEC_KEY" placeholder:"FILE" help:"The PEM private key of --cert."`
}

// validate checks the URL and reads the TLS files, so that a mistake in
// either is a usage error before anything is sent.
func (f *serverFlags) validate() error {
	_, err := f.client("")
	return err
}

// client is a client of the server with token ("" for none).
func (f *serverFlags) client(token string) (*client.Client, error) {
	return f.newClient(token, false)
}

// newClient is client, with the server's certificate left unverified when
// skipVerify is set (rexec health --insecure).
func (f *serverFlags) newClient(token string, skipVerify bool) (*client.Client, error) {
	cfg, err := client.LoadTLS(f.CACert, f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	if skipVerify {
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg.InsecureSkipVerify = true
	}
	cl, err := client.New(f.URL, token, client.WithTLS(cfg))
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	return cl, nil
}
