// Package jsqueue is the queue of detached runs that the hosts of a fleet
// share, on NATS JetStream: a detached.SharedQueue. It owns the fleet's
// QUEUE stream (the queue's log of changes), its SLOTS stream (the tokens
// of each script's -s across the fleet) and this host's replica of the
// queue; it knows nothing of processes, the history or HTTP.
//
// The queue is a replicated state machine. Every change (add, front,
// remove, take) is an op published to the QUEUE stream; each host reads the
// whole stream in order and applies each op to its replica, a
// detached.NewMemQueue, so that every host computes the same result for
// each op: two hosts taking at once get different runs, or one gets none.
// A change returns once this host has applied its op, with the result the
// apply gave, so that a host reads its own writes. Position, Len, Scripts
// and Next read the replica, without the network.
//
// A script with a -s (Options.Limit) has a durable consumer of its own on
// the SLOTS stream whose MaxAckPending is the limit: a host holds one of
// its messages, a token, for each run of the script it runs, keeps it with
// InProgress, and gives it back (a nak: the token stays in the stream for
// the next host) when the run ends. A host that dies stops
// keeping its tokens: they come back after AckWait, while its runs, taken
// out of the queue, are never run again.
package jsqueue

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/fleet"
)

// Options configure Open. Their defaults are filled in by Open alone.
type Options struct {
	// JS reaches the fleet's NATS servers. The queue never closes its
	// connection; the connection must outlive the queue.
	JS    jetstream.JetStream
	Names fleet.Names
	// Replicas of the streams; 0 means 1.
	Replicas int
	// Host is this host's name in the fleet, and Labels what it carries:
	// a run with a detached.Target is taken only by a host that matches it.
	Host   string
	Labels []string
	// Limit is a script's -s, the most runs of it that may run at once
	// across the fleet; 0 (or a nil Limit) means no limit.
	Limit func(script string) int
	// AckWait is how long a token of a script's -s stays held without
	// news from its holder: a host that dies frees its slots after it.
	// 0 means DefaultAckWait.
	AckWait time.Duration
	Logger  zerolog.Logger
}

// DefaultAckWait is Options.AckWait when it is 0.
const DefaultAckWait = 5 * time.Second

const (
	// duplicates is the QUEUE stream's Duplicates window.
	duplicates = 2 * time.Minute
	// stopWait bounds each step of Close that waits on the server.
	stopWait = 2 * time.Second
	// readExpiry and readHeartbeat are the ordered consumer's pull
	// requests' life and idle heartbeat. The consumer is a replica of
	// one, on one server: when that server dies, the client remakes it
	// on another after two heartbeats missed. With nats.go's default
	// for ordered consumers (5s) a host's replica, and so its Ready,
	// stood still for 10s when another host died (TestHostDiesCluster).
	readExpiry    = 5 * time.Second
	readHeartbeat = time.Second
	// settleWait bounds Open's wait for a stream just made to answer.
	settleWait = 30 * time.Second
)

// Bounds of the waits, variables for the tests alone.
var (
	// opWait bounds each request to the server: a publish, a question
	// about a token's consumer. A request that the leader of a stream
	// that died took with it gets no answer: Ready says not ready after
	// opWait (and is called again), Add tries again.
	opWait = 2 * time.Second
	// applyWait bounds the wait for this host to apply an op it
	// published.
	applyWait = 10 * time.Second
	// retryFor is how long Add and AddFront try to publish their op
	// before they give up on it (logged as an error). It is shorter than
	// the stream's Duplicates window, within which a retried op that was
	// stored after all is dropped by its Nats-Msg-Id.
	retryFor = 30 * time.Second
)

