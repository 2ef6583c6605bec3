// Package fleet makes several rexec hosts one service on NATS JetStream. A
// host joins a fleet either by running an embedded NATS server that routes
// to the other hosts' (Config.Routes: a JetStream cluster with no separate
// server to run) or by connecting to an existing NATS cluster
// (Config.URL). Either way it gets one connection (Conn, JS) that the
// fleet's implementations of the history, outputs, queue and event feed
// share, and the fleet's view of its machines: every host publishes a
// heartbeat with what it offers, and every host sees when another stops.
//
// Heartbeats travel on core NATS, not on a stream: a JetStream stream
// whose leader died takes seconds to elect another (the raft election
// timeout), and a host must not look dead to the others while that
// happens.
package fleet

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Config is how a host joins its fleet.
type Config struct {
	// Name is the fleet's name (--fleet-name; see CheckName).
	Name string
	// Host is this host's name in the fleet (--fleet-host; see CheckName).
	Host string
	// Address is how the fleet's clients reach this host's API (its URL),
	// shown in the list of machines.
	Address string
	// Labels are what this host carries, for runs that ask for a label
	// set (--label).
	Labels []string
	// Version is this host's rexec version, shown in the list of machines.
	Version string

	// URL, when set, is an existing NATS cluster to connect to (--nats-url,
	// comma-separated URLs); no server is embedded.
	URL string
	// Listen is the address the embedded server's cluster (route) port
	// listens on (--fleet-listen), when URL is empty.
	Listen string
	// Routes are the other hosts' route URLs (--fleet-routes), when URL is
	// empty: nats://HOST:PORT. Without routes the host is a fleet of one.
	Routes []string
	// StoreDir is where the embedded server keeps its streams.
	StoreDir string

	// Token is a shared secret: the embedded servers' routes require it of
	// each other; with URL it is the connection's token.
	Token string
	// NKeySeedFile is the NKey seed the connection to URL signs with.
	NKeySeedFile string
	// TLS, when set, encrypts and authenticates: the routes between
	// embedded servers (both sides verify each other's certificate with
	// its RootCAs/ClientCAs), or the connection to URL.
	TLS *tls.Config

	// Replicas is how many copies each stream keeps. Default: the number
	// of hosts the routes name (this one included), at most 3; with URL,
	// 3 when the server is part of a cluster, else 1.
	Replicas int
	// JoinTimeout bounds the wait for JetStream to be ready (a cluster
	// needs a quorum of its hosts); default 60s.
	JoinTimeout time.Duration
	// HeartbeatEvery is how often this host says it is alive (default
	// 250ms); DownAfter is the silence after which another host is taken
	// to be down (default 1.5s).
	HeartbeatEvery, DownAfter time.Duration

	Logger zerolog.Logger
}

func (c *Config) setDefaults() {
	if c.JoinTimeout <= 0 {
		c.JoinTimeout = 60 * time.Second
	}
	if c.HeartbeatEvery <= 0 {
		c.HeartbeatEvery = 250 * time.Millisecond
	}
	if c.DownAfter <= 0 {
		c.DownAfter = 1500 * time.Millisecond
	}
	if c.Replicas <= 0 && c.URL == "" {
		c.Replicas = min(3, 1+len(c.Routes))
	}
}

// Check says what is wrong with c, before anything starts.
func (c *Config) Check() error {
	if err := CheckName(c.Name); err != nil {
		return fmt.Errorf("--fleet-name: %w", err)
	}
	if err := CheckName(c.Host); err != nil {
		return fmt.Errorf("--fleet-host: %w", err)
	}
	if c.URL != "" && (len(c.Routes) > 0 || c.Listen != "") {
		return errors.New("--nats-url connects to an existing NATS cluster: --fleet-routes and --fleet-listen are for the embedded one")
	}
	if c.URL == "" && c.NKeySeedFile != "" {
		return errors.New("--fleet-nkey-seed signs the connection to --nats-url; the embedded servers' routes use --fleet-token-file or TLS")
	}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "nats" && u.Scheme != "nats-route" && u.Scheme != "tls") || u.Host == "" {
			return fmt.Errorf("--fleet-routes: %q is not nats://HOST:PORT", r)
		}
		if u.User != nil {
			return fmt.Errorf("--fleet-routes: %q holds credentials: give them with --fleet-token-file", u.Redacted())
		}
	}
	if c.Listen != "" {
		if _, _, err := splitHostPort(c.Listen); err != nil {
			return fmt.Errorf("--fleet-listen: %w", err)
		}
	}
	for _, l := range c.Labels {
		if err := CheckLabel(l); err != nil {
			return fmt.Errorf("--label: %w", err)
		}
	}
	return nil
}

