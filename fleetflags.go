//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/internal/buildinfo"
	"github.com/rexec/rexec/internal/tlsfiles"
)

// fleetFlags make the server one host of a fleet (package fleet). Without
// --fleet-name none of them may be given, and no NATS code runs.
type fleetFlags struct {
	FleetName        string        `group:"Fleet" placeholder:"NAME" help:"Join the fleet called NAME: hosts with the same name share one queue, event feed, history and output store on NATS JetStream. Needs --scripts."`
	FleetHost        string        `group:"Fleet" placeholder:"NAME" help:"This host's name in the fleet (letters, digits, - and _). Default: the machine's host name."`
	FleetRoutes      []string      `group:"Fleet" placeholder:"URL" help:"The other hosts' route addresses (nats://HOST:PORT), to form an embedded JetStream cluster with them: no NATS server to run."`
	FleetListen      string        `group:"Fleet" placeholder:"ADDR" help:"Address of this host's route port, which the other hosts' --fleet-routes name (default 0.0.0.0:6222 with --fleet-routes). Anything but loopback needs --fleet-token-file or --fleet-tls-cert."`
	NatsURL          string        `name:"nats-url" group:"Fleet" placeholder:"URL,..." help:"Connect to an existing NATS cluster with JetStream (nats://HOST:4222, tls://...) instead of embedding one."`
	FleetTokenFile   string        `group:"Fleet" type:"path" placeholder:"FILE" help:"A shared secret (the file's first line): the routes between embedded hosts require it of each other; with --nats-url it is the connection's token."`
	FleetNkeySeed    string        `name:"fleet-nkey-seed" group:"Fleet" type:"path" placeholder:"FILE" help:"An NKey seed file the connection to --nats-url signs in with."`
	FleetTLSCert     string        `name:"fleet-tls-cert" group:"Fleet" type:"path" placeholder:"FILE" help:"TLS between hosts: this host's PEM certificate, presented on the routes (or to --nats-url); needs --fleet-tls-key and --fleet-tls-ca."`
	FleetTLSKey      string        `name:"fleet-tls-key" group:"Fleet" type:"path" placeholder:"FILE" help:"The PEM private key of --fleet-tls-cert."`
	FleetTLSCA       string        `name:"fleet-tls-ca" group:"Fleet" type:"path" placeholder:"FILE" help:"The PEM CA certificates the other hosts' certificates (or the NATS servers') must verify with."`
	Label            []string      `group:"Fleet" placeholder:"LABEL" help:"A label this host carries (NAME or NAME=VALUE; repeatable): a run that asks for labels runs only on a host with all of them."`
	FleetReplicas    int           `group:"Fleet" placeholder:"N" help:"Copies of each of the fleet's streams (1 to 5). Default: the hosts the routes name, this one included, at most 3; with --nats-url, 3 on a NATS cluster, 1 on a single server."`
	FleetDownAfter   time.Duration `group:"Fleet" default:"1.5s" help:"Silence after which another host is taken to be down: its running runs are lost, its queued runs go to the others."`
	FleetJoinTimeout time.Duration `group:"Fleet" default:"60s" help:"How long the start waits for the fleet (a quorum of its hosts) before giving up."`
}

// inFleet says whether any fleet flag was given.
func (f *fleetFlags) inFleet() bool { return f.FleetName != "" }

