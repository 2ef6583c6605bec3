package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// schema4 makes, in dir, the database of a rexec whose schema was version 4
// (before task times), with a done run and a running run, both with
// progress.
func schema4(t *testing.T, dir string) (doneID, runningID string) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "rexec.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range append(slices.Clone(migrations[:4]), "PRAGMA user_version = 4") {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UnixNano()
	doneID, runningID = newID(), newID()
	if _, err := db.Exec(`INSERT INTO runs (id, script, args, who, state, queued_at, started_at, ended_at, exit_code, ended,
		task, task_total, task_title) VALUES (?, 'old', '["a"]', 'k', 'done', ?, ?, ?, 0, 'exit', 3, 3, 'last')`,
		doneID, now, now, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO runs (id, script, args, who, state, queued_at, started_at, pid, pgid,
		task, task_total, task_title) VALUES (?, 'old', '[]', 'k', 'running', ?, ?, 999999, 999999, 2, 3, 'second')`,
		runningID, now, now); err != nil {
		t.Fatal(err)
	}
	return doneID, runningID
}

// TestMigration5: a history written before task times opens with them
// zero and empty, its runs readable by every read, and takes them from
// then on.
func TestMigration5(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	doneID, runningID := schema4(t, dir)
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != len(migrations) || version < 5 {
		t.Fatalf("user_version %d, %v; want %d", version, err, len(migrations))
	}
	for _, col := range []string{"task_started_ns", "tasks"} {
		var n int
		err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('runs') WHERE name = ? AND "notnull" = 1`,
			col).Scan(&n)
		if err != nil || n != 1 {
			t.Errorf("runs.%s: %d, %v", col, n, err)
		}
	}
	check := func(what string, r Run) {
		t.Helper()
		if !r.TaskStartedAt.IsZero() || r.Tasks != nil || r.Script != "old" {
			t.Errorf("%s: run %s: task started at %v, tasks %#v", what, r.ID, r.TaskStartedAt, r.Tasks)
		}
	}
	for _, id := range []string{doneID, runningID} {
		r, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		check("Get", r)
	}
	active, err := s.ListActive(ctx)
	if err != nil || len(active) != 1 {
		t.Fatalf("ListActive: %v, %v", active, err)
	}
	check("ListActive", active[0])
	runs, _, err := s.ListRuns(ctx, RunQuery{})
	if err != nil || len(runs) != 2 {
		t.Fatalf("ListRuns: %v, %v", runs, err)
	}
	for _, r := range runs {
		check("ListRuns", r)
	}
	// The running run's task started before task times: unknown, so the
	// end closes none.
	interrupted, err := s.Recover(ctx)
	if err != nil || len(interrupted) != 1 {
		t.Fatalf("Recover: %v, %v", interrupted, err)
	}
	check("Recover", interrupted[0])
	r, err := s.Get(ctx, runningID)
	if err != nil {
		t.Fatal(err)
	}
	check("interrupted", r)
	if r.State != StateDone || r.Progress.Task != 2 {
		t.Errorf("interrupted run %+v", r)
	}

	// New runs take task times.
	n := Run{Script: "new"}
	if err := s.Create(ctx, &n); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 1)
	spans := []TaskSpan{{Title: "a", Start: t0, End: t0.Add(time.Second)}}
	if err := s.SetTaskProgress(ctx, n.ID, Progress{Task: 2, TaskTitle: "b"}, t0.Add(time.Second), spans); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, n.ID); err != nil || !got.TaskStartedAt.Equal(t0.Add(time.Second)) || len(got.Tasks) != 1 {
		t.Errorf("new run: %+v, %v", got, err)
	}
	// The column holds a JSON array, nothing else.
	for _, bad := range []string{`{}`, `not json`, `"s"`} {
		if _, err := s.db.ExecContext(ctx, `UPDATE runs SET tasks = ? WHERE id = ?`, bad, n.ID); err == nil {
			t.Errorf("tasks accepts %q", bad)
		}
	}
}

// TestTasksColumn: the tasks column is compact JSON with exact times, the
// zero time as 0.
func TestTasksColumn(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 123_456_789)
	spans := []TaskSpan{{Title: `a "b" <c>`, Start: t0, End: t0.Add(1)}, {Title: "", Start: time.Time{}, End: t0.Add(2)}}
	col, err := encodeTasks(spans)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"t":"a \"b\" <c>","s":1700000000123456789,"e":1700000000123456790},{"t":"","s":0,"e":1700000000123456791}]`
	if col != want {
		t.Errorf("column %s\nwant   %s", col, want)
	}
	got, err := decodeTasks(col)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Title != spans[0].Title || !got[0].Start.Equal(t0) || !got[0].End.Equal(t0.Add(1)) ||
		!got[1].Start.IsZero() || !got[1].End.Equal(t0.Add(2)) {
		t.Errorf("decoded %v", got)
	}
	for _, none := range []string{"[]", ""} {
		if got, err := decodeTasks(none); got != nil || err != nil {
			t.Errorf("decodeTasks(%q) = %#v, %v", none, got, err)
		}
	}
	if col, err := encodeTasks(nil); col != "[]" || err != nil {
		t.Errorf("encodeTasks(nil) = %q, %v", col, err)
	}
}

// TestAppendTaskSpan: at most MaxTaskSpans, the oldest dropped, and the
// slice appended to is left as it was once spans are dropped.
func TestAppendTaskSpan(t *testing.T) {
	var spans []TaskSpan
	for i := range MaxTaskSpans {
		spans = AppendTaskSpan(spans, TaskSpan{Title: fmt.Sprint(i)})
	}
	if len(spans) != MaxTaskSpans || spans[0].Title != "0" || spans[MaxTaskSpans-1].Title != fmt.Sprint(MaxTaskSpans-1) {
		t.Fatalf("%d spans, %q to %q", len(spans), spans[0].Title, spans[len(spans)-1].Title)
	}
	full := spans
	for i := MaxTaskSpans; i < MaxTaskSpans+10; i++ {
		spans = AppendTaskSpan(spans, TaskSpan{Title: fmt.Sprint(i)})
		if len(spans) != MaxTaskSpans || spans[0].Title != fmt.Sprint(i-MaxTaskSpans+1) || spans[MaxTaskSpans-1].Title != fmt.Sprint(i) {
			t.Fatalf("after %d: %d spans, %q to %q", i, len(spans), spans[0].Title, spans[len(spans)-1].Title)
		}
	}
	if full[0].Title != "0" || full[MaxTaskSpans-1].Title != fmt.Sprint(MaxTaskSpans-1) {
		t.Errorf("the full slice changed: %q to %q", full[0].Title, full[MaxTaskSpans-1].Title)
	}
}
