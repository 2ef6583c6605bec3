// Package jshistory is the run history of a fleet: a store.History shared
// by every rexec host of the fleet, replicated through one JetStream stream.
// The fleet's guest keys are replicated with it (guests.go), so that a key
// made on one host works on every host.
// Every write is an operation published to the stream; every host applies
// the stream's operations, in the stream's order, to its own SQLite copy (a
// *store.Store, see store.Entry), and reads go to that copy, so history
// queries stay local. A host that starts catches up on the operations it
// has not applied before it serves.
//
// It owns the stream REXEC_<fleet>_HISTORY and the applier of this host's
// copy; it never touches the copy but through store.Entry, nor the runs'
// output (Options.DeleteOutput and Options.OutputSize reach it).
package jshistory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/store"
)

// Errors of the fleet's history, besides the store's kinds.
var (
	// ErrClosed: the History was closed.
	ErrClosed = errors.New("jshistory: the history is closed")
	// ErrPending: the operation was published to the stream but this
	// host did not apply it within Options.Timeout (or before the
	// caller's context ended). It stays in the stream: every host,
	// this one included, applies it when it gets to it.
	ErrPending = errors.New("jshistory: the operation is in the stream but not applied here yet")
	// ErrNotApplied: the operation was published but its entry of the
	// stream could not be applied (see the log): no host applied it.
	ErrNotApplied = errors.New("jshistory: the operation's entry of the stream could not be applied")
	// ErrGap: the local copy has not applied entries the stream no longer
	// holds (they were deleted or purged), or has applied entries the
	// stream does not hold: it cannot catch up. Start this host with a
	// new, empty copy (and see the package's note on snapshots).
	ErrGap = errors.New("jshistory: the local copy cannot catch up with the stream")
)

// DefaultTimeout is how long a write waits for the stream and for this
// host's copy when Options.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Options configure a History.
type Options struct {
	JS       jetstream.JetStream
	Names    fleet.Names
	Replicas int    // of the stream; 0 means 1
	Host     string // this host's name (fleet.CheckName), recorded by MarkStarted
	// Local is this host's copy: a store that is the copy of this fleet's
	// stream already, or holds no run (see store.MakeReplica). The caller
	// opens it, and closes it after the History.
	Local  *store.Store
	Logger zerolog.Logger
	// DeleteOutput removes the output of run id, wherever the fleet keeps
	// it; nil when there is none to remove. It is called once per run
	// deleted, by the host that asked for the deletion (Delete,
	// DeleteEndedBefore), after the run's record was deleted.
	DeleteOutput func(ctx context.Context, id string) error
	// OutputSize is the size of run id's output so far, wherever the fleet
	// keeps it; nil when there is none to ask (sizes are then 0). MarkDone
	// and Recover record it with the run's end; reads give it for a run
	// that is running, as the single host's store reads the file. An
	// error makes MarkDone and Recover fail; a read keeps the recorded
	// size.
	OutputSize func(ctx context.Context, id string) (int64, error)
	// Timeout bounds each write, from its publication to its application
	// here, when the caller's context has no earlier deadline: past it,
	// the write fails (ErrPending once it is in the stream). 0 means
	// DefaultTimeout.
	Timeout time.Duration
}

// History is the fleet's store.History on one host. Create it with Open,
// stop it with Close.
type History struct {
	o      Options
	stream string // the stream's name
	subj   string // the subject of its operations
	log    zerolog.Logger

	// ctx is the context of the applier's calls to Local, cancelled by
	// Close; quit is closed by Close, done when the applier returned.
	ctx     context.Context
	cancel  context.CancelFunc
	quit    chan struct{}
	done    chan struct{}
	closing sync.Once
	// watching is the goroutine that watches the applier's reading.
	watching sync.WaitGroup

	mu sync.Mutex
	// applied is the last entry applied to Local; the applier advances it
	// (after delivering the entry's result), writers and WaitApplied
	// read it.
	applied uint64
	// advanced is closed, and replaced, each time applied advances.
	advanced chan struct{}
	// waiters are the writers waiting for their operation's result, by
	// the operation's ID: added by the writer before it publishes,
	// removed by the applier when it delivers, or by the writer when it
	// gives up.
	waiters map[string]chan result
	// msgs is the applier's iterator over the stream; Close stops it.
	msgs   jetstream.MessagesContext
	closed bool
	// lookup is the request for the stream's last entry in flight, and
	// nextLookup the one the reads that came after it wait for
	// (catchUp).
	lookup, nextLookup *lastSeq

	s jetstream.Stream // the stream, to ask where it ends (catchUp)
}

