package jshistory_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/fleet/jshistory"
	"github.com/rexec/rexec/internal/testnats"
	"github.com/rexec/rexec/store"
	"github.com/rexec/rexec/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testnats.LeakOptions()...)
}

// fleets numbers the fleets of the tests, so that each has streams of its
// own on a shared server.
var fleets atomic.Int64

func newNames(t *testing.T) fleet.Names {
	t.Helper()
	n, err := fleet.NewNames(fmt.Sprint("t", fleets.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// mustLocal opens the local copy in dir, closed at the end of the test.
func mustLocal(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing the local copy: %v", err)
		}
	})
	return s
}

// mustOpen opens a History, closed at the end of the test (before its local
// copy and its connection, which were opened before it).
func mustOpen(t *testing.T, o jshistory.Options) *jshistory.History {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), storetest.Patience)
	defer cancel()
	h, err := jshistory.Open(ctx, o)
	if err != nil {
		t.Fatalf("Open(host %s): %v", o.Host, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestHistory runs the conformance suite of store.History on a fleet of
// one host, a new fleet (stream) and a new local copy for each subtest.
func TestHistory(t *testing.T) {
	srv := testnats.Start(t)
	storetest.TestHistory(t, func(t *testing.T) store.History {
		_, js := testnats.Connect(t, srv)
		return mustOpen(t, jshistory.Options{JS: js, Names: newNames(t), Host: "h1", Local: mustLocal(t, t.TempDir())})
	})
}

// host is one host of a test fleet.
type host struct {
	name  string
	dir   string // its local copy's directory
	js    jetstream.JetStream
	local *store.Store
	h     *jshistory.History
}

// openHost opens a host of the fleet names on srv, its local copy in dir
// (a new one when dir is ""), on a connection of its own.
func openHost(t *testing.T, srv *server.Server, names fleet.Names, name, dir string, o jshistory.Options) *host {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	_, js := testnats.Connect(t, srv)
	local := mustLocal(t, dir)
	o.JS, o.Names, o.Host, o.Local = js, names, name, local
	return &host{name: name, dir: dir, js: js, local: local, h: mustOpen(t, o)}
}

// lastSeq is the last entry of the fleet's history stream.
func lastSeq(t *testing.T, js jetstream.JetStream, names fleet.Names) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), names.Stream("HISTORY"))
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// settle waits until every host applied the stream's last entry.
func settle(t *testing.T, names fleet.Names, hosts ...*host) uint64 {
	t.Helper()
	last := lastSeq(t, hosts[0].js, names)
	ctx, cancel := context.WithTimeout(context.Background(), storetest.Patience)
	defer cancel()
	for _, h := range hosts {
		if err := h.h.WaitApplied(ctx, last); err != nil {
			t.Fatalf("host %s: applied %d of %d: %v", h.name, h.h.Applied(), last, err)
		}
	}
	return last
}

// everything is what a host's history holds, by every read, pages and
// their cursors included.
type everything struct {
	Pages   [][]store.Run
	Cursors []string
	Active  []store.Run
	Queued  []store.Run
	Gets    []store.Run
}

