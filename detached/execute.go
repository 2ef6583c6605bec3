package detached

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/metrics"
	"github.com/rexec/rexec/store"
)

// execute runs one detached run, taken from the queue into slot, to its
// end: it prepares the process, starts it, records the start, copies the
// output (following its progress) and records the end.
func (m *Manager) execute(id string, sc *catalog.Script, slot *broker.Slot) {
	defer m.runs.Done()
	m.mu.Lock()
	a := m.active[id]
	m.mu.Unlock()
	if a == nil { // cancelled between the queue and here
		slot.Release()
		m.mu.Lock()
		m.queue.Done(id)
		m.mu.Unlock()
		return
	}
	defer a.settle()
	r, err := m.getShared(id)
	if err != nil {
		// The history cannot say what to run now (locked, say): later.
		m.log.Error().Err(err).Str("run", id).Msg("reading a run to start: it stays queued")
		m.requeue(id, a, slot, "storage")
		return
	}
	token := newToken()
	spec, out, err := m.prepare(r, sc, token)
	switch {
	case errors.Is(err, errStorage):
		// A condition of the server (a full disk; in a fleet, a stream
		// electing its leader), not of the run: it stays queued.
		m.log.Warn().Err(err).Str("run", id).Str("script", sc.Name).Msg("detached run could not start: it stays queued")
		m.requeue(id, a, slot, "storage")
		return
	case err != nil:
		slot.Release()
		m.startFailed(r, err)
		return
	}
	proc, err := slot.Start(spec)
	switch {
	case errors.Is(err, child.ErrNoResources):
		// A condition of the server, not of the run: try again later.
		out.Close()
		m.log.Warn().Err(err).Str("run", id).Str("script", sc.Name).Msg("detached run could not start for want of resources: it stays queued")
		m.requeue(id, a, nil, "resources")
		return
	case err != nil:
		fmt.Fprintf(out, "rexec: %v\n", err)
		out.Close()
		m.startFailed(r, err)
		return
	}
	m.started(r, a, proc, token)
	m.copyOutput(id, a, proc, out)
	m.ended(r, sc, proc, out)
}

// errStorage: a run's stdin or output could not be opened. The run is not
// at fault; it waits in the queue.
var errStorage = errors.New("the run's stdin or output could not be opened")

// outcomeOf is how a run whose process ended as st ended, at endedAt.
func outcomeOf(st child.Status, endedAt time.Time) store.Outcome {
	o := store.Outcome{Signal: st.SignalName(), EndedAt: endedAt, Usage: st.Report()}
	if st.Signal == 0 {
		code := st.Code
		o.ExitCode = &code
	}
	switch st.Reason {
	case child.ReasonCancelled:
		o.Ended = store.EndedCancelled
	case child.ReasonTimeout:
		o.Ended = store.EndedTimeout
	case child.ReasonShutdown:
		o.Ended = store.EndedInterrupted
	case child.ReasonOOM:
		o.Ended = store.EndedOOM
	default:
		o.Ended = store.EndedExit
	}
	return o
}

// prepare makes the process spec of run r of sc (package launch's, with
// the run's stdin and the callback API's variables) and opens its output.
// What the storage refuses is errStorage.
func (m *Manager) prepare(r store.Run, sc *catalog.Script, token string) (child.Spec, store.OutputWriter, error) {
	stdin, err := m.cfg.Outputs.Stdin(r.ID)
	if err != nil {
		return child.Spec{}, nil, fmt.Errorf("%w: %w", errStorage, err)
	}
	spec, err := launch.Spec(sc, launch.Request{Args: r.Args, Stdin: int64(len(stdin)), Timeout: r.Timeout},
		m.cfg.Limits, m.cfg.Env, m.callbackEnv(r.ID, token)...)
	if err != nil {
		return child.Spec{}, nil, err
	}
	if len(stdin) > 0 {
		spec.Stdin = bytes.NewReader(stdin)
	}
	out, err := m.cfg.Outputs.OpenOutput(r.ID)
	if err != nil {
		return child.Spec{}, nil, fmt.Errorf("%w: %w", errStorage, err)
	}
	return spec, out, nil
}

// callbackEnv are the callback API's variables of run id: the script may
// post its result and progress back with its own run's token, valid only
// while it runs.
func (m *Manager) callbackEnv(id, token string) []string {
	return []string{"REXEC_URL=" + m.URL(), "REXEC_RUN_ID=" + id, "REXEC_RUN_TOKEN=" + token}
}

