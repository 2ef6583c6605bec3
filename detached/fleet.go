package detached

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/metrics"
	"github.com/rexec/rexec/store"
)

// Fleet is what the manager of one host of a fleet needs of the fleet
// (package fleet, wired by the node). With a Fleet, Config.Queue is a
// SharedQueue and the history is shared too: a run submitted on one host
// may run on another, and each host shows, cancels and marks lost the
// runs of the others.
type Fleet interface {
	// Host is this host's name.
	Host() string
	// HasHost says whether the fleet has a host called name.
	HasHost(name string) bool
	// Up says whether host is up (heard from lately).
	Up(host string) bool
	// Cancel asks host to cancel run id, which it runs.
	Cancel(ctx context.Context, host, id string) error
}

// Error kinds of targeted runs; webapi maps them to statuses.
var (
	// ErrNoFleet: a run names a host or labels on a host that is in no fleet.
	ErrNoFleet = errors.New(`a run names a host ("host") or labels ("labels") only on a host of a fleet (--fleet-name)`)
	// ErrUnknownHost: a run names a host the fleet does not have.
	ErrUnknownHost = errors.New("the fleet has no host of that name (GET /fleet/v1/machines lists them)")
)

// shared is the queue as a SharedQueue, nil on a single host.
func (m *Manager) shared() SharedQueue {
	if m.cfg.Fleet == nil {
		return nil
	}
	q, _ := m.queue.(SharedQueue)
	return q
}

// checkTarget refuses a target no host of the fleet can meet by name.
func (m *Manager) checkTarget(t Target) error {
	if t.IsZero() {
		return nil
	}
	if m.shared() == nil {
		return ErrNoFleet
	}
	if t.Host != "" && !m.cfg.Fleet.HasHost(t.Host) {
		return fmt.Errorf("%w: %q", ErrUnknownHost, t.Host)
	}
	return nil
}

// queuedInFleet is how many runs the fleet's queue holds, of script or
// (script "") of every script: what --max-queued counts in a fleet. m.mu
// is held.
func (m *Manager) queuedInFleet(script string) int {
	if script != "" {
		return m.queue.Len(script)
	}
	n := 0
	for _, s := range m.queue.Scripts() {
		n += m.queue.Len(s)
	}
	return n
}

// activeInFleet is how many runs of script are queued or running in the
// fleet: what -m counts. m.mu is held.
func (m *Manager) activeInFleet(script string) int {
	return m.queue.Len(script) + m.shared().Held(script)
}