// ErrBadLabel: a label that is not NAME or NAME=VALUE of plain characters.
var ErrBadLabel = errors.New("a label is NAME or NAME=VALUE: letters, digits, '-', '_', '.', at most 64 bytes")

// CheckLabel says whether l can be a host's label.
func CheckLabel(l string) error {
	if l == "" || len(l) > 64 || strings.Count(l, "=") > 1 || strings.HasPrefix(l, "=") {
		return fmt.Errorf("%q: %w", l, ErrBadLabel)
	}
	for _, c := range []byte(l) {
		if !plain(c) && c != '.' && c != '=' {
			return fmt.Errorf("%q: %w", l, ErrBadLabel)
		}
	}
	return nil
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", hp)
	}
	return h, n, nil
}

// Fleet is this host's membership of its fleet.
type Fleet struct {
	cfg   Config
	log   zerolog.Logger
	names Names
	srv   *server.Server // nil with Config.URL
	// localToken is what the embedded server's loopback client port asks.
	localToken string
	fatal      chan error // the embedded server's first fatal error
	nc         *nats.Conn
	js         jetstream.JetStream
	hosts      *hosts
	// address is this host's API URL, once it listens (SetAddress).
	address atomic.Pointer[string]
}

// SetAddress sets the API URL this host's heartbeats give (Config.Address
// until then): the API listens after the host joins the fleet.
func (f *Fleet) SetAddress(url string) { f.address.Store(&url) }

// Address is this host's API URL.
func (f *Fleet) Address() string {
	if a := f.address.Load(); a != nil {
		return *a
	}
	return f.cfg.Address
}

// Open joins the fleet cfg names: it starts the embedded server (or
// connects to Config.URL), waits within Config.JoinTimeout until
// JetStream answers, and starts the heartbeats. status, called at each
// heartbeat, says what this host offers and uses now.
func Open(ctx context.Context, cfg Config, status func() Status) (*Fleet, error) {
	cfg.setDefaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	names, _ := NewNames(cfg.Name)
	f := &Fleet{cfg: cfg, log: cfg.Logger.With().Str("fleet", cfg.Name).Logger(), names: names, fatal: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	var err error
	if cfg.URL == "" {
		if err := f.startServer(); err != nil {
			return nil, err
		}
		f.nc, err = nats.Connect("", append(f.connOptions(), nats.InProcessServer(f.srv), nats.Token(f.localToken))...)
	} else {
		f.nc, err = nats.Connect(cfg.URL, f.connOptions()...)
	}
	if err != nil {
		return nil, fmt.Errorf("fleet: connecting to NATS: %w", err)
	}
	if f.js, err = jetstream.New(f.nc); err != nil {
		return nil, err
	}
	if err := f.waitJetStream(ctx); err != nil {
		return nil, err
	}
	if f.cfg.Replicas <= 0 {
		// An existing NATS: three copies in a cluster, one on a single
		// server (which refuses more).
		f.cfg.Replicas = 1
		if f.nc.ConnectedClusterName() != "" {
			f.cfg.Replicas = 3
		}
	}
	if f.hosts, err = startHosts(f, status); err != nil {
		return nil, err
	}
	ok = true
	f.log.Info().Str("host", cfg.Host).Bool("embedded", f.srv != nil).Int("replicas", cfg.Replicas).
		Strs("routes", cfg.Routes).Str("listen", cfg.Listen).Msg("joined the fleet")
	return f, nil
}

func (f *Fleet) connOptions() []nats.Option {
	opts := []nats.Option{
		nats.Name("rexec " + f.cfg.Host),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				f.log.Warn().Err(err).Msg("fleet: disconnected from NATS; reconnecting")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			f.log.Info().Str("server", nc.ConnectedServerName()).Msg("fleet: reconnected to NATS")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			f.log.Warn().Err(err).Msg("fleet: NATS")
		}),
	}
	if f.cfg.URL != "" {
		if f.cfg.Token != "" {
			opts = append(opts, nats.Token(f.cfg.Token))
		}
		if f.cfg.NKeySeedFile != "" {
			o, err := nats.NkeyOptionFromSeed(f.cfg.NKeySeedFile)
			if err != nil {
				opts = append(opts, func(*nats.Options) error { return fmt.Errorf("--fleet-nkey-seed: %w", err) })
			} else {
				opts = append(opts, o)
			}
		}
		if f.cfg.TLS != nil {
			opts = append(opts, nats.Secure(f.cfg.TLS))
		}
	}
	return opts
}

