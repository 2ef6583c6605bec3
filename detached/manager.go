package detached

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/metrics"
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
	// History records the runs; Outputs keeps their output and stdin.
	// *store.Store is both, on a single host.
	History store.History
	Outputs store.Outputs
	// Broker gives the slots runs start in.
	Broker  *broker.Broker
	Scripts func() *catalog.Catalog
	// Env is the environment scripts start from (the server's, without
	// REXEC_* variables); the exectab's -e are added to it.
	Env []string
	// Limits is the rule on runs' limits (launch.Policy); nil sets none.
	Limits *launch.Policy
	// Queue says what may start next; default NewMemQueue.
	Queue Queue
	// Tick is how often runs waiting for a start time, or for resources
	// after a start that failed for want of them, are looked at, and
	// unrecorded ends retried; default 1s. A freed slot does not wait
	// for it.
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
	// MaxQueuedStdin caps the bytes of stdin kept for runs that have not
	// ended; default 256 MiB.
	MaxQueuedStdin int64
	// StatusDir, when set, gets <id>.json, the status of each run while
	// it runs, as StatusJSON makes it (statusfile.go).
	StatusDir  string
	StatusJSON func(r store.Run, position int, waiting string) ([]byte, error)
	Logger     zerolog.Logger
	// Metrics counts the runs started and ended (census.go); nil counts
	// nothing.
	Metrics *metrics.Runs
	// Fleet is the fleet this host belongs to (fleet.go), with Queue a
	// SharedQueue and History shared; nil on a single host.
	Fleet Fleet
}

func (c *Config) setDefaults() {
	if c.Queue == nil {
		c.Queue = NewMemQueue()
	}
	if c.Tick <= 0 {
		c.Tick = time.Second
	}
	if c.RetainEvery <= 0 {
		c.RetainEvery = time.Hour
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 10000
	}
	if c.MaxQueuedStdin <= 0 {
		c.MaxQueuedStdin = 256 << 20
	}
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
	// Target, in a fleet, is where the run must start (a host, labels).
	Target Target
}

// Manager runs detached runs. Its fields under mu are its state; the loop,
// the run goroutines and the API call in.
type Manager struct {
	cfg  Config
	log  zerolog.Logger
	ctx  context.Context // for history calls of runs in flight
	stop context.CancelFunc
	quit chan struct{} // closed by Close: no more scheduling
	loop sync.WaitGroup
	runs sync.WaitGroup // one per run being started or running

	mu     sync.Mutex // guards the fields below
	queue  Queue
	active map[string]*activeRun // queued or running, by ID
	// perScript counts, per script, the runs submitted and not yet done
	// (queued, starting or running), for the script's -m.
	perScript map[string]int
	closed    bool
	url       string // REXEC_URL for scripts
	// queuedTotal counts submissions and queued runs of every script,
	// for MaxQueued; stdinBytes the stdin of runs not yet ended.
	queuedTotal int
	stdinBytes  int64
	// backoff: no run starts before it, after a start that failed for
	// want of resources or of the history (see requeue).
	backoff time.Time
	// unrecorded are ends (and starts) the history could not take (a full
	// disk, a locked database): they are retried every tick, and the API
	// sees them meanwhile, so that the end of a run is never lost.
	unrecorded map[string]*unrecorded
}

type activeRun struct {
	script    string
	proc      *child.Process // nil until started
	cancelled bool           // cancel asked before the process was known
	ending    bool           // its end is being recorded (finish): too late to cancel
	done      chan struct{}  // closed when the run is recorded as done
	// settled is closed once a start was tried: the run is running, has
	// ended, or is queued again.
	settled    chan struct{}
	settleOnce sync.Once
	token      string // REXEC_RUN_TOKEN, valid while the process runs
	result     json.RawMessage
	stdin      int64  // bytes of its stdin, counted in stdinBytes
	waiting    string // why it is queued again, "" for its turn (see Waiting)
	// progress is the run's one progress state, which output lines and
	// callbacks both change; progGen counts the changes, savedGen is the
	// change last saved, and saveMu orders the saves.
	progress store.Progress
	progGen  int
	savedGen int
	saveMu   sync.Mutex
	// taskStartedAt and tasks are when the current task of progress
	// started and the tasks that have ended (store.Run's TaskStartedAt and
	// Tasks); taskGen counts the tasks started, and savedTaskGen is the
	// count they were last saved at (see startTask, saveLatest).
	taskStartedAt time.Time
	tasks         []store.TaskSpan
	taskGen       int
	savedTaskGen  int
	// statusMu orders the writes of its status file (statusfile.go);
	// statusRemoved says the file is gone for good.
	statusMu      sync.Mutex
	statusRemoved bool
}

