// Command rexec is a streaming remote-exec service: POST /process starts a
// command and streams its output back while it runs. See README.md.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kong"
	"github.com/rexec/rexec/internal/buildinfo"
)

// cli is the whole command line. Every flag of the server can also come from
// an environment variable REXEC_<FLAG>, e.g. REXEC_PORT or REXEC_TOKEN; the
// client commands read only REXEC_URL, REXEC_TOKEN and, for TLS,
// REXEC_CACERT, REXEC_CERT and REXEC_KEY. The server is built
// on Linux only (serve_other.go stands for it elsewhere); the client
// commands everywhere.
type cli struct {
	Serve  serveCmd  `cmd:"" default:"withargs" help:"Run the server (the default command)."`
	Run    runCmd    `cmd:"" help:"Run a command on a server, stream its output here and exit with its exit code."`
	Health healthCmd `cmd:"" help:"Exit 0 when a server answers GET /healthz, 1 otherwise (for a container HEALTHCHECK)."`

	// Detached runs of the server's scripts (/scripts/v1).
	Scripts scriptsCmd `cmd:"" help:"List the scripts of the server's exectab."`
	Submit  submitCmd  `cmd:"" help:"Submit a detached run of a script: it is queued and runs on the server; prints its id."`
	Status  statusCmd  `cmd:"" help:"Show a detached run, or the runs queued and running."`
	Logs    logsCmd    `cmd:"" help:"Write a detached run's output here; -f follows it until the run ends."`
	Cancel  cancelCmd  `cmd:"" help:"Cancel a detached run, queued or running."`
	History historyCmd `cmd:"" help:"List the runs of the history, newest first."`

	// For plugin authors (--plugins).
	Plugin pluginCmd `cmd:"" help:"Tools for plugin authors: rexec plugin check DIR."`

	Version kong.VersionFlag `env:"-" help:"Print rexec's version (module version, commit, Go version, platform) and exit."`
}

func newParser(c *cli) (*kong.Kong, error) {
	return kong.New(c,
		kong.Name("rexec"),
		kong.Description("A streaming remote-exec service: POST /process starts a command and streams its output while it runs. \"rexec run\" is its client. Every flag of the server can also be set as an environment variable REXEC_<FLAG>."),
		kong.DefaultEnvars("REXEC"),
		kong.Vars{"data_dir": defaultDataDir(), "version": buildinfo.Read().String()},
		kong.UsageOnError(),
		kong.Help(helpWithDefaultCommand),
	)
}

func main() {
	var c cli
	parser, err := newParser(&c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rexec:", err)
		os.Exit(exitUsage)
	}
	kctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		if msg := serverMissing(err); msg != nil {
			fmt.Fprintln(os.Stderr, "rexec:", msg)
			os.Exit(exitUsage)
		}
		parser.Errorf("%s", err)
		os.Exit(exitUsage)
	}
	if err := kctx.Run(); err != nil {
		code := exitFailure
		var exit *exitError
		if errors.As(err, &exit) {
			code, err = exit.code, exit.err
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "rexec:", err)
		}
		os.Exit(code)
	}
}

// Exit codes of the server command; "rexec run" has its own (run.go).
const (
	exitFailure = 1 // could not start or stop cleanly
	exitUsage   = 2 // bad command line or refused configuration
)

// exitError is a command's request to end the program with code, after
// printing err when there is one. Commands return it; main exits.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// helpWithDefaultCommand prints the usual help and, for bare "rexec --help",
// the flags of the default command too: "rexec --help" explains them all.
func helpWithDefaultCommand(options kong.HelpOptions, ctx *kong.Context) error {
	if err := kong.DefaultHelpPrinter(options, ctx); err != nil {
		return err
	}
	if ctx.Selected() != nil {
		return nil
	}
	serve, err := kong.Trace(ctx.Kong, []string{"serve"})
	if err != nil {
		return err
	}
	fmt.Fprintln(ctx.Stdout, "\nFlags of \"rexec serve\", the default command:")
	options.Summary = false
	return kong.DefaultHelpPrinter(options, serve)
}
