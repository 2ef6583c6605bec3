package main

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/alecthomas/kong"
)

// errNoServer is the answer of "rexec serve" in a build without the server,
// which rests on Linux alone (pidfds, epoll, /proc, prctl): elsewhere rexec
// is only a client (serve_other.go).
var errNoServer = fmt.Errorf("the rexec server runs on Linux only, and this rexec is built for %s/%s: "+
	"here it is a client (rexec run, health, scripts, submit, status, logs, cancel, history; see rexec --help)",
	runtime.GOOS, runtime.GOARCH)

// noServerCmd stands for the server in a build without it: it takes any
// arguments, the server's flags included, and says so.
type noServerCmd struct {
	Args []string `arg:"" optional:"" passthrough:"all" help:"The server's flags (Linux only)."`
}

func (c *noServerCmd) Help() string {
	return "The server runs on Linux only: on " + runtime.GOOS + ", \"rexec serve\" (the default command) exits 2."
}

func (c *noServerCmd) Run() error { return &exitError{exitUsage, errNoServer} }

// askedForServer reports whether a command line that did not parse was
// meant for the server (the default command): flags of the server before
// any command. A client command's own mistake is not.
func askedForServer(err error) bool {
	var pe *kong.ParseError
	if errors.As(err, &pe) && pe.Context != nil {
		if sel := pe.Context.Selected(); sel != nil && sel.Name != "serve" {
			return false
		}
	}
	return true
}
