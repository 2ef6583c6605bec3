package detached

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rexec/rexec/store"
)

// Status files (Config.StatusDir): while a run runs, its status is also in
// <dir>/<id>.json, the same JSON as the status API answers, so that a web
// server on the same host reads it without a request. Each write goes to a
// temporary file renamed over the old one, so a reader sees a whole file or
// the one before; the file is removed once the run is done (a reader then
// asks the API). A run's writes are serialised and none comes after its
// removal.

// statusFileMode lets the directory's group read the files (give the web
// server's group the directory, with the setgid bit so that new files get
// that group): they hold the run's arguments.
const statusFileMode = 0o640

// openStatusDir makes the status directory and removes what a previous
// life left in it: files of runs that are not running now.
func openStatusDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("--status-dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("--status-dir: %w", err)
	}
	for _, e := range entries {
		if name := e.Name(); strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".tmp-") {
			os.Remove(filepath.Join(dir, name))
		}
	}
	return nil
}

// writeStatus writes run id's status file, unless the run is done.
func (m *Manager) writeStatus(id string, a *activeRun) {
	if m.cfg.StatusDir == "" || a == nil {
		return
	}
	a.statusMu.Lock()
	defer a.statusMu.Unlock()
	if a.statusRemoved {
		return
	}
	r, err := m.Get(m.ctx, id)
	if err != nil {
		m.log.Error().Err(err).Str("run", id).Msg("status file: reading the run")
		return
	}
	var position int
	var waiting string
	if r.State == store.StateQueued {
		position, waiting = m.Position(id), m.Waiting(r)
	}
	b, err := m.cfg.StatusJSON(r, position, waiting)
	if err == nil {
		err = writeFileAtomic(m.cfg.StatusDir, id+".json", b)
	}
	if err != nil {
		m.log.Error().Err(err).Str("run", id).Msg("writing a status file (--status-dir)")
	}
}

// removeStatus removes run id's status file for good.
func (m *Manager) removeStatus(id string, a *activeRun) {
	if m.cfg.StatusDir == "" || a == nil {
		return
	}
	a.statusMu.Lock()
	defer a.statusMu.Unlock()
	a.statusRemoved = true
	if err := os.Remove(filepath.Join(m.cfg.StatusDir, id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Error().Err(err).Str("run", id).Msg("removing a status file (--status-dir)")
	}
}

// writeFileAtomic writes b to dir/name through a temporary file renamed
// over it.
func writeFileAtomic(dir, name string, b []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-"+name+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(statusFileMode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
