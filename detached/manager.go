package detached

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/store"
	"github.com/rs/zerolog"
)

// Error kinds; webapi maps them to statuses.
var (
	ErrQueueFull = errors.New("the script's queue is full")
	// ErrTooManyQueued: the server holds as many queued runs as it may
	// (Config.MaxQueued), whatever their scripts.
	ErrTooManyQueued = errors.New("the server's queue is full")
	// ErrTooMuchStdin: the stdin kept for queued runs would pass
	// Config.MaxQueuedStdin.
	ErrTooMuchStdin = errors.New("the server keeps as much queued stdin as it may")
	ErrDone         = errors.New("the run has ended")
	ErrClosed       = errors.New("detached runs are shutting down")
	// ErrRunToken: the run token is not the running run's (or it ended).
	ErrRunToken = errors.New("this token is not valid for this run (a run token is valid for its own run, while it runs)")
)

// Config is what a Manager works with. Zero values take the defaults.
type Config struct {
	Store   *store.Store
	Broker  *broker.Broker
	Scripts func() *catalog.Catalog
	// Env is the environment scripts start from (the server's, without
	// REXEC_* variables); the exectab's -e are added to it.
	Env []string
	// Queue says what may start next; default NewMemQueue.
	Queue Queue
	// Tick is how often scheduled runs are checked; default 1s.
	Tick time.Duration
	// Events receives the runs' events (queued, running, progress,
	// done); nil publishes nothing.
	Events feed.Publisher
	// Retain deletes done runs older than this, at start and then every
	// RetainEvery (default 1h); 0 keeps all.
	Retain      time.Duration
	RetainEvery time.Duration
	// MaxQueued caps the runs queued at once on the server, whatever their
	// scripts (each script's -m caps its own); default 10,000.
	MaxQueued int
	// MaxQueuedStdin caps the bytes of stdin kept on disk for runs that
	// have not ended; default 256 MiB.
	MaxQueuedStdin int64
	Logger         zerolog.Logger
}

// Request asks for a detached run.
type Request struct {
	Script  string
	Args    []string
	Stdin   *string   // nil: none
	StartAt time.Time // zero: as soon as a slot is free
	Who     string    // the key that asked, for the history
	// Timeout, when positive, is how long the run may take; the script's
	// -t caps it, and is the default.
	Timeout time.Duration
}

// Manager runs detached runs. Its fields under mu are its state; the run
// goroutines and the ticker call in.
type Manager struct {
	cfg   Config
	log   zerolog.Logger
	ctx   context.Context // for store calls of runs in flight
	stop  context.CancelFunc
	quit  chan struct{} // closed by Close: no more scheduling
	ticks sync.WaitGroup
	runs  sync.WaitGroup // one per running run

	mu       sync.Mutex // guards the fields below
	queue    Queue
	reserved map[string]int        // per script: submissions between the -m check and the queue
	running  map[string]int        // per script: runs started and not yet ended
	active   map[string]*activeRun // queued or running, by ID
	closed   bool
	url      string // REXEC_URL for scripts
	// queuedTotal counts reservations and queued runs of every script,
	// for MaxQueued; stdinBytes the stdin files of runs not yet ended.
	queuedTotal int
	stdinBytes  int64
	// unrecorded are ends (and starts) the store could not take (a full
	// disk, a locked database): they are retried every tick, and the API
	// sees them meanwhile, so that the end of a run is never lost.
	unrecorded map[string]*unrecorded
}

type activeRun struct {
	script    string
	proc      *child.Process // nil until started
	cancelled bool           // cancel asked before the process was known
	done      chan struct{}  // closed when the run is recorded as done
	// settled is closed once a start was tried: the run is running, has
	// ended, or is queued again.
	settled chan struct{}
	token   string // REXEC_RUN_TOKEN, valid while the process runs
	result  json.RawMessage
	stdin   int64  // bytes of its stdin file, counted in stdinBytes
	waiting string // why it is queued again, "" for its turn (see Waiting)
	// progress is the run's one progress state, which output lines and
	// callbacks both change; progGen counts the changes, savedGen is the
	// change last saved, and saveMu orders the saves.
	progress Progress
	progGen  int
	savedGen int
	saveMu   sync.Mutex
}

