// Package feed fans run events out to monitors. A Hub numbers each event,
// keeps the last ones in a bounded replay window (so a monitor that
// reconnects with the last ID it saw gets what it missed), and gives every
// subscriber a bounded queue: one that falls behind is dropped with a reason
// instead of slowing the publisher or the other subscribers. It knows
// nothing of HTTP or processes.
package feed

import (
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/store"
)

// Event is something that happened to a run, or a client event: one that a
// client or a plugin command emitted (State is StateClient, Name is the
// event's name, and Data, From and Perms are set), which belongs to no run.
type Event struct {
	ID    uint64    `json:"id"`
	Time  time.Time `json:"time"`
	Run   string    `json:"run,omitempty"` // every run event has one
	Name  string    `json:"name"`          // the script, or the client event's name
	State string    `json:"state"`         // queued, running, progress, done; or client
	// Args are a run's arguments, on the events of scripts that start no
	// process (-n): monitors are who they are for.
	Args     []string        `json:"args,omitempty"`
	Progress *store.Progress `json:"progress,omitempty"`
	ExitCode *int            `json:"exit_code,omitempty"`
	Signal   string          `json:"signal,omitempty"`
	Ended    string          `json:"ended,omitempty"` // how a done run ended
	// Result is what the run posted as its result, on its done event.
	Result json.RawMessage `json:"result,omitempty"`
	// Usage is what the run used by its cgroup, on its done event.
	Usage *cgroup.Report `json:"usage,omitempty"`

	// Data is a client event's payload, a JSON object.
	Data json.RawMessage `json:"data,omitempty"`
	// From is who emitted a client event: "plugin:<plugin>/<id>", or the
	// key that posted it.
	From string `json:"from,omitempty"`
	// Perms guard a client event: only subscribers that hold every one
	// receive it (the feed delivers it to every subscriber of its name; the
	// subscriber's side checks the perms).
	Perms []string `json:"perms,omitempty"`
}

// StateClient is the State of a client event.
const StateClient = "client"

// Topic is the topic of e: its client event's name, or its script.
func (e Event) Topic() Topic {
	if e.State == StateClient {
		return ClientEvents(e.Name)
	}
	return Script(e.Name)
}

// A Topic is what a subscription watches: the run events of a script, or
// the client events of a name.
type Topic struct {
	client bool
	name   string
}

// Script is the topic of the run events of the script name; Script("") is
// every script's.
func Script(name string) Topic { return Topic{name: name} }

// ClientEvents is the topic of the client events called name;
// ClientEvents(AllClientEvents) is every client event.
func ClientEvents(name string) Topic { return Topic{client: true, name: name} }

// AllClientEvents names every client event in ClientEvents.
const AllClientEvents = "*"

// Name is the script or client event name the topic watches. Name and
// IsClient are how an implementation of Feed outside this package (one
// shared by several hosts) reads a topic.
func (t Topic) Name() string { return t.name }

// IsClient reports whether t watches client events.
func (t Topic) IsClient() bool { return t.client }

// all is the topic that covers every topic of t's kind.
func (t Topic) all() Topic {
	if t.client {
		return ClientEvents(AllClientEvents)
	}
	return Script("")
}

// Publisher is what runs publish their events through.
type Publisher interface {
	// Publish numbers e (and stamps it with the time when e.Time is zero)
	// and hands it to the subscribers that watch its script. It never
	// blocks.
	Publish(e Event)
}

// Feed is the event feed of a server: detached runs publish to it, and
// monitors subscribe to it. *Hub is the single-host implementation.
type Feed interface {
	Publisher
	// Subscribe watches topics (more can be added with Watch). With
	// after > 0 (the last ID the monitor saw) the events after it that
	// the feed still keeps come first; lost reports that the feed cannot
	// place after (it is too old, from an earlier life of the server, or
	// not given yet). The feed keeps a window of each kind of event (runs',
	// client events): one kind never pushes the other out.
	Subscribe(after uint64, topics ...Topic) (s Subscription, lost bool)
	// Close ends every subscription, and those made after, with
	// ErrClosed; Publish then drops events.
	Close()
}

