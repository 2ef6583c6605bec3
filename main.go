// Command rexec is a streaming remote-exec service: POST /process starts a
// command and streams its output back while it runs. See README.md.
package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kong"
)

// cli is the whole command line. Every flag can also come from an
// environment variable REXEC_<FLAG>, e.g. REXEC_PORT or REXEC_TOKEN.
type cli struct {
	Serve serveCmd `cmd:"" default:"withargs" help:"Run the server (the default command)."`
}

func main() {
	var c cli
	parser, err := kong.New(&c,
		kong.Name("rexec"),
		kong.Description("A streaming remote-exec service: POST /process starts a command and streams its output while it runs. Every flag can also be set as an environment variable REXEC_<FLAG>."),
		kong.DefaultEnvars("REXEC"),
		kong.UsageOnError(),
		kong.Help(helpWithDefaultCommand),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rexec:", err)
		os.Exit(exitUsage)
	}
	kctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		parser.Errorf("%s", err)
		os.Exit(exitUsage)
	}
	if err := kctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "rexec:", err)
		os.Exit(exitFailure)
	}
}

// Exit codes of the server command.
const (
	exitFailure = 1 // could not start or stop cleanly
	exitUsage   = 2 // bad command line or refused configuration
)

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