func newActiveRun(script string, stdin int64) *activeRun {
	return &activeRun{script: script, stdin: stdin, done: make(chan struct{}), settled: make(chan struct{})}
}

// unrecorded is what the store has not taken yet of a run's life.
type unrecorded struct {
	pid     int
	started time.Time // zero: the start is recorded (or there was none)
	outcome *store.Outcome
}

// New recovers what a previous life left (runs that were running become
// interrupted, and their process groups are killed if they still exist;
// queued runs are queued again, in order) and starts scheduling.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Queue == nil {
		cfg.Queue = NewMemQueue()
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.RetainEvery <= 0 {
		cfg.RetainEvery = time.Hour
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 10000
	}
	if cfg.MaxQueuedStdin <= 0 {
		cfg.MaxQueuedStdin = 256 << 20
	}
	m := &Manager{
		cfg: cfg, log: cfg.Logger, queue: cfg.Queue,
		reserved: map[string]int{}, running: map[string]int{}, active: map[string]*activeRun{},
		unrecorded: map[string]*unrecorded{},
	}
	m.ctx, m.stop = context.WithCancel(context.Background())
	m.quit = make(chan struct{})
	interrupted, err := cfg.Store.Recover(ctx)
	if err != nil {
		return nil, fmt.Errorf("recovering runs: %w", err)
	}
	for _, r := range interrupted {
		killed := killIfStillOurs(r)
		m.log.Warn().Str("run", r.ID).Str("script", r.Script).Int("pid", r.Pid).Bool("killed", killed).
			Msg("run interrupted by a restart")
	}
	queued, err := cfg.Store.ListQueued(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, r := range queued {
		var stdin int64
		if fi, err := os.Stat(m.stdinPath(r.ID)); err == nil {
			stdin = fi.Size()
		}
		m.queue.Add(r.Script, r.ID, r.StartAt)
		m.active[r.ID] = newActiveRun(r.Script, stdin)
		m.queuedTotal++
		m.stdinBytes += stdin
	}
	if n := len(queued); n > 0 {
		m.log.Info().Int("queued", n).Msg("queued runs from before the restart are queued again")
	}
	m.ticks.Add(1)
	go m.tick()
	// Queued runs start at the first tick or at SetURL, whichever comes
	// first: a run started before SetURL would not know where to call back.
	return m, nil
}

