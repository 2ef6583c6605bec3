package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rexec/rexec/store"
)

// The subtests of History.ListRuns.

// ListRunsPaged is how many runs testListRunsPages pages through while
// others are created: the 10,000.
const ListRunsPaged = 10_000

// listPage is one ListRuns call that must succeed.
func listPage(t *testing.T, h store.History, q store.RunQuery) ([]store.Run, string) {
	t.Helper()
	runs, next, err := h.ListRuns(context.Background(), q)
	if err != nil {
		t.Fatalf("ListRuns(%+v): %v", q, err)
	}
	limit := q.Limit
	if limit == 0 {
		limit = store.DefaultListLimit
	}
	if len(runs) > limit {
		t.Fatalf("ListRuns(%+v): %d runs, more than the limit %d", q, len(runs), limit)
	}
	if next != "" && len(runs) < limit {
		t.Fatalf("ListRuns(%+v): %d runs and a next cursor: a page short of the limit is the last", q, len(runs))
	}
	return runs, next
}

// listAll pages through what q selects, pages of q.Limit, and returns
// every run listed and the number of pages.
func listAll(t *testing.T, h store.History, q store.RunQuery) ([]store.Run, int) {
	t.Helper()
	var all []store.Run
	for pages := 1; ; pages++ {
		runs, next := listPage(t, h, q)
		all = append(all, runs...)
		if next == "" {
			return all, pages
		}
		if next == q.Cursor {
			t.Fatalf("ListRuns returned the cursor it was given: %q", next)
		}
		q.Cursor = next
	}
}

// newestFirst checks that runs are in the order ListRuns promises as far as
// a caller can see it: QueuedAt never increases along the list.
func newestFirst(t *testing.T, what string, runs []store.Run) {
	t.Helper()
	for i := 1; i < len(runs); i++ {
		if runs[i].QueuedAt.After(runs[i-1].QueuedAt) {
			t.Fatalf("%s: run %d (%s) queued at %v, after run %d (%v)", what, i, runs[i].ID, runs[i].QueuedAt,
				i-1, runs[i-1].QueuedAt)
		}
	}
}

// reversed is the IDs of runs, last first.
func reversed(runs []store.Run) []string {
	out := ids(runs)
	slices.Reverse(out)
	return out
}

// testListRuns: every run, newest first, each as Get returns it (result
// included), queued, running and done alike.
func testListRuns(t *testing.T, h store.History) {
	ctx := context.Background()
	if runs, next := listPage(t, h, store.RunQuery{}); len(runs) != 0 || next != "" {
		t.Fatalf("empty history: %v, next %q", ids(runs), next)
	}
	var made []store.Run
	for i := range 12 {
		r := store.Run{Script: []string{"a", "b", "c"}[i%3], Args: []string{fmt.Sprint(i), "x y"}, Who: "key-" + fmt.Sprint(i),
			Timeout: time.Duration(i) * time.Second, StartAt: time.Unix(int64(1_700_000_000+i), 0)}
		if err := h.Create(ctx, &r); err != nil {
			t.Fatal(err)
		}
		made = append(made, r)
	}
	for i, r := range made {
		switch i % 4 {
		case 1:
			mustStart(t, h, r.ID, 100+i)
		case 2, 3:
			mustStart(t, h, r.ID, 100+i)
			if err := h.SetResult(ctx, r.ID, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
				t.Fatal(err)
			}
			if err := h.SetProgress(ctx, r.ID, store.Progress{Task: i, TaskTitle: "t"}); err != nil {
				t.Fatal(err)
			}
			mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(i)})
		}
	}
	runs, next := listPage(t, h, store.RunQuery{})
	if next != "" || !slices.Equal(ids(runs), reversed(made)) {
		t.Fatalf("ListRuns = %v (next %q), want the runs newest first: %v", ids(runs), next, reversed(made))
	}
	for _, r := range runs {
		got := MustGet(t, h, r.ID)
		if r.Script != got.Script || !slices.Equal(r.Args, got.Args) || r.Who != got.Who || r.State != got.State ||
			!r.QueuedAt.Equal(got.QueuedAt) || !r.StartAt.Equal(got.StartAt) || !r.StartedAt.Equal(got.StartedAt) ||
			!r.EndedAt.Equal(got.EndedAt) || r.Ended != got.Ended || r.Timeout != got.Timeout || r.Pid != got.Pid ||
			r.Progress != got.Progress || string(r.Result) != string(got.Result) || r.OutputSize != got.OutputSize ||
			(r.ExitCode == nil) != (got.ExitCode == nil) || r.ExitCode != nil && *r.ExitCode != *got.ExitCode {
			t.Errorf("listed %+v\nGet says %+v", r, got)
		}
	}
	for i := range made {
		if r := runs[len(runs)-1-i]; (r.Result != nil) != (i%4 >= 2) {
			t.Errorf("run %d (%s) listed with result %s", i, r.State, r.Result)
		}
	}
}

