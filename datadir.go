package main

import (
	"os"
	"path/filepath"
)

// defaultDataDir is where detached runs keep their history and output
// unless --data-dir (REXEC_DATA_DIR) says otherwise: the user's XDG state
// directory, $XDG_STATE_HOME/rexec (by default ~/.local/state/rexec), and
// ./rexec-data only when there is no home. The container image sets
// /var/lib/rexec, on a volume.
func defaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "rexec")
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		return filepath.Join(home, ".local", "state", "rexec")
	}
	return "rexec-data"
}
