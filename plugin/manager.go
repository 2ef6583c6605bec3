package plugin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/creachadair/jrpc2"
	"github.com/rs/zerolog"

	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/child"
)

// Error kinds of the Manager; the HTTP layer maps them to statuses.
var (
	ErrNoSuchComponent = errors.New("no such plugin component")
	ErrNotCommand      = errors.New("the component is not a command (type cmd): it is listed, not run")
	ErrNoSuchSession   = errors.New("no such plugin session")
	ErrBreakerOpen     = errors.New("the plugin's command keeps failing at start")
	ErrTooManyProcs    = errors.New("too many plugin processes")
	ErrTooManySessions = errors.New("too many plugin sessions")
	ErrClosed          = errors.New("the plugin manager is closed")
)

// Config holds a Manager's settings; zero values take the defaults.
type Config struct {
	// Lookup finds a component by its full id in the plugins in force
	// (Set.Component), at each start: a reload swaps them, and processes
	// already running keep their component.
	Lookup func(fullID string) (Component, bool)
	// CallTimeout is a call's deadline: past it, the process is killed
	// and the call fails with ErrDeadline. Default 5s (the seed's).
	CallTimeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL. Default 2s.
	KillGrace time.Duration
	// MaxProcs caps the processes running at once. Default 64.
	MaxProcs int
	// MaxSessions caps the sessions open at once. Default 1024.
	MaxSessions int
	// BreakerFailures is how many processes of a command in a row may end
	// by themselves before answering a call before its starts are refused
	// for BreakerCooldown. Defaults 3 and 30s.
	BreakerFailures int
	BreakerCooldown time.Duration
	// Callback returns the handler of the calls that peer, a process of
	// comp, makes to the server; nil, or a nil handler, refuses them all
	// (method not found).
	Callback func(comp Component, peer Peer) jrpc2.Handler
	// Cgroups, when set, gives each process a cgroup of its own with
	// Limits (the server's default limits of runs).
	Cgroups *cgroup.Tree
	Limits  cgroup.Limits
	Logger  zerolog.Logger
}

func (c *Config) defaults() {
	if c.CallTimeout <= 0 {
		c.CallTimeout = 5 * time.Second
	}
	if c.KillGrace <= 0 {
		c.KillGrace = 2 * time.Second
	}
	if c.MaxProcs <= 0 {
		c.MaxProcs = 64
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 1024
	}
	if c.BreakerFailures <= 0 {
		c.BreakerFailures = 3
	}
	if c.BreakerCooldown <= 0 {
		c.BreakerCooldown = 30 * time.Second
	}
}

// Manager owns the processes of plugin commands and the sessions that use
// them, as the seed's strategies say:
//
//   - one_for_one: each session (Start) gets a process of its own;
//     singleton: the first start starts one, and the next share it.
//   - Without a timeout a process serves one call, then stops (the
//     sessions on it end). With one, it stops after that long without a
//     call; a call in flight is never cut by the idle clock.
//   - A process that ends is not started again by itself: its sessions end,
//     and the next Start starts a new one. A command whose processes keep
//     ending before they answer a call is refused for a while (the
//     breaker).
type Manager struct {
	cfg Config

	mu       sync.Mutex
	sessions map[string]*session
	gone     goneSessions     // why the latest sessions ended, for their callers
	shared   map[string]*held // singleton processes by component
	procs    map[*proc]*held
	breakers map[string]*breaker
	closed   bool
}

// goneSessions remembers why the last maxGone sessions that ended with
// their process did, so that a call on one says why; older ones are only
// unknown.
type goneSessions struct {
	why  map[string]error
	ring []string
	next int
}

const maxGone = 256

func (g *goneSessions) add(id string, why error) {
	if g.why == nil {
		g.why, g.ring = map[string]error{}, make([]string, maxGone)
	}
	delete(g.why, g.ring[g.next])
	g.ring[g.next] = id
	g.why[id] = why
	g.next = (g.next + 1) % maxGone
}

// session is one Start: who started it, and the process it uses.
type session struct {
	id    string
	owner string
	held  *held
}

// held is a running process and how it is used.
type held struct {
	proc     *proc
	comp     Component
	inflight int         // calls in flight
	answered bool        // it has answered a call: it started well
	stopping bool        // stop has been decided: no new call
	idle     *time.Timer // the idle clock, while no call is in flight
}

// breaker counts a command's processes that ended before answering a call.
type breaker struct {
	failures  int
	openUntil time.Time
}

// NewManager returns a Manager; Close stops its processes.
func NewManager(cfg Config) *Manager {
	cfg.defaults()
	return &Manager{
		cfg:      cfg,
		sessions: map[string]*session{},
		shared:   map[string]*held{},
		procs:    map[*proc]*held{},
		breakers: map[string]*breaker{},
	}
}

