package runs

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
	"sync"
	"syscall"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/store"
	"github.com/rs/zerolog"
)

// Error kinds; webapi maps them to statuses.
var (
	ErrNoSuchScript = errors.New("no such script")
	ErrQueueFull    = errors.New("the script's queue is full")
	ErrStdin        = errors.New("stdin refused")
	ErrDone         = errors.New("the run has ended")
	ErrClosed       = errors.New("detached runs are shutting down")
	// ErrRunToken: the run token is not the running run's (or it ended).
	ErrRunToken = errors.New("this token is not valid for this run (a run token is valid for its own run, while it runs)")
)

// MaxStdin bounds the stdin a detached run may carry.
const MaxStdin = 1 << 20

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
	Logger      zerolog.Logger
}

// Request asks for a detached run.
type Request struct {
	Script  string
	Args    []string
	Stdin   *string   // nil: none
	StartAt time.Time // zero: as soon as a slot is free
	Who     string    // the key that asked, for the history
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
}

type activeRun struct {
	script    string
	proc      *child.Process // nil until started
	cancelled bool           // cancel asked before the process was known
	done      chan struct{}  // closed when the run is recorded as done
	token     string         // REXEC_RUN_TOKEN, valid while the process runs
	result    json.RawMessage
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
	m := &Manager{
		cfg: cfg, log: cfg.Logger, queue: cfg.Queue,
		reserved: map[string]int{}, running: map[string]int{}, active: map[string]*activeRun{},
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
		m.queue.Add(r.Script, r.ID, r.StartAt)
		m.active[r.ID] = &activeRun{script: r.Script, done: make(chan struct{})}
	}
	m.ticks.Add(1)
	go m.tick()
	m.schedule()
	return m, nil
}

// Submit records a run and queues it. It returns the run as recorded and
// its place in the queue (0 once it started or ended).
func (m *Manager) Submit(ctx context.Context, req Request) (store.Run, int, error) {
	sc, ok := m.cfg.Scripts().Lookup(req.Script)
	if !ok {
		return store.Run{}, 0, fmt.Errorf("%w named %q", ErrNoSuchScript, req.Script)
	}
	if req.Stdin != nil && *req.Stdin != "" {
		switch {
		case !sc.AllowStdin:
			return store.Run{}, 0, fmt.Errorf("%w: script %q takes no stdin (its exectab line has no -i)", ErrStdin, sc.Name)
		case len(*req.Stdin) > MaxStdin:
			return store.Run{}, 0, fmt.Errorf("%w: stdin is limited to %d bytes", ErrStdin, MaxStdin)
		}
	}
	if _, err := sc.Argv(req.Args); err != nil {
		return store.Run{}, 0, err
	}

	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return store.Run{}, 0, ErrClosed
	case sc.MaxQueue > 0 && m.queue.Len(sc.Name)+m.running[sc.Name]+m.reserved[sc.Name] >= sc.MaxQueue:
		m.mu.Unlock()
		return store.Run{}, 0, fmt.Errorf("%w: script %q allows %d runs queued and running", ErrQueueFull, sc.Name, sc.MaxQueue)
	}
	m.reserved[sc.Name]++
	m.mu.Unlock()
	unreserve := func() {
		m.mu.Lock()
		m.reserved[sc.Name]--
		m.mu.Unlock()
	}

	run := store.Run{Script: sc.Name, Args: req.Args, Who: req.Who, StartAt: req.StartAt}
	if err := m.cfg.Store.Create(ctx, &run); err != nil {
		unreserve()
		return store.Run{}, 0, err
	}
	if req.Stdin != nil && *req.Stdin != "" {
		if err := os.WriteFile(m.stdinPath(run.ID), []byte(*req.Stdin), 0o600); err != nil {
			unreserve()
			m.finish(run.ID, sc.Name, nil, store.Outcome{Ended: store.EndedStartFailed}, false)
			return store.Run{}, 0, fmt.Errorf("keeping stdin: %w", err)
		}
	}
	if sc.NoProcess {
		// Nothing to start: the run is its notification (to monitors).
		unreserve()
		code := 0
		m.finish(run.ID, sc.Name, run.Args, store.Outcome{ExitCode: &code, Ended: store.EndedExit, EndedAt: time.Now()}, false)
		done, _ := m.cfg.Store.Get(ctx, run.ID)
		if done.ID == "" {
			done = run
		}
		return done, 0, nil
	}

	m.mu.Lock()
	m.reserved[sc.Name]--
	m.queue.Add(sc.Name, run.ID, req.StartAt)
	m.active[run.ID] = &activeRun{script: sc.Name, done: make(chan struct{})}
	m.mu.Unlock()
	m.publish(feed.Event{Run: run.ID, Name: sc.Name, State: "queued"})
	m.schedule()
	rec, err := m.cfg.Store.Get(ctx, run.ID)
	if err != nil {
		rec = run
	}
	pos := m.Position(run.ID)
	if pos == 0 && rec.State == store.StateQueued {
		rec.State = store.StateRunning // taken from the queue: starting now
	}
	return rec, pos, nil
}

// Get returns a run of the history.
func (m *Manager) Get(ctx context.Context, id string) (store.Run, error) {
	return m.cfg.Store.Get(ctx, id)
}

// Active lists the queued and running runs, oldest first.
func (m *Manager) Active(ctx context.Context) ([]store.Run, error) {
	return m.cfg.Store.ListActive(ctx)
}

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
		r, err := m.cfg.Store.Get(ctx, id)
		if err != nil {
			return err
		}
		if r.State == store.StateDone {
			return ErrDone
		}
		return fmt.Errorf("run %s is %s but not managed here", id, r.State)
	case m.queue.Remove(id):
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
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
// out per script, within the script's -s.
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
			m.runs.Add(1)
			go m.execute(id, sc)
		}
		if !ok { // removed from the exectab by a reload
			for {
				id, ready := m.queue.Ready(name, now.Add(100*365*24*time.Hour))
				if !ready {
					break
				}
				go m.finish(id, name, nil, store.Outcome{Ended: store.EndedStartFailed, EndedAt: now}, false)
			}
		}
	}
}

