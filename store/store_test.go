package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rexec/rexec/store"
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
func mustCreate(t *testing.T, s store.History, script string, args ...string) store.Run {
	t.Helper()
	r := store.Run{Script: script, Args: args, Who: "key-1"}
	if err := s.Create(context.Background(), &r); err != nil {
		t.Fatalf("Create(%s): %v", script, err)
	}
	return r
}

func mustGet(t *testing.T, s store.History, id string) store.Run {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return r
}

func ids(runs []store.Run) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	return out
}

func intp(i int) *int { return &i }

func TestCreateGet(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, t.TempDir(), store.Options{})

	t.Run("round trip", func(t *testing.T) {
		startAt := time.Unix(1_700_000_000, 0)
		args := []string{"; rm -rf /", "$(id)", "", "ünï cödé", `"quoted" \ back`}
		r := store.Run{Script: "backup", Args: args, Who: "ops-key", StartAt: startAt, Timeout: 90 * time.Second,
			State: store.StateDone, Ended: store.EndedExit, OutputTruncated: "no"} // State, Ended... are not taken from the caller
		before := time.Now()
		if err := s.Create(ctx, &r); err != nil {
			t.Fatal(err)
		}
		if r.State != store.StateQueued || r.QueuedAt.Before(before) || r.QueuedAt.After(time.Now()) {
			t.Fatalf("after Create: state %q queued at %v", r.State, r.QueuedAt)
		}
		got := mustGet(t, s, r.ID)
		if got.ID != r.ID || got.Script != "backup" || got.Who != "ops-key" || !slices.Equal(got.Args, args) {
			t.Errorf("Get = %+v", got)
		}
		if got.State != store.StateQueued || got.Ended != "" || got.ExitCode != nil || got.Result != nil || got.OutputTruncated != "" {
			t.Errorf("new run: state %q ended %q exit %v result %s output truncated %q",
				got.State, got.Ended, got.ExitCode, got.Result, got.OutputTruncated)
		}
		if got.Timeout != 90*time.Second {
			t.Errorf("timeout %v, want 90s", got.Timeout)
		}
		if queued, err := s.ListQueued(ctx, "backup"); err != nil || len(queued) != 1 || queued[0].Timeout != 90*time.Second {
			t.Errorf("ListQueued: %+v, %v", queued, err)
		}
		if !got.QueuedAt.Equal(r.QueuedAt) || !got.StartAt.Equal(startAt) || !got.StartedAt.IsZero() || !got.EndedAt.IsZero() {
			t.Errorf("times: queued %v start %v started %v ended %v", got.QueuedAt, got.StartAt, got.StartedAt, got.EndedAt)
		}
	})

	t.Run("no args", func(t *testing.T) {
		r := mustCreate(t, s, "noargs")
		got := mustGet(t, s, r.ID)
		if len(got.Args) != 0 || !got.StartAt.IsZero() || got.Timeout != 0 {
			t.Errorf("args %q, start at %v, timeout %v", got.Args, got.StartAt, got.Timeout)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		for _, tc := range []struct{ in, want time.Duration }{
			{time.Nanosecond, time.Millisecond}, // never rounded down to none
			{1500 * time.Microsecond, 2 * time.Millisecond},
			{time.Hour, time.Hour},
			{math.MaxInt64, math.MaxInt64},
		} {
			r := store.Run{Script: "t", Timeout: tc.in}
			if err := s.Create(ctx, &r); err != nil {
				t.Fatal(err)
			}
			if got := mustGet(t, s, r.ID).Timeout; got != tc.want {
				t.Errorf("timeout %v read back as %v, want %v", tc.in, got, tc.want)
			}
		}
		if err := s.Create(ctx, &store.Run{Script: "t", Timeout: -time.Second}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("negative timeout: %v, want ErrInvalid", err)
		}
	})

	t.Run("ids", func(t *testing.T) {
		seen := map[string]bool{}
		for range 50 {
			r := mustCreate(t, s, "x")
			if len(r.ID) < 26 || url.PathEscape(r.ID) != r.ID || seen[r.ID] {
				t.Fatalf("id %q: too short, not URL-safe or repeated", r.ID)
			}
			seen[r.ID] = true
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		before, _ := os.ReadDir(filepath.Join(s.Dir(), "output"))
		if err := s.Create(cctx, &store.Run{Script: "x"}); !errors.Is(err, context.Canceled) {
			t.Errorf("Create with a cancelled context: %v, want context.Canceled", err)
		}
		if after, _ := os.ReadDir(filepath.Join(s.Dir(), "output")); len(after) != len(before) {
			t.Errorf("failed Create left an output file: %d files, were %d", len(after), len(before))
		}
	})

	t.Run("invalid", func(t *testing.T) {
		if err := s.Create(ctx, &store.Run{}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Create without script: %v, want ErrInvalid", err)
		}
		for _, id := range []string{"", "nope", "../../etc/passwd", "aaaaaaaaaaaaaaaaaaaaaaaaaa"} {
			if _, err := s.Get(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get(%q): %v, want ErrNotFound", id, err)
			}
		}
	})
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, t.TempDir(), store.Options{})
	r := mustCreate(t, s, "build", "v1")

	started := time.Unix(1_700_000_100, 123456789)
	if err := s.MarkStarted(ctx, r.ID, 4242, started); err != nil {
		t.Fatal(err)
	}
	got := mustGet(t, s, r.ID)
	if got.State != store.StateRunning || got.Pid != 4242 || got.Pgid != 4242 || !got.StartedAt.Equal(started) {
		t.Fatalf("after MarkStarted: %+v", got)
	}
	if err := s.MarkStarted(ctx, r.ID, 1, time.Now()); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("second MarkStarted: %v, want ErrWrongState", err)
	}

	p := store.Progress{Task: 2, TaskTotal: 3, TaskTitle: "Compile", SubtaskPercent: 50, SubtaskTitle: "Linking..."}
	if err := s.SetProgress(ctx, r.ID, p); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, r.ID); got.Progress != p {
		t.Errorf("progress = %+v, want %+v", got.Progress, p)
	}

	res := json.RawMessage(` {"artifacts": ["a.tgz"], "ok": true} `)
	if err := s.SetResult(ctx, r.ID, res); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(mustGet(t, s, r.ID).Result, &m); err != nil || m["ok"] != true {
		t.Errorf("result %v, %v", m, err)
	}
	for _, bad := range []string{`[1,2]`, `"s"`, `{`, ``, `null`} {
		if err := s.SetResult(ctx, r.ID, json.RawMessage(bad)); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SetResult(%q): %v, want ErrInvalid", bad, err)
		}
	}

	if err := s.MarkDone(ctx, r.ID, store.Outcome{Ended: "exploded"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("MarkDone with unknown Ended: %v, want ErrInvalid", err)
	}
	if err := s.Delete(ctx, r.ID); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("Delete of a running run: %v, want ErrWrongState", err)
	}
	ended := started.Add(90 * time.Second)
	if err := s.MarkDone(ctx, r.ID, store.Outcome{ExitCode: intp(3), Ended: store.EndedExit, EndedAt: ended}); err != nil {
		t.Fatal(err)
	}
	got = mustGet(t, s, r.ID)
	if got.State != store.StateDone || got.Ended != store.EndedExit || got.ExitCode == nil || *got.ExitCode != 3 ||
		got.Signal != "" || !got.EndedAt.Equal(ended) || got.Progress != p {
		t.Errorf("after MarkDone: %+v", got)
	}
	if err := s.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedCancelled}); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("MarkDone of a done run: %v, want ErrWrongState", err)
	}
	if err := s.SetResult(ctx, r.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, r.ID); got.Result != nil {
		t.Errorf("result after SetResult(nil) = %s", got.Result)
	}

	t.Run("signal", func(t *testing.T) {
		r := mustCreate(t, s, "build")
		if err := s.MarkStarted(ctx, r.ID, 7, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkDone(ctx, r.ID, store.Outcome{Signal: "SIGKILL", Ended: store.EndedTimeout}); err != nil {
			t.Fatal(err)
		}
		got := mustGet(t, s, r.ID)
		if got.ExitCode != nil || got.Signal != "SIGKILL" || got.Ended != store.EndedTimeout || got.StartedAt.IsZero() || got.EndedAt.IsZero() {
			t.Errorf("%+v", got)
		}
	})

	t.Run("cancel queued", func(t *testing.T) {
		r := mustCreate(t, s, "build")
		if err := s.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedCancelled}); err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, s, r.ID); got.State != store.StateDone || got.Ended != store.EndedCancelled || !got.StartedAt.IsZero() {
			t.Errorf("%+v", got)
		}
		if err := s.MarkStarted(ctx, r.ID, 1, time.Now()); !errors.Is(err, store.ErrWrongState) {
			t.Errorf("MarkStarted of a cancelled run: %v, want ErrWrongState", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := s.Delete(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, r.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get after Delete: %v, want ErrNotFound", err)
		}
		if _, _, err := s.ReadOutput(r.ID, 0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ReadOutput after Delete: %v, want ErrNotFound", err)
		}
		if _, err := os.Stat(filepath.Join(s.Dir(), "output", r.ID+".log")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("output file after Delete: %v", err)
		}
	})

	t.Run("unknown id", func(t *testing.T) {
		const id = "zzzzzzzzzzzzzzzzzzzzzzzzzz"
		for name, err := range map[string]error{
			"MarkStarted": s.MarkStarted(ctx, id, 1, time.Now()),
			"MarkDone":    s.MarkDone(ctx, id, store.Outcome{Ended: store.EndedExit}),
			"SetProgress": s.SetProgress(ctx, id, store.Progress{}),
			"SetResult":   s.SetResult(ctx, id, json.RawMessage(`{}`)),
			"Delete":      s.Delete(ctx, id),
		} {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", name, err)
			}
		}
	})
}

