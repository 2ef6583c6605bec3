// Package testcgroup opens cgroup trees for tests, one per test, in each
// mode the machine offers.
package testcgroup

import (
	"crypto/rand"
	"os"
	"testing"

	"github.com/rexec/rexec/cgroup"
)

// Modes are the modes with cgroups that a test may ask for.
var Modes = []cgroup.Mode{cgroup.ModeV2, cgroup.ModeHybrid, cgroup.ModeV1}

// Name is a tree name no other test uses.
func Name() string { return "rexec-test-" + rand.Text()[:12] }

// Open opens a tree of its own in mode for t, removed at its end. It skips
// t when the machine does not offer mode, except that with CI set a machine
// that offers no mode at all fails: the CI machines offer hybrid.
func Open(t testing.TB, mode cgroup.Mode) *cgroup.Tree {
	t.Helper()
	tree, err := cgroup.Open(cgroup.Config{Mode: mode, Name: Name()})
	if err != nil || tree.Mode() != mode {
		if mode == cgroup.ModeHybrid && os.Getenv("CI") != "" && os.Geteuid() == 0 {
			t.Fatalf("cgroup mode %s is not offered here (%v); the CI machines offer it", mode, err)
		}
		t.Skipf("cgroup mode %s is not offered here: %v", mode, err)
	}
	t.Cleanup(func() {
		if err := tree.Close(); err != nil {
			t.Errorf("closing the cgroup tree: %v", err)
		}
	})
	return tree
}

// Each runs f as a subtest for each mode the machine offers.
func Each(t *testing.T, f func(t *testing.T, tree *cgroup.Tree)) {
	for _, m := range Modes {
		t.Run(string(m), func(t *testing.T) { f(t, Open(t, m)) })
	}
}
