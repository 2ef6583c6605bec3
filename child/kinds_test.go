package child_test

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/internal/testchild"
)

// A start that fails for want of descriptors is a condition of the server
// (ErrNoResources), not a missing executable.
func TestStartWithoutDescriptorsIsNoResources(t *testing.T) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	// As many as are open now: the next descriptor cannot be had. The
	// listing's own descriptor is closed again, so this leaves none.
	low := syscall.Rlimit{Cur: uint64(len(ents)), Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	path, env := testchild.Command("exit")
	_, err = child.Start(child.Spec{Path: path, Args: []string{"0"}, Env: []string{env}}, child.Options{})
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, child.ErrNoResources) || !errors.Is(err, child.ErrStartFailed) || !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("start with no descriptor left: %v", err)
	}
	if errors.Is(err, child.ErrArgTooLong) {
		t.Fatal("also of kind ErrArgTooLong")
	}
}

// Arguments larger than the OS takes are the request's fault, found before
// anything starts.
func TestArgumentListTooLong(t *testing.T) {
	path, env := testchild.Command("exit")
	for name, spec := range map[string]child.Spec{
		"one long argument": {Path: path, Args: []string{strings.Repeat("x", 200<<10)}, Env: []string{env}},
		"one long variable": {Path: path, Args: []string{"0"}, Env: []string{env, "BIG=" + strings.Repeat("x", 200<<10)}},
		"too many in all":   {Path: path, Args: manyArgs(100, 100<<10), Env: []string{env}},
	} {
		_, err := child.Start(spec, child.Options{})
		if !errors.Is(err, child.ErrArgTooLong) || !errors.Is(err, child.ErrStartFailed) || errors.Is(err, child.ErrNoResources) {
			t.Errorf("%s: %v", name, err)
		}
		if err := child.CheckArgs(append([]string{spec.Path}, spec.Args...), spec.Env); !errors.Is(err, child.ErrArgTooLong) {
			t.Errorf("%s: CheckArgs: %v", name, err)
		}
	}
	if err := child.CheckArgs([]string{path, strings.Repeat("x", 100<<10)}, os.Environ()); err != nil {
		t.Fatalf("a 100 KiB argument: %v", err)
	}
}

func manyArgs(n, size int) []string {
	a := make([]string, n)
	for i := range a {
		a[i] = strings.Repeat("y", size)
	}
	return a
}

// A child started in a directory finds it in PWD, as after a shell's cd.
func TestDirSetsPWD(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "env", child.Spec{Dir: dir, Env: []string{"PWD=/somewhere/else"}}, child.Options{})
	out, _ := collect(p)
	p.Wait()
	if !strings.Contains("\n"+string(out), "\nPWD="+dir+"\n") || strings.Contains(string(out), "/somewhere/else") {
		t.Fatalf("PWD is not %s:\n%s", dir, out)
	}
}
