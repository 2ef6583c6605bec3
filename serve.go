//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/console"
	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/internal/tlsfiles"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/plugin"
	"github.com/rexec/rexec/store"
	"github.com/rexec/rexec/webapi"
	"github.com/rs/zerolog"
)

// serveCmd runs the server.
type serveCmd struct {
	IP             string        `short:"i" name:"ip" default:"127.0.0.1" help:"Address to bind. Anything but loopback needs --token or --tls-client-ca (or --insecure-no-auth)."`
	Port           int           `short:"p" default:"8910" help:"Port to bind (0 picks a free one)."`
	StatusSize     int           `default:"8" help:"Capacity of the broker's status (exit) channel."`
	StdoutSize     int           `default:"8" help:"Capacity, in chunks of up to 128 KiB, of each child's output channel."`
	Verbose        int           `short:"v" type:"counter" help:"More logging: -v debug, -vv trace (default info)."`
	LogFormat      string        `default:"json" enum:"json,console" help:"Log format: json or console."`
	Token          string        `help:"Bearer token required on every request but the probes (use REXEC_TOKEN or --token-file: ps shows a command line to every user)."`
	TokenFile      string        `type:"path" placeholder:"FILE" help:"Read the bearer token from this file (its first line) instead of --token."`
	AllowedHost    []string      `placeholder:"NAME" help:"A host name the server answers to besides its IP addresses and localhost (repeatable; .example.com for a domain and its subdomains). Requests for any other name are refused (403), which stops DNS rebinding. * answers to any name: unsafe on a machine with a browser."`
	AllowedOrigin  []string      `placeholder:"ORIGIN" help:"A browser origin (https://console.example.com) whose pages may call the server besides its own (repeatable). Other pages' requests are refused (403). * allows every page: unsafe."`
	BodyTimeout    time.Duration `default:"5s" help:"Time a client may take to send a request body, per MiB of that body's limit (and at least this long); slower bodies get 408."`
	MaxMonitors    int           `default:"256" help:"Most event monitors (SSE, WebSocket, output followers) open at once on the server; beyond it 429."`
	MonitorsPerKey int           `default:"32" help:"Most event monitors open at once with one key (the admin token is one key); beyond it 429."`
	MonitorNames   int           `default:"64" help:"Most script names one WebSocket monitor may watch; one more closes it (1008)."`
	MaxQueued      int           `default:"10000" help:"Most detached runs queued at once on the server, whatever their scripts (each script's -m caps its own); beyond it 429."`
	MaxQueuedStdin byteSize      `default:"256MiB" help:"Most bytes of stdin kept on disk for detached runs that have not ended; beyond it 429."`
	InsecureNoAuth bool          `help:"Allow binding a non-loopback address without --token or --tls-client-ca. Anyone who reaches the port can run any command."`
	TLSCert        string        `name:"tls-cert" type:"path" placeholder:"FILE" help:"Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain, leaf first; needs --tls-key. SIGHUP reads both again: new connections get the new certificate, open ones keep theirs."`
	TLSKey         string        `name:"tls-key" type:"path" placeholder:"FILE" help:"The PEM private key of --tls-cert."`
	TLSClientCA    string        `name:"tls-client-ca" type:"path" placeholder:"FILE" help:"Verify client certificates with these PEM CA certificates (mutual TLS): a request whose certificate verified is the admin's, like one with the token, and the certificate's subject is recorded as who asked. Clients without a certificate still need the token or a guest key. Needs --tls-cert; SIGHUP reads it again."`
	KillGrace      time.Duration `default:"5s" help:"Time between SIGTERM and SIGKILL when a process group is terminated."`
	ShutdownGrace  time.Duration `default:"10s" help:"Time a shutdown waits for streams to end before cutting them."`
	MaxBody        byteSize      `default:"1MiB" help:"Largest request body accepted (bytes, or with KiB/MiB/GiB); larger gets 413."`
	MaxProcs       int           `default:"0" help:"Most processes running at once; beyond it 503. 0 means no limit."`
	Heartbeat      time.Duration `default:"15s" help:"Silence after which an NDJSON stream gets a {\"heartbeat\":true} line."`
	ParkAfter      time.Duration `default:"25ms" help:"A stream quiet this long (a text one also past 1 MiB or 1 s) is served off net/http, which saves memory per held stream and CPU per byte. 0 keeps every stream in net/http."`
	Console        bool          `default:"true" negatable:"" help:"Serve the web console at / (--no-console: none). The page needs no key to load; a person signs in in it with the token or a guest key."`
	BasePath       string        `placeholder:"PATH" help:"A path prefix (/rexec) the server is also served under, for a reverse proxy that passes the prefix on: /rexec/scripts/v1/run is served as /scripts/v1/run, and the console opens at /rexec/."`
	DebugAddr      string        `help:"Serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); off when empty. Never expose it."`
	MetricsAddr    string        `placeholder:"ADDR" help:"Also serve GET /metrics (Prometheus) on this address (e.g. 127.0.0.1:9100) without the token, for a scraper that has none; /metrics on the main address always needs the token. Anyone who reaches ADDR reads the metrics (script names, run counts, the build): a non-loopback ADDR is served with a warning; keep it on a private network."`
	Scripts        string        `type:"path" placeholder:"FILE" help:"Exectab file of the scripts that may run (see README). SIGHUP reloads it; a bad file is refused with its line number."`
	ScriptsOnly    bool          `help:"Refuse ad-hoc commands (403): only scripts of --scripts run."`
	Plugins        string        `type:"path" placeholder:"DIR" help:"Folder of plugins: each subfolder with a manifest.yaml whose commands (type cmd) /plugins/v1 runs (see README). SIGHUP reloads it; a bad manifest is refused with its file and line."`
	PluginTimeout  time.Duration `default:"5s" help:"Deadline of a call to a plugin command: past it its process group is killed and the caller gets 504."`
	PluginProcs    int           `default:"64" help:"Most plugin processes running at once; beyond it a start gets 503."`
	PluginSessions int           `default:"1024" help:"Most plugin sessions open at once; beyond it a start gets 429."`
	DataDir        string        `type:"path" default:"${data_dir}" help:"Where detached runs (/scripts/v1) keep their history (SQLite) and output files; used with --scripts. Default: $XDG_STATE_HOME/rexec (~/.local/state/rexec)."`
	StatusDir      string        `type:"path" placeholder:"DIR" help:"Also write the status of each running detached run to DIR/<id>.json (the JSON of /scripts/v1/status/<id>, replaced whole at each change, removed at the run's end), for a web server on this host to read without a request. DIR is the server's own: its .json files are removed at start."`
	BusyTimeout    time.Duration `default:"2s" help:"How long a write to the run history waits for another process's lock on it (the sqlite3 shell, a backup) before the request gets 503."`
	MaxOutput      byteSize      `default:"16MiB" help:"Largest output kept per detached run; past it a truncation marker is written and the rest dropped."`
	Retain         days          `default:"30d" help:"Delete detached runs that ended longer ago than this (e.g. 30d, 12h); 0 keeps them all."`
	EventReplay    int           `default:"1000" help:"Runs' events kept for monitors that reconnect with Last-Event-ID, and as many client events."`
	EventQueue     int           `default:"256" help:"Events queued per monitor; one that falls further behind is disconnected."`
	Cgroups        string        `default:"auto" enum:"auto,v2,hybrid,v1,off" help:"Give each run a cgroup of its own, so that ending it kills everything it started and it can carry limits: auto (the best mode this host offers), v2, hybrid (a v2 tree for tracking, v1 controllers for limits), v1, or off (process groups only). A mode named and not offered stops the server; auto falls back to off with a warning."`
	CgroupRoot     string        `placeholder:"PATH" help:"The cgroup under which runs get their cgroups: a cgroup path (/rexec.slice/runs) or a directory of a cgroup file system. Default: a sub-tree named after --data-dir in the cgroup rexec runs in (under systemd, give the service Delegate=yes)."`
	DefaultMemory  byteSize      `placeholder:"SIZE" help:"Memory limit of a run that sets none (by its exectab line or request), e.g. 512MiB; past it the kernel's OOM killer ends the run (reason oom). Default none."`
	DefaultPids    int64         `default:"4096" placeholder:"N" help:"Most processes and threads a run that sets no --pids may have at once, so that a fork bomb stops at its own run: a fork past it fails. 0 is none. Not applied (with a warning) on a host without the pids controller."`
	DefaultCPU     cpuAmount     `name:"default-cpu" placeholder:"CORES" help:"CPU a run that sets none may use, in cores (0.5, 2, 250m). Default none."`
	MaxMemory      byteSize      `placeholder:"SIZE" help:"Most memory a request may ask for (\"memory\"); also the limit of an ad-hoc run that asks for none. Default no cap."`
	MaxPids        int64         `placeholder:"N" help:"Most processes a request may ask for (\"pids\"); also the limit of an ad-hoc run that asks for none. Default no cap."`
	fleetFlags     `embed:""`
	MaxCPU         cpuAmount `name:"max-cpu" placeholder:"CORES" help:"Most CPU a request may ask for (\"cpu\"); also the limit of an ad-hoc run that asks for none. Default no cap."`
}