// testListRunsFilters: each filter, alone and together, selects what it
// says, in the same order as the whole list.
func testListRunsFilters(t *testing.T, h store.History) {
	var made []store.Run
	for i := range 40 {
		made = append(made, MustCreate(t, h, []string{"a", "b", "c", "d"}[i%4], fmt.Sprint(i)))
	}
	for i, r := range made {
		switch i % 3 {
		case 1:
			mustStart(t, h, r.ID, 100+i)
		case 2:
			mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedCancelled})
		}
	}
	all, _ := listAll(t, h, store.RunQuery{Limit: store.MaxListLimit})
	if !slices.Equal(ids(all), reversed(made)) {
		t.Fatalf("all runs: %v, want %v", ids(all), reversed(made))
	}
	// Bounds taken from the runs' own QueuedAt: whatever its clock, the
	// history compares what it recorded.
	since, until := all[30].QueuedAt, all[9].QueuedAt
	type filter struct {
		name string
		q    store.RunQuery
	}
	filters := []filter{
		{"script", store.RunQuery{Script: "b"}},
		{"script without runs", store.RunQuery{Script: "zzz"}},
		{"queued", store.RunQuery{State: store.StateQueued}},
		{"running", store.RunQuery{State: store.StateRunning}},
		{"done", store.RunQuery{State: store.StateDone}},
		{"since", store.RunQuery{Since: since}},
		{"until", store.RunQuery{Until: until}},
		{"since and until", store.RunQuery{Since: since, Until: until}},
		{"since = until", store.RunQuery{Since: since, Until: since}},
		{"since after until", store.RunQuery{Since: until, Until: since}},
		{"since the newest", store.RunQuery{Since: all[0].QueuedAt}},
		{"until the oldest", store.RunQuery{Until: all[len(all)-1].QueuedAt}},
		{"a nanosecond after the newest", store.RunQuery{Since: all[0].QueuedAt.Add(time.Nanosecond)}},
		{"far times", store.RunQuery{Since: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"script and state", store.RunQuery{Script: "a", State: store.StateDone}},
		{"script and time", store.RunQuery{Script: "c", Since: since, Until: until}},
		{"state and time", store.RunQuery{State: store.StateRunning, Since: since, Until: until}},
		{"everything", store.RunQuery{Script: "d", State: store.StateQueued, Since: since, Until: until}},
	}
	for _, f := range filters {
		t.Run(f.name, func(t *testing.T) {
			var want []string
			for _, r := range all {
				if (f.q.Script == "" || r.Script == f.q.Script) && (f.q.State == "" || r.State == f.q.State) &&
					(f.q.Since.IsZero() || !r.QueuedAt.Before(f.q.Since)) && (f.q.Until.IsZero() || r.QueuedAt.Before(f.q.Until)) {
					want = append(want, r.ID)
				}
			}
			q := f.q
			q.Limit = store.MaxListLimit
			got, _ := listPage(t, h, q)
			if !slices.Equal(ids(got), want) {
				t.Errorf("got %v\nwant %v", ids(got), want)
			}
			// Page by page, 3 at a time: the same runs.
			q.Limit = 3
			paged, pages := listAll(t, h, q)
			if !slices.Equal(ids(paged), want) {
				t.Errorf("in pages of 3: %v\nwant %v", ids(paged), want)
			}
			if wantPages := max(1, (len(want)+2)/3); pages != wantPages {
				t.Errorf("%d pages of 3 for %d runs, want %d", pages, len(want), wantPages)
			}
		})
	}
}