func newActiveRun(script string, stdin int64) *activeRun {
	return &activeRun{script: script, stdin: stdin, done: make(chan struct{}), settled: make(chan struct{})}
}

// startTask records that a task numbered higher than prev's starts now,
// prev being the progress before it: the task of prev, if there was one,
// ends. Under m.mu.
func (a *activeRun) startTask(prev store.Progress, now time.Time) {
	if prev.Task > 0 && !a.taskStartedAt.IsZero() {
		a.tasks = store.AppendTaskSpan(a.tasks, store.TaskSpan{Title: prev.TaskTitle, Start: a.taskStartedAt, End: now})
	}
	a.taskStartedAt = now
	a.taskGen++
}

// settle marks the start tried (see activeRun.settled).
func (a *activeRun) settle() { a.settleOnce.Do(func() { close(a.settled) }) }

// New recovers what a previous life left (runs that were running become
// interrupted, lost on a host of a fleet (lostOnRestart), and their process
// groups are killed if they still exist;
// queued runs are queued again, in order) and starts scheduling.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	cfg.setDefaults()
	m := &Manager{
		cfg: cfg, log: cfg.Logger, queue: cfg.Queue, quit: make(chan struct{}),
		active: map[string]*activeRun{}, perScript: map[string]int{}, unrecorded: map[string]*unrecorded{},
	}
	if cfg.StatusDir != "" {
		if cfg.StatusJSON == nil {
			return nil, errors.New("detached: StatusDir needs StatusJSON")
		}
		if err := openStatusDir(cfg.StatusDir); err != nil {
			return nil, err
		}
	}
	m.ctx, m.stop = context.WithCancel(context.Background())
	if err := m.recover(ctx); err != nil {
		m.stop()
		return nil, err
	}
	m.loop.Add(1)
	go m.run()
	// Queued runs start at the first tick or at SetURL, whichever comes
	// first: a run started before SetURL would not know where to call back.
	return m, nil
}

// recover ends the runs a crash left running and queues the queued ones
// again.
func (m *Manager) recover(ctx context.Context) error {
	m.lostOnRestart(ctx)
	interrupted, err := m.cfg.History.Recover(ctx)
	if err != nil {
		return fmt.Errorf("recovering runs: %w", err)
	}
	for _, r := range interrupted {
		killed := child.KillIfStillOurs(r.Pid, r.Pgid, r.StartedAt)
		m.log.Warn().Str("run", r.ID).Str("script", r.Script).Int("pid", r.Pid).Bool("killed", killed).
			Msg("run interrupted by a restart")
	}
	if m.shared() != nil {
		return nil // the fleet's queue kept its runs: the hosts up take them
	}
	queued, err := m.cfg.History.ListQueued(ctx, "")
	if err != nil {
		return err
	}
	for _, r := range queued {
		stdin, err := m.cfg.Outputs.Stdin(r.ID)
		if err != nil {
			m.log.Error().Err(err).Str("run", r.ID).Msg("reading the stdin of a queued run")
		}
		m.queue.Add(r.Script, r.ID, r.StartAt)
		m.active[r.ID] = newActiveRun(r.Script, int64(len(stdin)))
		m.perScript[r.Script]++
		m.queuedTotal++
		m.stdinBytes += int64(len(stdin))
	}
	if n := len(queued); n > 0 {
		m.log.Info().Int("queued", n).Msg("queued runs from before the restart are queued again")
	}
	return nil
}

