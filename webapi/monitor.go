package webapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/feed"
)

// monitorWriteTimeout bounds one write to a monitor: a dead peer cannot hold
// its handler longer.
const monitorWriteTimeout = 10 * time.Second

// monitorMessageLimit bounds a message from a monitor: {"name":...} with a
// name of at most catalog.MaxNameLen bytes fits many times over. A longer
// one closes the connection (1009, message too big).
const monitorMessageLimit = 4 << 10

// handleMonitor is GET /scripts/v1/monitor, the WebSocket form of the event
// feed (as in the Cloud Storage Server /scripts extension). The client sends
// {"name":"backup"} to watch a script, {"name":""} for every script, and more
// such messages to add names; each is answered {"success":true,"name":...,
// "enabled":true}. Events then come as JSON objects, the moment they happen.
// A monitor that falls behind is closed with a reason; pings keep idle
// connections alive through proxies.
func (s *Server) handleMonitor(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Events == nil {
		writeScriptsError(w, http.StatusNotFound, "no_scripts", "this server runs no scripts (start it with --scripts FILE)")
		return
	}
	guest := guestOf(r)
	if guest != nil && !guest.Monitor {
		s.failScripts(w, errForbidden)
		return
	}
	closeMonitor, ok := s.admitMonitor(w, r)
	if !ok {
		return
	}
	defer closeMonitor()
	// The Origin was checked for every request (guard.go), with the
	// server's --allowed-origin list, which Accept's own check knows
	// nothing of.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered
	}
	defer c.CloseNow()
	c.SetReadLimit(monitorMessageLimit)
	maxNames := s.cfg.Monitors.Names
	tooMany := make(chan struct{})
	revoked := make(chan struct{})
	defer s.watchGuest(r, sync.OnceFunc(func() { close(revoked) }))()
	sub, _ := s.cfg.Events.Subscribe(0) // watches nothing until asked
	defer sub.Close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// A monitor that fell behind is usually stuck in a write to a full
	// socket: end that write at once rather than after its timeout.
	go func() {
		select {
		case <-sub.Done():
			cancel()
		case <-ctx.Done():
		}
	}()

	// The reader takes the client's watch requests; the writer below is the
	// connection's only writer.
	acks := make(chan map[string]any, 8)
	readErr := make(chan error, 1)
	go func() {
		watching := map[string]bool{}
		for {
			var req struct {
				Name *string `json:"name"`
			}
			_, data, err := c.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			ack := map[string]any{"success": false, "error": `send {"name":"script"}, or {"name":""} for every script`}
			bad := json.Unmarshal(data, &req) != nil || req.Name == nil
			var werr error
			if !bad {
				werr = s.watchable(*req.Name)
			}
			switch {
			case bad:
			case guest != nil && guest.Name != "" && *req.Name != guest.Name:
				ack = map[string]any{"success": false, "name": *req.Name, "enabled": false,
					"error": "this key may only watch " + guest.Name}
			case werr != nil:
				ack = map[string]any{"success": false, "name": clipName(*req.Name), "enabled": false, "errorcode": "invalid_name",
					"error": werr.Error()}
			case !watching[*req.Name] && len(watching) >= maxNames:
				close(tooMany)
				return
			default:
				watching[*req.Name] = true
				sub.Watch(*req.Name)
				ack = map[string]any{"success": true, "name": *req.Name, "enabled": true}
			}
			select {
			case acks <- ack:
			case <-ctx.Done():
				return
			}
		}
	}()

	write := func(v any) error {
		wctx, wcancel := context.WithTimeout(ctx, monitorWriteTimeout)
		defer wcancel()
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return c.Write(wctx, websocket.MessageText, data)
	}
	ping := time.NewTicker(s.cfg.Heartbeat)
	defer ping.Stop()
	for {
		var err error
		select {
		case ack := <-acks:
			err = write(ack)
		case e := <-sub.Events():
			err = write(e)
		case <-ping.C:
			pctx, pcancel := context.WithTimeout(ctx, monitorWriteTimeout)
			err = c.Ping(pctx)
			pcancel()
		case <-sub.Done():
			if errors.Is(sub.Err(), feed.ErrTooSlow) {
				c.Close(websocket.StatusTryAgainLater, "too slow: events were not read fast enough")
			} else {
				c.Close(websocket.StatusGoingAway, "server is shutting down")
			}
			return
		case <-s.closing:
			c.Close(websocket.StatusGoingAway, "server is shutting down")
			return
		case <-revoked:
			c.Close(websocket.StatusPolicyViolation, "the key was deleted or expired")
			return
		case <-tooMany:
			c.Close(websocket.StatusPolicyViolation, fmt.Sprintf("too many names: a monitor watches at most %d (--monitor-names)", maxNames))
			return
		case err = <-readErr:
		}
		if err != nil {
			return
		}
	}
}
