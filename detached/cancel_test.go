package detached

import (
	"context"
	"errors"
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