// testListRunsLimit: Limit 0 is DefaultListLimit, MaxListLimit is taken,
// anything outside is ErrInvalid; next is "" exactly when nothing follows.
func testListRunsLimit(t *testing.T, h store.History) {
	ctx := context.Background()
	var made []store.Run
	for range store.DefaultListLimit + 5 {
		made = append(made, MustCreate(t, h, "x"))
	}
	runs, next := listPage(t, h, store.RunQuery{})
	if len(runs) != store.DefaultListLimit || next == "" {
		t.Fatalf("Limit 0: %d runs, next %q; want %d and a cursor", len(runs), next, store.DefaultListLimit)
	}
	if rest, next := listPage(t, h, store.RunQuery{Cursor: next}); !slices.Equal(ids(rest), reversed(made[:5])) || next != "" {
		t.Errorf("the page after: %v, next %q; want the 5 oldest and no cursor", ids(rest), next)
	}
	if runs, next := listPage(t, h, store.RunQuery{Limit: store.MaxListLimit}); len(runs) != len(made) || next != "" {
		t.Errorf("Limit %d: %d runs, next %q", store.MaxListLimit, len(runs), next)
	}
	// A page that ends exactly at the last run has no next.
	if runs, next := listPage(t, h, store.RunQuery{Limit: len(made)}); len(runs) != len(made) || next != "" {
		t.Errorf("Limit = the number of runs: %d runs, next %q", len(runs), next)
	}
	if runs, next := listPage(t, h, store.RunQuery{Limit: 1}); len(runs) != 1 || runs[0].ID != made[len(made)-1].ID || next == "" {
		t.Errorf("Limit 1: %v, next %q", ids(runs), next)
	}
	for _, q := range []store.RunQuery{
		{Limit: -1}, {Limit: store.MaxListLimit + 1}, {Limit: 1 << 40},
		{State: "finished"}, {State: "DONE"},
	} {
		if runs, next, err := h.ListRuns(ctx, q); !errors.Is(err, store.ErrInvalid) || len(runs) != 0 || next != "" {
			t.Errorf("ListRuns(%+v) = %d runs, %q, %v; want ErrInvalid", q, len(runs), next, err)
		}
	}
}

// testListRunsBadCursor: a cursor that is not of the form the history gives
// out is ErrBadCursor, never a page from some place.
func testListRunsBadCursor(t *testing.T, h store.History) {
	ctx := context.Background()
	for range 3 {
		MustCreate(t, h, "x")
	}
	_, next := listPage(t, h, store.RunQuery{Limit: 1})
	if next == "" {
		t.Fatal("no cursor after 1 of 3 runs")
	}
	for _, c := range []string{"x", "not a cursor", "../../etc/passwd", "\x00", "%", "====", strings.Repeat("A", 1000),
		next + "A", next[:len(next)-1], next + "=", " " + next, "*", "a.b.>"} {
		if runs, n, err := h.ListRuns(ctx, store.RunQuery{Cursor: c}); !errors.Is(err, store.ErrBadCursor) || len(runs) != 0 || n != "" {
			t.Errorf("cursor %q: %d runs, next %q, %v; want ErrBadCursor", c, len(runs), n, err)
		}
	}
}

