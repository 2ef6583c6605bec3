//go:build linux

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePlugin makes a plugin folder with manifest and an executable "cmd"
// holding script.
func writePlugin(t *testing.T, manifest, script string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "manifest.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmd"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rexec plugin check: what an author runs before shipping a plugin.
func TestPluginCheck(t *testing.T) {
	check := func(dir string) (string, string, int) {
		t.Helper()
		var out, errOut strings.Builder
		err := checkPlugin(&out, &errOut, dir, 5*time.Second)
		code := 0
		var exit *exitError
		if errors.As(err, &exit) {
			code = exit.code
		} else if err != nil {
			t.Fatalf("checkPlugin: %v", err)
		}
		return out.String(), errOut.String() + func() string {
			if exit != nil && exit.err != nil {
				return exit.err.Error()
			}
			return ""
		}(), code
	}

	// The README's sample.
	out, _, code := check("examples/plugins/hello-python")
	if code != 0 || !strings.Contains(out, "example.hello/hello: answers JSON-RPC") || !strings.Contains(out, "methods: add, dir, hello") {
		t.Errorf("the Python sample: %d\n%s", code, out)
	}

	// A manifest with mistakes: every one, with its line; exit 2.
	bad := writePlugin(t, "id: Bad\ncomponents:\n  - id: c\n    type: cmd\n    command: cmd\n    stratgy: singleton\n", "#!/bin/sh\n")
	_, errOut, code := check(bad)
	if code != exitUsage || !strings.Contains(errOut, "manifest.yaml:1:") || !strings.Contains(errOut, "manifest.yaml:6:") {
		t.Errorf("a bad manifest: %d\n%s", code, errOut)
	}

	// A command that prints debug output on stdout: the check says what
	// it printed; exit 1.
	noisy := writePlugin(t, "id: noisy\ncomponents:\n  - id: c\n    type: cmd\n    command: cmd\n",
		"#!/bin/sh\necho 'starting up...'\nread line\n")
	out, errOut, code = check(noisy)
	if code != exitFailure || !strings.Contains(out, "noisy/c: FAILED") || !strings.Contains(out, `starting up...`) {
		t.Errorf("a noisy command: %d\n%s\n%s", code, out, errOut)
	}

	// A command that never answers: the deadline; one that dies at once.
	var outs []string
	for _, script := range []string{"#!/bin/sh\nexec sleep 60\n", "#!/bin/sh\necho dying >&2\nexit 3\n"} {
		dir := writePlugin(t, "id: mute\ncomponents:\n  - id: c\n    type: cmd\n    command: cmd\n", script)
		var o, e strings.Builder
		start := time.Now()
		err := checkPlugin(&o, &e, dir, 500*time.Millisecond)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the check took %v", d)
		}
		if err == nil {
			t.Errorf("%q passed the check", script)
		}
		outs = append(outs, o.String()+e.String())
	}
	if !strings.Contains(outs[0], "did not answer in time") {
		t.Errorf("a mute command: %s", outs[0])
	}
	if !strings.Contains(outs[1], "exit status 3") || !strings.Contains(outs[1], "dying") {
		t.Errorf("a command that exits: %s", outs[1])
	}

	// Perms that grant nothing here (a typo, a perm of the seed's server):
	// a warning each, and the check passes.
	typo := writePlugin(t, "id: typo\ncomponents:\n  - {id: c, type: cmd, command: cmd, perms: \"event.emit event.emitt settings.view[x]\"}\n",
		"#!/bin/sh\nread line\necho '{\"id\":1,\"result\":[]}'\n")
	out, _, code = check(typo)
	if code != 0 || !strings.Contains(out, `perm "event.emitt" grants nothing`) || !strings.Contains(out, `perm "settings.view[x]" grants nothing`) ||
		strings.Contains(out, `perm "event.emit" grants`) {
		t.Errorf("unused perms: %d\n%s", code, out)
	}
}

// The server refuses bad plugin flags, and a --plugins folder with a bad
// manifest, at start (exit 2), saying what is wrong.
func TestServePluginsRefused(t *testing.T) {
	rexec(t, nil, nil, "--plugin-timeout", "0").want(t, exitUsage, "", "--plugin-timeout must be positive")
	rexec(t, nil, nil, "--plugin-procs", "0").want(t, exitUsage, "", "--plugin-procs and --plugin-sessions at least 1")
	dir := t.TempDir()
	bad := writePlugin(t, "id: p\ncomponents:\n  - {id: c, type: cmd, command: nope}\n", "#!/bin/sh\n")
	if err := os.Rename(bad, filepath.Join(dir, "p")); err != nil {
		t.Fatal(err)
	}
	rexec(t, nil, nil, "--plugins", dir, "--data-dir", t.TempDir(), "-p", "0").want(t, exitUsage, "", "manifest.yaml:3:")
}
