package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/runs"
	"github.com/rexec/rexec/store"
	"github.com/rexec/rexec/webapi"
	"github.com/rs/zerolog"
)

// serveCmd runs the server.
type serveCmd struct {
	IP             string        `short:"i" name:"ip" default:"127.0.0.1" help:"Address to bind. Anything but loopback needs --token (or --insecure-no-auth)."`
	Port           int           `short:"p" default:"8910" help:"Port to bind (0 picks a free one)."`
	StatusSize     int           `default:"8" help:"Capacity of the broker's status (exit) channel."`
	StdoutSize     int           `default:"8" help:"Capacity, in chunks of up to 128 KiB, of each child's output channel."`
	Verbose        int           `short:"v" type:"counter" help:"More logging: -v debug, -vv trace (default info)."`
	LogFormat      string        `default:"json" enum:"json,console" help:"Log format: json or console."`
	Token          string        `help:"Bearer token required on every request but GET /healthz (use REXEC_TOKEN to keep it out of ps)."`
	InsecureNoAuth bool          `help:"Allow binding a non-loopback address without --token. Anyone who reaches the port can run any command."`
	KillGrace      time.Duration `default:"5s" help:"Time between SIGTERM and SIGKILL when a process group is terminated."`
	ShutdownGrace  time.Duration `default:"10s" help:"Time a shutdown waits for streams to end before cutting them."`
	MaxBody        byteSize      `default:"1MiB" help:"Largest request body accepted (bytes, or with KiB/MiB/GiB); larger gets 413."`
	MaxProcs       int           `default:"0" help:"Most processes running at once; beyond it 503. 0 means no limit."`
	Heartbeat      time.Duration `default:"15s" help:"Silence after which an NDJSON stream gets a {\"heartbeat\":true} line."`
	ParkAfter      time.Duration `default:"25ms" help:"A stream quiet this long (a text one also past 1 MiB or 1 s) is served off net/http, which saves memory per held stream and CPU per byte. 0 keeps every stream in net/http."`
	DebugAddr      string        `help:"Serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); off when empty. Never expose it."`
	Scripts        string        `type:"path" placeholder:"FILE" help:"Exectab file of the scripts that may run (see README). SIGHUP reloads it; a bad file is refused with its line number."`
	ScriptsOnly    bool          `help:"Refuse ad-hoc commands (403): only scripts of --scripts run."`
	DataDir        string        `type:"path" default:"./rexec-data" help:"Where detached runs (/scripts/v1) keep their history (SQLite) and output files; used with --scripts."`
	MaxOutput      byteSize      `default:"16MiB" help:"Largest output kept per detached run; past it a truncation marker is written and the rest dropped."`
	Retain         days          `default:"30d" help:"Delete detached runs that ended longer ago than this (e.g. 30d, 12h); 0 keeps them all."`
	EventReplay    int           `default:"1000" help:"Run events kept for monitors that reconnect with Last-Event-ID."`
	EventQueue     int           `default:"256" help:"Events queued per monitor; one that falls further behind is disconnected."`
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
	case c.EventReplay < 1 || c.EventQueue < 1:
		return errors.New("--event-replay and --event-queue must be at least 1")
	case c.MaxOutput <= 0:
		return errors.New("--max-output must be positive")
	case c.ScriptsOnly && c.Scripts == "":
		return errors.New("--scripts-only needs --scripts FILE: without it nothing could run")
	}
	if c.Token == "" && !c.InsecureNoAuth && !isLoopback(c.IP) {
		return fmt.Errorf("refusing to bind %s without a token: anyone who can reach it could run any command. "+
			"Set --token (or REXEC_TOKEN), bind 127.0.0.1, or pass --insecure-no-auth if you really mean it", c.IP)
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
	scripts, err := c.loadScripts()
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if c.Scripts != "" {
		log.Info().Str("file", c.Scripts).Int("scripts", scripts.Load().Len()).Msg("exectab loaded")
	}
	if before, after, err := raiseFileLimit(); err != nil {
		log.Warn().Err(err).Uint64("open_files", after.Cur).Msg("could not raise the open-file limit")
	} else if after.Cur != before.Cur {
		log.Debug().Uint64("from", before.Cur).Uint64("to", after.Cur).Msg("raised the open-file limit")
	}
	b := broker.New(broker.Options{
		StatusSize: c.StatusSize,
		MaxProcs:   c.MaxProcs,
		Child:      child.Options{KillGrace: c.KillGrace, OutputSize: c.StdoutSize},
		Logger:     log,
	})
	env := webapi.ServerEnv(os.Environ()) // what every child starts from
	var st *store.Store
	var detached *runs.Manager
	var events *feed.Hub
	var guests webapi.Guests
	if c.Scripts != "" {
		events = feed.NewHub(c.EventReplay, c.EventQueue)
		defer events.Close()
		if st, err = store.Open(context.Background(), c.DataDir, store.Options{MaxOutput: int64(c.MaxOutput), Logger: log}); err != nil {
			b.Shutdown(context.Background())
			return fmt.Errorf("--data-dir: %w", err)
		}
		defer st.Close()
		guests = st
		detached, err = runs.New(context.Background(), runs.Config{Store: st, Broker: b, Scripts: scripts.Load,
			Env: env, Retain: time.Duration(c.Retain), Events: events, Logger: log})
		if err != nil {
			b.Shutdown(context.Background())
			return err
		}
	}
	srv := webapi.New(webapi.Config{
		Addr:        net.JoinHostPort(c.IP, strconv.Itoa(c.Port)),
		Env:         env,
		Token:       c.Token,
		MaxBody:     int64(c.MaxBody),
		Heartbeat:   c.Heartbeat,
		ParkAfter:   parkAfter(c.ParkAfter),
		Logger:      log,
		Scripts:     scripts.Load,
		ScriptsOnly: c.ScriptsOnly,
		Runs:        detached,
		Events:      events,
		Guests:      guests,
	}, b)
	if err := srv.Open(); err != nil {
		b.Shutdown(context.Background())
		return err
	}
	log.Info().Str("addr", srv.Addr()).Bool("auth", c.Token != "").Msg("listening")
	if detached != nil {
		detached.SetURL(selfURL(srv.Addr()))
	}
	if c.DebugAddr != "" {
		stopDebug, err := serveDebug(c.DebugAddr, log)
		if err != nil {
			srv.Close(context.Background())
			return err
		}
		defer stopDebug()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go returnMemoryWhenQuiet(ctx, log, quietPeriod, quietHeapFloor)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-hup:
			c.reloadScripts(scripts, log)
		case <-ctx.Done():
		}
	}
	stop() // a second signal ends the process at once
	log.Info().Dur("grace", c.ShutdownGrace).Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownGrace)
	defer cancel()
	// Detached runs stop being scheduled at once, and are recorded as
	// interrupted as the server's shutdown kills their groups.
	runsClosed := make(chan error, 1)
	go func() {
		if detached == nil {
			runsClosed <- nil
			return
		}
		runsClosed <- detached.Close(sctx)
	}()
	if err := srv.Close(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-runsClosed; err != nil {
		return fmt.Errorf("shutdown of detached runs: %w", err)
	}
	log.Info().Msg("stopped")
	return nil
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
		out = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339})
	}
	return out.Level(level).With().Timestamp().Logger()
}

