// Package broker owns the table of running processes. One goroutine, the
// loop, holds the table; everything else talks to it over channels. It
// enforces alias uniqueness, the process limit (--max-procs) and each
// group's limit (a script's -s, for its attached and detached runs alike:
// the broker is the one place that counts them), and kills every process at
// shutdown. It never does I/O in its loop: it reserves a slot and replies at
// once, and the fork/exec happens in the caller's goroutine, so spawns are
// not serialised on one core.
//
// A process has an alias (a client's name for it, unique while it runs) or
// none: detached runs take anonymous slots, which no client alias can
// collide with. Whoever waits for a slot (the scheduler of detached runs)
// reads Freed, which signals every slot freed.
package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/metrics"
	"github.com/rs/zerolog"
)

// Error kinds. webapi maps them to HTTP statuses.
var (
	// ErrAliasInUse: a process with that alias is running.
	ErrAliasInUse = errors.New("a process with this alias is running")
	// ErrTooManyProcs: the --max-procs limit is reached.
	ErrTooManyProcs = errors.New("too many running processes")
	// ErrShuttingDown: the broker is stopping and starts nothing new.
	ErrShuttingDown = errors.New("server is shutting down")
	// ErrGroupBusy: the group's limit (a script's -s) is reached.
	ErrGroupBusy = errors.New("as many runs as allowed are running")
)

// ErrNoSuchAlias: no process with that alias is running.
var ErrNoSuchAlias = errors.New("no process with this alias is running")

// Labels describe a process to whoever lists the table (GET /process). The
// broker keeps them; it decides nothing by them.
type Labels struct {
	Command string // what runs: the executable as asked
	Script  string // the exectab script, "" for an ad-hoc command
	Who     string // who asked: "" for the admin
	Remote  string // the client's address
}

// Info is one row of the table, as List returns it.
type Info struct {
	Alias   string
	Labels  Labels
	Pid     int
	Started time.Time
}

// Limit caps how many processes of one group (one script) run at once.
// The zero Limit caps nothing.
type Limit struct {
	Group string
	Max   int // 0: no cap
}

// Options configure a Broker. Zero values take the defaults.
type Options struct {
	// StatusSize is the capacity of the status (exit) channel. Default 8.
	StatusSize int
	// MaxProcs limits how many processes run at once; 0 means no limit.
	MaxProcs int
	// Child are the settings every child gets (OnExit is the broker's).
	Child  child.Options
	Logger zerolog.Logger
	// Metrics counts the starts of attached runs (those with an alias),
	// the start failures of those, and every spawn that failed; nil counts
	// nothing. The ends of attached runs are counted where their status
	// is known (package stream), detached runs by package detached.
	Metrics *metrics.Runs
}

// Broker is the process table. Create it with New; stop it with Shutdown.
type Broker struct {
	opts Options
	log  zerolog.Logger

	// Channels into the loop. Senders: Start (create, started, release),
	// each child's OnExit (status), List (list), Running (count), Stop
	// (stop) and Shutdown (shutdown). Receiver: loop.
	// started and release are unbuffered on purpose: their send returns
	// only once the loop has the message, so an exit (or a new create of
	// the same alias) can never be handled before it.
	create   chan createMsg
	started  chan startedMsg
	release  chan key
	status   chan exitMsg
	list     chan chan []Info
	count    chan chan runningCounts
	stop     chan stopMsg
	shutdown chan struct{}
	// done is closed when the loop returns; every send selects on it.
	done chan struct{}

	// freed signals that a slot was freed (see Freed); its capacity of one
	// coalesces signals that nobody has read yet.
	freed chan struct{}

	// Owned by the loop goroutine only.
	table        map[key]entry  // by alias, or anonymous number
	groups       map[string]int // running (or starting) processes per Limit.Group
	lastAnon     uint64         // the number given to the last anonymous slot
	shuttingDown bool
}

// key names a row of the table: a client's alias, or (alias "") the number
// of an anonymous slot. The two kinds cannot collide.
type key struct {
	alias string
	anon  uint64
}

// entry is a row of the table.
type entry struct {
	proc    *child.Process // nil while reserved and starting
	group   string
	labels  Labels
	started time.Time
	// stop is the reason a Stop gave while the process was starting: it
	// is killed as soon as it is known.
	stop child.Reason
}

type createMsg struct {
	alias  string
	limit  Limit
	labels Labels
	reply  chan reserveReply
}

type stopMsg struct {
	alias  string
	reason child.Reason
	reply  chan error
}

type reserveReply struct {
	key key
	err error
}

type startedMsg struct {
	key  key
	proc *child.Process
	at   time.Time
}

type exitMsg struct {
	key   key
	freed chan struct{} // closed by the loop once the slot is free
}

// New starts a broker's loop.
func New(opts Options) *Broker {
	if opts.StatusSize <= 0 {
		opts.StatusSize = 8
	}
	b := &Broker{
		opts:     opts,
		log:      opts.Logger,
		create:   make(chan createMsg),
		started:  make(chan startedMsg),
		release:  make(chan key),
		status:   make(chan exitMsg, opts.StatusSize),
		list:     make(chan chan []Info),
		count:    make(chan chan runningCounts),
		stop:     make(chan stopMsg),
		shutdown: make(chan struct{}),
		done:     make(chan struct{}),
		freed:    make(chan struct{}, 1),
		table:    make(map[key]entry),
		groups:   make(map[string]int),
	}
	go b.loop()
	return b
}

