package launch_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/internal/testcgroup"
	"github.com/rexec/rexec/launch"
)

const mib = 1 << 20

// The rule on limits: a command takes what it asks (never above a cap),
// else the default, else the cap; a script takes its exectab's, else the
// default, and a request may only lower them.
func TestPolicy(t *testing.T) {
	tree := testcgroup.Open(t, cgroup.ModeHybrid)
	pol := &launch.Policy{
		Tree:    tree,
		Default: cgroup.Limits{Memory: 256 * mib},
		Max:     cgroup.Limits{Memory: 1024 * mib, Pids: 100},
	}
	if err := pol.Check(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		asked, want cgroup.Limits
		err         string
	}{
		{cgroup.Limits{}, cgroup.Limits{Memory: 256 * mib, Pids: 100}, ""},
		{cgroup.Limits{Memory: 512 * mib}, cgroup.Limits{Memory: 512 * mib, Pids: 100}, ""},
		{cgroup.Limits{Pids: 10, CPU: 500}, cgroup.Limits{Memory: 256 * mib, Pids: 10, CPU: 500}, ""},
		{cgroup.Limits{Memory: 2048 * mib}, cgroup.Limits{}, "--max-memory=1GiB"},
		{cgroup.Limits{Pids: 101}, cgroup.Limits{}, "--max-pids=100"},
		{cgroup.Limits{Memory: 1}, cgroup.Limits{}, "below the least"},
	} {
		got, err := pol.ForCommand(tt.asked)
		if tt.err != "" {
			if !errors.Is(err, cgroup.ErrLimit) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ForCommand(%+v) = %v, want an error naming %q", tt.asked, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ForCommand(%+v) = %+v, %v; want %+v", tt.asked, got, err, tt.want)
		}
	}

	own := &catalog.Script{Name: "hog", Limits: cgroup.Limits{Memory: 48 * mib, Pids: 20}}
	bare := &catalog.Script{Name: "bare"}
	big := &catalog.Script{Name: "big", Limits: cgroup.Limits{Memory: 4096 * mib}} // the exectab is above the caps: the admin's choice
	for _, tt := range []struct {
		sc          *catalog.Script
		asked, want cgroup.Limits
		err         string
	}{
		{own, cgroup.Limits{}, cgroup.Limits{Memory: 48 * mib, Pids: 20}, ""},
		{own, cgroup.Limits{Memory: 32 * mib}, cgroup.Limits{Memory: 32 * mib, Pids: 20}, ""},
		{own, cgroup.Limits{CPU: 250}, cgroup.Limits{Memory: 48 * mib, Pids: 20, CPU: 250}, ""},
		{own, cgroup.Limits{Memory: 64 * mib}, cgroup.Limits{}, "script hog's --memory=48MiB"},
		{own, cgroup.Limits{Pids: 21}, cgroup.Limits{}, "script hog's --pids=20"},
		{bare, cgroup.Limits{}, cgroup.Limits{Memory: 256 * mib}, ""},
		{bare, cgroup.Limits{Memory: 300 * mib}, cgroup.Limits{}, "--default-memory=256MiB"},
		{big, cgroup.Limits{}, cgroup.Limits{Memory: 4096 * mib}, ""},
	} {
		got, err := pol.ForScript(tt.sc, tt.asked)
		if tt.err != "" {
			if !errors.Is(err, cgroup.ErrLimit) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ForScript(%s, %+v) = %v, want an error naming %q", tt.sc.Name, tt.asked, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ForScript(%s, %+v) = %+v, %v; want %+v", tt.sc.Name, tt.asked, got, err, tt.want)
		}
	}
	if got := pol.ForPlugin(); got != pol.Default {
		t.Errorf("ForPlugin = %+v", got)
	}
}

// A policy whose default passes its cap, or that sets limits a server
// without cgroups cannot hold, is refused; so is a run asking for a limit
// there.
func TestPolicyRefused(t *testing.T) {
	for _, p := range []*launch.Policy{
		{Default: cgroup.Limits{Memory: 1}},
		{Max: cgroup.Limits{CPU: -1}},
	} {
		if err := p.Check(); !errors.Is(err, cgroup.ErrLimit) {
			t.Errorf("Check(%+v) = %v, want an ErrLimit", p, err)
		}
	}
	clamp := &launch.Policy{Default: cgroup.Limits{Pids: 4096, Memory: 1 << 30}, Max: cgroup.Limits{Pids: 100}}
	if err := clamp.Check(); err != nil || clamp.Default != (cgroup.Limits{Pids: 100, Memory: 1 << 30}) {
		t.Errorf("a default above its cap: %v, default %+v, want it lowered to the cap", err, clamp.Default)
	}
	// Without cgroups, defaults and caps are dropped with a warning, and a
	// run asking for a limit is refused.
	off := &launch.Policy{Default: cgroup.Limits{Pids: 4096}, Max: cgroup.Limits{Memory: 1 << 30}}
	if err := off.Check(); err != nil {
		t.Fatal(err)
	}
	if err := off.Fit(); !errors.Is(err, cgroup.ErrLimit) || !strings.Contains(err.Error(), "memory, pids") || !off.Default.IsZero() || !off.Max.IsZero() {
		t.Errorf("Fit without cgroups: %v, left %+v", err, off)
	}
	if _, err := off.ForCommand(cgroup.Limits{Pids: 10}); !errors.Is(err, cgroup.ErrLimit) {
		t.Errorf("a limit without cgroups: %v", err)
	}
	if l, err := off.ForCommand(cgroup.Limits{}); err != nil || !l.IsZero() {
		t.Errorf("no limit without cgroups: %+v %v", l, err)
	}
	var none *launch.Policy
	if l, err := none.ForScript(&catalog.Script{Name: "s"}, cgroup.Limits{}); err != nil || !l.IsZero() {
		t.Errorf("nil policy: %+v %v", l, err)
	}
}