func (c *serveCmd) Validate() error {
	switch {
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("--port %d is not a port number", c.Port)
	case c.StatusSize < 1:
		return errors.New("--status-size must be at least 1")
	case c.StdoutSize < 1:
		return errors.New("--stdout-size must be at least 1")
	case c.KillGrace <= 0:
		return errors.New("--kill-grace must be positive")
	case c.ShutdownGrace <= 0:
		return errors.New("--shutdown-grace must be positive")
	case c.MaxBody <= 0:
		return errors.New("--max-body must be positive")
	case c.MaxProcs < 0:
		return errors.New("--max-procs must be 0 (no limit) or more")
	case c.Heartbeat <= 0:
		return errors.New("--heartbeat must be positive")
	case c.ParkAfter < 0:
		return errors.New("--park-after must be 0 (never) or more")
	case c.BasePath != "" && !validBasePath(c.BasePath):
		return fmt.Errorf("--base-path %q: give a path such as /rexec (a leading /, no trailing /, no . or .. segments, no query)", c.BasePath)
	case c.EventReplay < 1 || c.EventQueue < 1:
		return errors.New("--event-replay and --event-queue must be at least 1")
	case c.MaxOutput <= 0:
		return errors.New("--max-output must be positive")
	case c.StatusDir != "" && c.Scripts == "":
		return errors.New("--status-dir needs --scripts FILE: it holds the status of detached runs of its scripts")
	case c.ScriptsOnly && c.Scripts == "":
		return errors.New("--scripts-only needs --scripts FILE: without it nothing could run")
	case c.BodyTimeout <= 0:
		return errors.New("--body-timeout must be positive")
	case c.BusyTimeout <= 0:
		return errors.New("--busy-timeout must be positive")
	case c.MaxMonitors < 1 || c.MonitorsPerKey < 1 || c.MonitorNames < 1:
		return errors.New("--max-monitors, --monitors-per-key and --monitor-names must be at least 1")
	case c.MaxQueued < 1 || c.MaxQueuedStdin < 1:
		return errors.New("--max-queued and --max-queued-stdin must be at least 1")
	case c.PluginTimeout <= 0 || c.PluginProcs < 1 || c.PluginSessions < 1:
		return errors.New("--plugin-timeout must be positive, --plugin-procs and --plugin-sessions at least 1")
	case c.Token != "" && c.TokenFile != "":
		return errors.New("--token and --token-file exclude each other: give the token once")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("--tls-cert and --tls-key go together: give both")
	case c.DefaultPids < 0 || c.MaxPids < 0:
		return errors.New("--default-pids and --max-pids must be 0 (none) or more")
	case c.TLSClientCA != "" && c.TLSCert == "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key: client certificates are asked for in the TLS handshake")
	}
	if err := webapi.ValidateSiteRules(c.AllowedHost, c.AllowedOrigin); err != nil {
		return err
	}
	if err := c.fleetFlags.validate(c.Scripts != "", c.InsecureNoAuth); err != nil {
		return err
	}
	if c.TokenFile != "" {
		token, err := readTokenFile(c.TokenFile)
		if err != nil {
			return err
		}
		c.Token = token
	}
	if c.Token == "" && c.TLSClientCA == "" && !c.InsecureNoAuth && !isLoopback(c.IP) {
		return fmt.Errorf("refusing to bind %s without a token or mutual TLS: anyone who can reach it could run any command. "+
			"Set --token (or REXEC_TOKEN) or --tls-client-ca, bind 127.0.0.1, or pass --insecure-no-auth if you really mean it", c.IP)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *serveCmd) Run() error {
	log := newLogger(c.Verbose, c.LogFormat)
	c.prepareProcess(log)
	n := node.New(c.nodeConfig(log))
	// Signals are ours from before the "listening" line: whoever takes
	// that line for "ready" may send SIGHUP or SIGTERM at once.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := n.Open(); err != nil {
		var cerr *node.ConfigError
		if errors.As(err, &cerr) {
			return &exitError{code: exitUsage, err: err}
		}
		return err
	}
	log.Info().Str("addr", n.Addr()).Str("url", n.URL()).Bool("auth", c.Token != "" || c.TLSClientCA != "").
		Bool("tls", c.TLSCert != "").Bool("mutual_tls", c.TLSClientCA != "").Msg("listening")
	if c.DebugAddr != "" {
		stopDebug, err := serveDebug(c.DebugAddr, log)
		if err != nil {
			n.Close(context.Background())
			return err
		}
		defer stopDebug()
	}
	go returnMemoryWhenQuiet(ctx, log, quietPeriod, quietHeapFloor)
	c.serveSignals(ctx, hup, n, log)
	stop() // a second signal ends the process at once
	log.Info().Dur("grace", c.ShutdownGrace).Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownGrace)
	defer cancel()
	if err := n.Close(sctx); err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return nil
}

