package webapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/launch"
)

// handleEvents is GET /scripts/v1/events?name=NAME: run events as
// Server-Sent Events, each with its id, so a client that reconnects with
// Last-Event-ID gets what it missed while it is still in the replay window
// (an "event: lost" says when it no longer is). No name watches every
// script. A monitor that falls behind is told why and disconnected.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Events == nil {
		writeScriptsError(w, http.StatusNotFound, "no_scripts", "this server runs no scripts (start it with --scripts FILE)")
		return
	}
	var after uint64
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("last_event_id")
	}
	if last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			s.failScripts(w, badRequestf("Last-Event-ID must be an event id, not %q", last))
			return
		}
		after = n
	}
	name := r.URL.Query().Get("name")
	if err := allowed(r, canMonitor, name); err != nil {
		s.failScripts(w, err)
		return
	}
	if err := s.watchable(name); err != nil {
		s.failScripts(w, err)
		return
	}
	closeMonitor, ok := s.admitMonitor(w, r)
	if !ok {
		return
	}
	defer closeMonitor()
	sub, lost := s.cfg.Events.Subscribe(after, name)
	defer sub.Close()
	revoked := make(chan struct{})
	defer s.watchGuest(r, sync.OnceFunc(func() { close(revoked) }))()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// A comment at once, with the head: a client that shows nothing before
	// the body's first bytes (curl -i, some proxies) knows it is connected
	// before the first event or heartbeat.
	fmt.Fprint(w, ": rexec events\n\n")
	if lost {
		fmt.Fprintf(w, "event: lost\ndata: {\"error\":\"events after %d are not all known here (no longer kept, or from before a restart); refresh with /scripts/v1/status\"}\n\n", after)
	}
	if rc.Flush() != nil {
		return
	}
	ping := time.NewTicker(s.cfg.Heartbeat)
	defer ping.Stop()
	for {
		var err error
		select {
		case e := <-sub.Events():
			err = writeEvent(w, e)
		more:
			for err == nil {
				select {
				case e := <-sub.Events():
					err = writeEvent(w, e)
				default:
					break more
				}
			}
		case <-ping.C:
			_, err = fmt.Fprint(w, ": ping\n\n")
		case <-sub.Done():
			if why := sub.Err(); why != nil {
				code := "closed"
				if errors.Is(why, feed.ErrTooSlow) {
					code = "too_slow"
				}
				fmt.Fprintf(w, "event: error\ndata: {\"error\":%q,\"errorcode\":%q}\n\n", why.Error(), code)
				rc.Flush()
			}
			return
		case <-r.Context().Done():
			return
		case <-revoked:
			fmt.Fprint(w, "event: error\ndata: {\"error\":\"the key was deleted or expired\",\"errorcode\":\"revoked\"}\n\n")
			rc.Flush()
			return
		case <-s.closing:
			fmt.Fprint(w, "event: error\ndata: {\"error\":\"server is shutting down\",\"errorcode\":\"closed\"}\n\n")
			rc.Flush()
			return
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// watchable checks a name a monitor asks to watch: "" (every script) or a
// script of the exectab in force.
func (s *Server) watchable(name string) error {
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

func writeEvent(w http.ResponseWriter, e feed.Event) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.State, data)
	return err
}
