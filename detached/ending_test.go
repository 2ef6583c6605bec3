package detached

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rexec/rexec/store"
)

// heldOutputs is the store, whose DeleteStdin waits for release: it holds
// finish between recording a run's end and forgetting the run, the moment
// a fleet's DeleteStdin (a request to the object store) makes long.
type heldOutputs struct {
	*store.Store
	entered chan string
	release chan struct{}
}

func (h heldOutputs) DeleteStdin(id string) error {
	h.entered <- id
	<-h.release
	return h.Store.DeleteStdin(id)
}

// A cancel of a run that has ended is ErrDone (409 already_done), also
// while its end is being recorded: never a success that cancels nothing.
func TestCancelWhileEnding(t *testing.T) {
	held := heldOutputs{entered: make(chan string, 1), release: make(chan struct{})}
	m, st := newManager(t, func(c *Config) {
		held.Store = c.Outputs.(*store.Store)
		c.Outputs = held
	}, `-e=TESTCHILD=task-lines quick EXE 0 done`)
	run, _, err := m.Submit(context.Background(), Request{Script: "quick"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-held.entered:
		if id != run.ID {
			t.Fatalf("DeleteStdin(%s), want %s", id, run.ID)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the run did not end")
	}
	if r, err := st.Get(context.Background(), run.ID); err != nil || r.State != store.StateDone {
		t.Fatalf("the run's end is not recorded: %+v, %v", r, err)
	}
	if err := m.Cancel(context.Background(), run.ID); !errors.Is(err, ErrDone) {
		t.Errorf("a cancel while the run's end is recorded: %v, want ErrDone", err)
	}
	close(held.release)
	waitEnded(t, m, st, run.ID)
	if err := m.Cancel(context.Background(), run.ID); !errors.Is(err, ErrDone) {
		t.Errorf("a cancel after: %v, want ErrDone", err)
	}
}

// failingOutputs is the store, whose OpenOutput fails while failing is
// set: a full disk, or a fleet's output stream electing its leader.
type failingOutputs struct {
	*store.Store
	failing *atomic.Bool
	tries   *atomic.Int64
}

func (f failingOutputs) OpenOutput(id string) (store.OutputWriter, error) {
	f.tries.Add(1)
	if f.failing.Load() {
		return nil, errors.New("no response from stream")
	}
	return f.Store.OpenOutput(id)
}

// A run whose output cannot be opened is the server's trouble, not the
// run's: it stays queued, saying why, and runs once the output opens.
func TestStartWaitsForStorage(t *testing.T) {
	f := failingOutputs{failing: &atomic.Bool{}, tries: &atomic.Int64{}}
	f.failing.Store(true)
	m, st := newManager(t, func(c *Config) {
		f.Store = c.Outputs.(*store.Store)
		c.Outputs = f
	}, `-e=TESTCHILD=task-lines quick EXE 0 done`)
	run, _, err := m.Submit(context.Background(), Request{Script: "quick"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for f.tries.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d tries to open the output in 15 s", f.tries.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r, err := m.Get(context.Background(), run.ID)
	if err != nil || r.State != store.StateQueued {
		t.Fatalf("while its output cannot open: %+v, %v", r, err)
	}
	if w := m.Waiting(r); w != "storage" {
		t.Errorf("waiting for %q, want storage", w)
	}
	f.failing.Store(false)
	if r = waitEnded(t, m, st, run.ID); r.Ended != store.EndedExit {
		t.Errorf("once the output opens: ended %s", r.Ended)
	}
}

// heldHistory is the store, whose MarkDone waits for release: the
// moment between a run's process ending and the history having its end.
type heldHistory struct {
	*store.Store
	entered chan string
	release chan struct{}
}

func (h heldHistory) MarkDone(ctx context.Context, id string, o store.Outcome) error {
	h.entered <- id
	<-h.release
	return h.Store.MarkDone(ctx, id, o)
}

// A run whose process has ended reads as done, as it ended, before the
// history has its end: not running beside the run that took its slot.
func TestEndedBeforeRecorded(t *testing.T) {
	held := heldHistory{entered: make(chan string, 1), release: make(chan struct{})}
	m, st := newManager(t, func(c *Config) {
		held.Store = c.History.(*store.Store)
		c.History = held
	}, `-e=TESTCHILD=exit quick EXE 3`)
	run, _, err := m.Submit(context.Background(), Request{Script: "quick"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.entered:
	case <-time.After(15 * time.Second):
		t.Fatal("the run did not end")
	}
	if r, err := st.Get(context.Background(), run.ID); err != nil || r.State != store.StateRunning {
		t.Fatalf("the history has it %s (%v): nothing to test", r.State, err)
	}
	r, err := m.Get(context.Background(), run.ID)
	if err != nil || r.State != store.StateDone || r.Ended != store.EndedExit || r.ExitCode == nil || *r.ExitCode != 3 {
		t.Errorf("while its end is recorded: %+v, %v; want done, exit 3", r, err)
	}
	if active, err := m.Active(context.Background()); err != nil || len(active) != 0 {
		t.Errorf("active while its end is recorded: %+v, %v", active, err)
	}
	for _, state := range []store.State{store.StateDone, ""} {
		runs, _, err := m.ListRuns(context.Background(), store.RunQuery{State: state})
		if err != nil || len(runs) != 1 || runs[0].ID != run.ID || runs[0].State != store.StateDone {
			t.Errorf("the history's list (state %q) while its end is recorded: %+v, %v", state, runs, err)
		}
	}
	if runs, _, err := m.ListRuns(context.Background(), store.RunQuery{State: store.StateRunning}); err != nil || len(runs) != 0 {
		t.Errorf("the running runs while its end is recorded: %+v, %v", runs, err)
	}
	close(held.release)
	waitEnded(t, m, st, run.ID)
}
