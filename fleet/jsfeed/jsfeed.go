// Package jsfeed is the event feed of a fleet: a feed.Feed whose events go
// through one JetStream stream that every host of the fleet publishes to
// and reads whole, so that a monitor on any host sees the run events and
// client events of all of them. An event's ID is its sequence number in the
// stream: one numbering for the fleet, so that a Last-Event-ID taken on one
// host replays on another. Each host fans the stream out to its own
// monitors through a feed.Hub made by feed.NewRelay, which keeps the replay
// window and the subscribers' bounded queues.
//
// It owns the stream's configuration, this host's reading of the stream and
// the queue of events waiting to be published; it knows nothing of HTTP,
// processes, or who may receive what.
package jsfeed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/fleet"
	"github.com/rs/zerolog"
)

// Options configure Open. Their defaults are filled in by Open alone.
type Options struct {
	// JS reaches the fleet's NATS servers. The feed never closes its
	// connection; the connection must outlive the feed.
	JS    jetstream.JetStream
	Names fleet.Names
	// Replicas of the stream; 0 means 1.
	Replicas int
	// Replay is how many events of each kind (runs', client events) each
	// host keeps for Subscribe to replay, as feed.NewHub's replay; below 1
	// means 1.
	Replay int
	// Queue is each subscriber's queue, as feed.NewHub's queue; below 1
	// means 1.
	Queue int
	// MaxMsgs caps the stream: beyond it, the oldest events are dropped.
	// 0 means DefaultMaxMsgs.
	MaxMsgs int64
	// Pending bounds the events that Publish has taken and the server has
	// not acknowledged: at most Pending wait to be sent, and Pending more
	// for their acknowledgement. Publish drops an event when Pending wait
	// already. 0 means DefaultPending.
	Pending int
	Logger  zerolog.Logger
}

// DefaultMaxMsgs is the stream's cap when Options.MaxMsgs is 0.
const DefaultMaxMsgs = 100_000

// DefaultPending is Options.Pending when it is 0.
const DefaultPending = 4096

const (
	// ackWait is how long a sent event waits for the server's
	// acknowledgement before it is counted unconfirmed.
	ackWait = 10 * time.Second
	// flushWait is how long Close gives the events still queued to be sent
	// and acknowledged.
	flushWait = 2 * time.Second
	// catchUpWait is how long Subscribe waits for this host to read the
	// stream up to an ID that the stream holds (one another host gave out
	// a moment ago).
	catchUpWait = 2 * time.Second
	// stopWait bounds each step of Close that waits on the server: the
	// consumer's end, its deletion.
	stopWait = 2 * time.Second
)

// Feed is a fleet's event feed, as one host sees it. It implements
// feed.Feed: Publish sends events to the stream, and every host's Feed,
// this one included, hands them to its subscribers as it reads them.
type Feed struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	name   string // the stream's
	names  fleet.Names
	log    zerolog.Logger
	// dropLog logs the events Publish drops, and ackLog those the server
	// did not confirm: at most one line a while each, with the count so
	// far, so that a full queue or a lost server does not flood the log.
	dropLog, ackLog zerolog.Logger
	hub             *feed.Hub // this host's window and subscribers

	// ctx lives until Close; Subscribe's waits and requests end with it.
	ctx    context.Context
	cancel context.CancelFunc
	closed atomic.Bool // set once, by Close

	// Publishing. Publish sends to out without blocking; the publisher
	// goroutine (publish) alone receives from it, until closing is closed
	// and what out holds is flushed, and then closes published.
	out       chan *nats.Msg
	closing   chan struct{}
	published chan struct{}
	stats     struct{ published, dropped, unconfirmed atomic.Uint64 }

	// Reading: one ordered consumer of the whole stream, from where the
	// window that Open read ends.
	ccMu sync.Mutex // guards cons and cc, which refollow replaces
	cons jetstream.Consumer
	cc   jetstream.ConsumeContext
	// resumed: an error was reported by the consumer; the next event read
	// is logged as the consumer resuming.
	resumed atomic.Bool
	// refollowing is set while refollow remakes the consumer; watching
	// counts the goroutines that watch the reading and remake it.
	refollowing atomic.Bool
	watching    sync.WaitGroup
	recvMu      sync.Mutex // one receive at a time

	mu sync.Mutex // guards the fields below: the consumer's handler writes them, Subscribe reads them
	// read is the sequence through which this host has read the stream
	// (its events delivered to the hub, or skipped); end is the last
	// sequence the stream is known to hold.
	read, end uint64
	waiters   []waiter // Subscribes waiting for read to reach their ID
}