// enqueueShared puts a recorded run in the fleet's queue. Whichever host
// takes it makes it active there (adopt); Submit waits for it to settle
// by reading the shared history.
func (m *Manager) enqueueShared(ctx context.Context, run store.Run, t Target) (store.Run, int, error) {
	m.mu.Lock()
	m.shared().AddFor(run.Script, run.ID, run.StartAt, t)
	m.mu.Unlock()
	m.publish(feed.Event{Run: run.ID, Name: run.Script, State: "queued"})
	m.schedule()
	// Taken at once (here or elsewhere): wait, briefly, for its start to
	// show, as a fork takes no longer.
	deadline := time.Now().Add(2 * time.Second)
	for {
		rec, err := m.Get(ctx, run.ID)
		if err != nil {
			rec = run
		}
		pos := m.Position(run.ID)
		if pos > 0 || rec.State != store.StateQueued || time.Now().After(deadline) || ctx.Err() != nil {
			return rec, pos, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// adopt makes run id, which the fleet's queue gave this host, active here:
// it may have been submitted on another host. m.mu is held.
func (m *Manager) adopt(id, script string) {
	if m.active[id] != nil {
		return
	}
	m.active[id] = newActiveRun(script, 0)
	m.perScript[script]++
	m.queuedTotal++
}

// getShared reads run id for its start: a run submitted on another host
// may reach this host's queue before its record reaches this host's copy
// of the history, so a missing record is waited for, briefly.
func (m *Manager) getShared(id string) (store.Run, error) {
	r, err := m.cfg.History.Get(m.ctx, id)
	if m.cfg.Fleet == nil {
		return r, err
	}
	for deadline := time.Now().Add(5 * time.Second); errors.Is(err, store.ErrNotFound) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		r, err = m.cfg.History.Get(m.ctx, id)
	}
	return r, err
}

// cancelElsewhere cancels run r, which this host does not run: out of the
// fleet's queue if it is queued, or by asking the host that runs it.
func (m *Manager) cancelElsewhere(ctx context.Context, r store.Run) error {
	switch {
	case r.State == store.StateDone:
		return ErrDone
	case m.shared() == nil:
		return fmt.Errorf("run %s is %s but not managed here", r.ID, r.State)
	case r.State == store.StateQueued:
		m.mu.Lock()
		removed := m.queue.Remove(r.ID)
		m.mu.Unlock()
		if !removed { // taken meanwhile: it is starting somewhere
			return m.cancelRunning(ctx, r.ID)
		}
		m.cfg.Metrics.EndedUnstarted(metrics.Detached, r.Script, metrics.Cancelled)
		m.finish(r.ID, r.Script, nil, store.Outcome{Ended: store.EndedCancelled, EndedAt: time.Now()}, m.removeDone(r.Script))
		return nil
	default:
		return m.cancelRunning(ctx, r.ID)
	}
}

// cancelRunning asks the host that runs (or starts) run id to cancel it.
func (m *Manager) cancelRunning(ctx context.Context, id string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := m.Get(ctx, id)
		switch {
		case err != nil:
			return err
		case r.State == store.StateDone:
			return ErrDone
		case r.State == store.StateRunning && r.Host != "":
			if r.Host == m.cfg.Fleet.Host() {
				return m.Cancel(ctx, id)
			}
			return m.cfg.Fleet.Cancel(ctx, r.Host, id)
		case time.Now().After(deadline):
			return fmt.Errorf("run %s is being started on another host: try again", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// HostDown marks lost the runs that host was running: it stopped sending
// heartbeats (or left), so they are not running anywhere the fleet can
// see, and are not run again. Every host that finds the host down calls
// it; the shared history takes the first mark, and only the host whose
// mark it took publishes the end.
func (m *Manager) HostDown(ctx context.Context, host string) {
	if m.cfg.Fleet == nil || host == m.cfg.Fleet.Host() {
		return
	}
	m.mu.Lock()
	closed := m.closed // this host is stopping: the others mark what is lost
	m.mu.Unlock()
	if closed {
		return
	}
	runs, err := m.cfg.History.ListActive(ctx)
	if err != nil {
		m.log.Error().Err(err).Str("host", host).Msg("fleet: listing the runs of a host that is down")
		return
	}
	for _, r := range runs {
		if r.State != store.StateRunning || r.Host != host {
			continue
		}
		o := store.Outcome{Ended: store.EndedLost, EndedAt: time.Now()}
		err := m.markLost(ctx, r.ID, o)
		switch {
		case errors.Is(err, store.ErrWrongState):
			continue // another host marked it first, or it ended
		case err != nil:
			m.log.Error().Err(err).Str("run", r.ID).Str("host", host).Msg("fleet: marking a run lost")
			continue
		}
		m.log.Warn().Str("run", r.ID).Str("script", r.Script).Str("host", host).Msg("fleet: run lost with its host: not run again")
		m.cfg.Metrics.EndedUnstarted(metrics.Detached, r.Script, metrics.Lost)
		m.publish(feed.Event{Run: r.ID, Name: r.Script, State: "done", Ended: string(store.EndedLost)})
	}
}

// lostOnRestart marks lost, on a host of a fleet, the runs this host was
// running when it stopped without recording their ends (killed, crashed).
// That is what the other hosts mark them (HostDown), and what they showed
// meanwhile (lostNow); a host back before their mark could be recorded (a
// stream electing its leader) must not record another end, interrupted,
// over what every host showed. A run it cannot mark is left to Recover.
func (m *Manager) lostOnRestart(ctx context.Context) {
	if m.cfg.Fleet == nil {
		return
	}
	self := m.cfg.Fleet.Host()
	runs, err := m.cfg.History.ListActive(ctx)
	if err != nil {
		m.log.Error().Err(err).Msg("fleet: listing the runs left running by a restart")
		return
	}
	for _, r := range runs {
		if r.State != store.StateRunning || r.Host != self {
			continue
		}
		err := m.cfg.History.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedLost, EndedAt: time.Now()})
		switch {
		case errors.Is(err, store.ErrWrongState):
			continue // another host marked it first
		case err != nil:
			m.log.Error().Err(err).Str("run", r.ID).Msg("fleet: marking lost a run left running by a restart")
			continue
		}
		killed := child.KillIfStillOurs(r.Pid, r.Pgid, r.StartedAt)
		m.log.Warn().Str("run", r.ID).Str("script", r.Script).Int("pid", r.Pid).Bool("killed", killed).
			Msg("fleet: run lost with this host, which stopped without recording its end: not run again")
		m.cfg.Metrics.EndedUnstarted(metrics.Detached, r.Script, metrics.Lost)
		m.publish(feed.Event{Run: r.ID, Name: r.Script, State: "done", Ended: string(store.EndedLost)})
	}
}

// markLost records run id as lost, retrying while the history cannot
// take it (a stream electing its leader after the host's death takes
// seconds).
func (m *Manager) markLost(ctx context.Context, id string, o store.Outcome) error {
	var err error
	for range 30 {
		if err = m.cfg.History.MarkDone(ctx, id, o); err == nil || errors.Is(err, store.ErrWrongState) || errors.Is(err, store.ErrNotFound) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.quit:
			return err
		case <-time.After(time.Second):
		}
	}
	return err
}

// lostNow shows r as lost when the host running it is down, before the
// shared history has taken the mark (HostDown): within the fleet's
// down-after, whatever the streams are doing.
func (m *Manager) lostNow(r *store.Run) {
	if m.cfg.Fleet == nil || r.State != store.StateRunning || r.Host == "" || r.Host == m.cfg.Fleet.Host() || m.cfg.Fleet.Up(r.Host) {
		return
	}
	r.State, r.Ended = store.StateDone, store.EndedLost
	if r.EndedAt.IsZero() {
		r.EndedAt = time.Now()
	}
}