// validate checks the fleet's flags, before anything starts; scripts says
// whether --scripts was given.
func (f *fleetFlags) validate(scripts bool, insecure bool) error {
	if !f.inFleet() {
		if len(f.FleetRoutes) > 0 || f.FleetListen != "" || f.NatsURL != "" || f.FleetTokenFile != "" || f.FleetNkeySeed != "" ||
			f.FleetTLSCert != "" || f.FleetTLSKey != "" || f.FleetTLSCA != "" || len(f.Label) > 0 || f.FleetHost != "" || f.FleetReplicas != 0 {
			return errors.New("the fleet's flags need --fleet-name: without it this host is a fleet of its own")
		}
		return nil
	}
	if !scripts {
		return errors.New("--fleet-name needs --scripts FILE: a fleet shares detached runs of scripts")
	}
	if f.FleetHost == "" {
		f.FleetHost = defaultHostName()
	}
	if f.NatsURL == "" && len(f.FleetRoutes) > 0 && f.FleetListen == "" {
		f.FleetListen = "0.0.0.0:6222"
	}
	switch {
	case f.FleetReplicas < 0 || f.FleetReplicas > 5:
		return errors.New("--fleet-replicas is 1 to 5 (0: the default)")
	case f.FleetDownAfter < 100*time.Millisecond:
		return errors.New("--fleet-down-after must be at least 100ms")
	case f.FleetJoinTimeout <= 0:
		return errors.New("--fleet-join-timeout must be positive")
	case f.FleetListen != "" && len(f.FleetRoutes) == 0 && f.NatsURL == "":
		// JetStream refuses a cluster without routes; without either flag
		// the host is a fleet of one.
		return errors.New("--fleet-listen needs --fleet-routes: the route addresses of the fleet's hosts (the list may name this host too; " +
			"give every host the same one)")
	case (f.FleetTLSCert == "") != (f.FleetTLSKey == "") || (f.FleetTLSCert != "" && f.FleetTLSCA == "" && f.NatsURL == ""):
		return errors.New("--fleet-tls-cert and --fleet-tls-key go together, and between embedded hosts with --fleet-tls-ca")
	}
	if f.FleetListen != "" && !insecure && f.FleetTokenFile == "" && f.FleetTLSCert == "" {
		host, _, _ := strings.Cut(f.FleetListen, ":")
		if !isLoopback(host) {
			return fmt.Errorf("refusing to open the fleet's route port on %s without --fleet-token-file or --fleet-tls-cert: "+
				"anyone who reaches it could join the fleet and run its scripts. Give one, listen on loopback, or pass --insecure-no-auth", f.FleetListen)
		}
	}
	cfg, err := f.config("", "")
	if err != nil {
		return err
	}
	return cfg.Check()
}

// defaultHostName is the machine's host name, made a valid fleet host name.
func defaultHostName() string {
	h, _ := os.Hostname()
	h, _, _ = strings.Cut(h, ".")
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	if len(b) > 32 {
		b = b[:32]
	}
	if len(b) == 0 {
		return "host"
	}
	return string(b)
}

// config maps the flags onto the fleet's settings; dataDir holds the
// embedded server's streams, address is this host's API URL.
func (f *fleetFlags) config(dataDir, address string) (*fleet.Config, error) {
	cfg := &fleet.Config{
		Name: f.FleetName, Host: f.FleetHost, Address: address, Labels: f.Label, Version: buildinfo.Read().Version,
		URL: f.NatsURL, Listen: f.FleetListen, Routes: f.FleetRoutes, StoreDir: filepath.Join(dataDir, "fleet"),
		NKeySeedFile: f.FleetNkeySeed, Replicas: f.FleetReplicas, JoinTimeout: f.FleetJoinTimeout, DownAfter: f.FleetDownAfter,
	}
	if f.FleetTokenFile != "" {
		tok, err := readTokenFile(f.FleetTokenFile)
		if err != nil {
			return nil, fmt.Errorf("--fleet-token-file: %w", err)
		}
		cfg.Token = tok
	}
	if f.FleetTLSCert != "" || f.FleetTLSCA != "" {
		tc, err := tlsfiles.Mutual(tlsfiles.Files{Cert: f.FleetTLSCert, Key: f.FleetTLSKey, ClientCA: f.FleetTLSCA})
		if err != nil {
			return nil, fmt.Errorf("--fleet-tls-*: %w", err)
		}
		cfg.TLS = tc
	}
	return cfg, nil
}
