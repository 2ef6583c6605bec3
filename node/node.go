// Package node wires rexec's pieces into one server, a node: the broker
// (the process table), the exectab, the run history and output store, the
// event feed, the manager of detached runs, the HTTP API and the metrics
// they count into (a registry of the node's own). Open starts
// them in order; Close stops them in the order a clean shutdown needs.
// The rexec command (package main) and every test that needs a whole
// server use it, so the wiring is written once.
//
// A node owns what it opens. What belongs to the process as a whole
// (signals, the open-file limit, descriptors inherited from the parent,
// the debug listener) stays with the command.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/fleet/jshistory"
	"github.com/rexec/rexec/fleet/jsqueue"
	"github.com/rexec/rexec/internal/tlsfiles"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/metrics"
	"github.com/rexec/rexec/plugin"
	"github.com/rexec/rexec/store"
	"github.com/rexec/rexec/webapi"
	"github.com/rs/zerolog"
)

// Config is a node's settings. The parts' own settings are theirs (Broker,
// Web, Store, Detached): a node fills in only how the parts reach each
// other (the broker, the catalogue, the history, the feed, the logger).
type Config struct {
	Logger zerolog.Logger
	// Env is the environment every child starts from. Default: the
	// server's, without REXEC_* variables (webapi.ServerEnv).
	Env []string

	// ScriptsFile is the exectab; Reload reads it again. Scripts, when
	// ScriptsFile is empty, holds a catalogue that the caller keeps and
	// may swap (tests, embedding). Without either the node runs no
	// scripts, and has no history.
	ScriptsFile string
	Scripts     *atomic.Pointer[catalog.Catalog]
	// DataDir is where the history and the output of detached runs live.
	DataDir string
	// EventReplay and EventQueue size the event feed (feed.NewHub).
	EventReplay, EventQueue int

	// TLS, when its Cert is set, makes the API serve HTTPS from these
	// files (and verify client certificates with its ClientCA); Reload
	// reads them again. Web.TLS and Web.MutualTLS are set from it.
	TLS tlsfiles.Files

	// PluginsDir is the folder of plugins (--plugins); Reload reads it
	// again. Plugins are the settings of their processes.
	PluginsDir string
	Plugins    plugin.Config

	// Cgroups says where runs get their cgroups; its zero value is the
	// best mode the host offers, in a sub-tree named after DataDir.
	Cgroups cgroup.Config
	// Limits are the default limits of runs and the caps on what a request
	// may ask (launch.Policy; its Tree is the node's).
	Limits launch.Policy

	// Fleet, when set, makes this node one host of a fleet (package
	// fleet): its detached runs' history, output and events are the
	// fleet's. Nil: a single host, which starts no NATS code.
	Fleet *fleet.Config

	Broker   broker.Options
	Web      webapi.Config
	Store    store.Options
	Detached detached.Config
}

// Node is one running server. Its fields are the parts, for the command
// and for tests; they are set by Open.
type Node struct {
	cfg Config
	log zerolog.Logger

	Broker  *broker.Broker
	Scripts *atomic.Pointer[catalog.Catalog] // the exectab in force
	Store   *store.Store                     // nil without scripts
	Events  feed.Feed                        // nil without scripts or plugins; the fleet's in a fleet
	Runs    *detached.Manager                // nil without scripts
	Web     *webapi.Server
	Metrics *metrics.Metrics // what the parts count, served as GET /metrics
	Plugins *plugin.Manager  // nil without --plugins
	Cgroups *cgroup.Tree     // where runs get their cgroups (in ModeOff when they get none)
	Fleet   *fleet.Fleet     // the fleet this host belongs to; nil on a single host

	limits *launch.Policy // the rule on runs' limits, with the tree

	fleetHistory *jshistory.History // the fleet's history, over Store; nil on a single host
	fleetQueue   *jsqueue.Queue     // the fleet's queue; nil on a single host

	pluginSet atomic.Pointer[plugin.Set] // the plugins in force

	tls *tlsfiles.Server // nil without TLS

	reloadMu  sync.Mutex // one reload at a time
	closeOnce sync.Once
}