// Start reserves alias and starts the process described by spec. The alias is
// free again once the process has been reaped, before its Done is closed.
// Errors: ErrAliasInUse, ErrTooManyProcs, ErrShuttingDown, or a start error
// of kind child.ErrStartFailed.
func (b *Broker) Start(alias string, spec child.Spec) (*child.Process, error) {
	return b.StartIn(alias, Limit{}, spec)
}

// StartIn is Start within a group's limit: beyond lim.Max processes of
// lim.Group running at once it returns ErrGroupBusy.
func (b *Broker) StartIn(alias string, lim Limit, spec child.Spec) (*child.Process, error) {
	slot, err := b.Reserve(alias, lim, Labels{Command: spec.Path})
	if err != nil {
		return nil, err
	}
	return slot.Start(spec)
}

// Slot is a place in the table, reserved and not yet used: Start uses it,
// Release gives it back. One of the two must be called, once.
type Slot struct {
	b      *Broker
	key    key
	script string // Labels.Script, for the metrics
}

// Reserve takes a slot for alias (anonymous when alias is ""), within the
// process limit and lim, for a process that labels describe. Errors:
// ErrAliasInUse, ErrTooManyProcs, ErrGroupBusy, ErrShuttingDown.
func (b *Broker) Reserve(alias string, lim Limit, labels Labels) (*Slot, error) {
	reply := make(chan reserveReply, 1)
	if err := send(b, b.create, createMsg{alias: alias, limit: lim, labels: labels, reply: reply}); err != nil {
		return nil, err
	}
	r := <-reply
	if r.err != nil {
		return nil, r.err
	}
	return &Slot{b: b, key: r.key, script: labels.Script}, nil
}

// Release gives back a slot that will not be started.
func (s *Slot) Release() { send(s.b, s.b.release, s.key) }

// Start starts the process described by spec in the slot. The slot is free
// again once the process has been reaped, before its Done is closed, or at
// once when the start fails (an error of kind child.ErrStartFailed).
func (s *Slot) Start(spec child.Spec) (*child.Process, error) {
	b, k := s.b, s.key
	// A child can exit before Start has told the loop it started; its exit
	// must not reach the loop first, or the loop would record a dead
	// process after forgetting it and the slot would stay taken.
	registered := make(chan struct{})
	opts := b.opts.Child
	opts.OnExit = func(*child.Process) {
		<-registered
		freed := make(chan struct{})
		if send(b, b.status, exitMsg{key: k, freed: freed}) == nil {
			select {
			case <-freed:
			case <-b.done:
			}
		}
	}
	p, err := child.Start(spec, opts)
	kind := s.kind()
	if err != nil {
		send(b, b.release, k)
		b.opts.Metrics.SpawnFailed(kind, err)
		if kind == metrics.Attached {
			b.opts.Metrics.EndedUnstarted(kind, s.script, metrics.StartFailed)
		}
		return nil, err
	}
	send(b, b.started, startedMsg{key: k, proc: p, at: time.Now()})
	close(registered)
	if kind == metrics.Attached {
		b.opts.Metrics.Started(kind, s.script)
	}
	return p, nil
}

// kind is the kind of run the slot is for: a client's alias is an attached
// run's, an anonymous slot a detached run's.
func (s *Slot) kind() metrics.Kind {
	if s.key.alias == "" {
		return metrics.Detached
	}
	return metrics.Attached
}

// List returns the processes with an alias (the attached runs; detached
// runs take anonymous slots), started and not yet reaped, by alias.
func (b *Broker) List() []Info {
	reply := make(chan []Info, 1)
	if send(b, b.list, reply) != nil {
		return nil
	}
	return <-reply
}

// MaxProcs is Options.MaxProcs: the most processes running at once, 0 for
// no limit.
func (b *Broker) MaxProcs() int { return b.opts.MaxProcs }

// Total is how many processes are started and not yet reaped, attached
// and detached: the sum of Running's counts.
func (b *Broker) Total() int {
	n := 0
	a, d := b.Running()
	for _, c := range a {
		n += c
	}
	for _, c := range d {
		n += c
	}
	return n
}

// Running counts the processes started and not yet reaped, by
// Labels.Script: those with an alias (attached runs) and the anonymous ones
// (detached runs) apart. It is what the metrics' gauges read at a scrape.
func (b *Broker) Running() (attached, detached map[string]int) {
	reply := make(chan runningCounts, 1)
	if send(b, b.count, reply) != nil {
		return nil, nil
	}
	c := <-reply
	return c.attached, c.detached
}

type runningCounts struct{ attached, detached map[string]int }

