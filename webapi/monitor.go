package webapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
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
// {"name":"backup"} to watch a script, {"name":""} for every script,
// {"event":"deploy.step"} to watch client events of a name ({"event":"*"}
// for every one the key may receive), and more such messages to add names;
// each is answered {"success":true,"name":...,"enabled":true} (or "event").
// Events then come as JSON objects, the moment they happen.
// A monitor that falls behind is closed with a reason; pings keep idle
// connections alive through proxies. Messages in the envelope of the Cloud
// Storage Server's WebSocket API are served here too (seedsocket.go), within
// this socket's small message limit.
func (s *Server) handleMonitor(w http.ResponseWriter, r *http.Request) {
	s.serveSocket(w, r, socketOptions{
		watchMessages: true,
		check:         func() error { return mayMonitor(r) },
		readLimit:     monitorMessageLimit,
		pongWait:      monitorWriteTimeout,
	})
}

// socketOptions are what tells the two WebSocket endpoints of the
// /scripts/v1 API apart.
type socketOptions struct {
	// watchMessages: a message that is not an API call is a watch
	// request, {"name":...} (GET /scripts/v1/monitor); else an error
	// (the Cloud Storage Server's API socket, seedsocket.go).
	watchMessages bool
	// check says whether the request's key may open the socket at all.
	check func() error
	// readLimit bounds a message from the client; a longer one closes the
	// connection (1009, message too big).
	readLimit int64
	// pongWait is how long the answer to a ping may take.
	pongWait time.Duration
}

// serveSocket serves a WebSocket of the /scripts/v1 API: admitted as a
// monitor (it may watch the feed), then read by its reader (readMessages) and
// written by its writer (forward) until either ends.
func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request, opt socketOptions) {
	closeMonitor, ok := s.admitFeedMonitor(w, r, opt.check)
	if !ok {
		return
	}
	defer closeMonitor()
	c, err := acceptMonitor(w, r, opt.readLimit)
	if err != nil {
		return // Accept has answered
	}
	defer c.CloseNow()
	defer s.metrics.MonitorOpened(metrics.WebSocket)()
	revoked, unwatch := s.watchRevocation(r)
	defer unwatch()
	sub, _ := s.cfg.Events.Subscribe(0) // watches nothing until asked
	defer sub.Close()
	m := s.newMonitor(r, c, sub, opt)
	defer m.cancel()
	go m.cancelWhenDropped()
	go m.readMessages()
	if end, ok := m.forward(revoked); ok {
		s.metrics.MonitorDropped(metrics.WebSocket, end.why)
		c.Close(end.status, end.reason)
	}
}

// mayMonitor checks that the request's key may open a monitor at all: it
// may watch runs, or receive client events. Which names it may watch is
// answered message by message (watch, watchEvent).
func mayMonitor(r *http.Request) error {
	if g := guestOf(r); g != nil && !g.Monitor && !receiverOf(r).mayWatchEvents() {
		return errForbidden
	}
	return nil
}

// acceptMonitor upgrades the request to a WebSocket whose messages are
// bounded by limit. When it fails, Accept has answered.
func acceptMonitor(w http.ResponseWriter, r *http.Request, limit int64) (*websocket.Conn, error) {
	// The Origin was checked for every request (guard.go), with the
	// server's --allowed-origin list, which Accept's own check knows
	// nothing of.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(limit)
	return c, nil
}

// A monitor is one WebSocket of the /scripts/v1 API: its reader
// (readMessages) takes the client's messages, watch requests and API calls,
// and hands their answers to the writer (forward), the connection's only
// writer of messages.
type monitor struct {
	s        *Server
	req      *http.Request // the upgrade: API calls are made as it was
	c        *websocket.Conn
	sub      feed.Subscription
	guest    *store.Guest // nil for the admin
	receiver receiver     // of client events
	maxNames int          // --monitor-names
	opt      socketOptions

	// ctx ends with the request, the handler (cancel) or the subscription
	// (cancelWhenDropped); every read and write of c is under it.
	ctx    context.Context
	cancel context.CancelFunc

	// What the client watches, and how: a name watched by a watch request
	// gets rexec's events (plain), one watched by the Cloud Storage
	// Server's monitor call gets that server's, with the api_sequence of
	// the call (seqs); the client events of the names in clients. The
	// reader changes them, the writer reads them.
	mu      sync.Mutex
	plain   map[string]bool
	seqs    map[string]int64
	clients map[string]bool

	acks    chan []byte   // reader to writer: the answer to a message
	readErr chan error    // reader to writer: why a read failed
	tooMany chan struct{} // closed by the reader: a name past maxNames
	pongs   chan error    // the answer to the ping in flight
}