func (m *Manager) startFailed(r store.Run, err error) {
	m.log.Warn().Err(err).Str("run", r.ID).Str("script", r.Script).Msg("detached run could not start")
	m.cfg.Metrics.EndedUnstarted(metrics.Detached, r.Script, metrics.StartFailed)
	m.finish(r.ID, r.Script, nil, store.Outcome{Ended: store.EndedStartFailed, EndedAt: time.Now()}, false)
}

// started records the start of run r as proc, publishes it, and settles
// the run; a cancel that came while it started kills it now.
func (m *Manager) started(r store.Run, a *activeRun, proc *child.Process, token string) {
	now := time.Now()
	m.cfg.Metrics.Started(metrics.Detached, r.Script)
	if err := m.cfg.History.MarkStarted(m.ctx, r.ID, proc.Pid(), now); err != nil {
		m.log.Error().Err(err).Str("run", r.ID).Msg("recording a start: kept until the history takes it")
		m.mu.Lock()
		m.unrecorded[r.ID] = &unrecorded{pid: proc.Pid(), started: now}
		m.mu.Unlock()
	}
	m.publish(feed.Event{Run: r.ID, Name: r.Script, State: "running"})
	m.mu.Lock()
	a.proc, a.token, a.waiting = proc, token, ""
	cancelled := a.cancelled
	m.mu.Unlock()
	a.settle()
	if cancelled {
		proc.Kill(child.ReasonCancelled)
	}
	m.writeStatus(r.ID, a)
}

// copyOutput writes proc's output to out until it ends, and follows its
// progress. Progress comes from output lines and from the callback API,
// into one state (the run's): a line changes what a callback set, never an
// older copy of it. It is saved at most every progressEvery; a change that
// has to wait is saved when the wait is over, even if the script goes
// quiet.
func (m *Manager) copyOutput(id string, a *activeRun, proc *child.Process, out store.OutputWriter) {
	var scan ProgressScanner
	// Called within scan.Write, under m.mu: each task a line starts, even
	// one that a later line of the same chunk replaces.
	scan.taskStarted = func(prev store.Progress) { a.startTask(prev, time.Now()) }
	seen := 0 // the progGen scan was last in step with
	scanLines := func(b []byte) {
		m.mu.Lock()
		if a.progGen != seen {
			scan.SetProgress(a.progress)
		}
		tasks := a.taskGen
		if scan.Write(b) || a.taskGen != tasks {
			a.progress = scan.Progress()
			a.progGen++
		}
		seen = a.progGen
		m.mu.Unlock()
	}
	var lastSaved time.Time
	var later <-chan time.Time
	save := func() {
		m.saveLatest(id, a)
		lastSaved, later = time.Now(), nil
	}
	dirty := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return a.progGen != a.savedGen
	}
	for output := proc.Output(); output != nil; {
		select {
		case c, ok := <-output:
			if !ok {
				output = nil
				break
			}
			out.Write(c.Data)
			scanLines(c.Data)
			c.Release()
			if wait := progressEvery - time.Since(lastSaved); dirty() && wait <= 0 {
				save()
			} else if dirty() && later == nil {
				later = time.After(wait)
			}
		case <-later:
			save()
		}
	}
	// A last progress line without its newline still counts.
	scanLines([]byte{'\n'})
	if dirty() {
		save()
	}
}

// ended waits for proc's reap and records how run r ended.
func (m *Manager) ended(r store.Run, sc *catalog.Script, proc *child.Process, out store.OutputWriter) {
	st := proc.Wait()
	m.cfg.Metrics.Ended(metrics.Detached, sc.Name, st)
	out.Close()
	o := outcomeOf(st, time.Now())
	o.OutputTruncated = out.TruncatedReason()
	success := o.Ended == store.EndedCancelled || (o.Ended == store.EndedExit && st.Code == 0 && st.Signal == 0)
	m.finish(r.ID, sc.Name, nil, o, success && sc.RemoveDone)
	ev := m.log.Info().Str("run", r.ID).Str("script", sc.Name).Int("pid", proc.Pid()).Int("exit_code", st.Code).
		Str("signal", st.SignalName()).Str("ended", string(o.Ended)).Int64("duration_ms", st.Duration.Milliseconds())
	st.Usage.Log(ev).Msg("detached run ended")
}