var _ store.History = (*History)(nil)

// result is what applying an operation said.
type result struct {
	err  error
	run  store.Run   // create: the run as recorded
	runs []store.Run // recover: the runs ended
	ids  []string    // retention: the runs deleted
}

// Open creates (or updates) the fleet's history stream, makes o.Local the
// copy of it if it is not yet, applies every operation of the stream that
// o.Local has not applied, and returns once it has, following the stream
// from then on. ctx bounds the catching up.
func Open(ctx context.Context, o Options) (*History, error) {
	switch {
	case o.JS == nil || o.Local == nil:
		return nil, errors.New("jshistory: Options.JS and Options.Local are required")
	case o.Names.Fleet() == "":
		return nil, errors.New("jshistory: Options.Names is required (fleet.NewNames)")
	case o.Replicas < 0:
		return nil, fmt.Errorf("jshistory: %d replicas", o.Replicas)
	}
	if err := fleet.CheckName(o.Host); err != nil {
		return nil, fmt.Errorf("jshistory: host name: %w", err)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	h := &History{
		o: o, stream: o.Names.Stream("HISTORY"), subj: o.Names.Subject("history"),
		log:  o.Logger.With().Str("component", "jshistory").Str("host", o.Host).Logger(),
		quit: make(chan struct{}), done: make(chan struct{}),
		advanced: make(chan struct{}), waiters: map[string]chan result{},
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())

	s, err := h.createStream(ctx)
	if err != nil {
		h.cancel()
		return nil, err
	}
	h.s = s
	info := s.CachedInfo()
	// The stream is named by its creation time too: a stream deleted and
	// made again is another log, which an old copy must not take for its
	// own (the server tells streams apart the same way).
	log := h.stream + "@" + info.Created.UTC().Format(time.RFC3339Nano)
	if err := o.Local.MakeReplica(ctx, log); err != nil {
		h.cancel()
		return nil, fmt.Errorf("jshistory: the local copy: %w", err)
	}
	rep, err := o.Local.Replica(ctx)
	if err != nil {
		h.cancel()
		return nil, fmt.Errorf("jshistory: the local copy: %w", err)
	}
	last, first := info.State.LastSeq, info.State.FirstSeq
	switch {
	case rep.Applied > last:
		h.cancel()
		return nil, fmt.Errorf("%w: it applied entries up to %d, the stream ends at %d", ErrGap, rep.Applied, last)
	case rep.Applied < last && first > rep.Applied+1:
		h.cancel()
		return nil, fmt.Errorf("%w: it applied entries up to %d, the stream starts at %d", ErrGap, rep.Applied, first)
	}
	h.applied = rep.Applied
	if err := h.follow(ctx); err != nil {
		h.cancel()
		return nil, err
	}
	go h.run()
	// An iterator that stops reading while the stream goes on is stopped:
	// the applier follows the stream again from what it applied.
	h.watching.Go(func() {
		fleet.WatchReader(h.ctx, fleet.WatchEvery, h.Applied,
			func(ctx context.Context) (uint64, error) {
				s, err := h.o.JS.Stream(ctx, h.stream)
				if err != nil {
					return 0, err
				}
				return s.CachedInfo().State.LastSeq, nil
			},
			func() {
				h.mu.Lock()
				msgs := h.msgs
				h.mu.Unlock()
				h.log.Warn().Uint64("applied", h.Applied()).Msg("the history stream's reader stopped reading: following the stream again")
				if msgs != nil {
					msgs.Stop()
				}
			})
	})
	if err := h.WaitApplied(ctx, last); err != nil {
		h.Close()
		return nil, fmt.Errorf("jshistory: catching up with the stream (applied %d of %d): %w", h.Applied(), last, err)
	}
	h.log.Info().Uint64("applied", last).Msg("history caught up with the stream")
	return h, nil
}

// createStream creates the stream, or updates it to this host's
// configuration.
func (h *History) createStream(ctx context.Context) (jetstream.Stream, error) {
	cfg := jetstream.StreamConfig{
		Name:        h.stream,
		Description: "rexec: the operations of the fleet's run history (fleet/jshistory)",
		Subjects:    []string{h.subj},
		Retention:   jetstream.LimitsPolicy, // every operation is kept: a host's copy is made from all of them
		Storage:     jetstream.FileStorage,
		Replicas:    h.o.Replicas,
		Duplicates:  2 * time.Minute, // a write's retries are published once (Nats-Msg-Id)
		// An entry deleted from the middle of the stream would be missed
		// by the copies made after, silently: denied, for good (the server
		// cannot lift it). A purge of the stream's first entries, which
		// compacting it behind a snapshot will need, is seen by the copies
		// that have not applied them (ErrGap): allowed.
		DenyDelete: true,
	}
	// Hosts starting together race to create it (fleet.EnsureStream).
	s, err := fleet.EnsureStream(ctx, h.o.JS, cfg)
	if err != nil {
		return nil, fmt.Errorf("jshistory: creating the stream %s: %w", h.stream, err)
	}
	return s, nil
}

// follow starts the iterator over the stream's operations after the last
// one applied.
func (h *History) follow(ctx context.Context) error {
	h.mu.Lock()
	from := h.applied + 1
	h.mu.Unlock()
	cons, err := h.o.JS.OrderedConsumer(ctx, h.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{h.subj},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return fmt.Errorf("jshistory: following the stream: %w", err)
	}
	msgs, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("jshistory: following the stream: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		msgs.Stop()
		return ErrClosed
	}
	h.msgs = msgs
	return nil
}

// Close stops the applier and fails the writes still waiting with
// ErrClosed. It does not close Options.Local.
func (h *History) Close() error {
	h.closing.Do(func() {
		h.mu.Lock()
		h.closed = true
		msgs := h.msgs
		h.mu.Unlock()
		close(h.quit)
		h.cancel()
		if msgs != nil {
			msgs.Stop()
		}
		<-h.done
		h.watching.Wait()
	})
	return nil
}

// run is the applier: the one goroutine that applies the stream's
// operations to Local, in order.
func (h *History) run() {
	defer close(h.done)
	for {
		h.mu.Lock()
		msgs := h.msgs
		h.mu.Unlock()
		msg, err := msgs.Next()
		if err != nil {
			if h.stopping() {
				return
			}
			// The ordered consumer recreates itself on the errors it
			// knows; any other ends this iterator: follow again.
			h.log.Warn().Err(err).Msg("reading the history stream: following it again")
			msgs.Stop()
			for {
				if !h.sleep(time.Second) {
					return
				}
				err := h.follow(h.ctx)
				if err == nil {
					break
				}
				if errors.Is(err, ErrClosed) {
					return
				}
				h.log.Error().Err(err).Msg("following the history stream")
			}
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			h.log.Error().Err(err).Msg("a message of the history stream without metadata: ignored")
			continue
		}
		if !h.apply(meta.Sequence.Stream, meta.Timestamp, msg.Data()) {
			return
		}
	}
}

// stopping says whether Close was called.
func (h *History) stopping() bool {
	select {
	case <-h.quit:
		return true
	default:
		return false
	}
}

// sleep waits d, or until Close; it says whether the History is still open.
func (h *History) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-h.quit:
		return false
	}
}