// Stop terminates the group of the process with that alias for reason
// (TERM, then KILL after the kill grace); one still starting is
// terminated as soon as it has started. ErrNoSuchAlias when none runs.
func (b *Broker) Stop(alias string, reason child.Reason) error {
	if alias == "" {
		return ErrNoSuchAlias
	}
	reply := make(chan error, 1)
	if err := send(b, b.stop, stopMsg{alias: alias, reason: reason, reply: reply}); err != nil {
		return err
	}
	return <-reply
}

// Freed signals that a slot was freed since it was last read: a process was
// reaped, or a reservation released. Signals that nobody read are
// coalesced into one. It has one reader, the scheduler of detached runs,
// which tries its queued runs again when it fires.
func (b *Broker) Freed() <-chan struct{} { return b.freed }

// send delivers msg to the loop over ch unless the loop has ended.
func send[T any](b *Broker, ch chan<- T, msg T) error {
	select {
	case ch <- msg:
		return nil
	case <-b.done:
		return ErrShuttingDown
	}
}

// Shutdown refuses new processes, terminates every running group (SIGTERM,
// then SIGKILL after the kill grace) and waits until all have been reaped or
// ctx ends. The loop stops once the table is empty.
func (b *Broker) Shutdown(ctx context.Context) error {
	select {
	case b.shutdown <- struct{}{}:
	case <-b.done:
	}
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop owns the table. It handles one message at a time and never blocks on
// anything but its own channels.
func (b *Broker) loop() {
	defer close(b.done)
	for {
		select {
		case m := <-b.create:
			k, err := b.reserve(m.alias, m.limit, m.labels)
			m.reply <- reserveReply{key: k, err: err}
		case m := <-b.started:
			e := b.table[m.key]
			e.proc, e.started = m.proc, m.at
			b.table[m.key] = e
			switch {
			case b.shuttingDown:
				m.proc.Kill(child.ReasonShutdown)
			case e.stop != "":
				m.proc.Kill(e.stop)
			}
		case reply := <-b.list:
			reply <- b.snapshot()
		case reply := <-b.count:
			reply <- b.running()
		case m := <-b.stop:
			m.reply <- b.stopAlias(m.alias, m.reason)
		case k := <-b.release:
			b.free(k)
		case m := <-b.status:
			b.free(m.key)
			close(m.freed)
		case <-b.shutdown:
			if !b.shuttingDown {
				b.shuttingDown = true
				b.log.Info().Int("running", len(b.table)).Msg("shutting down: terminating every process group")
				for _, e := range b.table {
					if e.proc != nil {
						e.proc.Kill(child.ReasonShutdown)
					}
				}
			}
		}
		if b.shuttingDown && len(b.table) == 0 {
			return
		}
	}
}

func (b *Broker) reserve(alias string, lim Limit, labels Labels) (key, error) {
	if b.shuttingDown {
		return key{}, ErrShuttingDown
	}
	k := key{alias: alias}
	if alias == "" {
		b.lastAnon++
		k.anon = b.lastAnon
	} else if _, ok := b.table[k]; ok { // running, or reserved and starting
		return key{}, ErrAliasInUse
	}
	if b.opts.MaxProcs > 0 && len(b.table) >= b.opts.MaxProcs {
		return key{}, ErrTooManyProcs
	}
	if lim.Max > 0 && b.groups[lim.Group] >= lim.Max {
		return key{}, ErrGroupBusy
	}
	b.table[k] = entry{group: lim.Group, labels: labels}
	if lim.Group != "" {
		b.groups[lim.Group]++
	}
	return k, nil
}

// free forgets k, counts it out of its group and signals Freed.
func (b *Broker) free(k key) {
	e, ok := b.table[k]
	if !ok {
		return
	}
	delete(b.table, k)
	if e.group != "" {
		if b.groups[e.group]--; b.groups[e.group] == 0 {
			delete(b.groups, e.group)
		}
	}
	select {
	case b.freed <- struct{}{}:
	default: // a signal is waiting already
	}
}

// snapshot lists the started processes that have an alias, by alias.
func (b *Broker) snapshot() []Info {
	var infos []Info
	for k, e := range b.table {
		if k.alias != "" && e.proc != nil {
			infos = append(infos, Info{Alias: k.alias, Labels: e.labels, Pid: e.proc.Pid(), Started: e.started})
		}
	}
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Alias, b.Alias) })
	return infos
}

// running counts the started processes by script, attached and detached
// apart.
func (b *Broker) running() runningCounts {
	c := runningCounts{attached: map[string]int{}, detached: map[string]int{}}
	for k, e := range b.table {
		switch {
		case e.proc == nil:
		case k.alias != "":
			c.attached[e.labels.Script]++
		default:
			c.detached[e.labels.Script]++
		}
	}
	return c
}

// stopAlias kills the process of alias, or marks it to be killed once it
// has started.
func (b *Broker) stopAlias(alias string, reason child.Reason) error {
	k := key{alias: alias}
	e, ok := b.table[k]
	switch {
	case !ok:
		return fmt.Errorf("%w: %q", ErrNoSuchAlias, alias)
	case e.proc != nil:
		e.proc.Kill(reason)
	default:
		e.stop = reason
		b.table[k] = e
	}
	return nil
}
