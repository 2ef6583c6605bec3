//go:build !linux

package main

// The server is built on Linux only: elsewhere "rexec serve" (the default
// command) says so and exits 2, and the client commands work as on Linux.
type serveCmd = noServerCmd

// serverMissing is errNoServer for a command line that did not parse and
// was meant for the server, which this build lacks; nil otherwise.
func serverMissing(err error) error {
	if askedForServer(err) {
		return errNoServer
	}
	return nil
}