// apply applies the stream's entry seq, stored at ts, to Local, tells its
// writer if it waits here, and advances Applied. An entry that is no
// operation this version can apply is logged and skipped; a failure of
// Local (a full disk, a locked database) is retried until it passes, so
// that this copy never misses an operation the others applied. It returns
// false when Close interrupted it.
//
// Applying an entry and recording it as applied are one transaction of
// Local (store.Entry), so an entry is applied exactly once, even across a
// crash. Were it applied twice, the second would change nothing: a Create
// of an ID that exists, a start of a run not queued, an end of a run done,
// a delete of a run gone are refused; progress, task times and results are
// set to the same values; a retention or a recovery finds nothing more to
// delete or end, as no other operation came between; a guest key's create
// of an ID that exists and a delete of a key gone are refused.
func (h *History) apply(seq uint64, ts time.Time, data []byte) bool {
	if seq <= h.Applied() {
		return true // delivered again after the consumer was made again
	}
	o, derr := decodeOp(data)
	var res result
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		if derr != nil {
			res = result{err: fmt.Errorf("%w: entry %d: %v", ErrNotApplied, seq, derr)}
			if err := h.o.Local.Entry(seq).Skip(h.ctx); err != nil && !errors.Is(err, store.ErrApplied) {
				res.err = err
			}
		} else {
			res = h.applyOp(h.ctx, h.o.Local.Entry(seq), ts, &o)
		}
		// A refusal is applied (as a no-op), on every copy alike.
		if res.err == nil || store.Refused(res.err) || errors.Is(res.err, store.ErrApplied) || errors.Is(res.err, ErrNotApplied) {
			break
		}
		h.log.Error().Err(res.err).Uint64("seq", seq).Str("op", o.Kind).Dur("retry_in", wait).
			Msg("the local copy cannot take an operation of the stream: trying again")
		if !h.sleep(wait) {
			return false
		}
	}
	if derr != nil {
		h.log.Error().Err(derr).Uint64("seq", seq).Msg("an entry of the history stream cannot be applied: skipped")
	}
	h.mu.Lock()
	if ch, ok := h.waiters[o.ID]; ok && o.ID != "" {
		ch <- res
		delete(h.waiters, o.ID)
	}
	h.applied = seq
	close(h.advanced)
	h.advanced = make(chan struct{})
	h.mu.Unlock()
	return true
}

