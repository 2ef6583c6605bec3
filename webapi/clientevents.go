package webapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/plugin"
)

// Client events (package plugin, events.go): POST /plugins/v1/events emits
// one; the monitors of the feed (GET /scripts/v1/events?event=NAME, and
// {"event":NAME} on GET /scripts/v1/monitor) receive those their key may
// receive. The rights are perms: the admin holds every one; a guest key
// holds those it was made with.

// receiver is who receives client events on one monitor: the admin, or a
// key with perms.
type receiver struct {
	admin bool
	perms []plugin.Perm
}

// receiverOf is the request's key as a receiver of client events.
func receiverOf(r *http.Request) receiver {
	if g := guestOf(r); g != nil {
		return receiver{perms: plugin.ParsePerms(g.Perms)}
	}
	return receiver{admin: true}
}

// mayWatchEvents says whether the key may ask for client events at all.
func (rc receiver) mayWatchEvents() bool {
	return rc.admin || plugin.MaySubscribe(rc.perms, feed.AllClientEvents) == nil
}

// maySubscribe checks a name a monitor asks for ("*": every name the key
// may receive): a bad name is a *plugin.EventError, a name the key may not
// receive is forbidden, with the perm it needs.
func (rc receiver) maySubscribe(name string) error {
	err := plugin.MaySubscribe(rc.perms, name)
	var bad *plugin.EventError
	if rc.admin && !errors.As(err, &bad) {
		return nil
	}
	return err
}

// receives reports whether the monitor gets e, a client event of a name it
// watches.
func (rc receiver) receives(e feed.Event) bool {
	return rc.admin || plugin.Receives(rc.perms, e)
}

type emitRequest struct {
	Name  string          `json:"name"`
	Data  json.RawMessage `json:"data"`
	Perms []string        `json:"perms"`
}

// handleEmitEvent is POST /plugins/v1/events: {"name", "data", "perms"}
// emits a client event, which the monitors of its name receive if their
// key holds every perm in perms. The key needs event.emit[name] (or
// event.emit); the event says who emitted it.
func (s *Server) handleEmitEvent(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Events == nil {
		writeScriptsError(w, r, http.StatusNotFound, "no_events", errNoFeed.Error())
		return
	}
	var req emitRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		s.failScripts(w, r, err)
		return
	}
	from := whoOf(r) // a guest key's id, or the subject of a certificate
	if from == "" {
		from = "admin"
	}
	e, err := plugin.NewEvent(req.Name, req.Data, req.Perms, from)
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	if rc := receiverOf(r); !rc.admin {
		if err := plugin.MayEmit(rc.perms, req.Name); err != nil {
			s.failScripts(w, r, err)
			return
		}
	}
	s.cfg.Events.Publish(e)
	writeScripts(w, http.StatusAccepted, map[string]any{"name": e.Name})
}

// errNoFeed: a server that runs neither scripts nor plugins has no event
// feed.
var errNoFeed = errors.New("this server has no event feed: it runs no scripts and no plugins (start it with --scripts FILE or --plugins DIR)")
