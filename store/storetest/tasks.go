package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rexec/rexec/store"
)

// The task times of a run (Run.TaskStartedAt, Run.Tasks): the caller
// (package detached) keeps them while the run runs and saves them with
// SetTaskProgress; the history keeps them exactly, closes the current task
// when the run ends, and gives them back on every read.

// taskT0 is a time with nanoseconds, which the history must keep.
var taskT0 = time.Unix(1_700_000_000, 123_456_789)

// sameSpans says whether got and want are the same spans, times compared
// with Equal; nil and empty are the same.
func sameSpans(got, want []store.TaskSpan) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Title != want[i].Title || !got[i].Start.Equal(want[i].Start) || !got[i].End.Equal(want[i].End) {
			return false
		}
	}
	return true
}

// checkTasks fails the test unless r has the task times given.
func checkTasks(t *testing.T, what string, r store.Run, startedAt time.Time, tasks []store.TaskSpan) {
	t.Helper()
	if !r.TaskStartedAt.Equal(startedAt) || !sameSpans(r.Tasks, tasks) {
		t.Errorf("%s: task started at %v, tasks %v; want %v, %v", what, r.TaskStartedAt, r.Tasks, startedAt, tasks)
	}
	// Empty is nil, so that a run without tasks reads the same everywhere.
	if len(r.Tasks) == 0 && r.Tasks != nil {
		t.Errorf("%s: tasks %#v, want nil", what, r.Tasks)
	}
}

func mustSetTasks(t *testing.T, h store.History, id string, p store.Progress, startedAt time.Time, tasks []store.TaskSpan) {
	t.Helper()
	if err := h.SetTaskProgress(context.Background(), id, p, startedAt, tasks); err != nil {
		t.Fatalf("SetTaskProgress(%s): %v", id, err)
	}
}

// testTaskTimes: SetTaskProgress replaces the progress and the task times
// exactly (nanoseconds, any title); SetProgress replaces the progress and
// keeps the task times.
func testTaskTimes(t *testing.T, h store.History) {
	ctx := context.Background()
	r := MustCreate(t, h, "build")
	mustStart(t, h, r.ID, 10)
	checkTasks(t, "before any task", MustGet(t, h, r.ID), time.Time{}, nil)

	p1 := store.Progress{Task: 1, TaskTotal: 3, TaskTitle: "a"}
	mustSetTasks(t, h, r.ID, p1, taskT0, nil)
	got := MustGet(t, h, r.ID)
	if got.Progress != p1 {
		t.Errorf("progress %+v, want %+v", got.Progress, p1)
	}
	checkTasks(t, "first task", got, taskT0, nil)

	// A line that keeps the task: SetProgress.
	p1.SubtaskPercent, p1.SubtaskTitle = 50, "half"
	if err := h.SetProgress(ctx, r.ID, p1); err != nil {
		t.Fatal(err)
	}
	got = MustGet(t, h, r.ID)
	if got.Progress != p1 {
		t.Errorf("progress %+v, want %+v", got.Progress, p1)
	}
	checkTasks(t, "after SetProgress", got, taskT0, nil)

	t1 := taskT0.Add(1500*time.Millisecond + 7)
	title := "Ünïcode ✓ <b>&amp;</b> \"quoted\" \\ back\ttab"
	p2 := store.Progress{Task: 2, TaskTotal: 3, TaskTitle: title}
	spans := []store.TaskSpan{{Title: "a", Start: taskT0, End: t1}}
	mustSetTasks(t, h, r.ID, p2, t1, spans)
	got = MustGet(t, h, r.ID)
	if got.Progress != p2 {
		t.Errorf("progress %+v, want %+v", got.Progress, p2)
	}
	checkTasks(t, "second task", got, t1, spans)

	t2 := t1.Add(time.Hour)
	p3 := store.Progress{Task: 3, TaskTotal: 3, TaskTitle: ""}
	spans = append(spans, store.TaskSpan{Title: title, Start: t1, End: t2})
	mustSetTasks(t, h, r.ID, p3, t2, spans)
	checkTasks(t, "third task", MustGet(t, h, r.ID), t2, spans)

	// The caller's slice is the caller's: changing it changes nothing.
	spans[0].Title = "changed"
	if got := MustGet(t, h, r.ID); got.Tasks[0].Title != "a" {
		t.Errorf("the history kept the caller's slice: %v", got.Tasks)
	}
}