// Start opens a session of owner (who asks: only the same owner may call
// it or stop it) on the command fullID ("<plugin>/<id>") and returns its
// id.
func (m *Manager) Start(fullID, owner string) (string, error) {
	comp, err := m.component(fullID)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return "", ErrClosed
	case len(m.sessions) >= m.cfg.MaxSessions:
		return "", fmt.Errorf("%w: at most %d", ErrTooManySessions, m.cfg.MaxSessions)
	}
	if b := m.breakers[fullID]; b != nil && time.Now().Before(b.openUntil) {
		return "", fmt.Errorf("%w: %d processes in a row ended before answering a call; starts are refused until %s",
			ErrBreakerOpen, b.failures, b.openUntil.UTC().Format(time.RFC3339))
	}
	h := m.shared[fullID]
	if h == nil || h.stopping || !h.proc.alive() {
		if h, err = m.startLocked(comp); err != nil {
			return "", err
		}
		if comp.Strategy == Singleton {
			m.shared[fullID] = h
		}
	}
	id := newSessionID()
	m.sessions[id] = &session{id: id, owner: owner, held: h}
	return id, nil
}

// component is the command fullID of the plugins in force.
func (m *Manager) component(fullID string) (Component, error) {
	var comp Component
	ok := false
	if m.cfg.Lookup != nil {
		comp, ok = m.cfg.Lookup(fullID)
	}
	switch {
	case !ok:
		return Component{}, fmt.Errorf("%w: %q", ErrNoSuchComponent, fullID)
	case comp.Type != TypeCmd:
		return Component{}, fmt.Errorf("%w: %q is of type %q", ErrNotCommand, fullID, comp.Type)
	}
	return comp, nil
}

// startLocked starts a process of comp.
func (m *Manager) startLocked(comp Component) (*held, error) {
	if len(m.procs) >= m.cfg.MaxProcs {
		return nil, fmt.Errorf("%w: at most %d", ErrTooManyProcs, m.cfg.MaxProcs)
	}
	var cb func(Peer) jrpc2.Handler
	if m.cfg.Callback != nil {
		cb = func(peer Peer) jrpc2.Handler { return m.cfg.Callback(comp, peer) }
	}
	p, err := startProc(comp, procOptions{killGrace: m.cfg.KillGrace, cgroups: m.cfg.Cgroups, limits: m.cfg.Limits,
		log: m.cfg.Logger, callback: cb, onEnd: m.ended})
	if err != nil {
		return nil, err
	}
	h := &held{proc: p, comp: comp}
	m.procs[p] = h
	return h, nil
}

// refuseCallback answers a plugin's call to the server when nothing serves
// them: as a method that is not there, which is also the answer to a method
// its perms do not grant.
func refuseCallback(_ context.Context, req *jrpc2.Request) (any, error) {
	return nil, notGranted(req.Method())
}

// Call calls method on the session's process with params (raw JSON; nil for
// none) and returns its result. An error of the plugin is a *jrpc2.Error;
// a process that ended, or ends before it answers, is ErrEnded (or
// ErrDeadline) and ends the session.
func (m *Manager) Call(ctx context.Context, sessionID, owner, method string, params json.RawMessage) (json.RawMessage, error) {
	m.mu.Lock()
	s := m.sessions[sessionID]
	if s != nil && s.owner != owner {
		s = nil // another's session: as if there were none
	}
	if s == nil {
		why := m.gone.why[sessionID]
		m.mu.Unlock()
		if why != nil {
			return nil, &goneError{id: sessionID, why: why}
		}
		return nil, fmt.Errorf("%w: %q (it was stopped, or its process ended)", ErrNoSuchSession, sessionID)
	}
	h := s.held
	h.inflight++
	if h.idle != nil {
		h.idle.Stop()
		h.idle = nil
	}
	m.mu.Unlock()

	result, err := h.proc.call(ctx, method, params, m.cfg.CallTimeout)

	m.mu.Lock()
	defer m.mu.Unlock()
	h.inflight--
	var rpcErr *jrpc2.Error
	if err == nil || errors.As(err, &rpcErr) {
		h.answered = true
		if b := m.breakers[h.comp.FullID()]; b != nil {
			b.failures = 0
		}
	}
	switch {
	case h.stopping:
	case h.comp.Timeout == 0:
		// A process without a timeout serves one call.
		m.stopLocked(h, errOneCall)
	case h.inflight == 0:
		h.idle = time.AfterFunc(h.comp.Timeout, func() { m.idleStop(h) })
	}
	return result, err
}