// Submit records a run and queues it. It returns the run as recorded once
// it is settled: queued (with its place in the queue), running, or already
// done (a -n script, or a start that failed), never a state it is about to
// leave.
func (m *Manager) Submit(ctx context.Context, req Request) (store.Run, int, error) {
	sc, err := m.check(req)
	if err == nil {
		err = m.checkTarget(req.Target)
	}
	if err != nil {
		return store.Run{}, 0, err
	}
	var stdin int64
	if req.Stdin != nil {
		stdin = int64(len(*req.Stdin))
	}
	unreserve, err := m.reserve(sc, stdin)
	if err != nil {
		return store.Run{}, 0, err
	}
	run := store.Run{Script: sc.Name, Args: req.Args, Who: req.Who, StartAt: req.StartAt,
		Timeout: launch.Timeout(req.Timeout, sc)}
	if err := m.cfg.History.Create(ctx, &run); err != nil {
		unreserve()
		return store.Run{}, 0, err
	}
	if stdin > 0 {
		if err := m.cfg.Outputs.SaveStdin(run.ID, []byte(*req.Stdin)); err != nil {
			unreserve()
			m.cfg.Metrics.EndedUnstarted(metrics.Detached, sc.Name, metrics.StartFailed)
			m.finish(run.ID, sc.Name, nil, store.Outcome{Ended: store.EndedStartFailed}, false)
			return store.Run{}, 0, fmt.Errorf("keeping stdin: %w", err)
		}
	}
	if sc.NoProcess {
		// Nothing to start: the run is its notification (to monitors).
		unreserve()
		code := 0
		m.finish(run.ID, sc.Name, run.Args, store.Outcome{ExitCode: &code, Ended: store.EndedExit, EndedAt: time.Now()}, false)
		done, err := m.Get(ctx, run.ID)
		if err != nil {
			done = run
		}
		return done, 0, nil
	}
	if m.shared() != nil {
		// The fleet's queue counts what -m and --max-queued cap: this
		// host's reservation ends here, and whichever host takes the run
		// counts it while it runs (adopt).
		unreserve()
		return m.enqueueShared(ctx, run, req.Target)
	}
	a := m.enqueue(run, stdin)
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

// check applies the rules of a run of its script to req (package launch,
// as for an attached run), and refuses now what could only fail when the
// run starts, maybe hours later: an argument list too long for exec.
func (m *Manager) check(req Request) (*catalog.Script, error) {
	sc, err := launch.Lookup(m.cfg.Scripts(), req.Script)
	if err != nil {
		return nil, err
	}
	lr := launch.Request{Args: req.Args, Timeout: req.Timeout}
	if req.Stdin != nil {
		lr.Stdin = int64(len(*req.Stdin))
	}
	if sc.NoProcess {
		_, err := launch.Check(sc, lr)
		return sc, err
	}
	// The id and token of the environment are as long as real ones.
	spec, err := launch.Spec(sc, lr, m.cfg.Limits, m.cfg.Env, m.callbackEnv(strings.Repeat("a", 26), strings.Repeat("0", 64))...)
	if err == nil {
		err = child.CheckArgs(append([]string{spec.Path}, spec.Args...), spec.Env)
	}
	return sc, err
}

// reserve counts a new run of sc, with stdin bytes of stdin, against the
// script's -m and the server's caps; unreserve takes it back.
func (m *Manager) reserve(sc *catalog.Script, stdin int64) (unreserve func(), err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fleet := m.shared() != nil
	switch {
	case m.closed:
		return nil, ErrClosed
	case fleet && sc.MaxQueue > 0 && m.activeInFleet(sc.Name) >= sc.MaxQueue:
		return nil, fmt.Errorf("%w: script %q allows %d runs queued and running in the fleet", ErrQueueFull, sc.Name, sc.MaxQueue)
	case fleet && !sc.NoProcess && m.queuedInFleet("") >= m.cfg.MaxQueued:
		return nil, fmt.Errorf("%w: %d runs are queued in the fleet (--max-queued)", ErrTooManyQueued, m.cfg.MaxQueued)
	case sc.MaxQueue > 0 && m.perScript[sc.Name] >= sc.MaxQueue:
		return nil, fmt.Errorf("%w: script %q allows %d runs queued and running", ErrQueueFull, sc.Name, sc.MaxQueue)
	case !sc.NoProcess && m.queuedTotal >= m.cfg.MaxQueued:
		return nil, fmt.Errorf("%w: %d runs are queued (--max-queued)", ErrTooManyQueued, m.cfg.MaxQueued)
	case stdin > 0 && m.stdinBytes+stdin > m.cfg.MaxQueuedStdin:
		return nil, fmt.Errorf("%w: %d bytes of stdin are kept for runs not yet ended (--max-queued-stdin %d)",
			ErrTooMuchStdin, m.stdinBytes, m.cfg.MaxQueuedStdin)
	}
	m.perScript[sc.Name]++
	m.queuedTotal++
	m.stdinBytes += stdin
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.forget(sc.Name)
		m.queuedTotal--
		m.stdinBytes -= stdin
	}, nil
}