// testTaskTimesEveryRead: every read of runs gives the task times: Get,
// ListActive, ListQueued, ListRuns and Recover.
func testTaskTimesEveryRead(t *testing.T, h store.History) {
	ctx := context.Background()
	spans := []store.TaskSpan{{Title: "one", Start: taskT0, End: taskT0.Add(time.Second)}}
	started := taskT0.Add(time.Second)
	p := store.Progress{Task: 2, TaskTitle: "two"}
	queued := MustCreate(t, h, "s")
	running := MustCreate(t, h, "s")
	done := MustCreate(t, h, "s")
	plain := MustCreate(t, h, "s")
	for _, r := range []store.Run{running, done} {
		mustStart(t, h, r.ID, 10)
	}
	for _, r := range []store.Run{queued, running, done} {
		mustSetTasks(t, h, r.ID, p, started, spans)
	}
	endedAt := started.Add(time.Minute)
	mustDone(t, h, done.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0), EndedAt: endedAt})
	doneSpans := append(spans[:1:1], store.TaskSpan{Title: "two", Start: started, End: endedAt})

	want := map[string][]store.TaskSpan{queued.ID: spans, running.ID: spans, done.ID: doneSpans, plain.ID: nil}
	check := func(what string, runs []store.Run, n int) {
		t.Helper()
		if len(runs) != n {
			t.Errorf("%s: %d runs, want %d", what, len(runs), n)
		}
		for _, r := range runs {
			wantStart := started
			if r.ID == plain.ID {
				wantStart = time.Time{}
			}
			checkTasks(t, what+" "+r.ID, r, wantStart, want[r.ID])
		}
	}
	for _, r := range []store.Run{queued, running, done, plain} {
		check("Get", []store.Run{MustGet(t, h, r.ID)}, 1)
	}
	active, err := h.ListActive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check("ListActive", active, 3)
	q, err := h.ListQueued(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	check("ListQueued", q, 2)
	all, _ := listPage(t, h, store.RunQuery{})
	check("ListRuns", all, 4)
	ended, _ := listPage(t, h, store.RunQuery{State: store.StateDone, Script: "s"})
	check("ListRuns done", ended, 1)
	interrupted, err := h.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(interrupted) != 1 || interrupted[0].ID != running.ID {
		t.Fatalf("Recover: %v, want [%s]", ids(interrupted), running.ID)
	}
	// The interrupted run's task two is closed: see testTaskTimesRecover.
	if r := interrupted[0]; len(r.Tasks) != 2 || !sameSpans(r.Tasks[:1], spans) || !r.TaskStartedAt.Equal(started) {
		t.Errorf("Recover returned tasks %v", r.Tasks)
	}
}

// testTaskTimesBounded: a run keeps the last store.MaxTaskSpans tasks, the
// oldest dropped, from SetTaskProgress and when MarkDone closes the last.
func testTaskTimesBounded(t *testing.T, h store.History) {
	r := MustCreate(t, h, "many")
	mustStart(t, h, r.ID, 10)
	const n = store.MaxTaskSpans + 44
	spans := make([]store.TaskSpan, n)
	for i := range spans {
		spans[i] = store.TaskSpan{Title: fmt.Sprint("task ", i+1),
			Start: taskT0.Add(time.Duration(i) * time.Second), End: taskT0.Add(time.Duration(i+1) * time.Second)}
	}
	started := taskT0.Add(n * time.Second)
	p := store.Progress{Task: n + 1, TaskTitle: "last"}
	mustSetTasks(t, h, r.ID, p, started, spans)
	got := MustGet(t, h, r.ID)
	checkTasks(t, "over the bound", got, started, spans[n-store.MaxTaskSpans:])

	endedAt := started.Add(time.Second)
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0), EndedAt: endedAt})
	want := append(spans[n-store.MaxTaskSpans+1:n:n], store.TaskSpan{Title: "last", Start: started, End: endedAt})
	got = MustGet(t, h, r.ID)
	checkTasks(t, "closed at the bound", got, started, want)
	if len(got.Tasks) != store.MaxTaskSpans || got.Tasks[0].Title != fmt.Sprint("task ", n-store.MaxTaskSpans+2) {
		t.Errorf("%d tasks, the first %q", len(got.Tasks), got.Tasks[0].Title)
	}
}

