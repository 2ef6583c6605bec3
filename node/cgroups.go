package node

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"

	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/launch"
)

// openCgroups opens the tree every run gets its cgroup in, says at start-up
// which mode it runs in, kills what a previous life of the server left in
// it, and checks the limits' policy against what the tree enforces.
func (n *Node) openCgroups() error {
	cc := n.cfg.Cgroups
	if cc.Name == "" {
		cc.Name = treeName(n.cfg.DataDir)
	}
	cc.Log = n.log
	tree, err := cgroup.Open(cc)
	n.Cgroups = tree
	switch {
	case tree.Mode() == cgroup.ModeOff && cc.Mode == cgroup.ModeOff:
		n.log.Info().Str("cgroups", "off").Msg("cgroups off (--cgroups=off): runs are killed by process group, and carry no limits")
	case tree.Mode() == cgroup.ModeOff:
		n.log.Warn().Err(err).Str("cgroups", "off").
			Msg("no cgroup for runs: they are killed by process group, which a process that leaves its group (setsid) escapes, and carry no limits")
		if cc.Mode != "" && cc.Mode != cgroup.ModeAuto {
			return err // a mode asked for by name is required
		}
	default:
		n.log.Info().Str("cgroups", string(tree.Mode())).Str("root", tree.Describe()).Str("limits", tree.LimitNames()).
			Msg("each run in a cgroup of its own")
		if tree.FoundGroups > 0 {
			n.log.Warn().Int("processes", tree.Found).Int("cgroups", tree.FoundGroups).
				Msg("killed the processes a previous life of the server left running in its runs' cgroups")
		}
	}
	n.limits = &launch.Policy{Tree: tree, Default: n.cfg.Limits.Default, Max: n.cfg.Limits.Max}
	if err := n.limits.Check(); err != nil {
		return err
	}
	if err := n.limits.Fit(); err != nil {
		ev := n.log.Warn()
		if cc.Mode == cgroup.ModeOff {
			ev = n.log.Info() // the operator's choice, not a surprise
		}
		ev.Err(err).Msg("limits this host cannot hold")
	}
	return nil
}

// treeName is the name of the server's sub-tree of cgroups: the same for
// every life of a server with one data directory, so that a restart finds
// what the last one left; a server without one gets a name of its own.
func treeName(dataDir string) string {
	if dataDir == "" {
		return "rexec-" + rand.Text()[:16]
	}
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	sum := sha256.Sum256([]byte(dataDir))
	return "rexec-" + hex.EncodeToString(sum[:8])
}