// Submit records a run and queues it. It returns the run as recorded once
// it is settled: queued (with its place in the queue), running, or already
// done (a -n script, or a start that failed), never a state it is about to
// leave.
func (m *Manager) Submit(ctx context.Context, req Request) (store.Run, int, error) {
	sc, err := launch.Lookup(m.cfg.Scripts(), req.Script)
	if err != nil {
		return store.Run{}, 0, err
	}
	var stdin int64
	if req.Stdin != nil {
		stdin = int64(len(*req.Stdin))
	}
	lr := launch.Request{Args: req.Args, Stdin: stdin, Timeout: req.Timeout}
	if sc.NoProcess {
		_, err = launch.Check(sc, lr)
	} else {
		// Refused now rather than when it starts, maybe hours later. The
		// id and token of the environment are as long as real ones.
		var spec child.Spec
		spec, err = launch.Spec(sc, lr, m.cfg.Env, m.callbackEnv(strings.Repeat("a", 26), strings.Repeat("0", 64))...)
		if err == nil {
			err = child.CheckArgs(append([]string{spec.Path}, spec.Args...), spec.Env)
		}
	}
	if err != nil {
		return store.Run{}, 0, err
	}
	timeout := launch.Timeout(req.Timeout, sc)

	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return store.Run{}, 0, ErrClosed
	case sc.MaxQueue > 0 && m.queue.Len(sc.Name)+m.running[sc.Name]+m.reserved[sc.Name] >= sc.MaxQueue:
		m.mu.Unlock()
		return store.Run{}, 0, fmt.Errorf("%w: script %q allows %d runs queued and running", ErrQueueFull, sc.Name, sc.MaxQueue)
	case !sc.NoProcess && m.queuedTotal >= m.cfg.MaxQueued:
		m.mu.Unlock()
		return store.Run{}, 0, fmt.Errorf("%w: %d runs are queued (--max-queued)", ErrTooManyQueued, m.cfg.MaxQueued)
	case stdin > 0 && m.stdinBytes+stdin > m.cfg.MaxQueuedStdin:
		m.mu.Unlock()
		return store.Run{}, 0, fmt.Errorf("%w: %d bytes of stdin are kept for runs not yet ended (--max-queued-stdin %d)",
			ErrTooMuchStdin, m.stdinBytes, m.cfg.MaxQueuedStdin)
	}
	m.reserved[sc.Name]++
	m.queuedTotal++
	m.stdinBytes += stdin
	m.mu.Unlock()
	unreserve := func(keepStdin bool) {
		m.mu.Lock()
		m.reserved[sc.Name]--
		m.queuedTotal--
		if !keepStdin {
			m.stdinBytes -= stdin
		}
		m.mu.Unlock()
	}

	run := store.Run{Script: sc.Name, Args: req.Args, Who: req.Who, StartAt: req.StartAt, Timeout: timeout}
	if err := m.cfg.Store.Create(ctx, &run); err != nil {
		unreserve(false)
		return store.Run{}, 0, err
	}
	if stdin > 0 {
		if err := os.WriteFile(m.stdinPath(run.ID), []byte(*req.Stdin), 0o600); err != nil {
			os.Remove(m.stdinPath(run.ID))
			unreserve(false)
			err = fmt.Errorf("keeping stdin: %w", err)
			m.finish(run.ID, sc.Name, nil, store.Outcome{Ended: store.EndedStartFailed}, false)
			return store.Run{}, 0, err
		}
	}
	if sc.NoProcess {
		// Nothing to start: the run is its notification (to monitors).
		unreserve(false)
		code := 0
		m.finish(run.ID, sc.Name, run.Args, store.Outcome{ExitCode: &code, Ended: store.EndedExit, EndedAt: time.Now()}, false)
		done, err := m.Get(ctx, run.ID)
		if err != nil {
			done = run
		}
		return done, 0, nil
	}

	a := newActiveRun(sc.Name, stdin)
	m.mu.Lock()
	m.reserved[sc.Name]--
	m.queue.Add(sc.Name, run.ID, req.StartAt)
	m.active[run.ID] = a
	m.mu.Unlock()
	m.publish(feed.Event{Run: run.ID, Name: sc.Name, State: "queued"})
	m.schedule()
	// Taken from the queue: wait for the start to settle, which takes no
	// longer than a fork.
	if m.Position(run.ID) == 0 {
		select {
		case <-a.settled:
		case <-ctx.Done():
		}
	}
	rec, err := m.Get(ctx, run.ID)
	if err != nil {
		rec = run
	}
	return rec, m.Position(run.ID), nil
}

// Get returns a run of the history.
// A start or end the store has not taken yet is shown as it happened.
func (m *Manager) Get(ctx context.Context, id string) (store.Run, error) {
	r, err := m.cfg.Store.Get(ctx, id)
	if err != nil {
		return r, err
	}
	m.overlay(&r)
	return r, nil
}

// Active lists the queued and running runs, oldest first.
func (m *Manager) Active(ctx context.Context) ([]store.Run, error) {
	rs, err := m.cfg.Store.ListActive(ctx)
	if err != nil {
		return nil, err
	}
	active := rs[:0]
	for i := range rs {
		m.overlay(&rs[i])
		if rs[i].State != store.StateDone {
			active = append(active, rs[i])
		}
	}
	return active, nil
}