func TestListOrder(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, t.TempDir(), store.Options{})
	var all []store.Run
	for i := range 6 {
		all = append(all, mustCreate(t, s, []string{"a", "b"}[i%2], fmt.Sprint(i)))
	}
	// a: 0 2 4, b: 1 3 5. Start a0, finish b1.
	if err := s.MarkStarted(ctx, all[0].ID, 100, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDone(ctx, all[1].ID, store.Outcome{Ended: store.EndedCancelled}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		list func() ([]store.Run, error)
		want []store.Run
	}{
		{"active", func() ([]store.Run, error) { return s.ListActive(ctx) }, []store.Run{all[0], all[2], all[3], all[4], all[5]}},
		{"queued a", func() ([]store.Run, error) { return s.ListQueued(ctx, "a") }, []store.Run{all[2], all[4]}},
		{"queued b", func() ([]store.Run, error) { return s.ListQueued(ctx, "b") }, []store.Run{all[3], all[5]}},
		{"queued all", func() ([]store.Run, error) { return s.ListQueued(ctx, "") }, []store.Run{all[2], all[3], all[4], all[5]}},
		{"queued none", func() ([]store.Run, error) { return s.ListQueued(ctx, "c") }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.list()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), ids(tc.want)) {
				t.Errorf("got %v, want %v", ids(got), ids(tc.want))
			}
		})
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

