package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/creachadair/jrpc2"

	"github.com/rexec/rexec/feed"
)

// Client events, the seed's pub/sub: a client (POST /plugins/v1/events) or
// a command (event.emit) emits an event with a name and a JSON object, and
// every subscriber of that name that may receive it gets it: on the event
// stream of /scripts/v1 for a client, as a JSON-RPC notification (the
// event's name as its method, its data as its params) for a command that
// called event.subscribe.
//
// The rights are perms, as everywhere in plugins: event.emit[name] to emit,
// event.subscribe[name] to receive (without a context: every name), and an
// event may be guarded by perms of its own, which a subscriber must all hold
// to receive it (the seed's guards). The admin holds every perm.

// The perms and methods of client events.
const (
	// MethodEventEmit emits a client event: params ["name", {data},
	// ["guard perm", ...]] as the seed writes them, or {"name", "data",
	// "perms"}.
	MethodEventEmit = "event.emit"
	// MethodEventSubscribe makes the command receive the client events
	// called name: params ["name"] or {"name"}; "*" is every event its
	// perms let it receive.
	MethodEventSubscribe = "event.subscribe"
	// MethodEventUnsubscribe undoes an event.subscribe.
	MethodEventUnsubscribe = "event.unsubscribe"
	// MethodEventSubscriptions lists the names the command subscribed to.
	MethodEventSubscriptions = "event.subscriptions"
)

// Bounds of a client event.
const (
	// MaxEventName bounds an event's name, in bytes.
	MaxEventName = 128
	// MaxEventData bounds an event's data, as a run's posted result is
	// bounded: events are kept in the feed's replay window.
	MaxEventData = 64 << 10
	// MaxEventPerms bounds the perms that guard one event.
	MaxEventPerms = 16
	// MaxSubscriptions bounds the names one command's process subscribes
	// to.
	MaxSubscriptions = 64
)

// EventError says what is wrong with a client event, and in which field
// (name, data or perms) of the request that emits it.
type EventError struct {
	Field string
	Msg   string
}

func (e *EventError) Error() string { return e.Msg }

// CheckEventName checks the name of a client event: 1 to MaxEventName
// letters, digits, '.', '_', ':', '/' and '-' (so it fits in a perm's
// context: event.subscribe[backup.step]).
func CheckEventName(name string) error {
	if name == "" || len(name) > MaxEventName {
		return &EventError{"name", fmt.Sprintf("an event's name has 1 to %d bytes", MaxEventName)}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '/' || c == '-') {
			return &EventError{"name", fmt.Sprintf("invalid event name %s: letters, digits, '.', '_', ':', '/' and '-' only", quote(name))}
		}
	}
	return nil
}

// NewEvent checks a client event, from the request or call that emits it,
// and makes it the feed's event: name (CheckEventName), data (a JSON object
// of at most MaxEventData bytes; none is {}), the perms that guard it (each
// a perm, at most MaxEventPerms), and who emitted it.
func NewEvent(name string, data json.RawMessage, perms []string, from string) (feed.Event, error) {
	if err := CheckEventName(name); err != nil {
		return feed.Event{}, err
	}
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0 || string(data) == "null":
		data = json.RawMessage("{}")
	case len(data) > MaxEventData:
		return feed.Event{}, &EventError{"data", fmt.Sprintf("an event's data has at most %d bytes, not %d", MaxEventData, len(data))}
	case data[0] != '{' || !json.Valid(data) || !utf8.Valid(data):
		return feed.Event{}, &EventError{"data", "an event's data is a JSON object, in UTF-8"}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return feed.Event{}, &EventError{"data", "an event's data is a JSON object"}
	}
	if len(perms) > MaxEventPerms {
		return feed.Event{}, &EventError{"perms", fmt.Sprintf("an event is guarded by at most %d perms, not %d", MaxEventPerms, len(perms))}
	}
	for _, p := range perms {
		if _, err := parsePerm(p); err != nil {
			return feed.Event{}, &EventError{"perms", err.Error()}
		}
	}
	if len(perms) == 0 {
		perms = nil
	}
	return feed.Event{Name: name, State: feed.StateClient, Data: compact.Bytes(), Perms: slices.Clone(perms), From: from}, nil
}