// overlay applies to r what the store has not taken yet of its life.
func (m *Manager) overlay(r *store.Run) {
	m.mu.Lock()
	u := m.unrecorded[r.ID]
	var live Progress
	var hasLive bool
	if a := m.active[r.ID]; a != nil && a.progGen > 0 {
		live, hasLive = a.progress, true
	}
	m.mu.Unlock()
	if hasLive {
		r.Progress = store.Progress(live)
	}
	if u == nil {
		return
	}
	if !u.started.IsZero() && r.State == store.StateQueued {
		r.State, r.StartedAt, r.Pid, r.Pgid = store.StateRunning, u.started, u.pid, u.pid
	}
	if o := u.outcome; o != nil && r.State != store.StateDone {
		r.State, r.Ended, r.EndedAt, r.ExitCode, r.Signal = store.StateDone, o.Ended, o.EndedAt, o.ExitCode, o.Signal
		r.OutputTruncated = o.OutputTruncated
	}
}

// Waiting says why a queued run waits: "start_time" (its queue time is
// still to come), "script_missing" (its script is not in the exectab now:
// it waits for a reload that brings it back, or a cancel), "resources" (its
// start failed for want of descriptors, processes or memory, and is tried
// again), or "slot" (runs of its script use every slot -s allows, or the
// server runs --max-procs processes). "" when it is not queued.
func (m *Manager) Waiting(r store.Run) string {
	if r.State != store.StateQueued {
		return ""
	}
	if _, ok := m.cfg.Scripts().Lookup(r.Script); !ok {
		return "script_missing"
	}
	if r.StartAt.After(time.Now()) {
		return "start_time"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if a := m.active[r.ID]; a != nil && a.waiting != "" {
		return a.waiting
	}
	return "slot"
}

// ScriptsChanged tells the manager that the exectab was reloaded: queued
// runs of a script that came back can start at once.
func (m *Manager) ScriptsChanged() { m.schedule() }

// Output reads a run's output from offset (see store.ReadOutput).
func (m *Manager) Output(id string, offset int64) (io.ReadCloser, int64, error) {
	return m.cfg.Store.ReadOutput(id, offset)
}

// Position is the run's 1-based place in its script's queue; 0 when it is
// not queued.
func (m *Manager) Position(id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.queue.Position(id)
}

// Ended returns a channel closed once the run is done (already closed for a
// run that is not active).
func (m *Manager) Ended(id string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a := m.active[id]; a != nil {
		return a.done
	}
	c := make(chan struct{})
	close(c)
	return c
}

// Cancel cancels a queued run, or terminates a running one (its group gets
// SIGTERM, then SIGKILL after the kill grace). A done run is ErrDone.
func (m *Manager) Cancel(ctx context.Context, id string) error {
	m.mu.Lock()
	a := m.active[id]
	switch {
	case a == nil:
		m.mu.Unlock()
		r, err := m.Get(ctx, id)
		if err != nil {
			return err
		}
		if r.State == store.StateDone {
			return ErrDone
		}
		return fmt.Errorf("run %s is %s but not managed here", id, r.State)
	case m.queue.Remove(id):
		m.queuedTotal--
		m.mu.Unlock()
		m.finish(id, a.script, nil, store.Outcome{Ended: store.EndedCancelled, EndedAt: time.Now()}, m.removeDone(a.script))
		return nil
	case a.proc != nil:
		p := a.proc
		m.mu.Unlock()
		p.Kill(child.ReasonCancelled)
		return nil
	default: // starting: its goroutine kills it as soon as it has it
		a.cancelled = true
		m.mu.Unlock()
		return nil
	}
}

// Close stops scheduling and waits, within ctx, for running runs to be
// recorded. Their processes are killed by the broker's shutdown, which the
// caller runs alongside; they are recorded as interrupted.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	close(m.quit)
	m.ticks.Wait()
	done := make(chan struct{})
	go func() { m.runs.Wait(); close(done) }()
	// The runs' last store writes use m.ctx: cancel it only once they are
	// recorded, or when the caller gives up.
	defer m.stop()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if n := m.recordPending(); n > 0 {
		m.log.Error().Int("runs", n).Msg("the ends of some runs could not be recorded (is the disk full?): " +
			"the next start marks them interrupted")
	}
	return nil
}

