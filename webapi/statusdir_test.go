package webapi_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/node"
)

// With a status directory, a running run's status is also a file there,
// the same JSON as the status API's, replaced whole at each change and
// removed at the end; what a previous life left is removed at start.
func TestStatusDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "status")
	os.MkdirAll(dir, 0o755)
	for _, name := range []string{"stale.json", ".tmp-x.json-1", "keep.txt"} {
		os.WriteFile(filepath.Join(dir, name), []byte("{"), 0o644)
	}
	s := newDetachedNode(t, node.Config{Detached: detached.Config{StatusDir: dir}}, "-e=TESTCHILD=callback cb EXE @@1")
	for name, want := range map[string]bool{"stale.json": false, ".tmp-x.json-1": false, "keep.txt": true} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s left by a previous life: exists %v, want %v", name, err == nil, want)
		}
	}
	id := s.submit(t, map[string]any{"name": "cb", "args": []string{"wait"}})
	file := filepath.Join(dir, id+".json")
	var st map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(file)
		if err == nil {
			// A reader never sees half a file.
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatalf("status file is not whole JSON: %v: %q", err, b)
			}
			if p, _ := st["progress"].(map[string]any); p != nil && p["task"] == float64(2) && st["result"] != nil {
				break
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("status file never showed the callback's progress and result: %v", st)
		}
	}
	if st["success"] != true || st["id"] != id || st["state"] != "running" || st["name"] != "cb" {
		t.Fatalf("status file %v", st)
	}
	api := s.status(t, id)
	if api["id"] != st["id"] || api["queued"] != st["queued"] || api["started"] != st["started"] {
		t.Fatalf("file %v and API %v differ", st, api)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("status file mode: %v %v", fi, err)
	}
	s.waitState(t, id, "done")
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("status file after the run's end: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "keep.txt" {
			t.Errorf("left in the status directory: %s", e.Name())
		}
	}
}