// New returns a node for cfg. Call Open to start it.
func New(cfg Config) *Node {
	if cfg.Env == nil {
		cfg.Env = webapi.ServerEnv(os.Environ())
	}
	scripts := cfg.Scripts
	if scripts == nil {
		scripts = &atomic.Pointer[catalog.Catalog]{}
	}
	return &Node{cfg: cfg, log: cfg.Logger, Scripts: scripts, Metrics: metrics.New()}
}

// hasScripts says whether the node runs scripts (and so keeps a history).
func (n *Node) hasScripts() bool { return n.cfg.ScriptsFile != "" || n.cfg.Scripts != nil }

// Open loads the exectab, opens the history, starts the broker and the
// manager of detached runs, and listens. On an error, what was opened is
// closed again.
func (n *Node) Open() (err error) {
	defer func() {
		if err != nil {
			n.Close(context.Background())
		}
	}()
	if err := n.loadScripts(); err != nil {
		return &ConfigError{Err: err}
	}
	if err := n.loadTLS(); err != nil {
		return &ConfigError{Err: err}
	}
	if err := n.openCgroups(); err != nil {
		return &ConfigError{Err: err}
	}
	if err := n.loadPlugins(); err != nil {
		return &ConfigError{Err: err}
	}
	bo := n.cfg.Broker
	bo.Logger, bo.Metrics, bo.Child.Cgroups = n.log, n.Metrics.Runs, n.Cgroups
	n.Broker = broker.New(bo)
	if n.cfg.Fleet != nil {
		if !n.hasScripts() {
			return &ConfigError{Err: errors.New("a fleet shares detached runs of scripts: give the host an exectab")}
		}
		if err := n.openFleet(); err != nil {
			return err
		}
	}
	if n.hasScripts() {
		if err := n.openDetached(); err != nil {
			return err
		}
	} else if n.Plugins != nil {
		// Commands emit and receive client events.
		n.Events = feed.NewHub(n.cfg.EventReplay, n.cfg.EventQueue)
	}
	if err := n.openWeb(); err != nil {
		return err
	}
	if n.Runs != nil {
		n.Runs.SetURL(n.URL())
	}
	if n.Fleet != nil {
		n.Fleet.SetAddress(n.fleetAddress())
		// GET /process?fleet=1 on another host asks this one.
		if err := n.Fleet.Answer(webapi.TopicAttached, func([]byte) []byte { return n.Web.AttachedRuns() }); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
	}
	return n.watchMetrics()
}

// watchMetrics has the gauges of runs in progress read, at each scrape,
// from their owners: the exectab in force, the broker's table, the queue
// of detached runs.
func (n *Node) watchMetrics() error {
	c := metrics.Census{Scripts: func() []string { return n.Scripts.Load().Names() }, Running: n.Broker.Running}
	if n.Runs != nil {
		c.Queued = n.Runs.Queued
	}
	if n.tls != nil {
		c.CertExpiry = func() time.Time { return n.tls.Current().NotAfter }
	}
	return n.Metrics.Watch(c)
}

// ConfigError is an error of the configuration (a bad exectab, say), not
// of the machine: the command exits with its usage code.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// loadScripts reads the exectab, if there is one.
func (n *Node) loadScripts() error {
	if n.cfg.ScriptsFile == "" {
		return nil
	}
	cat, err := catalog.Load(n.cfg.ScriptsFile)
	if err != nil {
		return err
	}
	n.Scripts.Store(cat)
	n.log.Info().Str("file", n.cfg.ScriptsFile).Int("scripts", cat.Len()).Msg("exectab loaded")
	return nil
}

// loadTLS reads the TLS files, if there are any.
func (n *Node) loadTLS() error {
	f := n.cfg.TLS
	if f == (tlsfiles.Files{}) {
		return nil
	}
	srv, info, err := tlsfiles.Load(f)
	if err != nil {
		return err
	}
	n.tls = srv
	n.logTLS(info, "TLS certificate loaded")
	return nil
}

// logTLS logs the certificate in force, with a warning when it has expired
// or expires within a week.
func (n *Node) logTLS(info tlsfiles.Loaded, msg string) {
	ev := n.log.Info()
	if time.Until(info.NotAfter) < 7*24*time.Hour {
		ev = n.log.Warn()
		msg += ": it expires soon or has expired"
	}
	ev.Str("subject", info.Subject).Strs("names", info.DNSNames).Time("not_after", info.NotAfter).
		Int("client_cas", info.ClientCAs).Msg(msg)
}