func (m *Manager) tick() {
	defer m.ticks.Done()
	t := time.NewTicker(m.cfg.Tick)
	defer t.Stop()
	lastRetain := time.Time{}
	for {
		select {
		case <-m.quit:
			return
		case now := <-t.C:
			m.recordPending()
			m.schedule()
			if m.cfg.Retain > 0 && now.Sub(lastRetain) >= m.cfg.RetainEvery {
				lastRetain = now
				n, err := m.cfg.Store.DeleteEndedBefore(m.ctx, now.Add(-m.cfg.Retain))
				if err != nil {
					m.log.Error().Err(err).Msg("retention")
				} else if n > 0 {
					m.log.Info().Int("deleted", n).Dur("retain", m.cfg.Retain).Msg("retention: old runs deleted")
				}
			}
		}
	}
}

// schedule starts every queued run that may start now: first in, first
// out per script, within the script's -s. Runs of a script that a reload
// removed stay queued (Waiting says so) until it comes back or they are
// cancelled: a reload never loses queued work.
func (m *Manager) schedule() {
	cat := m.cfg.Scripts()
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for _, name := range m.queue.Scripts() {
		sc, ok := cat.Lookup(name)
		for ok && m.running[name] < sc.Concurrency {
			id, ready := m.queue.Ready(name, now)
			if !ready {
				break
			}
			m.running[name]++
			m.queuedTotal--
			m.runs.Add(1)
			go m.execute(id, sc)
		}
	}
}

