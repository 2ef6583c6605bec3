package webapi

// The steps that the two monitors of the event feed share: GET
// /scripts/v1/events (Server-Sent Events, events.go) and GET
// /scripts/v1/monitor (WebSocket, monitor.go) are admitted, watched for
// their key's revocation and ended by the server in one way, each telling
// its client why in its own form.

import (
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/launch"
)

// admitFeedMonitor admits a monitor of the event feed, or answers the
// request itself with why not and returns false: 404 on a server that runs
// no scripts, then the kind of check's error (a request the monitor may not
// make), then the caps on monitors (admitMonitor). It returns the function
// that counts the monitor out.
func (s *Server) admitFeedMonitor(w http.ResponseWriter, r *http.Request, check func() error) (func(), bool) {
	if s.cfg.Events == nil {
		writeScriptsError(w, r, http.StatusNotFound, "no_scripts", errNoFeed.Error())
		return nil, false
	}
	if err := check(); err != nil {
		s.failScripts(w, r, err)
		return nil, false
	}
	return s.admitMonitor(w, r)
}

// watchRevocation returns a channel that is closed when the request's guest
// key is deleted or expires (never, for the admin), and the function that
// stops watching it (watchGuest).
func (s *Server) watchRevocation(r *http.Request) (<-chan struct{}, func()) {
	revoked := make(chan struct{})
	return revoked, s.watchGuest(r, sync.OnceFunc(func() { close(revoked) }))
}

// A feedEnd is why the server ends a monitor, as each form tells it: the
// WebSocket closes with status and reason; the event stream sends an
// "event: error" with msg and code, or nothing where msg is "". why is the
// reason the metrics count it under (metrics.DropReasons).
type feedEnd struct {
	status    websocket.StatusCode
	reason    string
	msg, code string
	why       string
}

var (
	// endShutdown: the server is closing.
	endShutdown = feedEnd{websocket.StatusGoingAway, "server is shutting down", "server is shutting down", "closed", "shutdown"}
	// endRevoked: the monitor's guest key was deleted or expired.
	endRevoked = feedEnd{websocket.StatusPolicyViolation, "the key was deleted or expired", "the key was deleted or expired", "revoked", "revoked"}
)

// endDropped is why the feed ended a subscription, from its Err: a monitor
// that fell behind (feed.ErrTooSlow) or the feed closing; the event stream
// says nothing when there is no reason (nil).
func endDropped(why error) feedEnd {
	switch {
	case errors.Is(why, feed.ErrTooSlow):
		return feedEnd{websocket.StatusTryAgainLater, "too slow: events were not read fast enough", why.Error(), "too_slow", "too_slow"}
	case why != nil:
		return feedEnd{websocket.StatusGoingAway, "server is shutting down", why.Error(), "closed", "shutdown"}
	}
	return feedEnd{status: websocket.StatusGoingAway, reason: "server is shutting down", why: "shutdown"}
}

// watchable checks a name a monitor asks to watch: "" (every script) or a
// script of the exectab in force, on a server that runs scripts.
func (s *Server) watchable(name string) error {
	if s.cfg.Runs == nil {
		return errNoScripts // a feed of client events alone
	}
	if name == "" {
		return nil
	}
	if _, ok := s.scripts().Lookup(name); !ok {
		return fmt.Errorf("%w named %q: a monitor watches scripts of the exectab", launch.ErrNoSuchScript, clipName(name))
	}
	return nil
}

// clipName cuts a name no script can have to the longest one can, for a
// message.
func clipName(name string) string {
	if len(name) > catalog.MaxNameLen {
		return name[:catalog.MaxNameLen] + "..."
	}
	return name
}
