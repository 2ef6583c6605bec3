//go:build !linux

package main

// Plugin commands run where the server does, on Linux only: elsewhere
// "rexec plugin check" says so and exits 2.
type pluginCmd = noServerCmd