// ParsePerms parses the perms of a key, which were checked when it was
// made; one that does not parse grants nothing.
func ParsePerms(perms []string) []Perm {
	out := make([]Perm, 0, len(perms))
	for _, s := range perms {
		if p, err := parsePerm(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// MayEmit says whether a holder of perms may emit the client event name,
// and if not, which perm it lacks.
func MayEmit(perms []Perm, name string) error {
	if grants(perms, MethodEventEmit, name) {
		return nil
	}
	return fmt.Errorf("%w: emitting the event %s needs the perm %q (or %q)", ErrForbidden, quote(name),
		MethodEventEmit+"["+name+"]", MethodEventEmit)
}

// MaySubscribe says whether a holder of perms may subscribe to the client
// events called name ("*": those of every name it may receive, which needs
// some event.subscribe perm), and if not, which perm it lacks.
func MaySubscribe(perms []Perm, name string) error {
	if name == feed.AllClientEvents {
		if grantsAny(perms, MethodEventSubscribe) {
			return nil
		}
		return fmt.Errorf("%w: receiving client events needs the perm %q, or %q for some name", ErrForbidden,
			MethodEventSubscribe, MethodEventSubscribe+"[name]")
	}
	if err := CheckEventName(name); err != nil {
		return err
	}
	if grants(perms, MethodEventSubscribe, name) {
		return nil
	}
	return fmt.Errorf("%w: receiving the event %s needs the perm %q (or %q)", ErrForbidden, quote(name),
		MethodEventSubscribe+"["+name+"]", MethodEventSubscribe)
}

// Receives says whether a holder of perms receives the client event e: it
// may subscribe to e's name, and holds every perm that guards e (a perm
// without a context holds it in every context).
func Receives(perms []Perm, e feed.Event) bool {
	if !grants(perms, MethodEventSubscribe, e.Name) {
		return false
	}
	for _, s := range e.Perms {
		g, err := parsePerm(s)
		if err != nil || !grants(perms, g.Name, g.Context) {
			return false
		}
	}
	return true
}

// grants reports whether perms grant name for the context ctx: the perm
// without a context, or with ctx as its context.
func grants(perms []Perm, name, ctx string) bool {
	for _, p := range perms {
		if p.Name == name && (p.Context == "" || p.Context == ctx) {
			return true
		}
	}
	return false
}

// grantsAny reports whether perms grant name in some context.
func grantsAny(perms []Perm, name string) bool {
	for _, p := range perms {
		if p.Name == name {
			return true
		}
	}
	return false
}

// subscriber holds the subscriptions of one process to client events, and
// forwards the events it subscribed to, that its command's perms let it
// receive, as notifications.
type subscriber struct {
	host Host
	comp Component
	peer Peer

	mu    sync.Mutex
	names map[string]bool   // what it subscribed to; "*" is every name
	sub   feed.Subscription // nil until its first subscription
}

// call serves event.subscribe, event.unsubscribe and event.subscriptions.
func (s *subscriber) call(req *jrpc2.Request) (any, error) {
	if req.Method() == MethodEventSubscriptions {
		s.mu.Lock()
		defer s.mu.Unlock()
		return slices.Sorted(maps.Keys(s.names)), nil
	}
	var name string
	var pos []string
	var p struct {
		Name string `json:"name"`
	}
	switch {
	case req.UnmarshalParams(&pos) == nil && len(pos) == 1:
		name = pos[0]
	case req.UnmarshalParams(&p) == nil && p.Name != "":
		name = p.Name
	default:
		return nil, jrpc2.Errorf(jrpc2.InvalidParams, `want ["name"] or {"name": "..."}; "*" is every event`)
	}
	if req.Method() == MethodEventUnsubscribe {
		s.mu.Lock()
		defer s.mu.Unlock()
		was := s.names[name]
		delete(s.names, name)
		return was, nil
	}
	if err := MaySubscribe(s.comp.Perms, name); err != nil {
		var bad *EventError
		if errors.As(err, &bad) {
			return nil, jrpc2.Errorf(jrpc2.InvalidParams, "%s", bad.Error())
		}
		return nil, notGranted(MethodEventSubscribe + "[" + name + "]")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.names[name] && len(s.names) >= MaxSubscriptions {
		return nil, jrpc2.Errorf(jrpc2.InvalidParams, "at most %d subscriptions", MaxSubscriptions)
	}
	s.names[name] = true
	if s.sub == nil {
		s.sub = s.host.ClientEvents()
		go s.forward(s.sub)
	}
	return true, nil
}

// wants reports whether the process subscribed to e's name.
func (s *subscriber) wants(e feed.Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names[e.Name] || s.names[feed.AllClientEvents]
}

// forward sends the process the events of sub that it wants and may
// receive, until it ends or the feed drops sub (its subscriptions then end,
// with a warning in the log).
func (s *subscriber) forward(sub feed.Subscription) {
	defer sub.Close()
	for {
		select {
		case e := <-sub.Events():
			if !s.wants(e) || !Receives(s.comp.Perms, e) {
				continue
			}
			// A process that does not read its stdin holds this write
			// until it ends: by the deadline of a call, its idle timer or
			// a stop. The feed drops the subscription meanwhile.
			if err := s.peer.Notify(context.Background(), e.Name, e.Data); err != nil {
				// The process has ended, or will. A write that blocked
				// until then may have had the subscription dropped.
				s.dropped(sub)
				return
			}
		case <-sub.Done():
			s.dropped(sub)
			return
		case <-s.peer.Done():
			return
		}
	}
}

// dropped ends the process's subscriptions if the feed dropped sub, and
// says why in the log: the process did not read its events fast enough.
func (s *subscriber) dropped(sub feed.Subscription) {
	select {
	case <-sub.Done():
	default:
		return
	}
	s.mu.Lock()
	clear(s.names)
	s.sub = nil
	s.mu.Unlock()
	if err := sub.Err(); err != nil && !errors.Is(err, feed.ErrClosed) {
		s.peer.Logger().Warn().Err(err).Msg("plugin: its subscriptions to events are dropped; it must subscribe again")
	}
}
