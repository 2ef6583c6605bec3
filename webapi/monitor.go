package webapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/metrics"
	"github.com/rexec/rexec/store"
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
	closeMonitor, ok := s.admitFeedMonitor(w, r, func() error { return mayMonitor(r) })
	if !ok {
		return
	}
	defer closeMonitor()
	c, err := acceptMonitor(w, r)
	if err != nil {
		return // Accept has answered
	}
	defer c.CloseNow()
	defer s.metrics.MonitorOpened(metrics.WebSocket)()
	revoked, unwatch := s.watchRevocation(r)
	defer unwatch()
	sub, _ := s.cfg.Events.Subscribe(0) // watches nothing until asked
	defer sub.Close()
	m := s.newMonitor(r, c, sub)
	defer m.cancel()
	go m.cancelWhenDropped()
	go m.readWatches()
	if end, ok := m.forward(revoked); ok {
		s.metrics.MonitorDropped(metrics.WebSocket, end.why)
		c.Close(end.status, end.reason)
	}
}

// mayMonitor checks that the request's key may open a monitor at all; which
// names a key for one script may watch is answered message by message
// (watch).
func mayMonitor(r *http.Request) error {
	if g := guestOf(r); g != nil && !g.Monitor {
		return errForbidden
	}
	return nil
}

// acceptMonitor upgrades the request to a WebSocket whose messages are
// bounded by monitorMessageLimit. When it fails, Accept has answered.
func acceptMonitor(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	// The Origin was checked for every request (guard.go), with the
	// server's --allowed-origin list, which Accept's own check knows
	// nothing of.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(monitorMessageLimit)
	return c, nil
}

// A monitor is one WebSocket of /scripts/v1/monitor: its reader
// (readWatches) takes the client's watch requests and hands their answers
// to the writer (forward), the connection's only writer.
type monitor struct {
	s        *Server
	c        *websocket.Conn
	sub      feed.Subscription
	guest    *store.Guest // nil for the admin
	maxNames int          // --monitor-names

	// ctx ends with the request, the handler (cancel) or the subscription
	// (cancelWhenDropped); every read and write of c is under it.
	ctx    context.Context
	cancel context.CancelFunc

	acks    chan map[string]any // reader to writer: the answer to a message
	readErr chan error          // reader to writer: why a read failed
	tooMany chan struct{}       // closed by the reader: a name past maxNames
}

// newMonitor makes the monitor of request r, upgraded to c, whose events
// come from sub.
func (s *Server) newMonitor(r *http.Request, c *websocket.Conn, sub feed.Subscription) *monitor {
	ctx, cancel := context.WithCancel(r.Context())
	return &monitor{
		s:        s,
		c:        c,
		sub:      sub,
		guest:    guestOf(r),
		maxNames: s.cfg.Monitors.Names,
		ctx:      ctx,
		cancel:   cancel,
		acks:     make(chan map[string]any, 8),
		readErr:  make(chan error, 1),
		tooMany:  make(chan struct{}),
	}
}

// cancelWhenDropped cancels m.ctx when the feed drops the subscription,
// until m.ctx ends otherwise. A monitor that fell behind is usually stuck in
// a write to a full socket: end that write at once rather than after its
// timeout.
func (m *monitor) cancelWhenDropped() {
	select {
	case <-m.sub.Done():
		m.cancel()
	case <-m.ctx.Done():
	}
}

// readWatches is the monitor's reader: it answers each message of the
// client (watch) through m.acks until a read fails (m.readErr), a name is
// one past the cap (m.tooMany) or m.ctx ends.
func (m *monitor) readWatches() {
	watching := map[string]bool{}
	for {
		_, data, err := m.c.Read(m.ctx)
		if err != nil {
			m.readErr <- err
			return
		}
		ack, ok := m.watch(data, watching)
		if !ok {
			close(m.tooMany)
			return
		}
		select {
		case m.acks <- ack:
		case <-m.ctx.Done():
			return
		}
	}
}

// watch answers one message of the client: it adds the name asked for to
// watching and to the subscription, or says why not. It returns false, and
// adds nothing, for a new name past m.maxNames.
func (m *monitor) watch(data []byte, watching map[string]bool) (map[string]any, bool) {
	var req struct {
		Name *string `json:"name"`
	}
	if json.Unmarshal(data, &req) != nil || req.Name == nil {
		return map[string]any{"success": false, "error": `send {"name":"script"}, or {"name":""} for every script`}, true
	}
	name := *req.Name
	werr := m.s.watchable(name)
	switch {
	case m.guest != nil && m.guest.Name != "" && name != m.guest.Name:
		return map[string]any{"success": false, "name": name, "enabled": false,
			"error": "this key may only watch " + m.guest.Name}, true
	case werr != nil:
		return map[string]any{"success": false, "name": clipName(name), "enabled": false, "errorcode": "invalid_name",
			"error": werr.Error()}, true
	case !watching[name] && len(watching) >= m.maxNames:
		return nil, false
	}
	watching[name] = true
	m.sub.Watch(name)
	return map[string]any{"success": true, "name": name, "enabled": true}, true
}

// forward is the monitor's writer: it sends the reader's answers, the
// subscription's events and a ping every heartbeat until the server ends
// the monitor (it returns why, and true) or a read or write fails (false).
func (m *monitor) forward(revoked <-chan struct{}) (feedEnd, bool) {
	ping := time.NewTicker(m.s.cfg.Heartbeat)
	defer ping.Stop()
	for {
		var err error
		select {
		case ack := <-m.acks:
			err = m.write(ack)
		case e := <-m.sub.Events():
			err = m.write(e)
		case <-ping.C:
			err = m.ping()
		case <-m.sub.Done():
			return endDropped(m.sub.Err()), true
		case <-m.s.closing:
			return endShutdown, true
		case <-revoked:
			return endRevoked, true
		case <-m.tooMany:
			return feedEnd{status: websocket.StatusPolicyViolation,
				reason: fmt.Sprintf("too many names: a monitor watches at most %d (--monitor-names)", m.maxNames),
				why:    "too_many_names"}, true
		case err = <-m.readErr:
		}
		if err != nil {
			return feedEnd{}, false
		}
	}
}

// write sends v as a JSON text message, within monitorWriteTimeout.
func (m *monitor) write(v any) error {
	ctx, cancel := context.WithTimeout(m.ctx, monitorWriteTimeout)
	defer cancel()
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return m.c.Write(ctx, websocket.MessageText, data)
}

// ping pings the client and waits for its pong, within monitorWriteTimeout.
func (m *monitor) ping() error {
	ctx, cancel := context.WithTimeout(m.ctx, monitorWriteTimeout)
	defer cancel()
	return m.c.Ping(ctx)
}
