package detached

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/store"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	taskLinesChild()
	testchild.Main()
	goleak.VerifyTestMain(m, testchild.LeakOptions()...)
}

// taskLinesChild is the fake child of the modes of these tests, when
// $TESTCHILD names one:
//   - task-lines D LINE...: writes each LINE, D apart (all in one write
//     when D is 0), and exits 0;
//   - task-lines-hang D LINE...: the same, then waits to be killed.
func taskLinesChild() {
	mode := os.Getenv(testchild.Env)
	if mode != "task-lines" && mode != "task-lines-hang" {
		return
	}
	d, _ := time.ParseDuration(os.Args[1])
	lines := os.Args[2:]
	if d == 0 {
		os.Stdout.WriteString(strings.Join(lines, "\n") + "\n")
	} else {
		for i, l := range lines {
			if i > 0 {
				time.Sleep(d)
			}
			os.Stdout.WriteString(l + "\n")
		}
	}
	if mode == "task-lines-hang" {
		select {}
	}
	os.Exit(0)
}

// newTaskManager starts a Manager on a history in a temporary directory
// and a broker of its own, with the exectab lines given (EXE is the test
// binary); all are closed when the test ends.
func newTaskManager(t *testing.T, lines ...string) (*Manager, *store.Store) {
	t.Helper()
	return newManager(t, nil, lines...)
}

// newManager is newTaskManager with its Config changed by change, when
// not nil, before the Manager is made.
func newManager(t *testing.T, change func(*Config), lines ...string) (*Manager, *store.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	exe, _ := testchild.Command("")
	cat, err := catalog.Parse(strings.NewReader(strings.ReplaceAll(strings.Join(lines, "\n"), "EXE", "'"+exe+"'")))
	if err != nil {
		t.Fatal(err)
	}
	b := broker.New(broker.Options{Logger: zerolog.Nop(), Child: child.Options{KillGrace: time.Second}})
	cfg := Config{History: st, Outputs: st, Broker: b, Scripts: func() *catalog.Catalog { return cat },
		Env: []string{testchild.RaceEnv}, Tick: 20 * time.Millisecond, Logger: zerolog.Nop()}
	if change != nil {
		change(&cfg)
	}
	m, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		closed := make(chan error, 1)
		go func() { closed <- m.Close(ctx) }()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("broker shutdown: %v", err)
		}
		if err := <-closed; err != nil {
			t.Errorf("manager close: %v", err)
		}
	})
	m.SetURL("http://127.0.0.1:1") // starts scheduling; nothing calls back
	return m, st
}

// waitEnded waits for run id to be recorded as done, and returns it as the
// history has it.
func waitEnded(t *testing.T, m *Manager, st *store.Store, id string) store.Run {
	t.Helper()
	select {
	case <-m.Ended(id):
	case <-time.After(15 * time.Second):
		t.Fatalf("run %s did not end", id)
	}
	r, err := st.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != store.StateDone {
		t.Fatalf("run %s ended but is recorded %s", id, r.State)
	}
	if viaManager, err := m.Get(context.Background(), id); err != nil || !sameTasks(viaManager.Tasks, r.Tasks) ||
		!viaManager.TaskStartedAt.Equal(r.TaskStartedAt) {
		t.Errorf("the manager shows tasks %v (%v), the history %v", viaManager.Tasks, err, r.Tasks)
	}
	return r
}

func sameTasks(a, b []store.TaskSpan) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Title != b[i].Title || !a[i].Start.Equal(b[i].Start) || !a[i].End.Equal(b[i].End) {
			return false
		}
	}
	return true
}