// forget counts a run of script out of perScript; m.mu is held.
func (m *Manager) forget(script string) {
	if m.perScript[script]--; m.perScript[script] <= 0 {
		delete(m.perScript, script)
	}
}

// enqueue queues a recorded run, whose reservation it takes over.
func (m *Manager) enqueue(run store.Run, stdin int64) *activeRun {
	a := newActiveRun(run.Script, stdin)
	m.mu.Lock()
	m.queue.Add(run.Script, run.ID, run.StartAt)
	m.active[run.ID] = a
	m.mu.Unlock()
	m.publish(feed.Event{Run: run.ID, Name: run.Script, State: "queued"})
	m.schedule()
	return a
}

// Get returns a run of the history.
// A start or end the store has not taken yet is shown as it happened.
func (m *Manager) Get(ctx context.Context, id string) (store.Run, error) {
	r, err := m.cfg.History.Get(ctx, id)
	if err != nil {
		return r, err
	}
	m.overlay(&r)
	m.lostNow(&r)
	return r, nil
}

// Active lists the queued and running runs, oldest first.
func (m *Manager) Active(ctx context.Context) ([]store.Run, error) {
	rs, err := m.cfg.History.ListActive(ctx)
	if err != nil {
		return nil, err
	}
	active := rs[:0]
	for i := range rs {
		m.overlay(&rs[i])
		m.lostNow(&rs[i])
		if rs[i].State != store.StateDone {
			active = append(active, rs[i])
		}
	}
	return active, nil
}

// ListRuns is a page of the history's runs (store.History.ListRuns), each
// shown as Get shows it: a start or end the store has not taken yet is
// shown as it happened. Under a State filter the page holds the runs in
// that state as shown. While a start or end that would show a run in that
// state is not recorded (a full disk, a locked database), the page is read
// without the filter and filtered here, so it may hold fewer than q.Limit
// runs although next says more follow.
func (m *Manager) ListRuns(ctx context.Context, q store.RunQuery) ([]store.Run, string, error) {
	read := q
	if q.State != "" && m.showsUnrecorded(q.State) {
		read.State = ""
	}
	rs, next, err := m.cfg.History.ListRuns(ctx, read)
	if err != nil {
		return nil, "", err
	}
	shown := rs[:0]
	for i := range rs {
		m.overlay(&rs[i])
		m.lostNow(&rs[i])
		if q.State == "" || rs[i].State == q.State {
			shown = append(shown, rs[i])
		}
	}
	return shown, next, nil
}

// showsUnrecorded says whether some run is shown in state although the
// history has it in another: its start or end is not recorded yet, or its
// process has ended (overlay).
func (m *Manager) showsUnrecorded(state store.State) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if state == store.StateDone {
		for _, a := range m.active {
			if a.proc != nil && reaped(a.proc) {
				return true
			}
		}
	}
	for _, u := range m.unrecorded {
		switch {
		case state == store.StateDone && u.outcome != nil,
			state == store.StateRunning && u.outcome == nil && !u.started.IsZero():
			return true
		}
	}
	return false
}