// newMonitor makes the monitor of request r, upgraded to c, whose events
// come from sub.
func (s *Server) newMonitor(r *http.Request, c *websocket.Conn, sub feed.Subscription, opt socketOptions) *monitor {
	ctx, cancel := context.WithCancel(r.Context())
	return &monitor{
		s:        s,
		req:      r,
		c:        c,
		sub:      sub,
		guest:    guestOf(r),
		receiver: receiverOf(r),
		maxNames: s.cfg.Monitors.Names,
		opt:      opt,
		ctx:      ctx,
		cancel:   cancel,
		plain:    map[string]bool{},
		seqs:     map[string]int64{},
		clients:  map[string]bool{},
		acks:     make(chan []byte, 8),
		readErr:  make(chan error, 1),
		tooMany:  make(chan struct{}),
		pongs:    make(chan error, 1),
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

// readMessages is the monitor's reader: it answers each message of the
// client through m.acks until a read fails (m.readErr), a name is one past
// the cap (m.tooMany) or m.ctx ends.
func (m *monitor) readMessages() {
	for {
		_, data, err := m.c.Read(m.ctx)
		if err != nil {
			m.readErr <- err
			return
		}
		ans, ok := m.answer(data)
		if !ok {
			close(m.tooMany)
			return
		}
		out, err := json.Marshal(ans)
		if err != nil {
			m.readErr <- err
			return
		}
		select {
		case m.acks <- out:
		case <-m.ctx.Done():
			return
		}
	}
}

// answer is the answer to one message of the client: an API call in the
// Cloud Storage Server's envelope (call), or a watch request where the
// socket takes them (watch). It returns false for a new name past
// m.maxNames.
func (m *monitor) answer(data []byte) (map[string]any, bool) {
	var msg map[string]json.RawMessage
	err := json.Unmarshal(data, &msg)
	switch {
	case err == nil && isEnvelope(msg):
		return m.call(msg)
	case m.opt.watchMessages:
		var req struct {
			Name  *string `json:"name"`
			Event *string `json:"event"`
		}
		if err != nil || json.Unmarshal(data, &req) != nil || (req.Name == nil) == (req.Event == nil) {
			return map[string]any{"success": false, "errorcode": "invalid_request", "error": `send {"name":"script"} ({"name":""} for every script), ` +
				`or {"event":"name"} ({"event":"*"} for every client event)`}, true
		}
		if req.Event != nil {
			return m.watchEvent(*req.Event)
		}
		return m.watch(*req.Name)
	case err != nil:
		return seedFailure("invalid_data", "a message is a JSON object"), true
	}
	return seedFailure("missing_invalid_api_method", `a message is an API call: {"api_method":"GET","api_path":"/scripts/v1/monitor","api_sequence":1,"name":""}`), true
}

// watch answers a watch request of the client: it adds name to what the
// monitor watches with rexec's events, or says why not. It returns false,
// and adds nothing, for a new name past m.maxNames.
func (m *monitor) watch(name string) (map[string]any, bool) {
	werr := m.s.watchable(name)
	switch {
	case m.guest != nil && !m.guest.Monitor:
		return map[string]any{"success": false, "name": clipName(name), "enabled": false, "errorcode": "forbidden",
			"error": "this key may not watch runs"}, true
	case m.guest != nil && m.guest.Name != "" && name != m.guest.Name:
		return map[string]any{"success": false, "name": clipName(name), "enabled": false, "errorcode": "forbidden",
			"error": "this key may only watch " + m.guest.Name}, true
	case werr != nil:
		_, code, msg := kindOf(werr)
		return map[string]any{"success": false, "name": clipName(name), "enabled": false, "errorcode": code,
			"error": msg}, true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.watchingLocked(name) && m.namesLocked() >= m.maxNames {
		return nil, false
	}
	m.plain[name] = true
	m.sub.Watch(feed.Script(name))
	return map[string]any{"success": true, "name": name, "enabled": true}, true
}

// watchEvent answers a request to watch the client events of name ("*":
// every one the key may receive), as watch does for a script.
func (m *monitor) watchEvent(name string) (map[string]any, bool) {
	if err := m.receiver.maySubscribe(name); err != nil {
		_, code, msg := kindOf(err)
		return map[string]any{"success": false, "event": clipName(name), "enabled": false, "errorcode": code, "error": msg}, true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.clients[name] && m.namesLocked() >= m.maxNames {
		return nil, false
	}
	m.clients[name] = true
	m.sub.Watch(feed.ClientEvents(name))
	return map[string]any{"success": true, "event": name, "enabled": true}, true
}

// watchingLocked reports whether the monitor watches name, either way.
func (m *monitor) watchingLocked(name string) bool {
	_, seed := m.seqs[name]
	return m.plain[name] || seed
}

// namesLocked is how many names the monitor watches: scripts and client
// events.
func (m *monitor) namesLocked() int {
	n := len(m.plain) + len(m.clients)
	for name := range m.seqs {
		if !m.plain[name] {
			n++
		}
	}
	return n
}

// forward is the monitor's writer: it sends the reader's answers, the
// subscription's events and a ping every heartbeat until the server ends
// the monitor (it returns why, and true) or a read, a write or a ping fails
// (false). A ping waits for its pong in the background, opt.pongWait at
// most, and only one is in flight.
func (m *monitor) forward(revoked <-chan struct{}) (feedEnd, bool) {
	ping := time.NewTicker(m.s.cfg.Heartbeat)
	defer ping.Stop()
	pinging := false
	for {
		var err error
		select {
		case ack := <-m.acks:
			err = m.writeRaw(ack)
		case e := <-m.sub.Events():
			err = m.send(e)
		case <-ping.C:
			if !pinging {
				pinging = true
				go m.ping()
			}
		case err = <-m.pongs:
			pinging = false
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

// send writes event e to the client as each of its watches of e's script
// asks: once as rexec's event, and once per api_sequence as the Cloud
// Storage Server's (seedEvent), which tells only of a run's start and end.
func (m *monitor) send(e feed.Event) error {
	if e.State == feed.StateClient {
		m.mu.Lock()
		watched := m.clients[e.Name] || m.clients[feed.AllClientEvents]
		m.mu.Unlock()
		if !watched || !m.receiver.receives(e) {
			return nil
		}
		return m.write(e)
	}
	m.mu.Lock()
	plain := m.plain[e.Name] || m.plain[""]
	var seqs []int64
	if seq, ok := m.seqs[e.Name]; ok {
		seqs = append(seqs, seq)
	}
	if seq, ok := m.seqs[""]; ok {
		seqs = append(seqs, seq)
	}
	m.mu.Unlock()
	if plain {
		if err := m.write(e); err != nil {
			return err
		}
	}
	if len(seqs) == 0 || (e.State != "running" && e.State != "done") {
		return nil
	}
	ev := m.seedEvent(e)
	for _, seq := range seqs {
		ev["api_sequence"] = seq
		if err := m.write(ev); err != nil {
			return err
		}
	}
	return nil
}

// write sends v as a JSON text message, within monitorWriteTimeout.
func (m *monitor) write(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return m.writeRaw(data)
}

// writeRaw sends data as a text message, within monitorWriteTimeout.
func (m *monitor) writeRaw(data []byte) error {
	ctx, cancel := context.WithTimeout(m.ctx, monitorWriteTimeout)
	defer cancel()
	return m.c.Write(ctx, websocket.MessageText, data)
}

// ping pings the client and hands the writer the outcome: nil when the pong
// came within opt.pongWait.
func (m *monitor) ping() {
	ctx, cancel := context.WithTimeout(m.ctx, m.opt.pongWait)
	defer cancel()
	m.pongs <- m.c.Ping(ctx)
}
