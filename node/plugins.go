package node

import (
	"sync/atomic"

	"github.com/creachadair/jrpc2"
	"github.com/rexec/rexec/plugin"
)

// pluginHost is the node's plugin commands for the HTTP API
// (webapi.PluginHost): the plugins in force, swapped whole by Reload, and
// the manager of their processes.
type pluginHost struct {
	set *atomic.Pointer[plugin.Set]
	*plugin.Manager
}

func (h pluginHost) Plugins() []plugin.Plugin { return h.set.Load().Plugins() }

func (h pluginHost) Component(fullID string) (plugin.Component, bool) {
	return h.set.Load().Component(fullID)
}

// loadPlugins reads the plugins of PluginsDir, if there is one, and starts
// the manager of their processes.
func (n *Node) loadPlugins() error {
	if n.cfg.PluginsDir == "" {
		return nil
	}
	set, err := plugin.Load(n.cfg.PluginsDir)
	if err != nil {
		return err
	}
	n.pluginSet.Store(set)
	pc := n.cfg.Plugins
	pc.Cgroups, pc.Limits = n.Cgroups, n.limits.ForPlugin()
	pc.Logger = n.log
	pc.Lookup = func(fullID string) (plugin.Component, bool) { return n.pluginSet.Load().Component(fullID) }
	if pc.Callback == nil {
		// Processes start once the API serves: a command's calls go to
		// its runs and machines.
		pc.Callback = func(comp plugin.Component, peer plugin.Peer) jrpc2.Handler {
			if n.Web == nil {
				return nil
			}
			return plugin.Callbacks(n.Web.PluginCallbacks(), comp, peer)
		}
	}
	n.Plugins = plugin.NewManager(pc)
	n.log.Info().Str("dir", n.cfg.PluginsDir).Int("plugins", len(set.Plugins())).Msg("plugins loaded")
	n.warnUnusedPerms(set)
	return nil
}

// warnUnusedPerms logs the perms of the commands of set that grant nothing.
func (n *Node) warnUnusedPerms(set *plugin.Set) {
	for _, p := range set.Plugins() {
		for _, c := range p.Components {
			for _, perm := range c.UnusedPerms() {
				n.log.Warn().Str("plugin", c.FullID()).Str("perm", perm.String()).Strs("methods", plugin.ServerMethods).
					Msg("a perm of the manifest grants nothing here: the server's methods are these")
			}
		}
	}
}

// reloadPlugins reads the plugins again: the new set serves the sessions
// started from then on; processes running keep their command, and no call
// in flight is cut. A folder with a problem leaves the old set in force.
func (n *Node) reloadPlugins() error {
	if n.cfg.PluginsDir == "" {
		return nil
	}
	set, err := plugin.Load(n.cfg.PluginsDir)
	if err != nil {
		n.log.Error().Err(err).Str("dir", n.cfg.PluginsDir).Msg("plugins reload failed: keeping the previous ones")
		return err
	}
	n.pluginSet.Store(set)
	n.log.Info().Str("dir", n.cfg.PluginsDir).Int("plugins", len(set.Plugins())).Msg("plugins reloaded")
	n.warnUnusedPerms(set)
	return nil
}

// closePlugins stops every plugin process.
func (n *Node) closePlugins() {
	if n.Plugins != nil {
		n.Plugins.Close()
	}
}
