// Package plugin runs plugin commands, as the Serverboards seed defines them:
// executables that a plugin ships and the server starts when a caller needs
// them, talking JSON-RPC over their stdin and stdout, one message per line,
// both ways.
//
// A plugin is a folder of --plugins with a manifest (manifest.go) listing its
// components; a component of type cmd is a command. Its strategy says whether
// each start gets a process of its own (one_for_one) or one process serves
// every start (singleton), and its timeout how long a process with no call
// stays (none: one call).
package plugin

import "time"

// Strategy is how a command's processes are shared between starts.
type Strategy string

const (
	// OneForOne gives every start a process of its own (the default).
	OneForOne Strategy = "one_for_one"
	// Singleton starts one process on first need and shares it.
	Singleton Strategy = "singleton"
)

// TypeCmd is the type of the components that are commands. Components of
// other types are kept and listed, not run.
const TypeCmd = "cmd"

// Plugin is one folder of --plugins, as its manifest describes it.
type Plugin struct {
	ID          string
	Name        string
	Version     string
	Description string
	Dir         string // the folder, absolute and without symbolic links
	Manifest    string // the manifest's path
	Components  []Component
}

// Component is one component of a plugin's manifest.
type Component struct {
	Plugin string // the plugin's id
	ID     string // unique within the plugin
	Name   string
	Type   string // TypeCmd runs; other types are listed only
	Line   int    // the manifest's line where the component starts

	// The fields of a command (Type TypeCmd).

	// Command is the executable: inside the plugin's folder, absolute and
	// without symbolic links.
	Command string
	// Dir is the plugin's folder (Plugin.Dir): the command's working
	// directory.
	Dir      string
	Strategy Strategy
	// Timeout is how long a process with no call in flight is kept; 0:
	// a process serves one call.
	Timeout time.Duration
	// Perms are the methods of the server the command may call.
	Perms []Perm
	// UserPerms are the perms a caller needs; nil when the manifest gives
	// none (only the implicit ones then open it), empty when it gives an
	// empty list (every caller may).
	UserPerms []string
	// Env is the command's whole environment: what the manifest sets,
	// nothing of the server's.
	Env []string
}

// FullID is the component's id as callers name it: "<plugin>/<id>".
func (c Component) FullID() string { return c.Plugin + "/" + c.ID }

// Perm is a permission the manifest grants a command: a method of the
// server, within a context when the perm has one ("run.start[backup]": only
// the script backup).
type Perm struct {
	Name    string
	Context string // "" for none
}

func (p Perm) String() string {
	if p.Context == "" {
		return p.Name
	}
	return p.Name + "[" + p.Context + "]"
}
