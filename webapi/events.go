package webapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/metrics"
)

// handleEvents is GET /scripts/v1/events?name=NAME&event=EVENT: run events
// and client events as Server-Sent Events, each with its id, so a client
// that reconnects with Last-Event-ID gets what it missed while it is still
// in the replay window (an "event: lost" says when it no longer is). name
// watches a script's runs, "" or none every script; each event parameter
// watches the client events of that name ("*": every one the key may
// receive), and with no name parameter only them. A monitor that falls
// behind is told why and disconnected.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	var q eventsQuery
	closeMonitor, ok := s.admitFeedMonitor(w, r, func() (err error) {
		q, err = s.parseEventsQuery(r)
		return err
	})
	if !ok {
		return
	}
	defer closeMonitor()
	defer s.metrics.MonitorOpened(metrics.EventStream)()
	sub, lost := s.cfg.Events.Subscribe(q.after, q.topics...)
	defer sub.Close()
	revoked, unwatch := s.watchRevocation(r)
	defer unwatch()
	rc := http.NewResponseController(w)
	if startEvents(w, rc, q.after, lost) != nil {
		return
	}
	if end, ok := s.forwardEvents(r.Context(), w, rc, sub, receiverOf(r), revoked); ok {
		s.metrics.MonitorDropped(metrics.EventStream, end.why)
		writeEventsEnd(w, rc, end)
	}
}

// eventsQuery is what GET /scripts/v1/events asks for: the events after an
// id (0: only those to come) of topics.
type eventsQuery struct {
	after  uint64
	topics []feed.Topic
}

// parseEventsQuery reads the request's Last-Event-ID (or its last_event_id
// parameter), name and event parameters, and checks that its key may watch
// them, that the name is a script's and the events' names are names.
func (s *Server) parseEventsQuery(r *http.Request) (eventsQuery, error) {
	var q eventsQuery
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("last_event_id")
	}
	if last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			return eventsQuery{}, badRequestf("Last-Event-ID must be an event id, not %q", last)
		}
		q.after = n
	}
	params := r.URL.Query()
	events := slices.Compact(slices.Sorted(slices.Values(params["event"])))
	scripts := len(events) == 0 || params.Has("name") // else client events only
	if n := len(events) + btoi(scripts); n > s.cfg.Monitors.Names {
		return eventsQuery{}, badRequestf("a stream watches at most %d names (--monitor-names), not %d", s.cfg.Monitors.Names, n)
	}
	rc := receiverOf(r)
	for _, name := range events {
		if err := rc.maySubscribe(name); err != nil {
			return eventsQuery{}, err
		}
		q.topics = append(q.topics, feed.ClientEvents(name))
	}
	if !scripts {
		return q, nil
	}
	name := params.Get("name")
	if err := allowed(r, canMonitor, name); err != nil {
		return eventsQuery{}, err
	}
	if err := s.watchable(name); err != nil {
		return eventsQuery{}, err
	}
	q.topics = append(q.topics, feed.Script(name))
	return q, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// startEvents writes the head of an event stream, a comment, and an
// "event: lost" if lost says the feed no longer has every event after
// after; it returns the error of their flush.
func startEvents(w http.ResponseWriter, rc *http.ResponseController, after uint64, lost bool) error {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// A comment at once, with the head: a client that shows nothing before
	// the body's first bytes (curl -i, some proxies) knows it is connected
	// before the first event or heartbeat.
	fmt.Fprint(w, ": rexec events\n\n")
	if lost {
		fmt.Fprintf(w, "event: lost\ndata: {\"error\":\"events after %d are not all known here (no longer kept, or from before a restart); refresh with /scripts/v1/status\"}\n\n", after)
	}
	return rc.Flush()
}

// forwardEvents writes sub's events (the client events that to may
// receive), and a ping comment every heartbeat, with a flush after each
// batch, until the server ends the stream (it returns why, and true) or the
// client goes or a write fails (false).
func (s *Server) forwardEvents(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, sub feed.Subscription, to receiver, revoked <-chan struct{}) (feedEnd, bool) {
	ping := time.NewTicker(s.cfg.Heartbeat)
	defer ping.Stop()
	for {
		var err error
		select {
		case e := <-sub.Events():
			err = writeQueuedEvents(w, sub, to, e)
		case <-ping.C:
			_, err = fmt.Fprint(w, ": ping\n\n")
		case <-sub.Done():
			return endDropped(sub.Err()), true
		case <-ctx.Done():
			return feedEnd{}, false
		case <-revoked:
			return endRevoked, true
		case <-s.closing:
			return endShutdown, true
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return feedEnd{}, false
		}
	}
}

// writeQueuedEvents writes e and the events already queued behind it, for
// one flush, until the queue is empty or a write fails; of client events,
// those that to may receive.
func writeQueuedEvents(w http.ResponseWriter, sub feed.Subscription, to receiver, e feed.Event) error {
	err := writeEvent(w, to, e)
	for err == nil {
		select {
		case e := <-sub.Events():
			err = writeEvent(w, to, e)
		default:
			return nil
		}
	}
	return err
}

func writeEvent(w http.ResponseWriter, to receiver, e feed.Event) error {
	if e.State == feed.StateClient && !to.receives(e) {
		return nil
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.State, data)
	return err
}

// writeEventsEnd tells the client why the server ends its event stream, in
// an "event: error", and flushes it; it writes nothing for an end without a
// message.
func writeEventsEnd(w http.ResponseWriter, rc *http.ResponseController, end feedEnd) {
	if end.msg == "" {
		return
	}
	data, _ := json.Marshal(map[string]string{"error": end.msg, "errorcode": end.code}) // one line: JSON escapes newlines
	fmt.Fprintf(w, "event: error\ndata: %s\n\n", data)
	rc.Flush()
}