// Queue is one host's view of the fleet's queue. It is safe for
// concurrent use.
type Queue struct {
	o   Options
	log zerolog.Logger
	// quietLog logs what would repeat at every tick (a token not kept
	// while NATS is away, a queue too long to scan): at most one line a
	// while.
	quietLog zerolog.Logger
	subject  string // of the QUEUE stream's ops
	// self names this opening of the queue in the ops it publishes.
	self   string
	nonces atomic.Uint64

	// ctx lives until Close: the waits of the methods end with it.
	ctx    context.Context
	cancel context.CancelFunc
	closed atomic.Bool
	// changed is Changed's: capacity 1, sent to without blocking.
	changed chan struct{}
	// freedSub hears the slots the other hosts give back.
	freedSub *nats.Subscription
	// quit is closed by Close: the keeper goroutine stops.
	quit chan struct{}
	// bg counts the goroutines Close waits for: the keeper and the
	// re-queuing of orphaned takes.
	bg sync.WaitGroup

	stream string // the QUEUE stream's name
	// refollowing is set while refollow remakes the consumer.
	refollowing atomic.Bool

	ccMu sync.Mutex         // guards cons and cc, which refollow replaces
	cons jetstream.Consumer // ordered, of the QUEUE stream
	cc   jetstream.ConsumeContext

	mu sync.Mutex // guards the fields below: the applier writes them, the methods read them
	// rep is the replica, applied through the stream sequence applied.
	rep     *replica
	applied uint64
	// waiters are the calls waiting for the result of their op, by nonce.
	waiters map[string]chan result
	// caughtUp is closed once applied reaches catchUp (Open's wait).
	catchUp  uint64
	caughtUp chan struct{}

	slots slots
}

var _ detached.SharedQueue = (*Queue)(nil)

