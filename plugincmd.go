//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/creachadair/jrpc2"
	"github.com/rs/zerolog"

	"github.com/rexec/rexec/plugin"
)

// pluginCmd is "rexec plugin": tools for plugin authors.
type pluginCmd struct {
	Check pluginCheckCmd `cmd:"" help:"Check a plugin folder before shipping it: its manifest, then each command once through the handshake."`
}

// pluginCheckCmd is "rexec plugin check DIR". It exits 0 when the plugin is
// fine, 1 when a command fails its handshake, and 2 when the manifest is
// refused (every problem is printed, with its file and line).
type pluginCheckCmd struct {
	Dir     string        `arg:"" type:"existingdir" help:"The plugin's folder, with its manifest.yaml."`
	Timeout time.Duration `default:"5s" env:"-" help:"How long a command may take to answer the handshake."`
}

// handshakeMethod is the call the check makes: Serverboards' plugins list
// their methods with it. Any answer counts, an error included (a plugin
// without "dir" answers "method not found"): it proves the command speaks
// JSON-RPC on its stdin and stdout.
const handshakeMethod = "dir"

func (c *pluginCheckCmd) Run() error {
	return checkPlugin(os.Stdout, os.Stderr, c.Dir, c.Timeout)
}

func checkPlugin(stdout, stderr io.Writer, dir string, timeout time.Duration) error {
	p, err := plugin.LoadPlugin(dir)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return &exitError{code: exitUsage}
	}
	fmt.Fprintf(stdout, "plugin %s", p.ID)
	if p.Name != "" || p.Version != "" {
		fmt.Fprintf(stdout, " (%s)", strings.TrimSpace(p.Name+" "+p.Version))
	}
	fmt.Fprintf(stdout, ": manifest %s is valid, %d component(s)\n", p.Manifest, len(p.Components))
	failed := 0
	for _, comp := range p.Components {
		if comp.Type != plugin.TypeCmd {
			fmt.Fprintf(stdout, "  %s: type %s, listed and not run\n", comp.FullID(), comp.Type)
			continue
		}
		methods, err := handshake(comp, timeout, stderr)
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "  %s: FAILED the handshake: %v\n", comp.FullID(), err)
			continue
		}
		fmt.Fprintf(stdout, "  %s: answers JSON-RPC (%s, %s)%s\n", comp.FullID(), comp.Strategy, describeTimeout(comp.Timeout), methods)
		warnUnusedPerms(stdout, comp)
	}
	if failed > 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("%d command(s) of %s failed the handshake", failed, p.ID)}
	}
	return nil
}

// handshake starts a process of comp, calls handshakeMethod and stops it;
// it returns what the answer says of the command's methods.
func handshake(comp plugin.Component, timeout time.Duration, stderr io.Writer) (string, error) {
	m := plugin.NewManager(plugin.Config{
		Lookup: func(id string) (plugin.Component, bool) {
			comp.Timeout = 0 // one call
			return comp, id == comp.FullID()
		},
		CallTimeout: timeout,
		// The plugin's stderr, and why a process ended.
		Logger: zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true, TimeFormat: time.TimeOnly}).
			Level(zerolog.InfoLevel).With().Timestamp().Logger(),
	})
	defer m.Close()
	res, err := m.CallOnce(context.Background(), comp.FullID(), "", handshakeMethod, nil)
	var rpcErr *jrpc2.Error
	switch {
	case errors.As(err, &rpcErr):
		return fmt.Sprintf("; %q answered: %s", handshakeMethod, rpcErr.Message), nil
	case err != nil:
		return "", err
	}
	var names []string
	if json.Unmarshal(res, &names) == nil {
		return "; methods: " + strings.Join(names, ", "), nil
	}
	return "", nil
}

// warnUnusedPerms says which perms of comp grant nothing: the check passes,
// but the command will be refused what it meant to ask for.
func warnUnusedPerms(w io.Writer, comp plugin.Component) {
	for _, p := range comp.UnusedPerms() {
		fmt.Fprintf(w, "  %s: warning: perm %q grants nothing here (the server's methods: %s)\n",
			comp.FullID(), p.String(), strings.Join(plugin.ServerMethods, ", "))
	}
}

func describeTimeout(d time.Duration) string {
	if d == 0 {
		return "a process per call"
	}
	return "kept " + d.String() + " without a call"
}