// idleStop stops h if it is still idle: the clock may have fired just as a
// call came in.
func (m *Manager) idleStop(h *held) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h.inflight == 0 && !h.stopping {
		h.proc.log.Debug().Dur("timeout", h.comp.Timeout).Msg("plugin process idle: stopping it")
		m.stopLocked(h, fmt.Errorf("%w: stopped after %s without a call (its timeout)", ErrEnded, h.comp.Timeout))
	}
}

// Stop ends a session. A one_for_one process stops with it; a singleton's
// stays until its idle clock (or its one call) stops it.
func (m *Manager) Stop(sessionID, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[sessionID]
	if s == nil || s.owner != owner {
		return fmt.Errorf("%w: %q", ErrNoSuchSession, sessionID)
	}
	m.endSessionLocked(s)
	if s.held.comp.Strategy != Singleton {
		m.stopLocked(s.held, nil)
	}
	return nil
}

// CallOnce starts a session of owner on fullID, calls method and stops the
// session.
func (m *Manager) CallOnce(ctx context.Context, fullID, owner, method string, params json.RawMessage) (json.RawMessage, error) {
	id, err := m.Start(fullID, owner)
	if err != nil {
		return nil, err
	}
	defer m.Stop(id, owner)
	res, err := m.Call(ctx, id, owner, method, params)
	var gone *goneError
	if errors.As(err, &gone) {
		// The process ended between the start and the call: that is the
		// call's failure, not a session's.
		return nil, gone.why
	}
	return res, err
}

// errOneCall is why the session of a command without a timeout ends after
// its call.
var errOneCall = fmt.Errorf("%w: it served its one call (the command has no timeout: start a session for each call)", ErrEnded)

// goneError is a call on a session that ended with its process: no such
// session, and why.
type goneError struct {
	id  string
	why error
}

func (e *goneError) Error() string {
	return fmt.Sprintf("%s: %q: %s", ErrNoSuchSession, e.id, e.why)
}

func (e *goneError) Is(target error) bool { return target == ErrNoSuchSession }

func (m *Manager) endSessionLocked(s *session) { delete(m.sessions, s.id) }

// stopLocked decides that h stops: no new call, its sessions end (why
// says why, to a later call on one; nil for a session's own Stop), and its
// process is sent SIGTERM (SIGKILL after the grace) in the background.
// ended then forgets it.
func (m *Manager) stopLocked(h *held, why error) {
	if h.stopping {
		return
	}
	h.stopping = true
	m.endSessionsLocked(h, why)
	if h.idle != nil {
		h.idle.Stop()
		h.idle = nil
	}
	if m.shared[h.comp.FullID()] == h {
		delete(m.shared, h.comp.FullID())
	}
	go h.proc.stop(child.ReasonCancelled)
}

// ended is called once a process has ended: it forgets the process, ends
// its sessions, and counts it against its command's breaker when it ended by
// itself before answering a call.
func (m *Manager) ended(p *proc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.procs[p]
	if h == nil {
		return
	}
	delete(m.procs, p)
	if h.idle != nil {
		h.idle.Stop()
	}
	byItself := !h.stopping && !errors.Is(p.Why(), ErrDeadline)
	h.stopping = true
	if m.shared[h.comp.FullID()] == h {
		delete(m.shared, h.comp.FullID())
	}
	if byItself && !h.answered {
		id := h.comp.FullID()
		b := m.breakers[id]
		if b == nil {
			b = &breaker{}
			m.breakers[id] = b
		}
		b.failures++
		if b.failures >= m.cfg.BreakerFailures {
			b.openUntil = time.Now().Add(m.cfg.BreakerCooldown)
			p.log.Warn().Int("failures", b.failures).Time("until", b.openUntil).Err(p.Why()).
				Msg("plugin command keeps ending before it answers: its starts are refused for a while")
		}
	}
	m.endSessionsLocked(h, p.Why())
}

// endSessionsLocked ends the sessions on h, and remembers why (when there is
// a why) for later calls on them.
func (m *Manager) endSessionsLocked(h *held, why error) {
	for id, s := range m.sessions {
		if s.held == h {
			m.endSessionLocked(s)
			if why != nil {
				m.gone.add(id, why)
			}
		}
	}
}

// Close stops every process and refuses new sessions; it returns once the
// processes have ended.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	var ps []*proc
	for p, h := range m.procs {
		h.stopping = true
		if h.idle != nil {
			h.idle.Stop()
		}
		ps = append(ps, p)
	}
	clear(m.sessions)
	clear(m.shared)
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { p.stop(child.ReasonShutdown) })
	}
	wg.Wait()
}

// Stats is what a Manager holds now.
type Stats struct {
	Procs, Sessions int
}

// Stats counts the Manager's processes and sessions.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Stats{Procs: len(m.procs), Sessions: len(m.sessions)}
}

func newSessionID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