// overlay applies to r what the history has not taken yet of its life.
func (m *Manager) overlay(r *store.Run) {
	m.mu.Lock()
	// A copy: recordPending clears the fields of m.unrecorded's entry
	// under the lock as the history takes them.
	var u unrecorded
	pu := m.unrecorded[r.ID]
	if pu != nil {
		u = *pu
	}
	// A run whose process has ended is done, as it ended, from that
	// moment: its slot is free, and another run may show as running, before
	// the history has its end (finish records it).
	if a := m.active[r.ID]; a != nil && a.proc != nil && u.outcome == nil && r.State != store.StateDone && reaped(a.proc) {
		st := a.proc.Status()
		o := outcomeOf(st, st.Started.Add(st.Duration))
		u.outcome = &o
	}
	var live store.Progress
	var hasLive, liveTasks bool
	var taskStartedAt time.Time
	var tasks []store.TaskSpan
	if a := m.active[r.ID]; a != nil && a.progGen > 0 {
		live, hasLive = a.progress, true
		// The task times of a run the history has as done are the
		// history's: MarkDone closed its last task.
		if r.State != store.StateDone {
			taskStartedAt, tasks, liveTasks = a.taskStartedAt, slices.Clone(a.tasks), true
		}
	}
	m.mu.Unlock()
	if hasLive {
		r.Progress = live
	}
	if liveTasks {
		r.TaskStartedAt, r.Tasks = taskStartedAt, tasks
	}
	if pu == nil && u.outcome == nil {
		return
	}
	if !u.started.IsZero() && r.State == store.StateQueued {
		r.State, r.StartedAt, r.Pid, r.Pgid = store.StateRunning, u.started, u.pid, u.pid
	}
	if o := u.outcome; o != nil && r.State != store.StateDone {
		r.State, r.Ended, r.EndedAt, r.ExitCode, r.Signal = store.StateDone, o.Ended, o.EndedAt, o.ExitCode, o.Signal
		r.OutputTruncated, r.Usage = o.OutputTruncated, o.Usage
		// As MarkDone will: the current task ends with the run.
		if r.Progress.Task > 0 && !r.TaskStartedAt.IsZero() {
			r.Tasks = store.AppendTaskSpan(r.Tasks, store.TaskSpan{Title: r.Progress.TaskTitle, Start: r.TaskStartedAt, End: o.EndedAt})
		}
	}
}

// Waiting says why a queued run waits: "start_time" (its queue time is
// still to come), "script_missing" (its script is not in the exectab now:
// it waits for a reload that brings it back, or a cancel), "resources" (its
// start failed for want of descriptors, processes or memory, and is tried
// again), "storage" (its record, stdin or output could not be read or
// opened, and is tried again), or "slot" (runs of its script use every
// slot -s allows, or the server runs --max-procs processes). "" when it is
// not queued.
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

// Output reads run id's output from offset: as it is now, or (follow) as
// it is written until the run is done, when the reader returns io.EOF.
// When ctx ends, a follower's Read returns context.Cause(ctx).
func (m *Manager) Output(ctx context.Context, id string, offset int64, follow bool) (io.ReadCloser, error) {
	if follow {
		return m.cfg.Outputs.FollowOutput(ctx, id, offset)
	}
	rd, _, err := m.cfg.Outputs.ReadOutput(id, offset)
	return rd, err
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
		return m.cancelElsewhere(ctx, r)
	case a.ending || a.proc != nil && reaped(a.proc):
		// It has ended; its end is being recorded (the history may have
		// it already, on another host too).
		m.mu.Unlock()
		return ErrDone
	case m.queue.Remove(id):
		m.queuedTotal--
		m.mu.Unlock()
		m.cfg.Metrics.EndedUnstarted(metrics.Detached, a.script, metrics.Cancelled)
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

// reaped says whether p has ended and been reaped.
func reaped(p *child.Process) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
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
	m.loop.Wait()
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

func (m *Manager) publish(e feed.Event) {
	if m.cfg.Events != nil {
		m.cfg.Events.Publish(e)
	}
}