// Open creates the fleet's QUEUE and SLOTS streams, or updates their
// configuration, reads the QUEUE stream from its first op into this host's
// replica, and returns once it has applied every op the stream held at
// Open. It goes on reading until Close. ctx bounds Open, not the Queue's
// life.
func Open(ctx context.Context, o Options) (*Queue, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	name := o.Names.Stream("QUEUE")
	subject := o.Names.Subject("queue")
	stream, err := fleet.EnsureStream(ctx, o.JS, jetstream.StreamConfig{
		Name:        name,
		Description: "rexec: the queue of detached runs of the fleet " + o.Names.Fleet() + ", as a log of changes",
		Subjects:    []string{subject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  duplicates,
	})
	if err != nil {
		return nil, fmt.Errorf("jsqueue: creating or updating the stream %s: %w", name, err)
	}
	slotStream := o.Names.Stream("SLOTS")
	if _, err := fleet.EnsureStream(ctx, o.JS, jetstream.StreamConfig{
		Name:        slotStream,
		Description: "rexec: the tokens of the scripts' -s across the fleet " + o.Names.Fleet(),
		Subjects:    []string{o.Names.Subject("slots", ">")},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		// One message per subject: a script's N tokens are the subjects
		// slots.<script>.1 to .N, so that hosts adding them at once add
		// each once, and there are never more than N.
		MaxMsgsPerSubject:    1,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
	}); err != nil {
		return nil, fmt.Errorf("jsqueue: creating or updating the stream %s: %w", slotStream, err)
	}
	var info *jetstream.StreamInfo
	if err := settling(ctx, func() (err error) { info, err = stream.Info(ctx); return err }); err != nil {
		return nil, fmt.Errorf("jsqueue: reading %s: %w", name, err)
	}
	q := &Queue{
		o: o, subject: subject, stream: name, self: rand.Text()[:12],
		log:      o.Logger.With().Str("component", "jsqueue").Str("host", o.Host).Logger(),
		changed:  make(chan struct{}, 1),
		quit:     make(chan struct{}),
		rep:      newReplica(),
		waiters:  map[string]chan result{},
		catchUp:  info.State.LastSeq,
		caughtUp: make(chan struct{}),
	}
	q.quietLog = q.log.Sample(&zerolog.BurstSampler{Burst: 1, Period: 10 * time.Second})
	q.slots.init(q, slotStream)
	if q.catchUp == 0 {
		close(q.caughtUp)
	}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	err = settling(ctx, func() error { return q.follow(ctx, 1) })
	if err != nil {
		q.cancel()
		return nil, fmt.Errorf("jsqueue: reading %s: %w", name, err)
	}
	select {
	case <-q.caughtUp:
	case <-ctx.Done():
		q.Close()
		return nil, fmt.Errorf("jsqueue: reading %s up to %d: %w", name, info.State.LastSeq, ctx.Err())
	}
	if q.freedSub, err = o.JS.Conn().Subscribe(o.Names.Subject("slots-freed"), q.heardFreed); err != nil {
		q.Close()
		return nil, fmt.Errorf("jsqueue: %w", err)
	}
	// A consumer that stops reading while the stream goes on is remade,
	// also when no op of this host's waits for it.
	q.bg.Go(func() {
		fleet.WatchReader(q.ctx, fleet.WatchEvery,
			func() uint64 { q.mu.Lock(); defer q.mu.Unlock(); return q.applied },
			func(ctx context.Context) (uint64, error) {
				s, err := q.o.JS.Stream(ctx, q.stream)
				if err != nil {
					return 0, err
				}
				return s.CachedInfo().State.LastSeq, nil
			},
			q.refollow)
	})
	q.bg.Add(1)
	go q.keep()
	q.log.Debug().Uint64("ops", info.State.LastSeq).Msg("queue open")
	return q, nil
}

// settling calls f until it succeeds, or fails otherwise than a stream
// just made does for a moment in a cluster (not found yet, JetStream
// unavailable while its group forms), or ctx ends, or settleWait has
// passed (Open may be given a context without a deadline).
func settling(ctx context.Context, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, settleWait)
	defer cancel()
	for {
		err := f()
		var apiErr *jetstream.APIError
		if err == nil || !(errors.Is(err, jetstream.ErrStreamNotFound) || errors.As(err, &apiErr) && apiErr.Code == 503) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fill checks o and fills in its defaults.
func (o *Options) fill() error {
	switch {
	case o.JS == nil:
		return errors.New("jsqueue: Options.JS is nil")
	case o.Names.Fleet() == "":
		return errors.New("jsqueue: Options.Names is not set (fleet.NewNames makes it)")
	case o.Replicas < 0, o.AckWait < 0:
		return fmt.Errorf("jsqueue: Options.Replicas (%d) and AckWait (%s) cannot be negative", o.Replicas, o.AckWait)
	}
	if err := fleet.CheckName(o.Host); err != nil {
		return fmt.Errorf("jsqueue: Options.Host: %w", err)
	}
	o.Replicas = max(o.Replicas, 1)
	o.Labels = slices.Clone(o.Labels)
	if o.Limit == nil {
		o.Limit = func(string) int { return 0 }
	}
	if o.AckWait == 0 {
		o.AckWait = DefaultAckWait
	}
	return nil
}

// may says whether this host may take a run of target t.
func (q *Queue) may(t detached.Target) bool { return mayTake(t, q.o.Host, q.o.Labels) }

// Add puts id at the back of script's queue, for any host.
func (q *Queue) Add(script, id string, notBefore time.Time) {
	q.AddFor(script, id, notBefore, detached.Target{})
}

// AddFor puts id at the back of script's queue, for the hosts t matches.
// It returns once this host has applied it. When the op cannot be
// published (NATS is down) it retries for retryFor, then logs an error:
// the run is then in no host's queue.
func (q *Queue) AddFor(script, id string, notBefore time.Time, t detached.Target) {
	q.change(op{Kind: opAdd, Script: script, ID: id, NotBefore: notBefore, Target: t})
}

// AddFront puts id back at the front of script's queue, with the target
// it had when this host took it. A token of the script's -s that this host
// held for id is given back once the run is queued again.
func (q *Queue) AddFront(script, id string, notBefore time.Time) {
	t, _ := q.slots.targetOf(id)
	q.change(op{Kind: opFront, Script: script, ID: id, NotBefore: notBefore, Target: t})
	q.slots.release(id)
}

// change publishes o, retrying for retryFor, and waits for this host to
// apply it.
func (q *Queue) change(o op) {
	if _, err := q.do(o, true); err != nil {
		q.log.Error().Err(err).Str("op", o.Kind).Str("run", o.ID).Str("script", o.Script).
			Msg("a change of the queue was not confirmed: it is applied when NATS stores it, if it does; else the run is in no host's queue")
	}
}

// Remove takes id out of the queue; false if it was not queued (or the
// queue could not be reached). A token this host held for id is given
// back only when id was queued: Remove of a run that this host took, and
// runs, leaves its slot to Done.
func (q *Queue) Remove(id string) bool {
	r, err := q.do(op{Kind: opRemove, ID: id}, false)
	if err != nil {
		q.log.Warn().Err(err).Str("run", id).Msg("removing a run from the queue")
		return false
	}
	if r.ok {
		q.slots.release(id)
	}
	return r.ok
}

// Ready takes the first run of script due at now that this host may take:
// it looks at the replica first, without the network; then, for a script
// with a -s, it gets a token of the script's slots; then it takes the run.
// It says not ready when the replica has no such run, when no token is
// free (Changed tells when to try again), and when the queue cannot be
// reached.
func (q *Queue) Ready(script string, now time.Time) (string, bool) {
	if q.closed.Load() {
		return "", false
	}
	q.mu.Lock()
	look := q.rep.find(script, now, q.may, false)
	q.mu.Unlock()
	if !look.ok {
		q.warnScan(script, look)
		return "", false
	}
	if !q.o.JS.Conn().IsConnected() {
		return "", false // at once: the manager's loop waits for Ready
	}
	var token jetstream.Msg
	if n := q.o.Limit(script); n > 0 {
		var err error
		if token, err = q.slots.acquire(script, n); err != nil {
			ev := q.log.Warn()
			if errors.Is(err, nats.ErrNoResponders) {
				// A stream or consumer a moment old, or electing its
				// leader: the next try, a tick later, finds it.
				ev = q.log.Debug()
			}
			ev.Err(err).Str("script", script).Msg("getting a slot of the script's -s across the fleet")
			return "", false
		}
		if token == nil {
			q.slots.starved.Store(true)
			return "", false
		}
	}
	r, err := q.do(op{Kind: opTake, Script: script, Now: now, Host: q.o.Host, Labels: q.o.Labels}, false)
	if err != nil {
		q.log.Warn().Err(err).Str("script", script).Msg("taking a run from the queue")
	}
	if err != nil || !r.ok {
		q.slots.ack(token)
		q.warnScan(script, r)
		return "", false
	}
	q.slots.took(r.id, script, r.target, token)
	return r.id, true
}

func (q *Queue) warnScan(script string, r result) {
	if r.scanned >= maxScan {
		q.quietLog.Warn().Str("script", script).Int("scanned", r.scanned).
			Msg("the script's queue starts with too many runs waiting for their time or for other hosts: this host looks no further")
	}
}

// Done gives back the token of the script's -s that this host held for
// run id, if any, and says so: to this host's manager (Changed), whose
// broker may have freed the run's slot before the token came back, and to
// the other hosts (a core NATS message on slots-freed), whose managers
// would otherwise wait for keep's next tick.
func (q *Queue) Done(id string) {
	if q.slots.release(id) {
		q.signal()
		_ = q.o.JS.Conn().Publish(q.o.Names.Subject("slots-freed"), []byte(q.o.Host))
	}
}

// Held is how many tokens of script's -s are held across the fleet: its
// consumer's messages delivered and not given back (a token given back a
// moment ago may still count). 0 for a script without a limit, or when
// the server cannot say.
func (q *Queue) Held(script string) int {
	n := q.o.Limit(script)
	if n <= 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(q.ctx, opWait)
	defer cancel()
	c, err := q.slots.consumer(ctx, script, n)
	if err != nil {
		return 0
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0
	}
	return info.NumAckPending
}

// heardFreed is a slot given back by another host: a Ready that found
// none free tries again.
func (q *Queue) heardFreed(m *nats.Msg) {
	if string(m.Data) != q.o.Host && q.slots.starved.Swap(false) {
		q.signal()
	}
}

// Position is id's 1-based place in its script's queue, 0 if not queued,
// as this host's replica has it.
func (q *Queue) Position(id string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.rep.position(id)
}

// Len is how many runs of script are queued, for any host.
func (q *Queue) Len(script string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.rep.length(script)
}

// Scripts lists the scripts with queued runs, sorted.
func (q *Queue) Scripts() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.rep.scripts()
}

// Next is the earliest notBefore in the future among the queued runs, for
// any host.
func (q *Queue) Next(now time.Time) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.rep.next(now)
}

