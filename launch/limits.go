package launch

import (
	"fmt"
	"strings"

	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/cgroup"
)

// Policy is the server's rule on the limits of runs: Default for a run that
// sets none (by its exectab line, or its request for a command), Max for
// what a request may ask. The same rule holds attached, detached and plugin
// runs. A nil *Policy sets no limit and takes none.
type Policy struct {
	// Tree is where runs get their cgroups; nil, or ModeOff, enforces no
	// limit, and a run given one is refused.
	Tree    *cgroup.Tree
	Default cgroup.Limits
	Max     cgroup.Limits
}

// Check fails when the policy itself is unusable, a default or a cap out of
// its bounds, and lowers a default above its cap to the cap. The server
// checks it at start-up, then Fits it to its tree.
func (p *Policy) Check() error {
	if p == nil {
		return nil
	}
	if err := p.Default.Check(); err != nil {
		return err
	}
	if err := p.Max.Check(); err != nil {
		return err
	}
	// A default above its cap is lowered to it: --max-pids=100 alone holds
	// runs to 100 whatever the built-in default.
	if p.Default.Memory != 0 && p.Max.Memory != 0 {
		p.Default.Memory = min(p.Default.Memory, p.Max.Memory)
	}
	if p.Default.Pids != 0 && p.Max.Pids != 0 {
		p.Default.Pids = min(p.Default.Pids, p.Max.Pids)
	}
	if p.Default.CPU != 0 && p.Max.CPU != 0 {
		p.Default.CPU = min(p.Default.CPU, p.Max.CPU)
	}
	return nil
}

// Fit drops from the defaults and the caps each limit the tree cannot
// enforce (none at all without cgroups, no cpu limit without the cpu
// controller), and says which it dropped: the server starts and warns
// rather than refuse to run anything on a host that lacks a controller. A
// run that asks for such a limit is still refused.
func (p *Policy) Fit() error {
	if p == nil {
		return nil
	}
	var dropped []string
	fit := func(name string, def, max *int64) {
		if *def == 0 && *max == 0 {
			return
		}
		var one cgroup.Limits
		switch name {
		case "memory":
			one.Memory = 1
		case "pids":
			one.Pids = 1
		case "cpu":
			one.CPU = 1
		}
		if p.enforceable(one) != nil {
			*def, *max = 0, 0
			dropped = append(dropped, name)
		}
	}
	fit("memory", &p.Default.Memory, &p.Max.Memory)
	fit("pids", &p.Default.Pids, &p.Max.Pids)
	fit("cpu", &p.Default.CPU, &p.Max.CPU)
	if len(dropped) == 0 {
		return nil
	}
	mode := cgroup.ModeOff
	if p.Tree != nil {
		mode = p.Tree.Mode()
	}
	return fmt.Errorf("%w: cgroup mode %s cannot enforce a %s limit: its default and cap are not applied", cgroup.ErrLimit, mode, strings.Join(dropped, ", "))
}

// maxFlag names the flag that caps a limit.
func maxFlag(field string) string { return "--max-" + field }

// ForCommand is the limits of an ad-hoc command that asked for asked: what
// it asks, else the default, else the cap; never above the cap.
func (p *Policy) ForCommand(asked cgroup.Limits) (cgroup.Limits, error) {
	if err := asked.Check(); err != nil {
		return cgroup.Limits{}, err
	}
	if p == nil {
		return asked, p.enforceable(asked)
	}
	if err := asked.Within(p.Max, "the request's", maxFlag); err != nil {
		return cgroup.Limits{}, err
	}
	l := asked.Or(p.Default).Or(p.Max)
	return l, p.enforceable(l)
}

// ForScript is the limits of a run of sc that asked for asked: the script's
// own (its exectab line's), else the default; a request may lower them,
// never raise them. The caps bound requests, not the exectab, which is the
// administrator's.
func (p *Policy) ForScript(sc *catalog.Script, asked cgroup.Limits) (cgroup.Limits, error) {
	if err := asked.Check(); err != nil {
		return cgroup.Limits{}, err
	}
	l := sc.Limits
	if p != nil {
		l = l.Or(p.Default)
	}
	source := func(field string) string {
		if own := map[string]int64{"memory": sc.Limits.Memory, "pids": sc.Limits.Pids, "cpu": sc.Limits.CPU}[field]; own != 0 {
			return "script " + sc.Name + "'s --" + field
		}
		return "--default-" + field
	}
	if err := asked.Within(l, "the request's", source); err != nil {
		return cgroup.Limits{}, err
	}
	l = l.Min(asked)
	return l, p.enforceable(l)
}

// ForPlugin is the limits of a plugin's process: the default.
func (p *Policy) ForPlugin() cgroup.Limits {
	if p == nil {
		return cgroup.Limits{}
	}
	return p.Default
}

// enforceable fails when l sets a limit the tree cannot enforce.
func (p *Policy) enforceable(l cgroup.Limits) error {
	if l.IsZero() {
		return nil
	}
	if p == nil || p.Tree == nil || p.Tree.Mode() == cgroup.ModeOff {
		return fmt.Errorf("%w: this server enforces no limits: its cgroups are off", cgroup.ErrLimit)
	}
	return p.Tree.CanEnforce(l)
}