// execute runs one detached run to its end.
func (m *Manager) execute(id string, sc *catalog.Script) {
	defer m.runs.Done()
	ended := func() {
		m.mu.Lock()
		m.running[sc.Name]--
		m.mu.Unlock()
		m.schedule()
	}
	r, err := m.cfg.Store.Get(m.ctx, id)
	if err != nil {
		m.log.Error().Err(err).Str("run", id).Msg("reading a run to start")
		ended()
		return
	}
	token := newToken()
	spec, err := m.spec(r, sc, token)
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
		// Attached runs of the script hold the slots: try again later.
		out.Close()
		m.mu.Lock()
		m.running[sc.Name]--
		m.queue.AddFront(sc.Name, id, time.Time{})
		m.mu.Unlock()
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
	if err := m.cfg.Store.MarkStarted(m.ctx, id, proc.Pid(), time.Now()); err != nil {
		m.log.Error().Err(err).Str("run", id).Msg("recording a start")
	}
	m.publish(feed.Event{Run: id, Name: sc.Name, State: "running"})
	m.mu.Lock()
	a := m.active[id]
	a.proc, a.token = proc, token
	cancelled := a.cancelled
	m.mu.Unlock()
	if cancelled {
		proc.Kill(child.ReasonCancelled)
	}

	// Progress is saved at most every progressEvery; a change that has to
	// wait is saved when the wait is over, even if the script goes quiet.
	var scan ProgressScanner
	var lastSaved time.Time
	var later <-chan time.Time
	dirty := false
	save := func() {
		m.saveProgress(id, sc.Name, scan.Progress())
		lastSaved, dirty, later = time.Now(), false, nil
	}
	for output := proc.Output(); output != nil; {
		select {
		case c, ok := <-output:
			if !ok {
				output = nil
				break
			}
			out.Write(c.Data)
			if scan.Write(c.Data) {
				dirty = true
			}
			c.Release()
			if wait := progressEvery - time.Since(lastSaved); dirty && wait <= 0 {
				save()
			} else if dirty && later == nil {
				later = time.After(wait)
			}
		case <-later:
			save()
		}
	}
	// A last progress line without its newline still counts.
	if scan.Write([]byte{'\n'}) {
		dirty = true
	}
	if dirty {
		save()
	}
	st := proc.Wait()
	out.Close()
	o := store.Outcome{Signal: st.SignalName(), EndedAt: time.Now()}
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
func (m *Manager) spec(r store.Run, sc *catalog.Script, token string) (child.Spec, error) {
	args, err := sc.Argv(r.Args)
	if err != nil {
		return child.Spec{}, err
	}
	cred, err := sc.Credential()
	if err != nil {
		return child.Spec{}, err
	}
	// The callback API: the script may post its result and progress back
	// with its own run's token, valid only while it runs.
	base := sc.Environ(m.cfg.Env)
	env := append(base[:len(base):len(base)], // never into the shared base
		"REXEC_URL="+m.URL(), "REXEC_RUN_ID="+r.ID, "REXEC_RUN_TOKEN="+token)
	spec := child.Spec{Path: sc.Path, Args: args, Dir: sc.Dir, Env: env, Credential: cred,
		Stderr: child.StderrMerge}
	if b, err := os.ReadFile(m.stdinPath(r.ID)); err == nil {
		spec.Stdin = bytes.NewReader(b)
	}
	return spec, nil
}

func (m *Manager) startFailed(r store.Run, err error) {
	m.log.Warn().Err(err).Str("run", r.ID).Str("script", r.Script).Msg("detached run could not start")
	m.finish(r.ID, r.Script, nil, store.Outcome{Ended: store.EndedStartFailed, EndedAt: time.Now()}, false)
}

// finish records a run as done, drops what only a live run needs, and
// deletes it when its script says so (-r).
func (m *Manager) finish(id, script string, args []string, o store.Outcome, remove bool) {
	if err := m.cfg.Store.MarkDone(m.ctx, id, o); err != nil {
		m.log.Error().Err(err).Str("run", id).Msg("recording the end of a run")
	}
	m.mu.Lock()
	var result json.RawMessage
	if a := m.active[id]; a != nil {
		result = a.result
	}
	m.mu.Unlock()
	m.publish(feed.Event{Run: id, Name: script, State: "done", Args: args, ExitCode: o.ExitCode, Signal: o.Signal,
		Ended: string(o.Ended), Result: result})
	os.Remove(m.stdinPath(id))
	if remove {
		if err := m.cfg.Store.Delete(m.ctx, id); err != nil {
			m.log.Error().Err(err).Str("run", id).Msg("removing a run (-r)")
		}
	}
	m.mu.Lock()
	if a := m.active[id]; a != nil {
		close(a.done)
		delete(m.active, id)
	}
	m.mu.Unlock()
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
	defer m.mu.Unlock()
	m.url = u
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

// PostProgress sets the progress of run id without printing lines, for the
// run itself holding token.
func (m *Manager) PostProgress(ctx context.Context, id, token string, p Progress) error {
	if err := m.callback(id, token); err != nil {
		return err
	}
	r, err := m.cfg.Store.Get(ctx, id)
	if err != nil {
		return err
	}
	m.saveProgress(id, r.Script, p)
	return nil
}

func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}