// prepareProcess does what belongs to the process as a whole before the
// node starts: descriptors inherited from whatever started rexec are kept
// from its children, its /proc entries are made private, and the open-file
// limit is raised to the hard limit.
func (c *serveCmd) prepareProcess(log zerolog.Logger) {
	if n, err := closeInheritedFiles(); err != nil {
		log.Warn().Err(err).Msg("could not mark inherited descriptors close-on-exec: children may inherit them")
	} else if n > 0 {
		log.Info().Int("descriptors", n).Msg("descriptors inherited from whatever started rexec are kept from its children")
	}
	if err := hideFromChildren(); err != nil {
		log.Warn().Err(err).Msg("could not make the server's /proc entries private (PR_SET_DUMPABLE): its children may read its environment")
	}
	if tokenOnCommandLine(os.Args[1:]) {
		log.Warn().Msg("--token on the command line is visible to every user of this machine (ps, /proc/PID/cmdline): use REXEC_TOKEN or --token-file")
	}
	if before, after, err := raiseFileLimit(); err != nil {
		log.Warn().Err(err).Uint64("open_files", after.Cur).Msg("could not raise the open-file limit")
	} else if after.Cur != before.Cur {
		log.Debug().Uint64("from", before.Cur).Uint64("to", after.Cur).Msg("raised the open-file limit")
	}
}