// execute runs one detached run to its end.
func (m *Manager) execute(id string, sc *catalog.Script) {
	defer m.runs.Done()
	m.mu.Lock()
	a := m.active[id]
	m.mu.Unlock()
	settle := sync.OnceFunc(func() {
		if a != nil {
			close(a.settled)
		}
	})
	defer settle()
	ended := func() {
		m.mu.Lock()
		m.running[sc.Name]--
		m.mu.Unlock()
		m.schedule()
	}
	requeue := func(why string) {
		m.mu.Lock()
		m.running[sc.Name]--
		m.queuedTotal++
		m.queue.AddFront(sc.Name, id, time.Time{})
		if a != nil {
			a.waiting = why
		}
		m.mu.Unlock()
	}
	r, err := m.cfg.Store.Get(m.ctx, id)
	if err != nil {
		// The store cannot say what to run now (locked, say): try later.
		m.log.Error().Err(err).Str("run", id).Msg("reading a run to start: it stays queued")
		requeue("storage")
		return
	}
	token := newToken()
	stdin, _ := os.ReadFile(m.stdinPath(r.ID)) // none when it has none
	spec, err := m.spec(r, sc, token, stdin)
	if err != nil {
		m.startFailed(r, err)
		ended()
		return
	}
	out, err := m.cfg.Store.OpenOutput(id)
	if err != nil {
		m.startFailed(r, err)
		ended()
		return
	}
	proc, err := m.cfg.Broker.StartIn("run-"+id, broker.Limit{Group: "script " + sc.Name, Max: sc.Concurrency}, spec)
	switch {
	case errors.Is(err, broker.ErrGroupBusy) || errors.Is(err, broker.ErrTooManyProcs):
		// Attached runs of the script, or other processes, hold the
		// slots: try again later.
		out.Close()
		requeue("slot")
		return
	case errors.Is(err, child.ErrNoResources):
		// A condition of the server, not of the run: try again later.
		out.Close()
		m.log.Warn().Err(err).Str("run", id).Str("script", sc.Name).Msg("detached run could not start for want of resources: it stays queued")
		requeue("resources")
		return
	case errors.Is(err, broker.ErrShuttingDown):
		out.Close() // stays queued for the next start
		ended()
		return
	case err != nil:
		fmt.Fprintf(out, "rexec: %v\n", err)
		out.Close()
		m.startFailed(r, err)
		ended()
		return
	}
	started := time.Now()
	if err := m.cfg.Store.MarkStarted(m.ctx, id, proc.Pid(), started); err != nil {
		m.log.Error().Err(err).Str("run", id).Msg("recording a start: kept until the store takes it")
		m.mu.Lock()
		m.unrecorded[id] = &unrecorded{pid: proc.Pid(), started: started}
		m.mu.Unlock()
	}
	m.publish(feed.Event{Run: id, Name: sc.Name, State: "running"})
	m.mu.Lock()
	a.proc, a.token, a.waiting = proc, token, ""
	cancelled := a.cancelled
	m.mu.Unlock()
	settle()
	if cancelled {
		proc.Kill(child.ReasonCancelled)
	}

	// Progress comes from output lines and from the callback API, into one
	// state (the run's): a line changes what a callback set, never an older
	// copy of it. It is saved at most every progressEvery; a change that has
	// to wait is saved when the wait is over, even if the script goes quiet.
	var scan ProgressScanner
	seen := 0 // the progGen scan was last in step with
	scanLines := func(b []byte) {
		m.mu.Lock()
		if a.progGen != seen {
			scan.SetProgress(a.progress)
		}
		if scan.Write(b) {
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
	st := proc.Wait()
	out.Close()
	o := store.Outcome{Signal: st.SignalName(), EndedAt: time.Now(), OutputTruncated: out.TruncatedReason()}
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
	default:
		o.Ended = store.EndedExit
	}
	success := o.Ended == store.EndedCancelled || (o.Ended == store.EndedExit && st.Code == 0 && st.Signal == 0)
	m.finish(id, sc.Name, nil, o, success && sc.RemoveDone)
	m.log.Info().Str("run", id).Str("script", sc.Name).Int("pid", proc.Pid()).Int("exit_code", st.Code).
		Str("signal", st.SignalName()).Str("ended", string(o.Ended)).Int64("duration_ms", st.Duration.Milliseconds()).
		Msg("detached run ended")
	ended()
}

// saveLatest saves the run's progress as it is now, unless that is saved
// already. Saves are one at a time, so the last one saves the latest.
func (m *Manager) saveLatest(id string, a *activeRun) {
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	m.mu.Lock()
	p, gen, saved := a.progress, a.progGen, a.savedGen
	a.savedGen = gen
	m.mu.Unlock()
	if gen != saved {
		m.saveProgress(id, a.script, p)
	}
}

// progressEvery bounds how often a chatty script's progress is written.
const progressEvery = 250 * time.Millisecond

func (m *Manager) saveProgress(id, script string, p Progress) {
	err := m.cfg.Store.SetProgress(m.ctx, id, store.Progress{
		Task: p.Task, TaskTotal: p.TaskTotal, TaskTitle: p.TaskTitle,
		SubtaskPercent: p.SubtaskPercent, SubtaskTitle: p.SubtaskTitle,
	})
	if err != nil {
		m.log.Error().Err(err).Str("run", id).Msg("recording progress")
	}
	fp := feed.Progress(p)
	m.publish(feed.Event{Run: id, Name: script, State: "progress", Progress: &fp})
}

func (m *Manager) publish(e feed.Event) {
	if m.cfg.Events != nil {
		m.cfg.Events.Publish(e)
	}
}

// spec is what child.Start needs for run r of script sc.
func (m *Manager) spec(r store.Run, sc *catalog.Script, token string, stdin []byte) (child.Spec, error) {
	spec, err := launch.Spec(sc, launch.Request{Args: r.Args, Stdin: int64(len(stdin)), Timeout: r.Timeout},
		m.cfg.Env, m.callbackEnv(r.ID, token)...)
	if err != nil {
		return child.Spec{}, err
	}
	if len(stdin) > 0 {
		spec.Stdin = bytes.NewReader(stdin)
	}
	return spec, nil
}

// callbackEnv are the callback API's variables of run id: the script may
// post its result and progress back with its own run's token, valid only
// while it runs.
func (m *Manager) callbackEnv(id, token string) []string {
	return []string{"REXEC_URL=" + m.URL(), "REXEC_RUN_ID=" + id, "REXEC_RUN_TOKEN=" + token}
}

func (m *Manager) startFailed(r store.Run, err error) {
	m.log.Warn().Err(err).Str("run", r.ID).Str("script", r.Script).Msg("detached run could not start")
	m.finish(r.ID, r.Script, nil, store.Outcome{Ended: store.EndedStartFailed, EndedAt: time.Now()}, false)
}

// finish records a run as done, drops what only a live run needs, and
// deletes it when its script says so (-r). An end the store cannot take now
// (a full disk, a locked database) is kept and retried every tick, and
// shown by Get meanwhile: the end of a run is never lost.
func (m *Manager) finish(id, script string, args []string, o store.Outcome, remove bool) {
	if o.EndedAt.IsZero() {
		o.EndedAt = time.Now()
	}
	recorded := true
	if err := m.cfg.Store.MarkDone(m.ctx, id, o); err != nil && !errors.Is(err, store.ErrWrongState) {
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
	m.publish(feed.Event{Run: id, Name: script, State: "done", Args: args, ExitCode: o.ExitCode, Signal: o.Signal,
		Ended: string(o.Ended), Result: result})
	os.Remove(m.stdinPath(id))
	if remove && recorded {
		if err := m.cfg.Store.Delete(m.ctx, id); err != nil {
			m.log.Error().Err(err).Str("run", id).Msg("removing a run (-r)")
		}
	}
	m.mu.Lock()
	if a != nil {
		close(a.done)
		delete(m.active, id)
	}
	m.mu.Unlock()
}

// recordPending gives the store the starts and ends it could not take
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
		startDone := u.started.IsZero() || recorded(m.cfg.Store.MarkStarted(m.ctx, id, u.pid, u.started))
		endDone := startDone && (u.outcome == nil || recorded(m.cfg.Store.MarkDone(m.ctx, id, *u.outcome)))
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

func (m *Manager) stdinPath(id string) string {
	return filepath.Join(m.cfg.Store.Dir(), "stdin-"+id)
}

// killIfStillOurs kills the process group of a run interrupted by a crash,
// but only if its leader is still the process that run started: same PID
// and a start time within two seconds of the recorded one. After a reboot
// or PID reuse the PID names another process, which is left alone.
func killIfStillOurs(r store.Run) bool {
	if r.Pgid <= 0 || r.StartedAt.IsZero() {
		return false
	}
	started, ok := processStart(r.Pid)
	if !ok {
		return false
	}
	if d := started.Sub(r.StartedAt); d < -2*time.Second || d > 2*time.Second {
		return false
	}
	return syscall.Kill(-r.Pgid, syscall.SIGKILL) == nil
}

// SetURL tells scripts where the server is (REXEC_URL), once it listens.
func (m *Manager) SetURL(u string) {
	m.mu.Lock()
	m.url = u
	m.mu.Unlock()
	m.schedule()
}

// URL is the server's URL as scripts see it.
func (m *Manager) URL() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.url
}

// Callback checks that token is the run token of the running run id.
func (m *Manager) callback(id, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.active[id]
	if a == nil || a.token == "" || a.proc == nil ||
		subtle.ConstantTimeCompare([]byte(a.token), []byte(token)) != 1 {
		return ErrRunToken
	}
	select {
	case <-a.proc.Done():
		return ErrRunToken
	default:
	}
	return nil
}

// PostResult stores result (a JSON object) as the result of run id, for the
// run itself holding token: status shows it, and its done event carries it.
func (m *Manager) PostResult(ctx context.Context, id, token string, result json.RawMessage) error {
	if err := m.callback(id, token); err != nil {
		return err
	}
	if err := m.cfg.Store.SetResult(ctx, id, result); err != nil {
		return err
	}
	m.mu.Lock()
	if a := m.active[id]; a != nil {
		a.result = result
	}
	m.mu.Unlock()
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

func (pp ProgressPatch) apply(p Progress) Progress {
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
	a.progress = patch.apply(a.progress)
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