// Changed receives a value when another host queued a run that this host
// may take, and every AckWait/5 while a run of a script with a -s waits
// here for a token (one may have been freed elsewhere).
func (q *Queue) Changed() <-chan struct{} { return q.changed }

func (q *Queue) signal() {
	select {
	case q.changed <- struct{}{}:
	default:
	}
}

var (
	// errClosed: the queue was closed while a call waited.
	errClosed = errors.New("jsqueue: the queue is closed")
	// errNotConnected: a Ready or a Remove while the connection to NATS
	// is down, which fail at once rather than hold the manager's loop.
	errNotConnected = errors.New("jsqueue: not connected to NATS")
)

// do publishes o and waits until this host has applied it, and returns
// the apply's result. With retry, a publish that fails is tried again
// with a backoff for retryFor; Nats-Msg-Id keeps a retried op that was
// stored after all from being applied twice.
func (q *Queue) do(o op, retry bool) (result, error) {
	if q.closed.Load() {
		return result{}, errClosed
	}
	o.From = q.self
	o.Nonce = q.self + "-" + strconv.FormatUint(q.nonces.Add(1), 10)
	data, err := json.Marshal(o)
	if err != nil {
		return result{}, err
	}
	ch := make(chan result, 1)
	q.mu.Lock()
	q.waiters[o.Nonce] = ch
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.waiters, o.Nonce)
		q.mu.Unlock()
	}()
	if err := q.publish(o.Nonce, data, retry); err != nil {
		// It may be stored all the same: a take is then put back by
		// the applier (see receive).
		return result{}, err
	}
	t := time.NewTimer(applyWait)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-t.C:
	case <-q.ctx.Done():
	}
	// The applier may have sent the result as the wait ended.
	q.mu.Lock()
	delete(q.waiters, o.Nonce)
	q.mu.Unlock()
	select {
	case r := <-ch:
		return r, nil
	default:
	}
	if q.ctx.Err() != nil {
		return result{}, errClosed
	}
	q.refollow()
	return result{}, fmt.Errorf("jsqueue: the op was stored but not read back within %s", applyWait)
}