// consoleHandler is the web console's handler, or nil (no console).
func consoleHandler(on bool) http.Handler {
	if !on {
		return nil
	}
	return console.New()
}

// validBasePath reports whether p is a path prefix the server can be
// served under: "/a/b", clean, without a trailing slash or a query.
func validBasePath(p string) bool {
	return strings.HasPrefix(p, "/") && p != "/" && path.Clean(p) == p && !strings.ContainsAny(p, "?#%\\ ")
}

// nodeConfig maps the flags onto the node's settings.
func (c *serveCmd) nodeConfig(log zerolog.Logger) node.Config {
	var fc *fleet.Config
	if c.inFleet() {
		fc, _ = c.fleetFlags.config(c.DataDir, "") // checked by Validate
	}
	return node.Config{
		Fleet:       fc,
		Logger:      log,
		ScriptsFile: c.Scripts,
		DataDir:     c.DataDir,
		PluginsDir:  c.Plugins,
		Plugins: plugin.Config{
			CallTimeout: c.PluginTimeout,
			KillGrace:   c.KillGrace,
			MaxProcs:    c.PluginProcs,
			MaxSessions: c.PluginSessions,
		},
		TLS:         tlsfiles.Files{Cert: c.TLSCert, Key: c.TLSKey, ClientCA: c.TLSClientCA},
		EventReplay: c.EventReplay,
		EventQueue:  c.EventQueue,
		Broker: broker.Options{
			StatusSize: c.StatusSize,
			MaxProcs:   c.MaxProcs,
			Child:      child.Options{KillGrace: c.KillGrace, OutputSize: c.StdoutSize},
		},
		Web: webapi.Config{
			Addr:           net.JoinHostPort(c.IP, strconv.Itoa(c.Port)),
			Token:          c.Token,
			MaxBody:        int64(c.MaxBody),
			Heartbeat:      c.Heartbeat,
			ParkAfter:      parkAfter(c.ParkAfter),
			ScriptsOnly:    c.ScriptsOnly,
			AllowedHosts:   c.AllowedHost,
			AllowedOrigins: c.AllowedOrigin,
			BodyTimeout:    c.BodyTimeout,
			Monitors:       webapi.MonitorLimits{Max: c.MaxMonitors, PerKey: c.MonitorsPerKey, Names: c.MonitorNames},
			MetricsAddr:    c.MetricsAddr,
			Console:        consoleHandler(c.Console),
			BasePath:       c.BasePath,
		},
		Cgroups: cgroup.Config{Mode: cgroup.Mode(c.Cgroups), Root: c.CgroupRoot},
		Limits: launch.Policy{
			Default: cgroup.Limits{Memory: int64(c.DefaultMemory), Pids: c.DefaultPids, CPU: int64(c.DefaultCPU)},
			Max:     cgroup.Limits{Memory: int64(c.MaxMemory), Pids: c.MaxPids, CPU: int64(c.MaxCPU)},
		},
		Store: store.Options{MaxOutput: int64(c.MaxOutput), BusyTimeout: c.BusyTimeout},
		Detached: detached.Config{
			Retain:         time.Duration(c.Retain),
			MaxQueued:      c.MaxQueued,
			MaxQueuedStdin: int64(c.MaxQueuedStdin),
			StatusDir:      c.StatusDir,
		},
	}
}

