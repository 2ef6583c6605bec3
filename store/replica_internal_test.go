package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

// schema7 makes, in dir, the database of a rexec whose schema was version 7
// (before hosts, 'lost' and replicas): a done run with usage, a running
// run, and a run deleted after them, so the table's sequence is past every
// seq it holds.
func schema7(t *testing.T, dir string) (doneID, runningID string, lastSeq int64) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "rexec.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range append(slices.Clone(migrations[:7]), "PRAGMA user_version = 7") {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UnixNano()
	doneID, runningID = newID(), newID()
	if _, err := db.Exec(`INSERT INTO runs (id, script, args, who, state, queued_at, started_at, ended_at, exit_code, ended, usage)
		VALUES (?, 'old', '["a"]', 'k', 'done', ?, ?, ?, 0, 'oom', '{"oom_kills":1}')`, doneID, now, now, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO runs (id, script, args, who, state, queued_at, started_at, pid, pgid)
		VALUES (?, 'old', '[]', 'k', 'running', ?, ?, 999999, 999999)`, runningID, now, now); err != nil {
		t.Fatal(err)
	}
	gone := newID()
	if _, err := db.Exec(`INSERT INTO runs (id, script, state, queued_at, ended_at, ended) VALUES (?, 'old', 'done', ?, ?, 'exit')`,
		gone, now, now); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT seq FROM runs WHERE id = ?`, gone).Scan(&lastSeq); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM runs WHERE id = ?`, gone); err != nil {
		t.Fatal(err)
	}
	return doneID, runningID, lastSeq
}

// seqOf is the seq of run id.
func seqOf(t *testing.T, s *Store, id string) int64 {
	t.Helper()
	var seq int64
	if err := s.db.QueryRow(`SELECT seq FROM runs WHERE id = ?`, id).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

// TestMigration8: a history of schema 7 opens with its runs as they were,
// no host, no replica, its sequence kept, and takes hosts and 'lost' from
// then on.
func TestMigration8(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	doneID, runningID, lastSeq := schema7(t, dir)
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != len(migrations) || version < 8 {
		t.Fatalf("user_version %d, %v; want %d", version, err, len(migrations))
	}
	done, err := s.Get(ctx, doneID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Ended != EndedOOM || done.Usage == nil || done.Usage.OOMKills != 1 || done.Host != "" || !slices.Equal(done.Args, []string{"a"}) {
		t.Errorf("done run after the migration: %+v", done)
	}
	if r, err := s.Replica(ctx); err != nil || r != (Replica{}) {
		t.Errorf("Replica = %+v, %v; want none", r, err)
	}
	// The indexes are all there: ListRuns names them.
	if runs, _, err := s.ListRuns(ctx, RunQuery{Script: "old", State: StateRunning}); err != nil || len(runs) != 1 || runs[0].ID != runningID {
		t.Errorf("ListRuns: %v, %v", runs, err)
	}
	// The sequence went on from the deleted run's, not from the last held.
	n := Run{Script: "new"}
	if err := s.Create(ctx, &n); err != nil {
		t.Fatal(err)
	}
	if seq := seqOf(t, s, n.ID); seq != lastSeq+1 {
		t.Errorf("new run's seq %d, want %d", seq, lastSeq+1)
	}
	if err := s.MarkDone(ctx, runningID, Outcome{Ended: EndedLost}); err != nil {
		t.Fatalf("MarkDone lost: %v", err)
	}
	if got, err := s.Get(ctx, runningID); err != nil || got.Ended != EndedLost || got.State != StateDone {
		t.Errorf("lost run: %+v, %v", got, err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE runs SET ended = 'vanished' WHERE id = ?`, runningID); err == nil {
		t.Error("ended accepts 'vanished'")
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO replica (one) VALUES (2)`); err == nil {
		t.Error("a second replica row")
	}
}

// mustReplica opens a store in a new directory and makes it the copy of log.
func mustReplica(t *testing.T, log string) *Store {
	t.Helper()
	s, err := Open(context.Background(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.MakeReplica(context.Background(), log); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMakeReplica(t *testing.T) {
	ctx := context.Background()
	s := mustReplica(t, "L1")
	if err := s.MakeReplica(ctx, "L1"); err != nil {
		t.Errorf("again: %v", err)
	}
	if err := s.MakeReplica(ctx, "L2"); !errors.Is(err, ErrNotReplica) {
		t.Errorf("of another log: %v, want ErrNotReplica", err)
	}
	if err := s.MakeReplica(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("no name: %v, want ErrInvalid", err)
	}
	single, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	r := Run{Script: "x"}
	if err := single.Create(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if err := single.MakeReplica(ctx, "L1"); !errors.Is(err, ErrNotReplica) {
		t.Errorf("a store with runs of its own: %v, want ErrNotReplica", err)
	}
	if err := single.Entry(1).Skip(ctx); !errors.Is(err, ErrNotReplica) {
		t.Errorf("an entry on a store that is no copy: %v, want ErrNotReplica", err)
	}
	if err := single.Entry(1).DeleteGuest(ctx, newID()); !errors.Is(err, ErrNotReplica) {
		t.Errorf("a guest entry on a store that is no copy: %v, want ErrNotReplica", err)
	}

	// A key made on a single host would work on this copy alone.
	keyed, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer keyed.Close()
	if err := keyed.CreateGuest(ctx, &Guest{Run: true, KeyHash: []byte("h"), WithToken: true}); err != nil {
		t.Fatal(err)
	}
	if err := keyed.MakeReplica(ctx, "L1"); !errors.Is(err, ErrNotReplica) {
		t.Errorf("a store with guest keys of its own: %v, want ErrNotReplica", err)
	}
}

// TestEntryGuests: guest keys applied as entries are recorded as the entry
// gives them, once; refusals (ErrInvalid, ErrNoSuchGuest) are applied as
// no-ops.
func TestEntryGuests(t *testing.T) {
	ctx := context.Background()
	s := mustReplica(t, "L")
	created := time.Unix(1_700_000_000, 5)
	expires := created.Add(time.Hour)
	g := Guest{ID: newID(), Name: "backup", Run: true, Status: true, Expires: expires, Created: created,
		KeyHash: []byte("hash-g"), WithToken: true, Perms: []string{"a.b/c"}}
	in := g
	if err := s.Entry(1).CreateGuestAs(ctx, &in); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, g) || applied(t, s) != 1 {
		t.Errorf("CreateGuestAs changed its guest to %+v, or applied %d", in, applied(t, s))
	}
	got, err := s.GuestByKeyHash(ctx, []byte("hash-g"))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != g.ID || !got.Created.Equal(created) || !got.Expires.Equal(expires) || got.Name != "backup" || !got.Run ||
		got.Cancel || !got.Status || got.Monitor || !got.WithToken || !slices.Equal(got.Perms, g.Perms) {
		t.Errorf("recorded %+v, want %+v", got, g)
	}
	// Once.
	other := Guest{ID: newID(), Created: created, KeyHash: []byte("other")}
	if err := s.Entry(1).CreateGuestAs(ctx, &other); !errors.Is(err, ErrApplied) {
		t.Errorf("entry 1 again: %v, want ErrApplied", err)
	}

	for i, tc := range []struct {
		name  string
		apply func(e Entry) error
		want  error
	}{
		{"a taken id", func(e Entry) error {
			return e.CreateGuestAs(ctx, &Guest{ID: g.ID, Created: created, KeyHash: []byte("new")})
		}, ErrInvalid},
		{"a taken key", func(e Entry) error {
			return e.CreateGuestAs(ctx, &Guest{ID: newID(), Created: created, KeyHash: []byte("hash-g")})
		}, ErrInvalid},
		{"a malformed id", func(e Entry) error {
			return e.CreateGuestAs(ctx, &Guest{ID: "../x", Created: created, KeyHash: []byte("new")})
		}, ErrInvalid},
		{"no creation time", func(e Entry) error {
			return e.CreateGuestAs(ctx, &Guest{ID: newID(), KeyHash: []byte("new")})
		}, ErrInvalid},
		{"no key hash", func(e Entry) error { return e.CreateGuestAs(ctx, &Guest{ID: newID(), Created: created}) }, ErrInvalid},
		{"an expiry past 2262", func(e Entry) error {
			return e.CreateGuestAs(ctx, &Guest{ID: newID(), Created: created, KeyHash: []byte("new"), Expires: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)})
		}, ErrInvalid},
		{"an unknown key", func(e Entry) error { return e.DeleteGuest(ctx, newID()) }, ErrNoSuchGuest},
		{"no id", func(e Entry) error { return e.DeleteGuest(ctx, "") }, ErrNoSuchGuest},
	} {
		seq := uint64(10 + i)
		err := tc.apply(s.Entry(seq))
		if !errors.Is(err, tc.want) || !Refused(err) {
			t.Errorf("%s: %v, want %v, a refusal", tc.name, err, tc.want)
		}
		if got := applied(t, s); got != seq {
			t.Errorf("%s: applied %d, want %d", tc.name, got, seq)
		}
	}
	if gs, err := s.ListGuests(ctx); err != nil || len(gs) != 1 || gs[0].ID != g.ID {
		t.Errorf("after refusals: %+v, %v", gs, err)
	}

	// An entry that fails for this host's reasons applies nothing.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Entry(30).DeleteGuest(cancelled, g.ID); err == nil || Refused(err) {
		t.Errorf("cancelled: %v, want a failure that is no refusal", err)
	}
	if got := applied(t, s); got != 17 {
		t.Errorf("applied %d after a failure, want 17", got)
	}
	if err := s.Entry(30).DeleteGuest(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GuestByKeyHash(ctx, []byte("hash-g")); !errors.Is(err, ErrNotFound) || applied(t, s) != 30 {
		t.Errorf("after the delete: %v, applied %d", err, applied(t, s))
	}
	if err := s.Entry(30).DeleteGuest(ctx, g.ID); !errors.Is(err, ErrApplied) {
		t.Errorf("entry 30 again: %v, want ErrApplied", err)
	}
}

// applied is the store's last applied entry.
func applied(t *testing.T, s *Store) uint64 {
	t.Helper()
	r, err := s.Replica(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r.Applied
}

// TestEntry: each operation applied as an entry records what the entry
// gives, takes the entry's seq, is applied once, and records refused
// entries as applied with nothing changed.
func TestEntry(t *testing.T) {
	ctx := context.Background()
	s := mustReplica(t, "L")
	t0 := time.Unix(1_700_000_000, 5)
	a := Run{ID: newID(), Script: "a", Args: []string{"x"}, Who: "k", QueuedAt: t0, Timeout: time.Second}
	if err := s.Entry(3).CreateAs(ctx, &a); err != nil {
		t.Fatal(err)
	}
	if seq := seqOf(t, s, a.ID); seq != 3 || applied(t, s) != 3 || a.State != StateQueued || !a.QueuedAt.Equal(t0) {
		t.Fatalf("seq %d, applied %d, run %+v", seq, applied(t, s), a)
	}
	if _, err := os.Stat(s.outputPath(a.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an entry made an output file: %v", err)
	}
	// Once.
	if err := s.Entry(3).SetProgress(ctx, a.ID, Progress{Task: 1}); !errors.Is(err, ErrApplied) {
		t.Errorf("entry 3 again: %v, want ErrApplied", err)
	}
	// A run queued at an earlier time than one held takes the later time.
	b := Run{ID: newID(), Script: "b", QueuedAt: t0.Add(-time.Hour)}
	if err := s.Entry(5).CreateAs(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if !b.QueuedAt.Equal(t0) {
		t.Errorf("queued at %v, want %v (the latest held)", b.QueuedAt, t0)
	}
	// Refusals are applied, as no-ops.
	for i, tc := range []struct {
		name  string
		apply func(e Entry) error
		want  error
	}{
		{"a taken id", func(e Entry) error { r := a; return e.CreateAs(ctx, &r) }, ErrInvalid},
		{"a malformed id", func(e Entry) error { return e.CreateAs(ctx, &Run{ID: "../x", Script: "x", QueuedAt: t0}) }, ErrInvalid},
		{"no queue time", func(e Entry) error { return e.CreateAs(ctx, &Run{ID: newID(), Script: "x"}) }, ErrInvalid},
		{"no script", func(e Entry) error { return e.CreateAs(ctx, &Run{ID: newID(), QueuedAt: t0}) }, ErrInvalid},
		{"no start time", func(e Entry) error { return e.MarkStartedOn(ctx, a.ID, "h", 1, time.Time{}) }, ErrInvalid},
		{"no end time", func(e Entry) error { return e.MarkDoneAs(ctx, a.ID, Outcome{Ended: EndedExit}, 0) }, ErrInvalid},
		{"negative size", func(e Entry) error { return e.MarkDoneAs(ctx, a.ID, Outcome{Ended: EndedExit, EndedAt: t0}, -1) }, ErrInvalid},
		{"unknown run", func(e Entry) error { return e.SetProgress(ctx, newID(), Progress{}) }, ErrNotFound},
		{"malformed run", func(e Entry) error { return e.SetResult(ctx, "*", nil) }, ErrNotFound},
		{"not a result", func(e Entry) error { return e.SetResult(ctx, a.ID, []byte("[]")) }, ErrInvalid},
		{"delete queued", func(e Entry) error { return e.Delete(ctx, a.ID) }, ErrWrongState},
		{"recover without time", func(e Entry) error { _, err := e.RecoverOn(ctx, "h", time.Time{}, nil); return err }, ErrInvalid},
	} {
		seq := uint64(10 + i)
		if err := tc.apply(s.Entry(seq)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if got := applied(t, s); got != seq {
			t.Errorf("%s: applied %d, want %d", tc.name, got, seq)
		}
	}
	if got, err := s.Get(ctx, a.ID); err != nil || got.State != StateQueued || got.Progress != (Progress{}) {
		t.Errorf("after refusals: %+v, %v", got, err)
	}
	// An entry that fails for this host's reasons applies nothing.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Entry(30).MarkStartedOn(cancelled, a.ID, "h", 1, t0); err == nil || Refused(err) {
		t.Errorf("cancelled: %v, want a failure that is no refusal", err)
	}
	if got := applied(t, s); got != 21 {
		t.Errorf("applied %d after a failure, want 21", got)
	}

	started := t0.Add(time.Second)
	if err := s.Entry(30).MarkStartedOn(ctx, a.ID, "host-a", 42, started); err != nil {
		t.Fatal(err)
	}
	if err := s.Entry(31).MarkStartedOn(ctx, b.ID, "host-b", 43, started); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, a.ID); got.Host != "host-a" || got.Pid != 42 || got.Pgid != 42 || !got.StartedAt.Equal(started) {
		t.Errorf("started: %+v", got)
	}
	ended := started.Add(time.Minute)
	interrupted, err := s.Entry(32).RecoverOn(ctx, "host-a", ended, map[string]int64{a.ID: 77})
	if err != nil {
		t.Fatal(err)
	}
	if len(interrupted) != 1 || interrupted[0].ID != a.ID || interrupted[0].OutputSize != 77 || !interrupted[0].EndedAt.Equal(ended) {
		t.Fatalf("RecoverOn: %+v", interrupted)
	}
	if got, _ := s.Get(ctx, b.ID); got.State != StateRunning {
		t.Errorf("another host's run is %s after RecoverOn", got.State)
	}
	if err := s.Entry(33).MarkDoneAs(ctx, b.ID, Outcome{Ended: EndedLost, EndedAt: ended}, 12); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, b.ID); got.OutputSize != 12 || got.Ended != EndedLost {
		t.Errorf("done: %+v", got)
	}
	deleted, err := s.Entry(34).DeleteEndedBefore(ctx, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))
	slices.Sort(deleted)
	want := []string{a.ID, b.ID}
	slices.Sort(want)
	if err != nil || !slices.Equal(deleted, want) {
		t.Errorf("DeleteEndedBefore = %v, %v; want %v", deleted, err, want)
	}
	if err := s.Entry(40).Skip(ctx); err != nil || applied(t, s) != 40 {
		t.Errorf("Skip: %v, applied %d", err, applied(t, s))
	}
}

// TestEntriesSameEverywhere: two copies given the same entries hold the
// same runs, and page them alike, cursors included.
func TestEntriesSameEverywhere(t *testing.T) {
	ctx := context.Background()
	copies := []*Store{mustReplica(t, "L"), mustReplica(t, "L")}
	t0 := time.Unix(1_700_000_000, 0)
	var ids []string
	for i := range 30 {
		ids = append(ids, newID())
		seq := uint64(2*i + 1)
		for _, s := range copies {
			r := Run{ID: ids[i], Script: []string{"a", "b"}[i%2], QueuedAt: t0.Add(time.Duration(i%3) * time.Millisecond)}
			if err := s.Entry(seq).CreateAs(ctx, &r); err != nil {
				t.Fatal(err)
			}
			if i%4 == 1 {
				if err := s.Entry(seq+1).MarkStartedOn(ctx, ids[i-1], "h", i, t0); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	var pages [2][][]Run
	var cursors [2][]string
	for c, s := range copies {
		q := RunQuery{Limit: 7}
		for {
			runs, next, err := s.ListRuns(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			pages[c] = append(pages[c], runs)
			cursors[c] = append(cursors[c], next)
			if next == "" {
				break
			}
			q.Cursor = next
		}
	}
	if !reflect.DeepEqual(pages[0], pages[1]) || !slices.Equal(cursors[0], cursors[1]) {
		t.Errorf("the copies differ:\n%v\n%v", cursors[0], cursors[1])
	}
	if len(pages[0]) != 5 {
		t.Errorf("%d pages of 7 for 30 runs", len(pages[0]))
	}
}