// publish sends an op, once or, with retry, for retryFor with a backoff.
// Each attempt waits opWait at most, and no longer than retryFor in all.
// While the connection is down, nats.go keeps what is published in its
// reconnect buffer and sends it once connected again: an op given up on
// may still be stored and applied then (once, by its Nats-Msg-Id).
func (q *Queue) publish(nonce string, data []byte, retry bool) error {
	deadline := time.Now().Add(retryFor)
	backoff := 100 * time.Millisecond
	for {
		if !retry && !q.o.JS.Conn().IsConnected() {
			return errNotConnected
		}
		wait := opWait
		if retry {
			wait = min(wait, time.Until(deadline))
		}
		ctx, cancel := context.WithTimeout(q.ctx, wait)
		_, err := q.o.JS.Publish(ctx, q.subject, data, jetstream.WithMsgID(nonce))
		cancel()
		if err == nil {
			return nil
		}
		if !retry || q.ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			return fmt.Errorf("jsqueue: publishing an op: %w", err)
		}
		q.log.Warn().Err(err).Dur("retry_in", backoff).Msg("publishing an op of the queue")
		select {
		case <-time.After(backoff):
		case <-q.ctx.Done():
			return errClosed
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// receive is the applier: the ordered consumer's handler, called for each
// op of the stream in order, on one goroutine. It applies the op to the
// replica and hands the result to the call waiting for it.
func (q *Queue) receive(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		q.log.Error().Err(err).Msg("an op of the queue without its metadata")
		return
	}
	seq := md.Sequence.Stream
	var o op
	if err := json.Unmarshal(m.Data(), &o); err != nil {
		// Every host skips it alike.
		q.log.Error().Err(err).Uint64("seq", seq).Msg("skipped an op of the queue that does not decode")
	}
	q.mu.Lock()
	if seq <= q.applied {
		q.mu.Unlock()
		return
	}
	if seq > q.applied+1 {
		// The ordered consumer delivers every op once, in order: a gap
		// is ops deleted from the stream, and this host's replica is no
		// longer the others'.
		q.log.Error().Uint64("from", q.applied+1).Uint64("to", seq-1).Msg("ops of the queue missing from the stream: this host's replica may differ from the others'")
	}
	q.applied = seq
	r := q.rep.apply(o)
	// The result goes to its waiter under the mutex (the channel has
	// room for it): a waiter that gives up takes itself out under the
	// mutex, then looks at its channel once more, so a result is either
	// seen there or found to have no waiter.
	ch := q.waiters[o.Nonce]
	delete(q.waiters, o.Nonce)
	if ch != nil {
		ch <- r
	}
	if q.catchUp > 0 && seq >= q.catchUp {
		close(q.caughtUp)
		q.catchUp = 0
	}
	q.mu.Unlock()
	switch {
	case ch != nil:
	case o.From == q.self && o.Kind == opTake && r.ok:
		q.orphan(o, r)
	case o.From != q.self && (o.Kind == opAdd || o.Kind == opFront) && q.may(o.Target):
		q.signal()
	}
}

// orphan puts back at the front the run that a take of this host's took
// when the Ready that published it had stopped waiting: nobody would run
// it. It publishes from a goroutine of its own, as the applier cannot
// wait for its own apply.
func (q *Queue) orphan(o op, r result) {
	if q.closed.Load() {
		q.log.Error().Str("run", r.id).Str("script", o.Script).Msg("a take of this host was applied as the queue closed: the run is in no host's queue")
		return
	}
	q.log.Warn().Str("run", r.id).Str("script", o.Script).Msg("a take of this host was applied after Ready stopped waiting: the run goes back to the front")
	data, _ := json.Marshal(op{Kind: opFront, Script: o.Script, ID: r.id, Target: r.target,
		From: q.self, Nonce: q.self + "-" + strconv.FormatUint(q.nonces.Add(1), 10)})
	q.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opWait)
		defer cancel()
		if _, err := q.o.JS.Publish(ctx, q.subject, data, jetstream.WithMsgID(o.Nonce+"-orphan")); err != nil {
			q.log.Error().Err(err).Str("run", r.id).Msg("putting back a run taken for nobody: it is in no host's queue")
		}
	})
}