// serveSignals runs until ctx ends (SIGINT or SIGTERM), answering SIGHUP
// with a reload of the exectab. Reloads run on a goroutine of their own:
// reading the exectab can block (a hung network file system), and the
// signal loop must always be free to take SIGTERM. A SIGHUP during a
// reload asks for one more.
func (c *serveCmd) serveSignals(ctx context.Context, hup <-chan os.Signal, n *node.Node, log zerolog.Logger) {
	reload := make(chan struct{}, 1)
	go func() {
		for range reload {
			if err := n.Reload(); errors.Is(err, node.ErrNothingToReload) {
				log.Info().Msg("SIGHUP: no --scripts file or TLS files to reload")
			}
		}
	}()
	defer close(reload)
	for ctx.Err() == nil {
		select {
		case <-hup:
			select {
			case reload <- struct{}{}:
			default: // one is waiting already
			}
		case <-ctx.Done():
		}
	}
}

func newLogger(verbosity int, format string) zerolog.Logger {
	level := zerolog.InfoLevel
	switch {
	case verbosity == 1:
		level = zerolog.DebugLevel
	case verbosity >= 2:
		level = zerolog.TraceLevel
	}
	var out = zerolog.New(os.Stderr)
	if format == "console" {
		// Colour only for a person at a terminal, never into a file.
		out = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339, NoColor: !isTerminal(os.Stderr)})
	}
	return out.Level(level).With().Timestamp().Logger()
}

// parkAfter maps the flag (0: never) onto webapi.Config (0: the default,
// negative: never).
func parkAfter(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