// Subscription is one monitor's subscription to a Feed. A subscriber that
// falls behind is dropped with ErrTooSlow instead of slowing the publisher.
type Subscription interface {
	// Events delivers the subscription's events, in the order published.
	Events() <-chan Event
	// Done is closed when the subscription ends; Err then says why.
	Done() <-chan struct{}
	// Err is why the subscription ended: ErrTooSlow, ErrClosed, or nil
	// while it goes on or after Close.
	Err() error
	// Watch adds a topic to watch.
	Watch(t Topic)
	// Close ends the subscription.
	Close()
}

var _ Feed = (*Hub)(nil)

// ErrTooSlow is why a subscriber that fell behind was dropped.
var ErrTooSlow = errors.New("monitor too slow: its queue of events was full")

// ErrClosed is why subscribers end when the hub closes.
var ErrClosed = errors.New("server is shutting down")

// Hub is the event feed of one server.
type Hub struct {
	replay, queue int

	first uint64 // ID of this hub's first event

	mu   sync.Mutex // guards the fields below
	next uint64     // ID of the next event
	// The last events, oldest first, at most replay of each kind: run
	// events (0) and client events (1), so that a busy emitter never
	// pushes runs' events out of the window.
	rings  [2]ring
	subs   map[*Sub]struct{}
	closed bool
}

// ring is the replay window of one kind of event.
type ring struct {
	events  []Event // oldest first
	dropped uint64  // the ID of the last event dropped from it; 0: none
}

// kind is the ring of events of t's kind.
func kind(t Topic) int {
	if t.client {
		return 1
	}
	return 0
}

// NewHub keeps the last replay run events and the last replay client
// events, and gives each subscriber a queue of queue events.
//
// Event IDs stay unique across restarts: a hub numbers its events from the
// time it was made, in microseconds (1.8e15 in 2027, exact in a JSON
// number), so a new server's first ID is above every ID of the one before
// it unless that one published more than a million events a second on
// average, or the clock went back.
func NewHub(replay, queue int) *Hub {
	return newHub(replay, queue, uint64(time.Now().UnixMicro()))
}

func newHub(replay, queue int, first uint64) *Hub {
	if replay < 1 {
		replay = 1
	}
	if queue < 1 {
		queue = 1
	}
	first = max(first, 1)
	return &Hub{replay: replay, queue: queue, first: first, next: first, subs: map[*Sub]struct{}{}}
}

// NewRelay returns a hub for a feed whose events are numbered elsewhere:
// by a log that several hosts share (package fleet/jsfeed), whose
// positions are the events' IDs. The log's events come in through
// Deliver, in the log's order; the hub keeps their IDs, and gives them the
// replay window (replay of each kind) and the subscribers' queues (queue)
// that NewHub's events get. first is the ID of the first event the log
// still holds: Subscribe cannot place an ID before first-1. Such a hub's
// IDs are the log's alone: its Publish must not be called.
func NewRelay(replay, queue int, first uint64) *Hub {
	return newHub(replay, queue, first)
}

// Publish numbers e and hands it to every subscriber that watches its
// topic. It never blocks.
func (h *Hub) Publish(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	e.ID = h.next
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	h.deliver(e)
}

// Deliver hands e, which keeps its ID, to the replay window and to every
// subscriber that watches its topic, as Publish does with the events it
// numbers; it is how a relay (NewRelay) gets the events of its log. IDs
// must grow: Deliver drops an event whose ID is below one the hub gave or
// delivered already, and reports whether it took e (a closed hub takes
// nothing). It never blocks.
func (h *Hub) Deliver(e Event) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || e.ID < h.next {
		return false
	}
	h.deliver(e)
	return true
}