// checkSpans checks the tasks of done run r: the titles given, in order,
// each starting no later than it ends, the first not before the run
// started, each starting where the one before ended, the last ending at
// the run's end; and TaskStartedAt the last one's start.
func checkSpans(t *testing.T, r store.Run, titles ...string) {
	t.Helper()
	var got []string
	for _, s := range r.Tasks {
		got = append(got, s.Title)
	}
	if strings.Join(got, "|") != strings.Join(titles, "|") {
		t.Fatalf("task titles %q, want %q (tasks %v)", got, titles, r.Tasks)
	}
	for i, s := range r.Tasks {
		if s.Start.IsZero() || s.End.Before(s.Start) {
			t.Errorf("task %d %q: %v to %v", i, s.Title, s.Start, s.End)
		}
		if i > 0 && !s.Start.Equal(r.Tasks[i-1].End) {
			t.Errorf("task %d %q starts at %v, task %d ended at %v", i, s.Title, s.Start, i-1, r.Tasks[i-1].End)
		}
	}
	if first := r.Tasks[0]; first.Start.Before(r.StartedAt) {
		t.Errorf("first task starts at %v, before the run started (%v)", first.Start, r.StartedAt)
	}
	last := r.Tasks[len(r.Tasks)-1]
	if !last.End.Equal(r.EndedAt) {
		t.Errorf("last task ends at %v, the run at %v", last.End, r.EndedAt)
	}
	if !r.TaskStartedAt.Equal(last.Start) {
		t.Errorf("TaskStartedAt %v, the last task started at %v", r.TaskStartedAt, last.Start)
	}
}

// A run's task lines make its tasks, in order, end to end, the last ending
// with the run.
func TestTaskTimesFromLines(t *testing.T) {
	m, st := newTaskManager(t,
		`-e=TESTCHILD=task-lines apart EXE 60ms '[1/3] a' 'output' '[2/3] b' '[50%] half of b' '[3/3] c'`,
		`-e=TESTCHILD=task-lines together EXE 0 '[1/3] a' '[2/3] b' '[3/3] c'`)
	for _, script := range []string{"apart", "together"} {
		t.Run(script, func(t *testing.T) {
			run, _, err := m.Submit(context.Background(), Request{Script: script})
			if err != nil {
				t.Fatal(err)
			}
			r := waitEnded(t, m, st, run.ID)
			if r.Ended != store.EndedExit || r.Progress.Task != 3 || r.Progress.TaskTitle != "c" {
				t.Fatalf("run %+v", r)
			}
			// Lines of one chunk ("together", and "apart" on a slow
			// machine) make tasks of no length, but tasks all the same.
			checkSpans(t, r, "a", "b", "c")
		})
	}
}

// Task numbers that stay or go down start no task: a title change, or a
// lower number, changes the current task only.
func TestTaskTimesLowerNumbers(t *testing.T) {
	m, st := newTaskManager(t,
		`-e=TESTCHILD=task-lines s EXE 20ms '[2/4] two' '[2] two again' '[1] one' '[3] three' '[3/4] three again'`)
	run, _, err := m.Submit(context.Background(), Request{Script: "s"})
	if err != nil {
		t.Fatal(err)
	}
	r := waitEnded(t, m, st, run.ID)
	// Task 2 started, was renamed, then renumbered 1 ("one"); task 3
	// ended it.
	checkSpans(t, r, "one", "three again")
}