// follow starts reading the stream's ops from the op from on, with a new
// ordered consumer.
func (q *Queue) follow(ctx context.Context, from uint64) error {
	cons, err := q.o.JS.OrderedConsumer(ctx, q.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{q.subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(q.receive, jetstream.ConsumeErrHandler(q.consumeError),
		jetstream.PullExpiry(readExpiry), jetstream.PullHeartbeat(readHeartbeat))
	if err != nil {
		return err
	}
	q.ccMu.Lock()
	defer q.ccMu.Unlock()
	if q.closed.Load() {
		cc.Stop() // Close has stopped the one before
		return errClosed
	}
	q.cons, q.cc = cons, cc
	return nil
}

// refollow remakes the consumer of the ops, from the op after the last
// one applied, in the background. The ordered consumer recovers from a
// lost stream leader on its own; after a kill -9 of the host that led the
// stream it was seen not to, for minutes: an op this host stored and did
// not read back within applyWait says so (apply calls refollow), as does a
// reader that reads nothing while the stream holds more (fleet.WatchReader).
// The applier skips what it applied already.
func (q *Queue) refollow() {
	if q.closed.Load() || !q.refollowing.CompareAndSwap(false, true) {
		return
	}
	q.bg.Go(func() {
		defer q.refollowing.Store(false)
		q.ccMu.Lock()
		old := q.cc
		q.ccMu.Unlock()
		from, err := fleet.Refollow(q.ctx, old, stopWait,
			func() uint64 { q.mu.Lock(); defer q.mu.Unlock(); return q.applied + 1 }, q.follow)
		switch {
		case errors.Is(err, errClosed) || q.ctx.Err() != nil:
		case err != nil:
			q.log.Error().Err(err).Uint64("from", from).Msg("remaking the consumer of the queue's ops: tried again at the next check")
		default:
			q.log.Warn().Uint64("from", from).Msg("the consumer of the queue's ops was remade: it had stopped reading")
		}
	})
}

// consumeError is told of the ordered consumer's errors; it recovers from
// them on its own (from the last op read), except from the end of the
// connection.
func (q *Queue) consumeError(_ jetstream.ConsumeContext, err error) {
	if q.closed.Load() {
		return
	}
	if errors.Is(err, jetstream.ErrConnectionClosed) {
		q.log.Error().Err(err).Msg("the NATS connection is closed: this host's replica of the queue is no longer kept")
		return
	}
	q.log.Warn().Err(err).Msg("reading the queue's ops; the consumer resumes from the last op read")
}

// Close stops reading the stream and keeping tokens, and gives back the
// tokens this host still holds. Calls waiting for their op return. Close
// returns within a few seconds whatever the server does.
func (q *Queue) Close() {
	if q.closed.Swap(true) {
		return
	}
	q.cancel()
	close(q.quit)
	if q.freedSub != nil {
		_ = q.freedSub.Unsubscribe()
	}
	q.ccMu.Lock()
	cons, cc := q.cons, q.cc
	q.ccMu.Unlock()
	if fleet.StopConsuming(cc, stopWait) {
		if info := cons.CachedInfo(); info != nil && q.o.JS.Conn().IsConnected() {
			ctx, cancel := context.WithTimeout(context.Background(), stopWait)
			err := q.o.JS.DeleteConsumer(ctx, info.Stream, info.Name)
			cancel()
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				q.log.Debug().Err(err).Str("consumer", info.Name).Msg("deleting the queue's consumer (the server ends it when idle)")
			}
		}
	} else {
		q.log.Warn().Dur("waited", stopWait).Msg("the queue's consumer is being remade: it stops when that ends")
	}
	q.bg.Wait()
	q.slots.releaseAll()
}