// openDetached opens the history and the event feed, and starts the
// manager of detached runs on them.
func (n *Node) openDetached() error {
	so := n.cfg.Store
	so.Logger = n.log
	st, err := store.Open(context.Background(), n.cfg.DataDir, so)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	n.Store = st
	if c, err := st.CountGuestsWithoutToken(context.Background()); err == nil && c > 0 {
		n.log.Warn().Int("guest_keys", c).Msg("guest keys made without an admin token (by an older rexec, by anyone) no longer work: " +
			"list them with /scripts/v1/guest/list and delete them")
	}
	var history store.History = st
	var outputs store.Outputs = st
	if n.Fleet != nil {
		if err := n.fleetRetry("the history and the outputs", func() (err error) {
			history, outputs, err = n.openFleetRuns(st)
			return err
		}); err != nil {
			return err
		}
		if err := n.fleetRetry("the event feed", func() error {
			f, err := n.openFleetFeed()
			if err == nil {
				n.Events = f // never a typed nil in the interface
			}
			return err
		}); err != nil {
			return err
		}
	} else {
		n.Events = feed.NewHub(n.cfg.EventReplay, n.cfg.EventQueue)
	}
	dc := n.cfg.Detached
	dc.History, dc.Outputs, dc.Broker, dc.Scripts, dc.Env, dc.Events, dc.Logger, dc.Metrics, dc.Limits =
		history, outputs, n.Broker, n.Scripts.Load, n.cfg.Env, n.Events, n.log, n.Metrics.Runs, n.limits
	if dc.StatusDir != "" {
		dc.StatusJSON = webapi.StatusJSON // the status API's shape
	}
	if n.Fleet != nil {
		dc.Fleet = fleetRuns{n}
		if err := n.fleetRetry("the queue", func() error {
			q, err := n.openFleetQueue()
			if err == nil {
				dc.Queue = q
			}
			return err
		}); err != nil {
			return err
		}
	}
	if n.Runs, err = detached.New(context.Background(), dc); err != nil {
		return err
	}
	if n.Fleet != nil {
		return n.serveFleet()
	}
	return nil
}

// openWeb starts the HTTP API on the parts.
func (n *Node) openWeb() error {
	wc := n.cfg.Web
	wc.Env, wc.Logger, wc.Scripts, wc.Metrics, wc.SelfURL, wc.Limits = n.cfg.Env, n.log, n.Scripts.Load, n.Metrics, n.URL, n.limits
	if n.tls != nil {
		wc.TLS, wc.MutualTLS = n.tls.Config(), n.tls.MutualTLS()
	}
	if n.Runs != nil {
		wc.Runs, wc.Guests, wc.Ready = n.Runs, n.Store, n.Store.Ready
		if n.fleetHistory != nil {
			wc.Guests = n.fleetHistory // the fleet's keys, the same on every host
		}
	}
	if n.Events != nil {
		wc.Events = n.Events
	}
	if n.Plugins != nil {
		wc.Plugins = pluginHost{set: &n.pluginSet, Manager: n.Plugins}
	}
	if n.Fleet != nil {
		wc.Fleet = n.Fleet
	}
	web := webapi.New(wc, n.Broker)
	if err := web.Open(); err != nil {
		return err
	}
	n.Web = web
	return nil
}

// Addr is the address the node listens on.
func (n *Node) Addr() string { return n.Web.Addr() }

// MetricsAddr is the address GET /metrics is served on without a token
// (Config.Web.MetricsAddr), or "" when there is none.
func (n *Node) MetricsAddr() string { return n.Web.MetricsAddr() }

