package webapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/plugin"
	"github.com/rexec/rexec/store"
)

// Guests is where guest keys are kept (the store, on a single host).
type Guests interface {
	CreateGuest(ctx context.Context, g *store.Guest) error
	ListGuests(ctx context.Context) ([]store.Guest, error)
	GuestByKeyHash(ctx context.Context, hash []byte) (store.Guest, error)
	DeleteGuest(ctx context.Context, id string) error
}

type guestKey struct{}

// guestOf is the guest making the request, nil for the admin.
func guestOf(r *http.Request) *store.Guest {
	g, _ := r.Context().Value(guestKey{}).(*store.Guest)
	return g
}

var (
	errForbidden = errors.New("this key does not have that right")
	errNoToken   = errors.New("guest keys need an admin token or mutual TLS: start the server with --token, --token-file " +
		"or --tls-client-ca (without one, anyone who reaches the server is its admin, and a guest key would limit nobody)")
)

// allowed checks that the request's guest, if any, has the right for a run
// of script ("" for a request about no single script).
func allowed(r *http.Request, right func(store.Guest) bool, script string) error {
	g := guestOf(r)
	if g == nil {
		return nil
	}
	if !right(*g) || (g.Name != "" && script != g.Name) {
		return errForbidden
	}
	return nil
}

func canRun(g store.Guest) bool     { return g.Run }
func canCancel(g store.Guest) bool  { return g.Cancel }
func canStatus(g store.Guest) bool  { return g.Status }
func canMonitor(g store.Guest) bool { return g.Monitor }

var errTooManyMonitors = errors.New("too many monitors")

// admitMonitor counts a monitor in (openMonitor), or answers the request
// itself with why not and returns false.
func (s *Server) admitMonitor(w http.ResponseWriter, r *http.Request) (func(), bool) {
	closeMonitor, err := s.openMonitor(r)
	if err != nil {
		s.failScripts(w, r, err)
		return nil, false
	}
	return closeMonitor, true
}

// openMonitor counts a monitor (an event stream or WebSocket, or an output
// follower) in, within the server's cap and its key's: the admin (or, without
// a token, everyone) counts as one key. It returns the function that counts
// it out.
func (s *Server) openMonitor(r *http.Request) (func(), error) {
	key := "admin"
	if g := guestOf(r); g != nil {
		key = "guest " + g.ID
	}
	s.monitorsMu.Lock()
	defer s.monitorsMu.Unlock()
	switch {
	case s.monitorCount >= s.cfg.Monitors.Max:
		return nil, fmt.Errorf("%w: the server has %d open (--max-monitors)", errTooManyMonitors, s.cfg.Monitors.Max)
	case s.monitorsPerKey[key] >= s.cfg.Monitors.PerKey:
		return nil, fmt.Errorf("%w: this key has %d open (--monitors-per-key)", errTooManyMonitors, s.cfg.Monitors.PerKey)
	}
	s.monitorCount++
	s.monitorsPerKey[key]++
	return sync.OnceFunc(func() {
		s.monitorsMu.Lock()
		defer s.monitorsMu.Unlock()
		s.monitorCount--
		if s.monitorsPerKey[key]--; s.monitorsPerKey[key] == 0 {
			delete(s.monitorsPerKey, key)
		}
	}), nil
}

// watchGuest registers an open event stream of the request's guest: stop is
// called when the key is deleted or expires. The returned function
// unregisters it.
func (s *Server) watchGuest(r *http.Request, stop func()) func() {
	g := guestOf(r)
	if g == nil {
		return func() {}
	}
	var timer *time.Timer
	if !g.Expires.IsZero() {
		timer = time.AfterFunc(time.Until(g.Expires), stop)
	}
	s.monitorsMu.Lock()
	set := s.monitors[g.ID]
	if set == nil {
		set = map[*func()]struct{}{}
		s.monitors[g.ID] = set
	}
	set[&stop] = struct{}{}
	s.monitorsMu.Unlock()
	return func() {
		if timer != nil {
			timer.Stop()
		}
		s.monitorsMu.Lock()
		delete(set, &stop)
		if len(set) == 0 {
			delete(s.monitors, g.ID)
		}
		s.monitorsMu.Unlock()
	}
}

type createGuestRequest struct {
	Name    string   `json:"name"`
	Run     wireBool `json:"run"`
	Cancel  wireBool `json:"cancel"`
	Status  wireBool `json:"status"`
	Monitor wireBool `json:"monitor"`
	Expires int64    `json:"expires"` // UNIX time; 0: never
	// Perms are perms for plugin commands ("plugin", "<plugin>/<id>", ...).
	Perms []string `json:"perms"`
}

// maxGuestPerms bounds the perms of one key.
const maxGuestPerms = 64

