//go:build linux

package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestDefaultDataDir(t *testing.T) {
	for _, tc := range []struct {
		xdg, home, want string
	}{
		{"/state", "/home/u", "/state/rexec"},
		{"", "/home/u", "/home/u/.local/state/rexec"},
		{"relative", "/home/u", "/home/u/.local/state/rexec"}, // XDG: a relative path is ignored
		{"", "", "rexec-data"},
	} {
		t.Setenv("XDG_STATE_HOME", tc.xdg)
		t.Setenv("HOME", tc.home)
		if got := defaultDataDir(); got != tc.want {
			t.Errorf("XDG_STATE_HOME=%q HOME=%q: %q, want %q", tc.xdg, tc.home, got, tc.want)
		}
	}
}

// A server with scripts and no --data-dir keeps its history in the state
// directory.
func TestServeDefaultDataDir(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "exectab")
	os.WriteFile(tab, []byte("ok /bin/true\n"), 0o600)
	// serverProcess runs in a folder of its own, with XDG_STATE_HOME
	// under it (rexecCmd).
	srv, _ := serverProcess(t, "--scripts", tab)
	db := filepath.Join(srv.Dir, "state", "rexec", "rexec.db")
	if _, err := os.Stat(db); err != nil {
		entries, _ := os.ReadDir(srv.Dir)
		t.Fatalf("no history at %s (%v); the server's folder holds %v", db, err, entries)
	}
}

// rexec --version prints which build this is and exits 0.
func TestVersion(t *testing.T) {
	r := rexec(t, nil, nil, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "rexec ") || !strings.Contains(r.stdout, runtime.Version()) {
		t.Fatalf("--version: %+v", r)
	}
}