// testListRunsDeleted: a page's cursor still continues it after its last
// run was deleted (retention runs while people page).
func testListRunsDeleted(t *testing.T, h store.History) {
	ctx := context.Background()
	var made []store.Run
	for range 6 {
		r := MustCreate(t, h, "x")
		mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedCancelled})
		made = append(made, r)
	}
	page, next := listPage(t, h, store.RunQuery{Limit: 3})
	if err := h.Delete(ctx, page[2].ID); err != nil {
		t.Fatal(err)
	}
	if err := h.Delete(ctx, made[2].ID); err != nil { // the first of the next page
		t.Fatal(err)
	}
	rest, next := listPage(t, h, store.RunQuery{Limit: 3, Cursor: next})
	if want := reversed(made[:2]); !slices.Equal(ids(rest), want) || next != "" {
		t.Errorf("after deletes: %v, next %q; want %v", ids(rest), next, want)
	}
}

// testListRunsPages: paging through ListRunsPaged runs, while other runs
// are created and listed runs change state, lists every run that was there
// before exactly once, in order, with or without filters.
func testListRunsPages(t *testing.T, h store.History) {
	ctx := context.Background()
	scripts := []string{"a", "b", "c", "d", "e"}
	const makers = 8
	var (
		mu     sync.Mutex
		before = map[string]store.Run{}
		wg     sync.WaitGroup
		errs   = make(chan error, makers)
	)
	for m := range makers {
		wg.Go(func() {
			for i := m; i < ListRunsPaged; i += makers {
				r := store.Run{Script: scripts[i%len(scripts)]}
				if err := h.Create(ctx, &r); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				before[r.ID] = r
				mu.Unlock()
			}
		})
	}
	wg.Wait() // as long as 10,000 Creates take: not a sign of a deadlock
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// While the listings run: new runs, and runs of the listing starting
	// and ending.
	stop := make(chan struct{})
	var created atomic.Int64
	var churn sync.WaitGroup
	churnErr := make(chan error, 2)
	churn.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r := store.Run{Script: scripts[i%len(scripts)]}
			if err := h.Create(ctx, &r); err != nil {
				churnErr <- err
				return
			}
			created.Add(1)
		}
	})
	var changing []string
	for id := range before {
		if len(changing) == 500 {
			break
		}
		changing = append(changing, id)
	}
	churn.Go(func() {
		for _, id := range changing {
			select {
			case <-stop:
				return
			default:
			}
			err := h.MarkStarted(ctx, id, 1, time.Now())
			if err == nil {
				err = h.MarkDone(ctx, id, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0)})
			}
			if err != nil {
				churnErr <- err
				return
			}
		}
	})
	defer func() {
		close(stop)
		waitGroup(t, &churn)
		close(churnErr)
		for err := range churnErr {
			t.Error(err)
		}
		if created.Load() == 0 {
			t.Log("no run was created while the listings ran")
		}
	}()

	for _, tc := range []struct {
		name  string
		q     store.RunQuery
		wants func(store.Run) bool
	}{
		{"all", store.RunQuery{Limit: 97}, func(store.Run) bool { return true }},
		{"one script", store.RunQuery{Script: "c", Limit: 50}, func(r store.Run) bool { return r.Script == "c" }},
		{"the largest pages", store.RunQuery{Limit: store.MaxListLimit}, func(store.Run) bool { return true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listed, pages := listAll(t, h, tc.q)
			seen := map[string]bool{}
			for _, r := range listed {
				if seen[r.ID] {
					t.Fatalf("run %s listed twice", r.ID)
				}
				seen[r.ID] = true
				if !tc.wants(r) {
					t.Fatalf("run %s of script %s listed", r.ID, r.Script)
				}
			}
			newestFirst(t, tc.name, listed)
			want := 0
			for id, r := range before {
				if !tc.wants(r) {
					continue
				}
				want++
				if !seen[id] {
					t.Fatalf("run %s (queued at %v) was not listed", id, r.QueuedAt)
				}
			}
			t.Logf("%d runs made before, and %d since, listed in %d pages", want, len(listed)-want, pages)
		})
	}
}