func readAll(t *testing.T, h store.History) everything {
	t.Helper()
	ctx := context.Background()
	var e everything
	q := store.RunQuery{Limit: 7}
	for {
		runs, next, err := h.ListRuns(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		e.Pages, e.Cursors = append(e.Pages, runs), append(e.Cursors, next)
		for _, r := range runs {
			e.Gets = append(e.Gets, storetest.MustGet(t, h, r.ID))
		}
		if next == "" {
			break
		}
		q.Cursor = next
	}
	var err error
	if e.Active, err = h.ListActive(ctx); err != nil {
		t.Fatal(err)
	}
	if e.Queued, err = h.ListQueued(ctx, ""); err != nil {
		t.Fatal(err)
	}
	return e
}

// sameEverywhere fails the test unless every host holds what the first
// does, every field of every run, and returns that.
func sameEverywhere(t *testing.T, hosts ...*host) everything {
	t.Helper()
	want := readAll(t, hosts[0].h)
	for _, h := range hosts[1:] {
		if got := readAll(t, h.h); !reflect.DeepEqual(got, want) {
			t.Errorf("host %s holds another history than host %s:\n%s", h.name, hosts[0].name, diff(got, want))
		}
	}
	return want
}

// diff says where two histories first differ.
func diff(got, want everything) string {
	g, w := slices.Concat(got.Pages...), slices.Concat(want.Pages...)
	if len(g) != len(w) {
		return fmt.Sprintf("%d runs, want %d", len(g), len(w))
	}
	for i := range g {
		if !reflect.DeepEqual(g[i], w[i]) {
			return fmt.Sprintf("run %d:\n got %+v\nwant %+v", i, g[i], w[i])
		}
	}
	return fmt.Sprintf("cursors %q\nwant %q", got.Cursors, want.Cursors)
}

func intp(i int) *int { return &i }

// work is what one writer does on one host: runs through their whole life,
// some deleted, with every kind of write.
func work(ctx context.Context, h store.History, w, n int) error {
	for i := range n {
		r := store.Run{Script: fmt.Sprint("s", i%3), Args: []string{fmt.Sprint(w, i)}, Who: fmt.Sprint("w", w),
			StartAt: time.Unix(1_700_000_000+int64(i), 0), Timeout: time.Duration(i) * time.Second}
		if err := h.Create(ctx, &r); err != nil {
			return err
		}
		if i%5 == 4 {
			continue // stays queued
		}
		if err := h.MarkStarted(ctx, r.ID, 1000*w+i, time.Time{}); err != nil {
			return err
		}
		t0 := time.Now()
		if err := h.SetTaskProgress(ctx, r.ID, store.Progress{Task: 2, TaskTotal: 3, TaskTitle: "b"}, t0,
			[]store.TaskSpan{{Title: "a", Start: t0.Add(-time.Second), End: t0}}); err != nil {
			return err
		}
		if err := h.SetProgress(ctx, r.ID, store.Progress{Task: 2, TaskTotal: 3, TaskTitle: "b", SubtaskPercent: i}); err != nil {
			return err
		}
		if i%5 == 3 {
			continue // stays running
		}
		if err := h.SetResult(ctx, r.ID, json.RawMessage(fmt.Sprintf(` {"w": %d, "i": %d} `, w, i))); err != nil {
			return err
		}
		if err := h.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(i % 2)}); err != nil {
			return err
		}
		// Another writer's MarkDone of the same run, late: refused alike everywhere.
		if err := h.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedCancelled}); !errors.Is(err, store.ErrWrongState) {
			return fmt.Errorf("second MarkDone: %v, want ErrWrongState", err)
		}
		if i%5 == 2 {
			if err := h.Delete(ctx, r.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestFleetConcurrent: three hosts writing at once end with the same
// history, every field of every run, cursors included.
func TestFleetConcurrent(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	hosts := []*host{
		openHost(t, srv, names, "a", "", jshistory.Options{}),
		openHost(t, srv, names, "b", "", jshistory.Options{}),
		openHost(t, srv, names, "c", "", jshistory.Options{}),
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 3*3)
	for i, h := range hosts {
		for w := range 3 {
			wg.Go(func() {
				if err := work(context.Background(), h.h, 10*i+w, 20); err != nil {
					errs <- fmt.Errorf("host %s writer %d: %w", h.name, w, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Retention from one host, while the others read.
	if n, err := hosts[1].h.DeleteEndedBefore(context.Background(), time.Now().Add(time.Hour)); err != nil || n == 0 {
		t.Fatalf("DeleteEndedBefore = %d, %v", n, err)
	}
	last := settle(t, names, hosts...)
	all := sameEverywhere(t, hosts...)
	runs := slices.Concat(all.Pages...)
	t.Logf("%d entries, %d runs left, on 3 hosts in %v", last, len(runs), time.Since(start).Round(time.Millisecond))
	if len(runs) != 3*3*20*2/5 { // queued and running runs are kept
		t.Errorf("%d runs left, want %d", len(runs), 3*3*20*2/5)
	}
	seen := map[string]bool{}
	for _, r := range runs {
		seen[r.Host] = true
	}
	if !seen["a"] || !seen["b"] || !seen["c"] || !seen[""] {
		t.Errorf("hosts of the runs: %v; want a, b, c and none (queued)", seen)
	}
}

// TestCatchUp: a host that joins late, and one restarted on its old copy,
// apply what they missed before Open returns, and hold what the others do.
func TestCatchUp(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	ctx := context.Background()
	a := openHost(t, srv, names, "a", "", jshistory.Options{})
	b := openHost(t, srv, names, "b", "", jshistory.Options{})
	if err := work(ctx, a.h, 1, 10); err != nil {
		t.Fatal(err)
	}
	settle(t, names, a, b)

	// b stops; a goes on.
	if err := b.h.Close(); err != nil {
		t.Fatal(err)
	}
	bApplied := b.h.Applied()
	if err := b.h.MarkStarted(ctx, store.NewID(), 1, time.Now()); !errors.Is(err, jshistory.ErrClosed) {
		t.Errorf("a write after Close: %v, want ErrClosed", err)
	}
	if err := work(ctx, a.h, 2, 10); err != nil {
		t.Fatal(err)
	}
	last := lastSeq(t, a.js, names)
	if last <= bApplied {
		t.Fatalf("nothing written while b was stopped (%d, %d)", last, bApplied)
	}

	// b restarts on its copy; c is new. Both have it all when Open returns.
	b2 := &host{name: "b", dir: b.dir, js: b.js, local: b.local}
	b2.h = mustOpen(t, jshistory.Options{JS: b.js, Names: names, Host: "b", Local: b.local})
	c := openHost(t, srv, names, "c", "", jshistory.Options{})
	for _, h := range []*host{b2, c} {
		if got := h.h.Applied(); got < last {
			t.Errorf("host %s: Open returned having applied %d of %d", h.name, got, last)
		}
	}
	sameEverywhere(t, a, b2, c)
}

// TestRecoverThisHost: Recover on a host ends its own running runs alone,
// on every host.
func TestRecoverThisHost(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	ctx := context.Background()
	a := openHost(t, srv, names, "a", "", jshistory.Options{})
	b := openHost(t, srv, names, "b", "", jshistory.Options{})
	onA := []store.Run{storetest.MustCreate(t, a.h, "x"), storetest.MustCreate(t, b.h, "x")}
	onB := storetest.MustCreate(t, b.h, "x")
	queued := storetest.MustCreate(t, a.h, "x")
	for i, r := range onA {
		if err := a.h.MarkStarted(ctx, r.ID, 100+i, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.h.MarkStarted(ctx, onB.ID, 200, time.Now()); err != nil {
		t.Fatal(err)
	}
	settle(t, names, a, b)

	// a restarts.
	a.h.Close()
	a2 := &host{name: "a", js: a.js, local: a.local}
	a2.h = mustOpen(t, jshistory.Options{JS: a.js, Names: names, Host: "a", Local: a.local})
	interrupted, err := a2.h.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, want := idsOf(interrupted), idsOf(onA)
	if !slices.Equal(got, want) {
		t.Fatalf("Recover on a = %v, want %v", got, want)
	}
	settle(t, names, a2, b)
	for _, h := range []*host{a2, b} {
		for _, r := range onA {
			if got := storetest.MustGet(t, h.h, r.ID); got.State != store.StateDone || got.Ended != store.EndedInterrupted || got.Host != "a" {
				t.Errorf("host %s: a's run %+v", h.name, got)
			}
		}
		if got := storetest.MustGet(t, h.h, onB.ID); got.State != store.StateRunning || got.Host != "b" {
			t.Errorf("host %s: b's run %+v", h.name, got)
		}
		if got := storetest.MustGet(t, h.h, queued.ID); got.State != store.StateQueued {
			t.Errorf("host %s: queued run %+v", h.name, got)
		}
	}
	sameEverywhere(t, a2, b)
	if again, err := a2.h.Recover(ctx); err != nil || len(again) != 0 {
		t.Errorf("Recover again: %v, %v", idsOf(again), err)
	}
}

// idsOf is the IDs of runs, sorted.
func idsOf(runs []store.Run) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	slices.Sort(out)
	return out
}

// TestSkipsWhatItCannotApply: entries that are no operation this version
// can apply are skipped, by every host alike, and the applier goes on.
func TestSkipsWhatItCannotApply(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	ctx := context.Background()
	a := openHost(t, srv, names, "a", "", jshistory.Options{})
	r := storetest.MustCreate(t, a.h, "x")
	for _, bad := range []string{
		`not json`,
		`{"v": 2, "id": "x", "kind": "create", "run": "` + store.NewID() + `", "script": "future"}`,
		`{"v": 1, "id": "x", "kind": "explode", "run": "` + r.ID + `"}`,
		`{"v": 0, "kind": "delete", "run": "` + r.ID + `"}`,
		`{"v": 1, "id": "x", "kind": "create", "run": "../../etc", "script": "x"}`,    // refused: applied as nothing
		`{"v": 1, "id": "x", "kind": "start", "run": "` + r.ID + `", "pid": 3}`,       // no time: refused
		`{"v": 1, "id": "x", "kind": "done", "run": "` + r.ID + `", "ended": "exit"}`, // no time: refused
		`[]`,
	} {
		if _, err := a.js.Publish(ctx, names.Subject("history"), []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	r2 := storetest.MustCreate(t, a.h, "after")
	if err := a.h.MarkStarted(ctx, r.ID, 9, time.Now()); err != nil {
		t.Fatalf("a write after the bad entries: %v", err)
	}
	b := openHost(t, srv, names, "b", "", jshistory.Options{})
	last := settle(t, names, a, b)
	if a.h.Applied() != last || last != 11 {
		t.Errorf("applied %d, stream ends at %d, want 11", a.h.Applied(), last)
	}
	all := sameEverywhere(t, a, b)
	if got := idsOf(slices.Concat(all.Pages...)); !slices.Equal(got, idsOf([]store.Run{r, r2})) {
		t.Errorf("runs %v, want %s and %s", got, r.ID, r2.ID)
	}
	if got := storetest.MustGet(t, b.h, r.ID); got.State != store.StateRunning || got.Pid != 9 {
		t.Errorf("run after the bad entries: %+v", got)
	}
}

// TestOutputHooks: the host that deletes runs (alone) deletes their output,
// once each; the output size MarkDone and Recover record is the one the
// writing host was told, on every host; a running run's is read live.
func TestOutputHooks(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	ctx := context.Background()
	type hooks struct {
		mu      sync.Mutex
		deleted []string
	}
	var sizes sync.Map // run ID → int64
	open := func(name string, k *hooks) *host {
		return openHost(t, srv, names, name, "", jshistory.Options{
			DeleteOutput: func(ctx context.Context, id string) error {
				k.mu.Lock()
				defer k.mu.Unlock()
				k.deleted = append(k.deleted, id)
				return nil
			},
			OutputSize: func(ctx context.Context, id string) (int64, error) {
				n, ok := sizes.Load(id)
				if !ok {
					return 0, nil
				}
				return n.(int64), nil
			},
		})
	}
	var ka, kb hooks
	a, b := open("a", &ka), open("b", &kb)
	var done []store.Run
	for i := range 4 {
		r := storetest.MustCreate(t, a.h, "x")
		if err := a.h.MarkStarted(ctx, r.ID, 10+i, time.Now()); err != nil {
			t.Fatal(err)
		}
		sizes.Store(r.ID, int64(100+i))
		if got := storetest.MustGet(t, a.h, r.ID).OutputSize; got != int64(100+i) {
			t.Errorf("live output size %d, want %d", got, 100+i)
		}
		if err := a.h.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0), EndedAt: time.Now().Add(-time.Duration(i) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		sizes.Store(r.ID, int64(999)) // grows after its end: not recorded
		done = append(done, r)
	}
	settle(t, names, a, b)
	for _, h := range []*host{a, b} {
		for i, r := range done {
			if got := storetest.MustGet(t, h.h, r.ID).OutputSize; got != int64(100+i) {
				t.Errorf("host %s: run %d recorded with output size %d, want %d", h.name, i, got, 100+i)
			}
		}
	}
	if err := a.h.Delete(ctx, done[0].ID); err != nil {
		t.Fatal(err)
	}
	if n, err := b.h.DeleteEndedBefore(ctx, time.Now().Add(-90*time.Minute)); n != 2 || err != nil {
		t.Fatalf("DeleteEndedBefore = %d, %v; want 2", n, err)
	}
	settle(t, names, a, b)
	if want := []string{done[0].ID}; !slices.Equal(ka.deleted, want) {
		t.Errorf("a deleted the output of %v, want %v", ka.deleted, want)
	}
	if got, want := sortedCopy(kb.deleted), idsOf(done[2:]); !slices.Equal(got, want) {
		t.Errorf("b deleted the output of %v, want %v", got, want)
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestOtherStream: a copy is of one stream: another fleet's, or the same
// name made again, is refused; a stream that lost entries a copy needs is
// ErrGap.
func TestOtherStream(t *testing.T) {
	srv := testnats.Start(t)
	ctx := context.Background()
	names := newNames(t)
	a := openHost(t, srv, names, "a", "", jshistory.Options{})
	storetest.MustCreate(t, a.h, "x")
	a.h.Close()
	open := func(names fleet.Names, local *store.Store) error {
		h, err := jshistory.Open(ctx, jshistory.Options{JS: a.js, Names: names, Host: "a", Local: local})
		if err == nil {
			h.Close()
		}
		return err
	}
	if err := open(newNames(t), a.local); !errors.Is(err, store.ErrNotReplica) {
		t.Errorf("the copy of another fleet: %v, want ErrNotReplica", err)
	}
	if err := a.js.DeleteStream(ctx, names.Stream("HISTORY")); err != nil {
		t.Fatal(err)
	}
	if err := open(names, a.local); !errors.Is(err, store.ErrNotReplica) {
		t.Errorf("the stream made again: %v, want ErrNotReplica", err)
	}

	// Entries purged from a stream cannot be caught up with by a new
	// copy; a copy that applied them goes on. A single entry cannot be
	// deleted.
	gone := newNames(t)
	b := openHost(t, srv, gone, "b", "", jshistory.Options{})
	storetest.MustCreate(t, b.h, "x")
	storetest.MustCreate(t, b.h, "x")
	s, err := b.js.Stream(ctx, gone.Stream("HISTORY"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, 1); err == nil {
		t.Error("an entry of the stream was deleted")
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(2)); err != nil {
		t.Fatal(err)
	}
	if err := open(gone, mustLocal(t, t.TempDir())); !errors.Is(err, jshistory.ErrGap) {
		t.Errorf("a new copy of a purged stream: %v, want ErrGap", err)
	}
	b.h.Close()
	if err := open(gone, b.local); err != nil {
		t.Errorf("the copy that applied the purged entries: %v", err)
	}
}

// TestLocalFailureRetried: while the local copy cannot take writes (its
// database locked by another process), the applier tries again rather than
// skip the entry; a write waiting for it fails with ErrPending though the
// other hosts applied it; once the lock is gone the copy catches up.
func TestLocalFailureRetried(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	ctx := context.Background()
	dir := t.TempDir()
	_, js := testnats.Connect(t, srv)
	local, err := store.Open(ctx, dir, store.Options{BusyTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	a := &host{name: "a", dir: dir, js: js, local: local}
	a.h = mustOpen(t, jshistory.Options{JS: js, Names: names, Host: "a", Local: local})
	b := openHost(t, srv, names, "b", "", jshistory.Options{})
	r := storetest.MustCreate(t, a.h, "x")

	db, err := sql.Open("sqlite", filepath.Join(dir, "rexec.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err = a.h.MarkStarted(short, r.ID, 7, time.Now())
	if !errors.Is(err, jshistory.ErrPending) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("MarkStarted while the copy is locked: %v, want ErrPending", err)
	}
	last := lastSeq(t, js, names)
	if err := b.h.WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
	if got := storetest.MustGet(t, b.h, r.ID); got.State != store.StateRunning || got.Host != "a" {
		t.Errorf("on b: %+v", got)
	}
	time.Sleep(100 * time.Millisecond) // a few more tries
	if got := a.h.Applied(); got >= last {
		t.Fatalf("a applied %d of %d through the lock", got, last)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	settle(t, names, a, b)
	sameEverywhere(t, a, b)
}

// TestClose: Close stops the applier and leaves no goroutine of the History
// (or of its consumer, in the client) behind; Open leaves none when it
// fails.
func TestClose(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	_, js := testnats.Connect(t, srv)
	local := mustLocal(t, t.TempDir())
	// The connection's own goroutines (its requests' subscription) start
	// with its first request.
	if _, err := js.AccountInfo(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := clientGoroutines()
	h, err := jshistory.Open(context.Background(), jshistory.Options{JS: js, Names: names, Host: "a", Local: local})
	if err != nil {
		t.Fatal(err)
	}
	storetest.MustCreate(t, h, "x")
	if len(clientGoroutines()) <= len(before) {
		t.Error("no goroutine for the History: the test sees nothing")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	noneLeft(t, before)
	if _, err := jshistory.Open(context.Background(), jshistory.Options{JS: js, Names: names, Host: "a.b", Local: local}); err == nil {
		t.Error("Open with a host name that is not one")
	}
	noneLeft(t, before)
}

// clientGoroutines are the stacks of the goroutines that are not the
// embedded NATS server's: the server keeps a stream's and an ephemeral
// consumer's goroutines after the client is done with them.
func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "nats-server/v2/server") {
			out = append(out, g)
		}
	}
	return out
}

// noneLeft waits for the goroutines that are not the server's to be as
// many as before, and fails the test with them if they are not.
func noneLeft(t *testing.T, before []string) {
	t.Helper()
	deadline := time.Now().Add(storetest.Patience)
	for {
		now := clientGoroutines()
		if len(now) <= len(before) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, were %d:\n%s", len(now), len(before), strings.Join(now, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A run or a guest key made on one host is found on another as soon as
// the write returned: a read that finds nothing catches up with the stream
// before it says so (how the misses share their requests to the stream:
// TestCatchUpShared).
func TestReadsCatchUp(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	ctx := context.Background()
	a := openHost(t, srv, names, "a", "", jshistory.Options{})
	b := openHost(t, srv, names, "b", "", jshistory.Options{})
	for i := range 60 {
		r := store.Run{Script: "s", Args: []string{fmt.Sprint(i)}}
		if err := a.h.Create(ctx, &r); err != nil {
			t.Fatal(err)
		}
		if got, err := b.h.Get(ctx, r.ID); err != nil || got.ID != r.ID {
			t.Fatalf("round %d: run %s made on a, read on b at once: %+v, %v", i, r.ID, got, err)
		}
		_, hash := newKey()
		g := store.Guest{Name: "k", Run: true, KeyHash: hash, WithToken: true}
		if err := a.h.CreateGuest(ctx, &g); err != nil {
			t.Fatal(err)
		}
		if got, err := b.h.GuestByKeyHash(ctx, hash); err != nil || got.ID != g.ID {
			t.Fatalf("round %d: key made on a, used on b at once: %+v, %v", i, got, err)
		}
	}
}
