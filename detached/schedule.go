package detached

import (
	"errors"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/launch"
)

// run is the manager's loop: it schedules when the broker frees a slot, and
// at every tick (runs whose start time came, runs waiting for resources),
// when it also retries unrecorded starts and ends and deletes old runs.
func (m *Manager) run() {
	defer m.loop.Done()
	t := time.NewTicker(m.cfg.Tick)
	defer t.Stop()
	lastRetain := time.Time{}
	var changed <-chan struct{} // a shared queue's news from the other hosts
	if q := m.shared(); q != nil {
		changed = q.Changed()
	}
	for {
		select {
		case <-m.quit:
			return
		case <-m.cfg.Broker.Freed():
			m.schedule()
		case <-changed:
			m.schedule()
		case now := <-t.C:
			m.recordPending()
			m.schedule()
			if m.cfg.Retain > 0 && now.Sub(lastRetain) >= m.cfg.RetainEvery {
				lastRetain = now
				m.retain(now)
			}
		}
	}
}

// retain deletes the runs that ended longer than Retain before now.
func (m *Manager) retain(now time.Time) {
	n, err := m.cfg.History.DeleteEndedBefore(m.ctx, now.Add(-m.cfg.Retain))
	if err != nil {
		m.log.Error().Err(err).Msg("retention")
	} else if n > 0 {
		m.log.Info().Int("deleted", n).Dur("retain", m.cfg.Retain).Msg("retention: old runs deleted")
	}
}

// schedule starts every queued run that may start now: first in, first
// out per script, each in a slot of the broker, which says whether the
// script's -s (shared with its attached runs) or --max-procs leaves room.
// A run that gets no slot stays at the front of its queue until the broker
// frees one. Runs of a script that a reload removed stay queued (Waiting
// says so) until it comes back or they are cancelled: a reload never loses
// queued work.
func (m *Manager) schedule() {
	cat := m.cfg.Scripts()
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || now.Before(m.backoff) {
		return
	}
	for _, name := range m.queue.Scripts() {
		sc, ok := cat.Lookup(name)
		if !ok {
			continue
		}
		if !m.startReady(sc, now) {
			return // the server is full (or shutting down): nothing else starts either
		}
	}
}

// startReady starts the runs of sc whose turn has come, as long as the
// broker gives slots. It returns false when no script could get one.
func (m *Manager) startReady(sc *catalog.Script, now time.Time) bool {
	for {
		id, ready := m.queue.Ready(sc.Name, now)
		if !ready {
			return true
		}
		slot, err := m.cfg.Broker.Reserve("", launch.Limit(sc), broker.Labels{Command: sc.Path, Script: sc.Name})
		if err != nil {
			m.queue.AddFront(sc.Name, id, time.Time{})
			return errors.Is(err, broker.ErrGroupBusy)
		}
		if m.cfg.Fleet != nil {
			m.adopt(id, sc.Name)
		}
		m.queuedTotal--
		m.runs.Add(1)
		go m.execute(id, sc, slot)
	}
}

// requeue puts run id back at the front of its queue after a start that
// failed for a reason of the server's, not of the run's (why: "resources"
// or "storage"), and holds every start back until the next tick: the
// condition is seldom over at once, and a freed slot would otherwise
// retry it in a loop.
func (m *Manager) requeue(id string, a *activeRun, slot *broker.Slot, why string) {
	m.mu.Lock()
	m.queuedTotal++
	m.queue.AddFront(a.script, id, time.Time{})
	a.waiting = why
	m.backoff = time.Now().Add(m.cfg.Tick / 2)
	m.mu.Unlock()
	if slot != nil { // nil when a failed start gave it back already
		slot.Release()
	}
	a.settle()
}