// testTaskTimesInvalid: times the history cannot store are ErrInvalid, a
// done run is ErrWrongState, and neither changes the run.
func testTaskTimesInvalid(t *testing.T, h store.History) {
	ctx := context.Background()
	r := MustCreate(t, h, "x")
	mustStart(t, h, r.ID, 10)
	p := store.Progress{Task: 1, TaskTitle: "ok"}
	mustSetTasks(t, h, r.ID, p, taskT0, nil)
	before, after := minTime.Add(-time.Second), maxTime.Add(time.Second)
	for name, call := range map[string]func() error{
		"start before": func() error { return h.SetTaskProgress(ctx, r.ID, store.Progress{Task: 2}, before, nil) },
		"start after":  func() error { return h.SetTaskProgress(ctx, r.ID, store.Progress{Task: 2}, after, nil) },
		"span start": func() error {
			return h.SetTaskProgress(ctx, r.ID, store.Progress{Task: 2}, taskT0, []store.TaskSpan{{Start: before, End: taskT0}})
		},
		"span end": func() error {
			return h.SetTaskProgress(ctx, r.ID, store.Progress{Task: 2}, taskT0, []store.TaskSpan{{Start: taskT0, End: after}})
		},
		"later span ends": func() error {
			return h.SetTaskProgress(ctx, r.ID, store.Progress{Task: 3}, taskT0, []store.TaskSpan{{}, {End: after}})
		},
	} {
		if err := call(); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	got := MustGet(t, h, r.ID)
	if got.Progress != p {
		t.Errorf("progress %+v after refused changes, want %+v", got.Progress, p)
	}
	checkTasks(t, "after refused changes", got, taskT0, nil)

	endedAt := taskT0.Add(time.Minute)
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedCancelled, EndedAt: endedAt})
	closed := []store.TaskSpan{{Title: "ok", Start: taskT0, End: endedAt}}
	err := h.SetTaskProgress(ctx, r.ID, store.Progress{Task: 2, TaskTitle: "late"}, endedAt, nil)
	if !errors.Is(err, store.ErrWrongState) {
		t.Errorf("SetTaskProgress of a done run: %v, want ErrWrongState", err)
	}
	got = MustGet(t, h, r.ID)
	if got.Progress != p {
		t.Errorf("progress %+v after a refused change, want %+v", got.Progress, p)
	}
	checkTasks(t, "done, after a refused change", got, taskT0, closed)
}