// A running run shows its live task times (Get overlays them) before the
// history has them; cancelling it ends its task.
func TestTaskTimesLive(t *testing.T) {
	m, st := newTaskManager(t, `-e=TESTCHILD=task-lines-hang s EXE 30ms '[1/2] first' '[2/2] second'`)
	ctx := context.Background()
	run, _, err := m.Submit(ctx, Request{Script: "s"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		m.mu.Lock()
		a := m.active[run.ID]
		started := a != nil && a.taskGen == 2
		m.mu.Unlock()
		if started {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second task did not start")
		}
		time.Sleep(2 * time.Millisecond)
	}
	// The second line's progress waits up to progressEvery to be saved:
	// Get shows it now all the same.
	r, err := m.Get(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != store.StateRunning || r.Progress.Task != 2 || len(r.Tasks) != 1 || r.Tasks[0].Title != "first" ||
		!r.Tasks[0].End.Equal(r.TaskStartedAt) || r.TaskStartedAt.IsZero() {
		t.Fatalf("running run: %+v", r)
	}
	if err := m.Cancel(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	r = waitEnded(t, m, st, run.ID)
	if r.Ended != store.EndedCancelled {
		t.Fatalf("run %+v", r)
	}
	checkSpans(t, r, "first", "second")
}

// Progress posted through the callback API makes tasks as lines do.
func TestTaskTimesFromCallbacks(t *testing.T) {
	m, st := newTaskManager(t, `-e=TESTCHILD=task-lines-hang s EXE 0 'ready'`)
	ctx := context.Background()
	run, _, err := m.Submit(ctx, Request{Script: "s"})
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	token := m.active[run.ID].token
	m.mu.Unlock()
	if token == "" {
		t.Fatalf("no run token: run %+v", run)
	}
	post := func(patch ProgressPatch) store.Run {
		t.Helper()
		if err := m.PostProgress(ctx, run.ID, token, patch); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		// A callback's progress is saved before PostProgress returns.
		r, err := st.Get(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		live, err := m.Get(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !sameTasks(r.Tasks, live.Tasks) || !r.TaskStartedAt.Equal(live.TaskStartedAt) || r.Progress != live.Progress {
			t.Errorf("history %v %v %+v, manager %v %v %+v", r.TaskStartedAt, r.Tasks, r.Progress,
				live.TaskStartedAt, live.Tasks, live.Progress)
		}
		return r
	}
	n, s := func(i int) *int { return &i }, func(s string) *string { return &s }

	r := post(ProgressPatch{Task: n(1), TaskTotal: n(3), TaskTitle: s("one")})
	if r.TaskStartedAt.IsZero() || r.Tasks != nil {
		t.Fatalf("first task: %v %v", r.TaskStartedAt, r.Tasks)
	}
	first := r.TaskStartedAt
	r = post(ProgressPatch{SubtaskPercent: n(50), TaskTitle: s("one!")})
	if !r.TaskStartedAt.Equal(first) || r.Tasks != nil {
		t.Fatalf("same task: %v %v", r.TaskStartedAt, r.Tasks)
	}
	r = post(ProgressPatch{Task: n(2), TaskTitle: s("two")})
	if len(r.Tasks) != 1 || r.Tasks[0].Title != "one!" || !r.Tasks[0].Start.Equal(first) || !r.Tasks[0].End.Equal(r.TaskStartedAt) {
		t.Fatalf("second task: %v %v", r.TaskStartedAt, r.Tasks)
	}
	second := r.TaskStartedAt
	r = post(ProgressPatch{Task: n(2)}) // the same number: nothing
	if !r.TaskStartedAt.Equal(second) || len(r.Tasks) != 1 || r.Progress.TaskTitle != "two" {
		t.Fatalf("same number: %v %v %+v", r.TaskStartedAt, r.Tasks, r.Progress)
	}
	r = post(ProgressPatch{Task: n(3), TaskTitle: s("three")})
	if len(r.Tasks) != 2 || r.Tasks[1].Title != "two" || !r.Tasks[1].Start.Equal(second) {
		t.Fatalf("third task: %v %v", r.TaskStartedAt, r.Tasks)
	}

	if err := m.Cancel(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	r = waitEnded(t, m, st, run.ID)
	checkSpans(t, r, "one!", "two", "three")
}

// A run killed at its time limit ends its task too. (The limit leaves a
// loaded machine time to start the child, a test binary built with -race.)
func TestTaskTimesTimeout(t *testing.T) {
	m, st := newTaskManager(t, `-e=TESTCHILD=task-lines-hang -t=2s s EXE 0 '[1] only'`)
	run, _, err := m.Submit(context.Background(), Request{Script: "s"})
	if err != nil {
		t.Fatal(err)
	}
	r := waitEnded(t, m, st, run.ID)
	if r.Ended != store.EndedTimeout {
		t.Fatalf("run %+v", r)
	}
	checkSpans(t, r, "only")
}

// Past store.MaxTaskSpans tasks, the oldest are dropped.
func TestTaskTimesBounded(t *testing.T) {
	const n = store.MaxTaskSpans + 20
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("'[%d] t%d'", i+1, i+1)
	}
	m, st := newTaskManager(t, `-e=TESTCHILD=task-lines s EXE 0 `+strings.Join(lines, " "))
	run, _, err := m.Submit(context.Background(), Request{Script: "s"})
	if err != nil {
		t.Fatal(err)
	}
	r := waitEnded(t, m, st, run.ID)
	var want []string
	for i := n - store.MaxTaskSpans + 1; i <= n; i++ {
		want = append(want, fmt.Sprint("t", i))
	}
	checkSpans(t, r, want...)
}
