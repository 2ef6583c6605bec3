package detached

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/store"
)

// unrecorded is what the history has not taken yet of a run's life.
type unrecorded struct {
	pid     int
	started time.Time // zero: the start is recorded (or there was none)
	outcome *store.Outcome
}

// finish records a run as done, drops what only a live run needs, and
// deletes it when its script says so (-r). An end the store cannot take now
// (a full disk, a locked database) is kept and retried every tick, and
// shown by Get meanwhile: the end of a run is never lost.
func (m *Manager) finish(id, script string, args []string, o store.Outcome, remove bool) {
	if o.EndedAt.IsZero() {
		o.EndedAt = time.Now()
	}
	m.mu.Lock()
	if a := m.active[id]; a != nil {
		a.ending = true // Cancel: too late
	}
	m.mu.Unlock()
	recorded := true
	if err := m.cfg.History.MarkDone(m.ctx, id, o); err != nil && !errors.Is(err, store.ErrWrongState) {
		recorded = false
		m.log.Error().Err(err).Str("run", id).Msg("recording the end of a run: kept until the store takes it")
	}
	m.mu.Lock()
	var result json.RawMessage
	a := m.active[id]
	if a != nil {
		result = a.result
		m.stdinBytes -= a.stdin
	}
	if recorded {
		delete(m.unrecorded, id)
	} else {
		u := m.unrecorded[id]
		if u == nil {
			u = &unrecorded{}
			m.unrecorded[id] = u
		}
		u.outcome = &o
	}
	m.mu.Unlock()
	m.removeStatus(id, a)
	m.publish(feed.Event{Run: id, Name: script, State: "done", Args: args, ExitCode: o.ExitCode, Signal: o.Signal,
		Ended: string(o.Ended), Result: result, Usage: o.Usage})
	if err := m.cfg.Outputs.DeleteStdin(id); err != nil {
		m.log.Error().Err(err).Str("run", id).Msg("deleting the stdin of a run")
	}
	if remove && recorded {
		if err := m.cfg.History.Delete(m.ctx, id); err != nil {
			m.log.Error().Err(err).Str("run", id).Msg("removing a run (-r)")
		}
	}
	m.mu.Lock()
	if a != nil {
		close(a.done)
		delete(m.active, id)
		m.forget(a.script)
	}
	m.queue.Done(id)
	m.mu.Unlock()
}

// recordPending gives the history the starts and ends it could not take
// before, and returns how many runs still have some pending.
func (m *Manager) recordPending() int {
	m.mu.Lock()
	pending := make(map[string]unrecorded, len(m.unrecorded))
	for id, u := range m.unrecorded {
		pending[id] = *u
	}
	m.mu.Unlock()
	left := 0
	for id, u := range pending {
		recorded := func(err error) bool { return err == nil || errors.Is(err, store.ErrWrongState) }
		startDone := u.started.IsZero() || recorded(m.cfg.History.MarkStarted(m.ctx, id, u.pid, u.started))
		endDone := startDone && (u.outcome == nil || recorded(m.cfg.History.MarkDone(m.ctx, id, *u.outcome)))
		m.mu.Lock()
		// Clear only what was recorded: finish may have added an end since.
		if cur := m.unrecorded[id]; cur != nil {
			if startDone && cur.started.Equal(u.started) {
				cur.started = time.Time{}
			}
			if endDone && cur.outcome == u.outcome {
				cur.outcome = nil
			}
			if cur.started.IsZero() && cur.outcome == nil {
				delete(m.unrecorded, id)
			} else {
				left++
			}
		}
		m.mu.Unlock()
		if endDone && u.outcome != nil {
			m.log.Info().Str("run", id).Msg("the end of a run is recorded at last")
		}
	}
	return left
}

func (m *Manager) removeDone(script string) bool {
	sc, ok := m.cfg.Scripts().Lookup(script)
	return ok && sc.RemoveDone
}