// startServer starts the embedded NATS server: no client port (this host
// connects in process), a cluster port when there are routes or a listen
// address, JetStream in StoreDir.
func (f *Fleet) startServer() error {
	c := f.cfg
	if err := os.MkdirAll(c.StoreDir, 0o700); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	// The client port is on loopback, for this host alone: the server
	// starts its routes only once it listens for clients. A token made
	// now, known to this process only, keeps the machine's other users
	// out of the fleet's streams.
	f.localToken = rand.Text()
	opts := &server.Options{
		ServerName:             c.Host,
		Host:                   "127.0.0.1",
		Port:                   server.RANDOM_PORT,
		Authorization:          f.localToken,
		JetStream:              true,
		StoreDir:               filepath.Clean(c.StoreDir),
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
	}
	if len(c.Routes) > 0 || c.Listen != "" {
		listen := c.Listen
		if listen == "" {
			listen = "0.0.0.0:6222"
		}
		h, p, _ := splitHostPort(listen)
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: h, Port: p, ConnectRetries: -1, PoolSize: -1}
		if c.Token != "" {
			opts.Cluster.Username, opts.Cluster.Password = "rexec", c.Token
		}
		if c.TLS != nil {
			opts.Cluster.TLSConfig = c.TLS
			opts.Cluster.TLSTimeout = 5
		}
		for _, r := range c.Routes {
			u, _ := url.Parse(r)
			u.Scheme = "nats"
			if c.Token != "" {
				u.User = url.UserPassword("rexec", c.Token)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("fleet: embedded NATS server: %w", err)
	}
	s.SetLoggerV2(natsLogger{log: f.log, fatal: func(err error) {
		select {
		case f.fatal <- err:
		default:
		}
	}}, false, false, false)
	go s.Start()
	for deadline := time.Now().Add(f.cfg.JoinTimeout); !s.ReadyForConnections(100 * time.Millisecond); {
		select {
		case err := <-f.fatal:
			s.Shutdown()
			return fmt.Errorf("fleet: embedded NATS server: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			return fmt.Errorf("fleet: the embedded NATS server did not start within %s", f.cfg.JoinTimeout)
		}
	}
	f.srv = s
	return nil
}

// waitJetStream waits until JetStream answers: in a cluster, once a quorum
// of hosts has met and elected a leader.
func (f *Fleet) waitJetStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.JoinTimeout)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := f.js.AccountInfo(actx)
		acancel()
		if err == nil {
			return nil
		}
		select {
		case err := <-f.fatal:
			return fmt.Errorf("fleet: embedded NATS server: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("fleet: JetStream was not ready within %s (a cluster needs most of its hosts up): %w", f.cfg.JoinTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Names are the fleet's stream and subject names.
func (f *Fleet) Names() Names { return f.names }

// Host is this host's name.
func (f *Fleet) Host() string { return f.cfg.Host }

// Labels are this host's labels.
func (f *Fleet) Labels() []string { return f.cfg.Labels }

// JoinTimeout is how long a start waits for the fleet (Config.JoinTimeout).
func (f *Fleet) JoinTimeout() time.Duration { return f.cfg.JoinTimeout }

// Replicas is how many copies each of the fleet's streams keeps.
func (f *Fleet) Replicas() int { return f.cfg.Replicas }

// Conn is the host's connection to NATS.
func (f *Fleet) Conn() *nats.Conn { return f.nc }

// JS is the host's JetStream context.
func (f *Fleet) JS() jetstream.JetStream { return f.js }

// Close leaves the fleet: the heartbeats stop (the others take this host
// to be down after their DownAfter), the connection drains, and the
// embedded server shuts down.
func (f *Fleet) Close() error {
	if f.hosts != nil {
		f.hosts.stop()
	}
	if f.nc != nil {
		f.nc.Close()
	}
	if f.srv != nil {
		f.srv.Shutdown()
		f.srv.WaitForShutdown()
	}
	return nil
}

// natsLogger sends the embedded server's errors to the host's log as
// warnings (a route to a host that is down fails every second, which the
// fleet's own "host down" line says once), its notices and warnings at
// debug level (the connection's own log, not each message).
type natsLogger struct {
	log   zerolog.Logger
	fatal func(error) // what the server could not go on without
}

func (l natsLogger) Noticef(format string, v ...any) {
	l.log.Debug().Str("nats", "notice").Msg(fmt.Sprintf(format, v...))
}
func (l natsLogger) Warnf(format string, v ...any) {
	l.log.Debug().Str("nats", "warning").Msg(fmt.Sprintf(format, v...))
}

// Fatalf is what the server cannot go on without, such as its cluster
// port: nats-server's own logger would exit the process; this one makes
// Open fail, or logs it once the host has joined.
func (l natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error().Str("nats", "fatal").Msg(msg)
	l.fatal(errors.New(msg))
}
func (l natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, "Error trying to connect to route") {
		// Every second while a host is down: "host down" says it once.
		l.log.Debug().Str("nats", "error").Msg(msg)
		return
	}
	l.log.Warn().Str("nats", "error").Msg(msg)
}
func (l natsLogger) Debugf(string, ...any) {}
func (l natsLogger) Tracef(string, ...any) {}