// testTaskTimesMarkDone: the end of a run ends its current task at the
// run's EndedAt, whatever the way it ended; a run without a task, or whose
// task's start is not known (only SetProgress), gets none.
func testTaskTimesMarkDone(t *testing.T, h store.History) {
	ctx := context.Background()
	spans := []store.TaskSpan{{Title: "a", Start: taskT0, End: taskT0.Add(time.Second)}}
	started := taskT0.Add(time.Second)
	p := store.Progress{Task: 2, TaskTotal: 2, TaskTitle: "b", SubtaskPercent: 10, SubtaskTitle: "sub"}
	for i, ended := range []store.Ended{store.EndedExit, store.EndedCancelled, store.EndedTimeout, store.EndedInterrupted} {
		r := MustCreate(t, h, "s")
		mustStart(t, h, r.ID, 10+i)
		mustSetTasks(t, h, r.ID, p, started, spans)
		endedAt := started.Add(time.Duration(i+1) * time.Minute)
		mustDone(t, h, r.ID, store.Outcome{Ended: ended, EndedAt: endedAt})
		got := MustGet(t, h, r.ID)
		if got.Progress != p {
			t.Errorf("%s: MarkDone changed the progress: %+v", ended, got.Progress)
		}
		want := append(spans[:1:1], store.TaskSpan{Title: "b", Start: started, End: endedAt})
		checkTasks(t, string(ended), got, started, want)
		if last := got.Tasks[len(got.Tasks)-1]; !last.End.Equal(got.EndedAt) {
			t.Errorf("%s: last task ends at %v, the run at %v", ended, last.End, got.EndedAt)
		}
		// Once: MarkDone of a done run closes nothing more, and a
		// progress that comes late keeps the task times.
		if err := h.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedExit}); !errors.Is(err, store.ErrWrongState) {
			t.Errorf("%s: MarkDone again: %v", ended, err)
		}
		if err := h.SetProgress(ctx, r.ID, store.Progress{Task: 3}); err != nil {
			t.Fatal(err)
		}
		checkTasks(t, string(ended)+", done again", MustGet(t, h, r.ID), started, want)
	}

	// The zero EndedAt is now, for the task too.
	r := MustCreate(t, h, "s")
	mustStart(t, h, r.ID, 20)
	mustSetTasks(t, h, r.ID, p, started, nil)
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0)})
	got := MustGet(t, h, r.ID)
	checkTasks(t, "zero EndedAt", got, started, []store.TaskSpan{{Title: "b", Start: started, End: got.EndedAt}})

	// Cancelled while queued, with a task.
	r = MustCreate(t, h, "s")
	mustSetTasks(t, h, r.ID, store.Progress{Task: 1, TaskTitle: "q"}, started, nil)
	endedAt := started.Add(time.Hour)
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedCancelled, EndedAt: endedAt})
	checkTasks(t, "cancelled while queued", MustGet(t, h, r.ID), started, []store.TaskSpan{{Title: "q", Start: started, End: endedAt}})

	// No task, and a task whose start is not known: nothing to close.
	for name, p := range map[string]store.Progress{"no task": {SubtaskPercent: 50}, "unknown start": {Task: 2, TaskTitle: "x"}} {
		r := MustCreate(t, h, "s")
		mustStart(t, h, r.ID, 30)
		if err := h.SetProgress(ctx, r.ID, p); err != nil {
			t.Fatal(err)
		}
		mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0)})
		checkTasks(t, name, MustGet(t, h, r.ID), time.Time{}, nil)
	}
	// Task 0 with a start: task times set before the first task line
	// cannot be, but a caller may pass them; there is no task to close.
	r = MustCreate(t, h, "s")
	mustStart(t, h, r.ID, 40)
	mustSetTasks(t, h, r.ID, store.Progress{}, started, spans)
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0)})
	checkTasks(t, "task 0", MustGet(t, h, r.ID), started, spans)
}

// testTaskTimesRecover: a run that Recover interrupts has its current task
// closed at its EndedAt, in what Recover returns and in the history.
func testTaskTimesRecover(t *testing.T, h store.History) {
	ctx := context.Background()
	withTask := MustCreate(t, h, "r")
	without := MustCreate(t, h, "r")
	queued := MustCreate(t, h, "r")
	for i, r := range []store.Run{withTask, without} {
		mustStart(t, h, r.ID, 100+i)
	}
	spans := []store.TaskSpan{{Title: "one", Start: taskT0, End: taskT0.Add(time.Second)}}
	started := taskT0.Add(time.Second)
	mustSetTasks(t, h, withTask.ID, store.Progress{Task: 2, TaskTitle: "two"}, started, spans)
	mustSetTasks(t, h, queued.ID, store.Progress{Task: 1, TaskTitle: "q"}, started, nil)
	interrupted, err := h.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(interrupted) != 2 {
		t.Fatalf("Recover returned %v", ids(interrupted))
	}
	for _, r := range interrupted {
		got := MustGet(t, h, r.ID)
		switch r.ID {
		case withTask.ID:
			want := append(spans[:1:1], store.TaskSpan{Title: "two", Start: started, End: got.EndedAt})
			checkTasks(t, "returned", r, started, want)
			checkTasks(t, "recorded", got, started, want)
			if !r.EndedAt.Equal(got.EndedAt) {
				t.Errorf("returned EndedAt %v, recorded %v", r.EndedAt, got.EndedAt)
			}
		case without.ID:
			checkTasks(t, "returned, without task", r, time.Time{}, nil)
			checkTasks(t, "recorded, without task", got, time.Time{}, nil)
		}
	}
	// Queued runs stay queued, their task open.
	checkTasks(t, "queued", MustGet(t, h, queued.ID), started, nil)
}