// loadScripts reads --scripts, if given, into the pointer that requests
// read. Without the flag the catalogue is empty.
func (c *serveCmd) loadScripts() (*atomic.Pointer[catalog.Catalog], error) {
	var p atomic.Pointer[catalog.Catalog]
	if c.Scripts == "" {
		return &p, nil
	}
	cat, err := catalog.Load(c.Scripts)
	if err != nil {
		return nil, err
	}
	p.Store(cat)
	return &p, nil
}

// reloadScripts answers SIGHUP: a new catalogue replaces the old one whole,
// and a bad file leaves the old one in force.
func (c *serveCmd) reloadScripts(p *atomic.Pointer[catalog.Catalog], log zerolog.Logger) {
	if c.Scripts == "" {
		log.Info().Msg("SIGHUP: no --scripts file to reload")
		return
	}
	cat, err := catalog.Load(c.Scripts)
	if err != nil {
		log.Error().Err(err).Str("file", c.Scripts).Int("scripts", p.Load().Len()).
			Msg("exectab reload failed: keeping the previous one")
		return
	}
	p.Store(cat)
	log.Info().Str("file", c.Scripts).Int("scripts", cat.Len()).Msg("exectab reloaded")
}

// selfURL is how processes on this machine reach the server listening on
// addr: a wildcard address becomes loopback.
func selfURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// parkAfter maps the flag (0: never) onto webapi.Config (0: the default,
// negative: never).
func parkAfter(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
