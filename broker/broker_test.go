package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	testchild.Main()
	goleak.VerifyTestMain(m, testchild.LeakOptions()...)
}

func newBroker(t *testing.T, opts broker.Options) *broker.Broker {
	t.Helper()
	opts.Logger = zerolog.Nop()
	if opts.Child.KillGrace == 0 {
		opts.Child.KillGrace = time.Second
	}
	b := broker.New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return b
}

func spec(mode string, args ...string) child.Spec {
	path, env := testchild.Command(mode)
	return child.Spec{Path: path, Args: args, Env: []string{env, testchild.RaceEnv}}
}

func drain(p *child.Process) child.Status {
	for c := range p.Output() {
		c.Release()
	}
	return p.Wait()
}

func TestAliasIsUniqueWhileRunning(t *testing.T) {
	b := newBroker(t, broker.Options{})
	p, err := b.Start("job", spec("hang"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start("job", spec("exit", "0")); !errors.Is(err, broker.ErrAliasInUse) {
		t.Fatalf("second start: err = %v, want ErrAliasInUse", err)
	}
	other, err := b.Start("other", spec("exit", "0"))
	if err != nil {
		t.Fatalf("another alias: %v", err)
	}
	drain(other)
	p.Kill(child.ReasonCancelled)
	drain(p)
	// Done is closed only once the alias is free: no window for a 409.
	again, err := b.Start("job", spec("exit", "0"))
	if err != nil {
		t.Fatalf("start after reap: %v", err)
	}
	drain(again)
}

func TestFailedStartFreesTheAlias(t *testing.T) {
	b := newBroker(t, broker.Options{})
	_, err := b.Start("x", child.Spec{Path: "/no/such/program"})
	if !errors.Is(err, child.ErrStartFailed) {
		t.Fatalf("err = %v, want ErrStartFailed", err)
	}
	p, err := b.Start("x", spec("exit", "0"))
	if err != nil {
		t.Fatalf("alias not freed after a failed start: %v", err)
	}
	drain(p)
}

func TestMaxProcs(t *testing.T) {
	b := newBroker(t, broker.Options{MaxProcs: 2})
	var procs []*child.Process
	for i := range 2 {
		p, err := b.Start(fmt.Sprint("p", i), spec("hang"))
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	if _, err := b.Start("p2", spec("hang")); !errors.Is(err, broker.ErrTooManyProcs) {
		t.Fatalf("err = %v, want ErrTooManyProcs", err)
	}
	procs[0].Kill(child.ReasonCancelled)
	drain(procs[0])
	p, err := b.Start("p2", spec("exit", "0"))
	if err != nil {
		t.Fatalf("after one ended: %v", err)
	}
	drain(p)
	procs[1].Kill(child.ReasonCancelled)
	drain(procs[1])
}

func TestConcurrentAliases(t *testing.T) {
	b := newBroker(t, broker.Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			p, err := b.Start(fmt.Sprint("a", i), spec("echo", fmt.Sprint(i)))
			if err != nil {
				errs <- err
				return
			}
			if st := drain(p); st.Code != 0 {
				errs <- fmt.Errorf("alias a%d: %+v", i, st)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestShutdownKillsEveryGroupAndRefusesNewOnes(t *testing.T) {
	b := broker.New(broker.Options{Logger: zerolog.Nop(), Child: child.Options{KillGrace: 200 * time.Millisecond}})
	var procs []*child.Process
	for i, mode := range []string{"hang", "ignore-term", "hang"} {
		p, err := b.Start(fmt.Sprint("s", i), spec(mode))
		if err != nil {
			t.Fatal(err)
		}
		<-p.Output() // ready
		procs = append(procs, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Shutdown(ctx) }()
	for i, p := range procs {
		st := drain(p)
		want := syscall.SIGTERM
		if i == 1 {
			want = syscall.SIGKILL
		}
		if st.Signal != want || st.Reason != child.ReasonShutdown {
			t.Errorf("proc %d: %+v, want %v by shutdown", i, st, want)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start("late", spec("exit", "0")); !errors.Is(err, broker.ErrShuttingDown) {
		t.Fatalf("start after shutdown: %v, want ErrShuttingDown", err)
	}
}

// TestAliasFreeAfterInstantExit: a child that exits before Start returns must
// not leave its alias taken (its exit used to reach the loop before its start).
func TestAliasFreeAfterInstantExit(t *testing.T) {
	b := newBroker(t, broker.Options{})
	for i := range 300 {
		p, err := b.Start("same", child.Spec{Path: "true"})
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		drain(p)
	}
}

func TestGroupLimit(t *testing.T) {
	b := newBroker(t, broker.Options{})
	lim := broker.Limit{Group: "backup", Max: 2}
	var procs []*child.Process
	for i := range 2 {
		p, err := b.StartIn(fmt.Sprint("b", i), lim, spec("hang"))
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	if _, err := b.StartIn("b2", lim, spec("hang")); !errors.Is(err, broker.ErrGroupBusy) {
		t.Fatalf("third run of the group: %v, want ErrGroupBusy", err)
	}
	other, err := b.StartIn("o", broker.Limit{Group: "other", Max: 1}, spec("exit", "0"))
	if err != nil {
		t.Fatalf("another group: %v", err)
	}
	drain(other)
	if _, err := b.StartIn("bad", lim, child.Spec{Path: "/no/such"}); !errors.Is(err, broker.ErrGroupBusy) {
		t.Fatalf("still full: %v", err)
	}
	procs[0].Kill(child.ReasonCancelled)
	drain(procs[0])
	// A failed start gives its place back too.
	if _, err := b.StartIn("bad", lim, child.Spec{Path: "/no/such"}); !errors.Is(err, child.ErrStartFailed) {
		t.Fatalf("failed start: %v", err)
	}
	p, err := b.StartIn("b2", lim, spec("exit", "0"))
	if err != nil {
		t.Fatalf("after one ended: %v", err)
	}
	drain(p)
	procs[1].Kill(child.ReasonCancelled)
	drain(procs[1])
}

// Anonymous slots (detached runs) share the group's limit with aliased
// ones (attached runs) but never their names.
func TestAnonymousSlots(t *testing.T) {
	b := newBroker(t, broker.Options{})
	lim := broker.Limit{Group: "script s", Max: 2}
	a, err := b.Reserve("", lim, broker.Labels{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Start(spec("hang"))
	if err != nil {
		t.Fatal(err)
	}
	// Whatever alias a client picks, it is not an anonymous slot's.
	for _, alias := range []string{"1", "run-1", "#1", "\x001"} {
		q, err := b.Start(alias, spec("exit", "0"))
		if err != nil {
			t.Fatalf("alias %q: %v", alias, err)
		}
		drain(q)
	}
	attached, err := b.StartIn("attached", lim, spec("hang"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve("", lim, broker.Labels{}); !errors.Is(err, broker.ErrGroupBusy) {
		t.Fatalf("third of the group: %v, want ErrGroupBusy", err)
	}
	p.Kill(child.ReasonCancelled)
	drain(p)
	c, err := b.Reserve("", lim, broker.Labels{})
	if err != nil {
		t.Fatalf("after the anonymous one ended: %v", err)
	}
	c.Release()
	attached.Kill(child.ReasonCancelled)
	drain(attached)
	// Two anonymous slots at once are two, not one name taken twice.
	x, err1 := b.Reserve("", broker.Limit{}, broker.Labels{})
	y, err2 := b.Reserve("", broker.Limit{}, broker.Labels{})
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	x.Release()
	y.Release()
}

// Freed fires when a process is reaped and when a reservation is given
// back: the scheduler of detached runs waits for it, not for a tick.
func TestFreedSignalsEveryFreeSlot(t *testing.T) {
	b := newBroker(t, broker.Options{})
	lim := broker.Limit{Group: "g", Max: 1}
	drainFreed := func() {
		select {
		case <-b.Freed():
		default:
		}
	}
	wantFreed := func(what string) {
		t.Helper()
		select {
		case <-b.Freed():
		case <-time.After(10 * time.Second):
			t.Fatalf("no Freed signal after %s", what)
		}
	}
	p, err := b.StartIn("a", lim, spec("hang"))
	if err != nil {
		t.Fatal(err)
	}
	drainFreed()
	if _, err := b.Reserve("", lim, broker.Labels{}); !errors.Is(err, broker.ErrGroupBusy) {
		t.Fatalf("busy group: %v", err)
	}
	select {
	case <-b.Freed():
		t.Fatal("Freed fired while nothing was freed")
	default:
	}
	p.Kill(child.ReasonCancelled)
	drain(p)
	wantFreed("a reap")
	s, err := b.Reserve("", lim, broker.Labels{})
	if err != nil {
		t.Fatalf("the freed slot: %v", err)
	}
	s.Release()
	wantFreed("a release")
	// A failed start frees its slot too.
	if _, err := b.StartIn("", lim, child.Spec{Path: "/no/such"}); !errors.Is(err, child.ErrStartFailed) {
		t.Fatalf("failed start: %v", err)
	}
	wantFreed("a failed start")
}

// List shows the running processes that have an alias, with their labels;
// Stop terminates one by alias, with its reason.
func TestListAndStop(t *testing.T) {
	b := newBroker(t, broker.Options{})
	slot, err := b.Reserve("job", broker.Limit{}, broker.Labels{Command: "hang", Script: "s", Who: "k", Remote: "1.2.3.4:5"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := slot.Start(spec("hang"))
	if err != nil {
		t.Fatal(err)
	}
	anon, err := b.Reserve("", broker.Limit{}, broker.Labels{Script: "detached"})
	if err != nil {
		t.Fatal(err)
	}
	q, err := anon.Start(spec("hang"))
	if err != nil {
		t.Fatal(err)
	}
	<-p.Output()
	infos := b.List()
	if len(infos) != 1 {
		t.Fatalf("List: %+v, want only the aliased process", infos)
	}
	in := infos[0]
	if in.Alias != "job" || in.Pid != p.Pid() || in.Labels.Script != "s" || in.Labels.Who != "k" || in.Labels.Remote != "1.2.3.4:5" ||
		in.Started.IsZero() || time.Since(in.Started) > time.Minute {
		t.Fatalf("List: %+v", in)
	}
	if err := b.Stop("nope", child.ReasonCancelled); !errors.Is(err, broker.ErrNoSuchAlias) {
		t.Fatalf("Stop of an unknown alias: %v", err)
	}
	if err := b.Stop("", child.ReasonCancelled); !errors.Is(err, broker.ErrNoSuchAlias) {
		t.Fatalf("Stop of the empty alias (anonymous slots): %v", err)
	}
	if err := b.Stop("job", child.ReasonCancelled); err != nil {
		t.Fatal(err)
	}
	if st := drain(p); st.Reason != child.ReasonCancelled {
		t.Fatalf("stopped process: %+v", st)
	}
	if infos := b.List(); len(infos) != 0 {
		t.Fatalf("List after the end: %+v", infos)
	}
	q.Kill(child.ReasonCancelled)
	drain(q)
}

// A Stop that comes while the process is starting kills it once started.
func TestStopWhileStarting(t *testing.T) {
	b := newBroker(t, broker.Options{})
	slot, err := b.Reserve("early", broker.Limit{}, broker.Labels{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Stop("early", child.ReasonCancelled); err != nil {
		t.Fatal(err)
	}
	p, err := slot.Start(spec("hang"))
	if err != nil {
		t.Fatal(err)
	}
	if st := drain(p); st.Reason != child.ReasonCancelled {
		t.Fatalf("process stopped while starting: %+v", st)
	}
}