// URL is how processes on this machine reach the node: a wildcard address
// becomes loopback; https:// with TLS.
func (n *Node) URL() string {
	scheme := "http://"
	if n.tls != nil {
		scheme = "https://"
	}
	host, port, err := net.SplitHostPort(n.Addr())
	if err != nil {
		return scheme + n.Addr()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return scheme + net.JoinHostPort(host, port)
}

// ErrNothingToReload: Reload of a node with no exectab file, TLS files or
// plugins.
var ErrNothingToReload = errors.New("no --scripts file, TLS files or --plugins to reload")

// Reload reads the exectab, the TLS files and the plugins again; it returns
// the errors of each, and ErrNothingToReload when there is none.
//
// A new catalogue replaces the old one whole, and a bad file leaves the old
// one in force. It logs what the reload added, removed and changed, and
// drops the metrics' series of the scripts no longer in force. Queued runs
// of a removed script stay queued, waiting for it to come back
// (detached.Manager.Waiting).
//
// New TLS files serve the connections made from then on; the open ones
// keep theirs, so none is dropped. Bad ones leave the old in force.
func (n *Node) Reload() error {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	if n.cfg.ScriptsFile == "" && n.tls == nil && n.cfg.PluginsDir == "" {
		return ErrNothingToReload
	}
	return errors.Join(n.reloadScripts(), n.reloadTLS(), n.reloadPlugins())
}

func (n *Node) reloadTLS() error {
	if n.tls == nil {
		return nil
	}
	info, err := n.tls.Reload()
	if err != nil {
		n.log.Error().Err(err).Msg("TLS reload failed: keeping the previous certificate")
		return err
	}
	n.logTLS(info, "TLS certificate reloaded")
	return nil
}

func (n *Node) reloadScripts() error {
	if n.cfg.ScriptsFile == "" {
		return nil
	}
	cat, err := catalog.Load(n.cfg.ScriptsFile)
	if err != nil {
		n.log.Error().Err(err).Str("file", n.cfg.ScriptsFile).Int("scripts", n.Scripts.Load().Len()).
			Msg("exectab reload failed: keeping the previous one")
		return err
	}
	added, removed, changed := catalog.Diff(n.Scripts.Load(), cat)
	n.Scripts.Store(cat)
	n.Metrics.Runs.KeepScripts(cat.Names())
	ev := n.log.Info()
	if len(removed) > 0 {
		ev = n.log.Warn()
	}
	ev.Str("file", n.cfg.ScriptsFile).Int("scripts", cat.Len()).
		Strs("added", added).Strs("removed", removed).Strs("changed", changed).
		Msg("exectab reloaded")
	if n.Runs != nil {
		n.Runs.ScriptsChanged()
	}
	return nil
}

// Close shuts the node down within ctx: detached runs stop being
// scheduled, every process group is terminated (TERM, then KILL after the
// kill grace) so that each stream ends with its trailers and each running
// detached run is recorded as interrupted, and the HTTP server waits for
// its streams. When ctx ends first, the remaining connections are cut.
// Then the feed and the history close. A second Close does nothing and
// returns nil.
func (n *Node) Close(ctx context.Context) error {
	var err error
	n.closeOnce.Do(func() { err = n.close(ctx) })
	return err
}

func (n *Node) close(ctx context.Context) error {
	var errs []error
	runsClosed := make(chan error, 1)
	go func() {
		if n.Runs == nil {
			runsClosed <- nil
			return
		}
		if err := n.Runs.Close(ctx); err != nil {
			runsClosed <- fmt.Errorf("shutdown of detached runs: %w", err)
			return
		}
		runsClosed <- nil
	}()
	brokerDone := make(chan error, 1)
	go func() {
		if n.Broker == nil {
			brokerDone <- nil
			return
		}
		brokerDone <- n.Broker.Shutdown(ctx)
	}()
	pluginsClosed := make(chan struct{})
	go func() {
		n.closePlugins()
		close(pluginsClosed)
	}()
	if n.Web != nil {
		if err := n.Web.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
	}
	<-pluginsClosed
	if err := <-brokerDone; err != nil {
		errs = append(errs, fmt.Errorf("shutdown of processes: %w", err))
	}
	errs = append(errs, <-runsClosed)
	if n.Events != nil {
		n.Events.Close()
	}
	if n.fleetQueue != nil {
		n.fleetQueue.Close()
	}
	if n.fleetHistory != nil {
		if err := n.fleetHistory.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.Store != nil {
		if err := n.Store.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.Fleet != nil {
		if err := n.Fleet.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.Cgroups != nil {
		if err := n.Cgroups.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