// wireBool is a boolean field that also takes 0 and 1, as the Cloud
// Storage Server SDK sends the rights of a guest key; anything else is
// refused.
type wireBool bool

func (b *wireBool) UnmarshalJSON(data []byte) error {
	switch string(data) {
	case "true", "1":
		*b = true
	case "false", "0", "null":
		*b = false
	default:
		return errors.New("want true, false, 1 or 0")
	}
	return nil
}

func guestInfo(g store.Guest) map[string]any {
	var expires int64
	if !g.Expires.IsZero() {
		expires = g.Expires.Unix()
	}
	return map[string]any{"id": g.ID, "name": g.Name, "run": g.Run, "cancel": g.Cancel, "status": g.Status,
		"monitor": g.Monitor, "expires": expires, "created": g.Created.Unix(),
		// Made without the admin token, by an older rexec: no longer works.
		"disabled": !g.WithToken,
		"perms":    append([]string{}, g.Perms...), // [] for none
		// The name and rights again where the Cloud Storage Server has them.
		"info": map[string]any{"name": g.Name, "run": g.Run, "cancel": g.Cancel, "status": g.Status, "monitor": g.Monitor},
	}
}

// handleCreateGuest is POST /scripts/v1/guest/create (admin only). The key is
// in the answer, once: only its hash is kept.
func (s *Server) handleCreateGuest(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r, s.cfg.MaxBody)
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	var req createGuestRequest
	if err := decodeStrict(body, &req); err != nil {
		s.failScripts(w, r, err)
		return
	}
	expires, err := unixTimeField("expires", req.Expires)
	if req.Expires < 0 || err == nil && !expires.IsZero() && expires.Before(time.Now()) {
		err = fieldErrorf("expires", "field \"expires\" must be a UNIX time in the future, or 0 for never")
	}
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	if req.Name != "" {
		if _, ok := s.scripts().Lookup(req.Name); !ok {
			s.failScripts(w, r, fmt.Errorf("%w named %q: a guest key is for a script of the exectab, or every script (\"\")", launch.ErrNoSuchScript, req.Name))
			return
		}
	}
	if len(req.Perms) > maxGuestPerms {
		s.failScripts(w, r, fieldErrorf("perms", "field \"perms\" has %d perms, at most %d", len(req.Perms), maxGuestPerms))
		return
	}
	for i, p := range req.Perms {
		if _, err := plugin.ParsePerm(p); err != nil {
			s.failScripts(w, r, fieldErrorf("perms", "field \"perms\" [%d]: %v", i, err))
			return
		}
	}
	if !req.Run && !req.Cancel && !req.Status && !req.Monitor && len(req.Perms) == 0 {
		s.failScripts(w, r, badRequestf("give the key at least one right (run, cancel, status or monitor) or perm"))
		return
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	key := hex.EncodeToString(raw)
	hash := sha256.Sum256([]byte(key))
	g := store.Guest{Name: req.Name, Run: bool(req.Run), Cancel: bool(req.Cancel), Status: bool(req.Status), Monitor: bool(req.Monitor),
		KeyHash: hash[:], WithToken: true, Perms: slices.Compact(slices.Sorted(slices.Values(req.Perms)))}
	g.Expires = expires
	if err := s.cfg.Guests.CreateGuest(r.Context(), &g); err != nil {
		s.failScripts(w, r, err)
		return
	}
	info := guestInfo(g)
	info["apikey"] = key
	writeScripts(w, http.StatusOK, map[string]any{"id": g.ID, "info": info})
}

// handleListGuests is GET /scripts/v1/guest/list (admin only): never keys.
func (s *Server) handleListGuests(w http.ResponseWriter, r *http.Request) {
	gs, err := s.cfg.Guests.ListGuests(r.Context())
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	list := make([]map[string]any, 0, len(gs))
	for _, g := range gs {
		list = append(list, guestInfo(g))
	}
	writeScripts(w, http.StatusOK, map[string]any{"guests": list})
}

// handleDeleteGuest is POST /scripts/v1/guest/delete/{id} (admin only). The
// key's open monitors end at once.
func (s *Server) handleDeleteGuest(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.cfg.Guests.DeleteGuest(r.Context(), id)
	if errors.Is(err, store.ErrNoSuchGuest) && seedClient(r) {
		err = nil // the Cloud Storage Server deletes what is not there without a word
	}
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	s.monitorsMu.Lock()
	var stops []func()
	for stop := range s.monitors[id] {
		stops = append(stops, *stop)
	}
	delete(s.monitors, id)
	s.monitorsMu.Unlock()
	for _, stop := range stops {
		stop()
	}
	writeScripts(w, http.StatusOK, map[string]any{})
}
