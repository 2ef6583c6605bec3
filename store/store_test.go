package store_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rexec/rexec/store"
	"github.com/rexec/rexec/store/storetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	crashHelper() // acts as the process that gets kill -9ed, when asked to
	goleak.VerifyTestMain(m)
}

// mustOpen opens a store in dir and closes it at the end of the test.
func mustOpen(t *testing.T, dir string, opts store.Options) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// mustCreate records a queued run of script.
var mustCreate = storetest.MustCreate

// mustGet returns the run id.
var mustGet = storetest.MustGet

func ids(runs []store.Run) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	return out
}

func intp(i int) *int { return &i }

// The contract of History and Outputs is checked by package storetest; the
// tests of this package are of what *Store adds: files and their modes,
// SQLite's durability and locks, the schema, the server's conditions.

// TestHistory runs the conformance suite of store.History against a
// *Store in a fresh directory.
func TestHistory(t *testing.T) {
	storetest.TestHistory(t, func(t *testing.T) store.History {
		return mustOpen(t, t.TempDir(), store.Options{})
	})
}

// suiteMaxOutput is the output cap the Outputs suite runs with: not a
// multiple of the suite's 10-byte lines, so a cut falls inside one.
const suiteMaxOutput = 1005

// TestOutputs runs the conformance suite of store.Outputs against a *Store
// in a fresh directory.
func TestOutputs(t *testing.T) {
	storetest.TestOutputs(t, suiteMaxOutput, func(t *testing.T) (store.History, store.Outputs) {
		s := mustOpen(t, t.TempDir(), store.Options{MaxOutput: suiteMaxOutput})
		return s, s
	})
}

// TestCreateCancelled: a Create that fails leaves no output file behind.
func TestCreateCancelled(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{})
	mustCreate(t, s, "x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before, _ := os.ReadDir(filepath.Join(s.Dir(), "output"))
	if err := s.Create(ctx, &store.Run{Script: "x"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a cancelled context: %v, want context.Canceled", err)
	}
	if after, _ := os.ReadDir(filepath.Join(s.Dir(), "output")); len(after) != len(before) {
		t.Errorf("failed Create left an output file: %d files, were %d", len(after), len(before))
	}
}

// TestMarkStartedZeroTime: the store takes a zero start time as now.
func TestMarkStartedZeroTime(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{})
	r := mustCreate(t, s, "x")
	before := time.Now()
	if err := s.MarkStarted(context.Background(), r.ID, 7, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, r.ID); got.StartedAt.Before(before) || got.StartedAt.After(time.Now()) {
		t.Errorf("StartedAt %v, want now", got.StartedAt)
	}
}

// crashCopy copies a store's files while it is open, as a crash would leave
// them: the database, its WAL (not checkpointed: the store was not closed)
// and the output files.
func crashCopy(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		if filepath.Ext(path) == ".db-shm" {
			return nil // rebuilt from the WAL, as after a reboot
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "rexec.db-wal")); err != nil {
		t.Fatalf("no WAL in the crash copy: %v", err)
	}
	return dst
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data", "dir") // made by Open
	s, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := mustCreate(t, s, "keep", "me")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, dir, store.Options{})
	if got := mustGet(t, s2, r.ID); !slices.Equal(got.Args, []string{"me"}) {
		t.Errorf("after reopen: %+v", got)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "output", r.ID+".log"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
}

func TestSchemaTooNew(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "rexec.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = store.Open(context.Background(), dir, store.Options{})
	if !errors.Is(err, store.ErrSchemaTooNew) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// TestRecover: after a crash (the files as they were, the store never
// closed), Recover finds the runs that were running, with the size of the
// output they had written.
func TestRecover(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := mustOpen(t, dir, store.Options{})
	queued := mustCreate(t, s, "q")
	running1 := mustCreate(t, s, "r")
	running2 := mustCreate(t, s, "r")
	for i, r := range []store.Run{running1, running2} {
		if err := s.MarkStarted(ctx, r.ID, 1000+i, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	w, err := s.OpenOutput(running1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "half a line"); err != nil {
		t.Fatal(err)
	}
	crashed := crashCopy(t, dir)
	w.Close()

	s2 := mustOpen(t, crashed, store.Options{})
	interrupted, err := s2.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The store returns them oldest first, as recorded after the change.
	if want := []string{running1.ID, running2.ID}; !slices.Equal(ids(interrupted), want) {
		t.Fatalf("Recover returned %v, want %v", ids(interrupted), want)
	}
	for i, r := range interrupted {
		if r.State != store.StateDone || r.Ended != store.EndedInterrupted || r.Pid != 1000+i || r.EndedAt.IsZero() {
			t.Errorf("returned %+v", r)
		}
	}
	if got := mustGet(t, s2, running1.ID); got.OutputSize != int64(len("half a line")) {
		t.Errorf("output size of the interrupted run = %d", got.OutputSize)
	}
	if got := mustGet(t, s2, queued.ID); got.State != store.StateQueued {
		t.Errorf("queued run is %s after Recover", got.State)
	}
}

// TestDeleteRemovesFiles: Delete and retention remove the output files of
// the runs they delete, and no other.
func TestDeleteRemovesFiles(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, t.TempDir(), store.Options{})
	now := time.Now()
	outputPath := func(r store.Run) string { return filepath.Join(s.Dir(), "output", r.ID+".log") }
	finish := func(r store.Run, endedAt time.Time) {
		t.Helper()
		w := mustOpenOutput(t, s, r.ID)
		mustWrite(t, w, []byte("output of "+r.ID+"\n"))
		w.Close()
		if err := s.MarkDone(ctx, r.ID, store.Outcome{ExitCode: intp(0), Ended: store.EndedExit, EndedAt: endedAt}); err != nil {
			t.Fatal(err)
		}
	}
	deleted := mustCreate(t, s, "x")
	finish(deleted, now)
	if err := s.Delete(ctx, deleted.ID); err != nil {
		t.Fatal(err)
	}
	var old []store.Run
	for i := range 300 { // more than one batch of retention
		r := mustCreate(t, s, "bulk")
		finish(r, now.Add(-30*24*time.Hour-time.Duration(i)*time.Second))
		old = append(old, r)
	}
	recent := mustCreate(t, s, "x")
	finish(recent, now.Add(-time.Hour))
	queued := mustCreate(t, s, "x")
	if n, err := s.DeleteEndedBefore(ctx, now.Add(-24*time.Hour)); n != 300 || err != nil {
		t.Fatalf("DeleteEndedBefore = %d, %v; want 300", n, err)
	}
	for _, r := range append([]store.Run{deleted}, old...) {
		if _, err := os.Stat(outputPath(r)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("output file of deleted run %s: %v, want it gone", r.ID, err)
		}
	}
	for _, r := range []store.Run{recent, queued} {
		if _, err := os.Stat(outputPath(r)); err != nil {
			t.Errorf("output file of kept run %s: %v", r.ID, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Dir(), "output")); len(entries) != 2 {
		t.Errorf("%d output files left, want 2", len(entries))
	}
}