// waiter is a Subscribe that waits until the stream is read through seq;
// ch is closed then.
type waiter struct {
	seq uint64
	ch  chan struct{}
}

var _ feed.Feed = (*Feed)(nil)

// Stats count what became of the events given to Publish.
type Stats struct {
	// Published events were stored in the stream.
	Published uint64
	// Dropped events were never stored: Publish found Pending events
	// waiting already, or the feed closed, or the event would not encode,
	// or the client would not send it.
	Dropped uint64
	// Unconfirmed events were sent, and the server refused them or did
	// not acknowledge them in time: they may be stored or lost.
	Unconfirmed uint64
}

// Open creates the fleet's event stream, or updates its configuration (the
// last host to open the feed sets it), reads the last o.Replay events of
// each kind that the stream holds into this host's window, and reads on
// from there until Close. ctx bounds Open's requests, not the Feed's life.
func Open(ctx context.Context, o Options) (*Feed, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	name := o.Names.Stream("EVENTS")
	stream, err := fleet.EnsureStream(ctx, o.JS, jetstream.StreamConfig{
		Name:        name,
		Description: "rexec: the run events and client events of the fleet " + o.Names.Fleet(),
		Subjects:    []string{o.Names.Subject("events", ">")},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxMsgs:     o.MaxMsgs,
		Discard:     jetstream.DiscardOld,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jsfeed: creating or updating the stream %s: %w", name, err)
	}
	log := o.Logger.With().Str("component", "jsfeed").Str("stream", name).Logger()
	f := &Feed{
		js: o.JS, stream: stream, name: name, names: o.Names, log: log,
		dropLog:   log.Sample(&zerolog.BurstSampler{Burst: 1, Period: 10 * time.Second}),
		ackLog:    log.Sample(&zerolog.BurstSampler{Burst: 1, Period: 10 * time.Second}),
		out:       make(chan *nats.Msg, o.Pending),
		closing:   make(chan struct{}),
		published: make(chan struct{}),
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	w, err := f.window(ctx, o.Replay)
	if err != nil {
		f.cancel()
		return nil, err
	}
	f.hub = feed.NewRelay(o.Replay, o.Queue, w.first)
	for _, e := range w.events {
		f.hub.Deliver(e)
	}
	f.read, f.end = w.last, w.last
	if err := f.follow(ctx, w.last+1); err != nil {
		f.cancel()
		return nil, fmt.Errorf("jsfeed: reading %s: %w", name, err)
	}
	// A consumer that stops reading while the stream goes on is remade.
	f.watching.Go(func() {
		fleet.WatchReader(f.ctx, fleet.WatchEvery,
			func() uint64 { f.mu.Lock(); defer f.mu.Unlock(); return f.read },
			func(ctx context.Context) (uint64, error) {
				s, err := f.js.Stream(ctx, f.name)
				if err != nil {
					return 0, err
				}
				return s.CachedInfo().State.LastSeq, nil
			},
			f.refollow)
	})
	go f.publish()
	log.Debug().Uint64("first", w.first).Uint64("last", w.last).Int("window", len(w.events)).Msg("event feed open")
	return f, nil
}

// fill checks o and fills in its defaults.
func (o *Options) fill() error {
	switch {
	case o.JS == nil:
		return errors.New("jsfeed: Options.JS is nil")
	case o.Names.Fleet() == "":
		return errors.New("jsfeed: Options.Names is not set (fleet.NewNames makes it)")
	case o.Replicas < 0, o.MaxMsgs < 0, o.Pending < 0:
		return fmt.Errorf("jsfeed: Options.Replicas (%d), MaxMsgs (%d) and Pending (%d) cannot be negative",
			o.Replicas, o.MaxMsgs, o.Pending)
	}
	o.Replicas = max(o.Replicas, 1)
	o.Replay = max(o.Replay, 1)
	o.Queue = max(o.Queue, 1)
	if o.MaxMsgs == 0 {
		o.MaxMsgs = DefaultMaxMsgs
	}
	if o.Pending == 0 {
		o.Pending = DefaultPending
	}
	return nil
}

// Publish stamps e with the time when its Time is zero and queues it for
// the stream, which numbers it; every host's subscribers get it from
// there. It never blocks: when Options.Pending events wait already, or the
// feed is closed, it drops e (Stats counts it, the log says so). Nor does
// it retry: of one goroutine's events, those that the stream stores are
// stored in the order published.
func (f *Feed) Publish(e feed.Event) {
	if f.closed.Load() {
		f.stats.dropped.Add(1)
		return
	}
	e.ID = 0 // the stream's sequence will be its ID
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	data, err := json.Marshal(e)
	if err != nil {
		f.drop(e, err)
		return
	}
	select {
	case f.out <- &nats.Msg{Subject: f.subject(e.Topic()), Data: data}:
	default:
		f.drop(e, errors.New("the queue of events to publish is full"))
	}
}

// drop counts and logs an event Publish could not queue.
func (f *Feed) drop(e feed.Event, why error) {
	n := f.stats.dropped.Add(1)
	f.dropLog.Warn().Err(why).Str("name", e.Name).Str("state", e.State).Str("run", e.Run).
		Uint64("dropped", n).Msg("event dropped")
}

// subject is the stream's subject of the events of t.
func (f *Feed) subject(t feed.Topic) string {
	kind := "run"
	if t.IsClient() {
		kind = "client"
	}
	return f.names.Subject("events", kind, fleet.Token(t.Name()))
}

// Subscribe watches topics, as feed.Feed's Subscribe. An after that the
// stream holds and this host has not read yet (another host gave it out a
// moment ago) is waited for, up to a bound, before it is placed.
func (f *Feed) Subscribe(after uint64, topics ...feed.Topic) (feed.Subscription, bool) {
	if after > 0 {
		f.catchUp(after)
	}
	return f.hub.Subscribe(after, topics...)
}

// catchUp returns once this host has read the stream through seq, or the
// stream does not hold seq yet, or catchUpWait has passed, or the feed is
// closed.
func (f *Feed) catchUp(seq uint64) {
	f.mu.Lock()
	read, known := f.read, seq <= f.end
	f.mu.Unlock()
	if seq <= read || f.closed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(f.ctx, catchUpWait)
	defer cancel()
	if !known {
		info, err := f.stream.Info(ctx)
		if err != nil {
			if f.ctx.Err() == nil {
				f.log.Warn().Err(err).Uint64("id", seq).Msg("could not learn whether the stream holds an ID to replay from")
			}
			return
		}
		if seq > info.State.LastSeq {
			return // not given yet: the hub says lost
		}
	}
	w := waiter{seq: seq, ch: make(chan struct{})}
	f.mu.Lock()
	if seq <= f.read {
		f.mu.Unlock()
		return
	}
	f.waiters = append(f.waiters, w)
	f.mu.Unlock()
	select {
	case <-w.ch:
		return
	case <-ctx.Done():
	}
	f.mu.Lock()
	for i, o := range f.waiters {
		if o.ch == w.ch {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			break
		}
	}
	f.mu.Unlock()
	if f.ctx.Err() == nil {
		f.log.Warn().Uint64("id", seq).Dur("waited", catchUpWait).
			Msg("this host has not read the stream up to an ID to replay from: the monitor is told its place is lost")
	}
}

// receive is the consumer's handler: it hands the event of m to the hub,
// with m's stream sequence as its ID, and wakes the Subscribes waiting for
// it. It runs on the consumer's goroutine, one message at a time.
func (f *Feed) receive(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		f.log.Error().Err(err).Str("subject", m.Subject()).Msg("a message of the event stream without its metadata")
		return
	}
	seq := md.Sequence.Stream
	// A consumer being replaced (refollow) may still deliver: one at a
	// time, and what was read is skipped.
	f.recvMu.Lock()
	defer f.recvMu.Unlock()
	f.mu.Lock()
	seen := seq <= f.read
	f.mu.Unlock()
	if seen {
		return
	}
	if f.resumed.Swap(false) {
		f.log.Info().Uint64("seq", seq).Msg("reading the event stream again")
	}
	if e, err := f.decode(m.Subject(), m.Data()); err != nil {
		f.log.Warn().Err(err).Uint64("seq", seq).Msg("skipped a message of the event stream")
	} else {
		e.ID = seq
		f.hub.Deliver(e)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq > f.read+1 {
		f.log.Warn().Uint64("from", f.read+1).Uint64("to", seq-1).
			Msg("the stream dropped events (its MaxMsgs) before this host read them: its monitors miss them")
	}
	f.read = max(f.read, seq)
	f.end = max(f.end, seq+md.NumPending)
	waiting := f.waiters[:0]
	for _, w := range f.waiters {
		if w.seq <= f.read {
			close(w.ch)
		} else {
			waiting = append(waiting, w)
		}
	}
	clear(f.waiters[len(waiting):])
	f.waiters = waiting
}

// follow starts reading the stream's events from from on, with a new
// ordered consumer.
func (f *Feed) follow(ctx context.Context, from uint64) error {
	cons, err := f.js.OrderedConsumer(ctx, f.name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{f.names.Subject("events", ">")},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(f.receive, jetstream.ConsumeErrHandler(f.consumeError))
	if err != nil {
		return err
	}
	f.ccMu.Lock()
	defer f.ccMu.Unlock()
	if f.closed.Load() {
		cc.Stop() // Close has stopped the one before
		return feed.ErrClosed
	}
	f.cons, f.cc = cons, cc
	return nil
}

// refollow remakes the consumer, from the event after the last one read,
// in the background. The ordered consumer recovers from a lost stream
// leader on its own; after a kill -9 of the host that led the stream it
// was seen not to, for minutes (fleet.WatchReader, which calls this). An
// event read twice is skipped.
func (f *Feed) refollow() {
	if f.closed.Load() || !f.refollowing.CompareAndSwap(false, true) {
		return
	}
	f.watching.Go(func() {
		defer f.refollowing.Store(false)
		f.ccMu.Lock()
		old := f.cc
		f.ccMu.Unlock()
		from, err := fleet.Refollow(f.ctx, old, stopWait,
			func() uint64 { f.mu.Lock(); defer f.mu.Unlock(); return f.read + 1 }, f.follow)
		switch {
		case errors.Is(err, feed.ErrClosed) || f.ctx.Err() != nil:
		case err != nil:
			f.log.Error().Err(err).Uint64("from", from).Msg("remaking the event stream's consumer: tried again at the next check")
		default:
			f.log.Warn().Uint64("from", from).Msg("the event stream's consumer was remade: it had stopped reading")
		}
	})
}

// decode is the event a message of the stream on subject holds: its data
// is the event's JSON, and its subject the one Publish gives the event.
func (f *Feed) decode(subject string, data []byte) (feed.Event, error) {
	var e feed.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("not an event on %s: %w", subject, err)
	}
	if want := f.subject(e.Topic()); subject != want {
		return e, fmt.Errorf("an event of %s on the subject %s", want, subject)
	}
	return e, nil
}

// consumeError is told of the consumer's errors. The ordered consumer
// recovers from them on its own (it makes a new consumer from the last
// event read), except from the end of the connection: this host's feed
// then ends its subscriptions, with feed.ErrClosed, and takes no more.
func (f *Feed) consumeError(_ jetstream.ConsumeContext, err error) {
	if f.closed.Load() {
		return
	}
	if errors.Is(err, jetstream.ErrConnectionClosed) {
		f.log.Error().Err(err).Msg("the NATS connection is closed: this host's event feed ends")
		f.hub.Close()
		return
	}
	f.resumed.Store(true)
	f.log.Warn().Err(err).Msg("reading the event stream; the consumer resumes from the last event read")
}

// Close ends every subscription, and those made after, with
// feed.ErrClosed, stops reading the stream, and gives the events still
// queued a moment (flushWait) to be published. Publish then drops events.
// Close returns within a few seconds whatever the server does. When the
// server is gone while the consumer was being remade, the consumer's end
// waits for nats.go's remaking to give up (its request's timeout, or the
// connection's close): Close does not wait for it, and a goroutine of the
// feed stops the consumer then.
func (f *Feed) Close() {
	if f.closed.Swap(true) {
		return
	}
	f.hub.Close()
	f.cancel()
	close(f.closing) // the publisher flushes meanwhile
	f.ccMu.Lock()
	cons, cc := f.cons, f.cc
	f.ccMu.Unlock()
	if fleet.StopConsuming(cc, stopWait) { // waits for a remaking of the consumer in progress
		if info := cons.CachedInfo(); info != nil && f.js.Conn().IsConnected() {
			ctx, cancel := context.WithTimeout(context.Background(), stopWait)
			err := f.js.DeleteConsumer(ctx, info.Stream, info.Name)
			cancel()
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				f.log.Debug().Err(err).Str("consumer", info.Name).Msg("deleting the event stream's consumer (the server ends it when idle)")
			}
		}
	} else {
		f.log.Warn().Dur("waited", stopWait).Msg("the event stream's consumer is being remade: it stops when that ends")
	}
	f.watching.Wait()
	<-f.published
}

// Stats counts what became of the events given to Publish so far.
func (f *Feed) Stats() Stats {
	return Stats{
		Published:   f.stats.published.Load(),
		Dropped:     f.stats.dropped.Load(),
		Unconfirmed: f.stats.unconfirmed.Load(),
	}
}