func TestRecover(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := mustOpen(t, dir, store.Options{})
	queued := mustCreate(t, s, "q")
	running1 := mustCreate(t, s, "r")
	running2 := mustCreate(t, s, "r")
	done := mustCreate(t, s, "d")
	for i, r := range []store.Run{running1, running2, done} {
		if err := s.MarkStarted(ctx, r.ID, 1000+i, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkDone(ctx, done.ID, store.Outcome{ExitCode: intp(0), Ended: store.EndedExit}); err != nil {
		t.Fatal(err)
	}
	w, err := s.OpenOutput(running1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "half a line"); err != nil {
		t.Fatal(err)
	}
	// The crash: the files as they are now, the store never closed.
	crashed := crashCopy(t, dir)
	w.Close()

	s2 := mustOpen(t, crashed, store.Options{})
	interrupted, err := s2.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{running1.ID, running2.ID}; !slices.Equal(ids(interrupted), want) {
		t.Fatalf("Recover returned %v, want %v", ids(interrupted), want)
	}
	for i, r := range interrupted {
		if r.State != store.StateDone || r.Ended != store.EndedInterrupted || r.Pid != 1000+i || r.Pgid != 1000+i || r.EndedAt.IsZero() {
			t.Errorf("returned %+v", r)
		}
		got := mustGet(t, s2, r.ID)
		if got.State != store.StateDone || got.Ended != store.EndedInterrupted || got.ExitCode != nil || got.Pid != 1000+i {
			t.Errorf("recorded %+v", got)
		}
	}
	if got := mustGet(t, s2, running1.ID); got.OutputSize != int64(len("half a line")) {
		t.Errorf("output size of the interrupted run = %d", got.OutputSize)
	}
	if got := mustGet(t, s2, queued.ID); got.State != store.StateQueued {
		t.Errorf("queued run is %s after Recover", got.State)
	}
	if got := mustGet(t, s2, done.ID); got.Ended != store.EndedExit || got.ExitCode == nil || *got.ExitCode != 0 {
		t.Errorf("done run after Recover: %+v", got)
	}
	active, err := s2.ListActive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(active), []string{queued.ID}) {
		t.Errorf("active after Recover: %v", ids(active))
	}
	again, err := s2.Recover(ctx)
	if err != nil || len(again) != 0 {
		t.Errorf("second Recover: %v, %v", ids(again), err)
	}
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

func TestRetention(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, t.TempDir(), store.Options{})
	now := time.Now()
	finish := func(r store.Run, endedAt time.Time) {
		t.Helper()
		w, err := s.OpenOutput(r.ID)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "output of "+r.ID+"\n")
		w.Close()
		if err := s.MarkDone(ctx, r.ID, store.Outcome{ExitCode: intp(0), Ended: store.EndedExit, EndedAt: endedAt}); err != nil {
			t.Fatal(err)
		}
	}
	old := mustCreate(t, s, "x")
	finish(old, now.Add(-48*time.Hour))
	recent := mustCreate(t, s, "x")
	finish(recent, now.Add(-time.Hour))
	stillQueued := mustCreate(t, s, "x") // queued long ago, never ended: kept
	running := mustCreate(t, s, "x")
	if err := s.MarkStarted(ctx, running.ID, 1, now.Add(-72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// More than one batch of old runs.
	var many []store.Run
	for i := range 300 {
		r := mustCreate(t, s, "bulk")
		finish(r, now.Add(-30*24*time.Hour-time.Duration(i)*time.Second))
		many = append(many, r)
	}

	n, err := s.DeleteEndedBefore(ctx, now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 301 {
		t.Errorf("deleted %d runs, want 301", n)
	}
	for _, r := range append([]store.Run{old}, many...) {
		if _, err := s.Get(ctx, r.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("old run %s: %v, want ErrNotFound", r.ID, err)
		}
		if _, err := os.Stat(filepath.Join(s.Dir(), "output", r.ID+".log")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("output of old run %s: %v, want it gone", r.ID, err)
		}
	}
	for _, r := range []store.Run{recent, stillQueued, running} {
		mustGet(t, s, r.ID)
		if _, err := os.Stat(filepath.Join(s.Dir(), "output", r.ID+".log")); err != nil {
			t.Errorf("output of kept run %s: %v", r.ID, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(s.Dir(), "output"))
	if len(entries) != 3 {
		t.Errorf("%d output files left, want 3", len(entries))
	}
	if n, err := s.DeleteEndedBefore(ctx, now.Add(-24*time.Hour)); n != 0 || err != nil {
		t.Errorf("second pass: %d, %v", n, err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, t.TempDir(), store.Options{})
	const writers, each = 20, 10
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		made []string
		errs = make(chan error, writers)
	)
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				r := store.Run{Script: fmt.Sprintf("s%d", g%3), Args: []string{fmt.Sprint(g, i)}}
				err := s.Create(ctx, &r)
				if err == nil && i%2 == 0 {
					err = s.MarkStarted(ctx, r.ID, 10000+g, time.Now())
					if err == nil {
						err = s.SetProgress(ctx, r.ID, store.Progress{Task: i, TaskTitle: "t"})
					}
					if err == nil {
						err = s.MarkDone(ctx, r.ID, store.Outcome{ExitCode: intp(0), Ended: store.EndedExit})
					}
				}
				if err == nil {
					_, err = s.ListActive(ctx) // readers among the writers
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d run %d: %w", g, i, err)
					return
				}
				mu.Lock()
				made = append(made, r.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(made) != writers*each {
		t.Fatalf("%d runs made, want %d", len(made), writers*each)
	}
	slices.Sort(made)
	if len(slices.Compact(made)) != writers*each {
		t.Error("repeated IDs")
	}
	active, err := s.ListActive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != writers*each/2 {
		t.Errorf("%d active runs, want %d", len(active), writers*each/2)
	}
	for _, id := range made {
		mustGet(t, s, id)
	}
}