// deliver puts e, numbered at or above next, in its ring and in the queues
// of its subscribers; h.mu is held.
func (h *Hub) deliver(e Event) {
	h.next = e.ID + 1
	r := &h.rings[kind(e.Topic())]
	if len(r.events) == h.replay {
		r.dropped = r.events[0].ID
		copy(r.events, r.events[1:])
		r.events = r.events[:len(r.events)-1]
	}
	r.events = append(r.events, e)
	for s := range h.subs {
		if !s.watches(e.Topic()) {
			continue
		}
		select {
		case s.c <- e:
		default:
			h.drop(s, ErrTooSlow)
		}
	}
}

// Subscribe watches topics (more can be added with Watch). With after > 0
// (the last ID the monitor saw) the events after it that are still in the
// replay window come first; lost reports that the hub cannot place after:
// events of the kinds of topics watched (runs', client events) after it
// are already out of the window, it is from an earlier life of the server
// (the window then replays all it has), or it is an ID not yet given (from
// the future: nothing is replayed).
func (h *Hub) Subscribe(after uint64, topics ...Topic) (Subscription, bool) {
	s := &Sub{hub: h, topics: map[Topic]bool{}, done: make(chan struct{})}
	var lost bool
	for _, t := range topics {
		s.topics[t] = true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var backlog []Event
	switch {
	case after == 0:
	case after >= h.next:
		lost = true // from the future: nothing to replay
	default:
		lost = after+1 < h.first
		var kinds [2][]Event // of each ring, the events to replay
		for _, t := range topics {
			r := &h.rings[kind(t)]
			lost = lost || after < r.dropped
			kinds[kind(t)] = r.events
		}
		backlog = s.merge(kinds[0], kinds[1], after)
	}
	s.c = make(chan Event, h.queue+len(backlog))
	for _, e := range backlog {
		s.c <- e
	}
	if h.closed {
		s.end(ErrClosed)
		return s, lost
	}
	h.subs[s] = struct{}{}
	return s, lost
}

// merge is the events of a and b (each oldest first) after the ID after
// that s watches, oldest first.
func (s *Sub) merge(a, b []Event, after uint64) []Event {
	var out []Event
	for len(a) > 0 || len(b) > 0 {
		var e Event
		if len(b) == 0 || len(a) > 0 && a[0].ID < b[0].ID {
			e, a = a[0], a[1:]
		} else {
			e, b = b[0], b[1:]
		}
		if e.ID > after && s.watches(e.Topic()) {
			out = append(out, e)
		}
	}
	return out
}

// Close ends every subscription.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		h.drop(s, ErrClosed)
	}
}

// drop ends s with err; h.mu is held.
func (h *Hub) drop(s *Sub, err error) {
	delete(h.subs, s)
	s.end(err)
}

// Sub is one monitor's subscription.
type Sub struct {
	hub    *Hub
	c      chan Event
	done   chan struct{}
	topics map[Topic]bool // guarded by hub.mu
	ended  bool           // guarded by hub.mu
	err    error          // guarded by hub.mu; set before done closes
}

// end closes done once, with err as the reason; hub.mu is held.
func (s *Sub) end(err error) {
	if !s.ended {
		s.ended, s.err = true, err
		close(s.done)
	}
}

func (s *Sub) watches(t Topic) bool {
	return s.topics[t] || s.topics[t.all()]
}

// Events delivers the subscription's events.
func (s *Sub) Events() <-chan Event { return s.c }

// Done is closed when the subscription ends; Err then says why.
func (s *Sub) Done() <-chan struct{} { return s.done }

// Err is why the subscription ended (nil while it goes on, or after Close).
func (s *Sub) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// Watch adds a topic to watch.
func (s *Sub) Watch(t Topic) {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.topics[t] = true
}

// Close ends the subscription.
func (s *Sub) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	delete(s.hub.subs, s)
	s.end(nil)
}
