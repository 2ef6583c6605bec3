package detached

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/store"
)

// callback checks that token is the run token of the running run id.
func (m *Manager) callback(id, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a := m.active[id]; a == nil || !a.holdsToken(token) {
		return ErrRunToken
	}
	return nil
}

// holdsToken says whether token is a's run token and its process still
// runs. Under m.mu.
func (a *activeRun) holdsToken(token string) bool {
	if a.token == "" || a.proc == nil || subtle.ConstantTimeCompare([]byte(a.token), []byte(token)) != 1 {
		return false
	}
	select {
	case <-a.proc.Done():
		return false
	default:
		return true
	}
}

// RunOfToken is the id of the running run whose token is token, for a
// caller that has the token but not the id (the XML-RPC getAllMachines).
// ok is false for any other token.
func (m *Manager) RunOfToken(token string) (id string, ok bool) {
	if token == "" {
		return "", false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for rid, a := range m.active {
		if a.holdsToken(token) {
			return rid, true
		}
	}
	return "", false
}

// PostResult stores result (a JSON object) as the result of run id, for the
// run itself holding token: status shows it, and its done event carries it.
func (m *Manager) PostResult(ctx context.Context, id, token string, result json.RawMessage) error {
	if err := m.callback(id, token); err != nil {
		return err
	}
	if err := m.cfg.History.SetResult(ctx, id, result); err != nil {
		return err
	}
	m.mu.Lock()
	a := m.active[id]
	if a != nil {
		a.result = result
	}
	m.mu.Unlock()
	m.writeStatus(id, a)
	return nil
}

// ProgressPatch is a change of progress posted by a run: the fields given
// (not nil) replace the run's; as a "[N/M]" line does, a new task number
// clears the subtask unless the patch sets it too.
type ProgressPatch struct {
	Task, TaskTotal *int
	TaskTitle       *string
	SubtaskPercent  *int
	SubtaskTitle    *string
}

func (pp ProgressPatch) apply(p store.Progress) store.Progress {
	if pp.Task != nil && *pp.Task != p.Task {
		p.Task, p.TaskTitle, p.SubtaskPercent, p.SubtaskTitle = *pp.Task, "", 0, ""
	}
	if pp.TaskTotal != nil {
		p.TaskTotal = *pp.TaskTotal
	}
	if pp.TaskTitle != nil {
		p.TaskTitle = *pp.TaskTitle
	}
	if pp.SubtaskPercent != nil {
		p.SubtaskPercent = *pp.SubtaskPercent
	}
	if pp.SubtaskTitle != nil {
		p.SubtaskTitle = *pp.SubtaskTitle
	}
	return p
}

// PostProgress changes the progress of run id without printing lines, for
// the run itself holding token. Its output lines and its callbacks change
// one progress state: a later line starts from what the callback set.
func (m *Manager) PostProgress(ctx context.Context, id, token string, patch ProgressPatch) error {
	if err := m.callback(id, token); err != nil {
		return err
	}
	m.mu.Lock()
	a := m.active[id]
	if a == nil {
		m.mu.Unlock()
		return ErrRunToken
	}
	prev := a.progress
	a.progress = patch.apply(prev)
	if a.progress.Task > prev.Task {
		a.startTask(prev, time.Now())
	}
	a.progGen++
	m.mu.Unlock()
	m.saveLatest(id, a)
	return nil
}

func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// saveLatest saves the run's progress as it is now, unless that is saved
// already. Saves are one at a time, so the last one saves the latest. The
// task times go with the progress when a task started since they were
// last saved (SetTaskProgress), and only then: a line that keeps the task
// costs what it did before there were task times (SetProgress).
func (m *Manager) saveLatest(id string, a *activeRun) {
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	m.mu.Lock()
	p, gen, saved := a.progress, a.progGen, a.savedGen
	a.savedGen = gen
	var tt *taskTimes
	if a.taskGen != a.savedTaskGen {
		tt = &taskTimes{startedAt: a.taskStartedAt, tasks: slices.Clone(a.tasks)}
		a.savedTaskGen = a.taskGen
	}
	m.mu.Unlock()
	if gen != saved {
		if !m.saveProgress(id, a.script, p, tt) && tt != nil {
			// Not saved: the next save carries them.
			m.mu.Lock()
			a.savedTaskGen = -1
			m.mu.Unlock()
		}
		m.writeStatus(id, a)
	}
}

// taskTimes are the task times of a run's progress, to save with it.
type taskTimes struct {
	startedAt time.Time
	tasks     []store.TaskSpan
}

// progressEvery bounds how often a chatty script's progress is written.
const progressEvery = 250 * time.Millisecond

// saveProgress records p, with tt when it is not nil, and publishes it; it
// reports whether the history took it.
func (m *Manager) saveProgress(id, script string, p store.Progress, tt *taskTimes) bool {
	var err error
	if tt != nil {
		err = m.cfg.History.SetTaskProgress(m.ctx, id, p, tt.startedAt, tt.tasks)
	} else {
		err = m.cfg.History.SetProgress(m.ctx, id, p)
	}
	switch {
	case tt != nil && errors.Is(err, store.ErrWrongState):
		// A callback's progress that came as the run ended: MarkDone
		// closed its tasks already.
		m.log.Debug().Err(err).Str("run", id).Msg("progress of a run that has ended: not recorded")
	case err != nil:
		m.log.Error().Err(err).Str("run", id).Msg("recording progress")
	}
	m.publish(feed.Event{Run: id, Name: script, State: "progress", Progress: &p})
	return err == nil
}