// applyOp applies o, the entry e stored at ts, to Local.
func (h *History) applyOp(ctx context.Context, e store.Entry, ts time.Time, o *op) result {
	switch o.Kind {
	case opCreate:
		r := store.Run{ID: o.Run, Script: o.Script, Args: o.Args, Who: o.Who, StartAt: o.StartAt, Timeout: o.Timeout, QueuedAt: ts}
		err := e.CreateAs(ctx, &r)
		return result{err: err, run: r}
	case opStart:
		return result{err: e.MarkStartedOn(ctx, o.Run, o.Host, o.Pid, o.At)}
	case opDone:
		out := store.Outcome{ExitCode: o.ExitCode, Signal: o.Signal, Ended: o.Ended, EndedAt: o.At,
			OutputTruncated: o.OutputTruncated, Usage: o.Usage}
		return result{err: e.MarkDoneAs(ctx, o.Run, out, o.OutputSize)}
	case opProgress:
		return result{err: e.SetProgress(ctx, o.Run, progress(o))}
	case opTasks:
		return result{err: e.SetTaskProgress(ctx, o.Run, progress(o), o.TaskStartedAt, fromSpans(o.Tasks))}
	case opResult:
		var r []byte
		if o.Result != nil {
			r = []byte(*o.Result)
		}
		return result{err: e.SetResult(ctx, o.Run, r)}
	case opDelete:
		return result{err: e.Delete(ctx, o.Run)}
	case opRetention:
		ids, err := e.DeleteEndedBefore(ctx, o.At)
		return result{err: err, ids: ids}
	case opRecover:
		runs, err := e.RecoverOn(ctx, o.Host, o.At, o.Sizes)
		return result{err: err, runs: runs}
	case opGuestCreate:
		g := o.Guest.store()
		return result{err: e.CreateGuestAs(ctx, &g)}
	case opGuestDelete:
		return result{err: e.DeleteGuest(ctx, o.GuestID)}
	}
	panic("jshistory: applyOp of kind " + o.Kind) // decodeOp lets no other through
}

func progress(o *op) store.Progress {
	if o.Progress == nil {
		return store.Progress{}
	}
	return *o.Progress
}

// Applied returns the last entry of the stream applied to the local copy.
func (h *History) Applied() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.applied
}

// WaitApplied waits until the local copy has applied the stream's entry
// seq, or ctx ends, or the History is closed (ErrClosed).
func (h *History) WaitApplied(ctx context.Context, seq uint64) error {
	for {
		h.mu.Lock()
		applied, advanced := h.applied, h.advanced
		h.mu.Unlock()
		if applied >= seq {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		case <-h.done:
			return ErrClosed
		}
	}
}
