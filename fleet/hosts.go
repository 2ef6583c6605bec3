package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Status is what a host offers and uses now, sent with each heartbeat.
type Status struct {
	Scripts   []string // the scripts its exectab offers
	SlotsUsed int      // processes running
	SlotsMax  int      // --max-procs; 0: no limit
}

// Machine is one host of the fleet as this host sees it: the seed's
// getAllMachines.
type Machine struct {
	Name      string    `json:"name"`
	Address   string    `json:"address"`
	Scripts   []string  `json:"scripts"`
	SlotsUsed int       `json:"slots_used"`
	SlotsMax  int       `json:"slots_max"` // 0: no limit
	Labels    []string  `json:"labels"`
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	// LastHeartbeat is when this host last heard from it (its own clock's
	// time for itself).
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// Up: a heartbeat came within the fleet's down-after. A host that
	// left says so, and is down at once.
	Up bool `json:"up"`
}

// HasLabels says whether m carries every label of want.
func (m Machine) HasLabels(want []string) bool {
	for _, l := range want {
		if !slices.Contains(m.Labels, l) {
			return false
		}
	}
	return true
}

// heartbeat is what a host publishes on hb.<host>.
type heartbeat struct {
	Machine
	Leaving bool `json:"leaving,omitempty"`
}

// hosts keeps the fleet's machines: what each said in its last heartbeat
// and when it was heard. It alone decides when a host is down.
type hosts struct {
	f       *Fleet
	status  func() Status
	started time.Time
	kv      jetstream.KeyValue
	sub     *nats.Subscription
	quit    chan struct{}
	done    sync.WaitGroup

	mu     sync.Mutex
	table  map[string]*hostEntry
	onDown []func(host string)
	onUp   []func(host string)
}

type hostEntry struct {
	m    Machine
	seen time.Time // this host's clock
	up   bool
}

// maxHosts caps the hosts a host keeps in its table: names come from the
// fleet's members only, but a member gone wrong must not grow it forever.
const maxHosts = 1024

// machinesTTL is how long a host that stopped sending heartbeats stays in
// the list of machines.
const machinesTTL = 7 * 24 * time.Hour

func startHosts(f *Fleet, status func() Status) (*hosts, error) {
	if status == nil {
		status = func() Status { return Status{} }
	}
	h := &hosts{f: f, status: status, started: time.Now(), quit: make(chan struct{}), table: map[string]*hostEntry{}}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.JoinTimeout)
	defer cancel()
	// JetStream answers once a quorum of the cluster met; a stream of three
	// replicas needs the three ("no suitable peers for placement" until
	// the last one is known): tried again within the join timeout.
	var kv jetstream.KeyValue
	var err error
	for {
		kv, err = EnsureKeyValue(ctx, f.js, jetstream.KeyValueConfig{
			Bucket:      f.names.Stream("MACHINES"),
			Description: "rexec fleet " + f.names.Fleet() + ": its machines, by name",
			TTL:         machinesTTL,
			Replicas:    f.cfg.Replicas,
			Storage:     jetstream.FileStorage,
		})
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("fleet: the machines' bucket: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	h.kv = kv
	// The hosts met before: each is given DownAfter from now to say it is
	// alive, then its runs are the fleet's to mark lost. A listing can
	// hang while the bucket's stream elects a leader (a host restarted
	// right after its kill meets that): each try has a bound, and the
	// tries go on within the join timeout.
	for {
		err := h.loadMachines(ctx, kv)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fleet: listing the machines: %w", err)
		}
		f.log.Warn().Err(err).Msg("fleet: listing the machines: trying again")
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	h.sub, err = f.nc.Subscribe(f.names.Subject("hb", "*"), h.heard)
	if err != nil {
		return nil, err
	}
	h.beat(false)
	h.save(ctx)
	h.done.Add(1)
	go h.loop()
	return h, nil
}

// loadMachines puts the machines the bucket holds (but this one) in the
// table, within listTimeout.
func (h *hosts) loadMachines(ctx context.Context, kv jetstream.KeyValue) error {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	keys, err := kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer keys.Stop()
	found := map[string]*hostEntry{}
	for k := range keys.Keys() {
		if k == h.f.cfg.Host {
			continue
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // gone since it was listed
		}
		if err != nil {
			return err
		}
		var m Machine
		if json.Unmarshal(e.Value(), &m) == nil && m.Name == k {
			m.Up = false
			found[k] = &hostEntry{m: m, seen: h.started, up: true}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err() // the listing was cut short
	}
	maps.Copy(h.table, found)
	return nil
}

// listTimeout bounds one listing of the machines' bucket.
const listTimeout = 5 * time.Second

// self is this host's Machine now.
func (h *hosts) self() Machine {
	st := h.status()
	c := h.f.cfg
	return Machine{
		Name: c.Host, Address: h.f.Address(), Scripts: nonNil(st.Scripts), SlotsUsed: st.SlotsUsed, SlotsMax: st.SlotsMax,
		Labels: nonNil(c.Labels), Version: c.Version, StartedAt: h.started, LastHeartbeat: time.Now(), Up: true,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (h *hosts) beat(leaving bool) {
	b, err := json.Marshal(heartbeat{Machine: h.self(), Leaving: leaving})
	if err != nil {
		return
	}
	if err := h.f.nc.Publish(h.f.names.Subject("hb", h.f.cfg.Host), b); err != nil {
		h.f.log.Debug().Err(err).Msg("fleet: heartbeat not sent")
	}
}

// save keeps this host's Machine in the bucket, for hosts that start
// later and for the list of machines while it is down.
func (h *hosts) save(ctx context.Context) {
	m := h.self()
	m.Up = false
	b, _ := json.Marshal(m)
	if _, err := h.kv.Put(ctx, h.f.cfg.Host, b); err != nil {
		h.f.log.Debug().Err(err).Msg("fleet: machine record not saved")
	}
}

func (h *hosts) heard(msg *nats.Msg) {
	var hb heartbeat
	name := strings.TrimPrefix(msg.Subject, h.f.names.Subject("hb", ""))
	if json.Unmarshal(msg.Data, &hb) != nil || hb.Name != name || CheckName(name) != nil || name == h.f.cfg.Host {
		return
	}
	now := time.Now()
	h.mu.Lock()
	e := h.table[name]
	if e == nil {
		if len(h.table) >= maxHosts {
			h.mu.Unlock()
			h.f.log.Warn().Str("host", name).Int("max", maxHosts).Msg("fleet: a heartbeat of one host too many: ignored")
			return
		}
		e = &hostEntry{}
		h.table[name] = e
	}
	wasUp := e.up
	e.m, e.seen = hb.Machine, now
	e.m.LastHeartbeat = now
	e.up = !hb.Leaving
	var calls []func(string)
	switch {
	case e.up && !wasUp:
		calls = h.onUp
	case !e.up && wasUp:
		calls = h.onDown
	}
	h.mu.Unlock()
	h.notify(name, e.up, hb.Leaving, calls)
}

func (h *hosts) notify(name string, up, leaving bool, calls []func(string)) {
	if len(calls) == 0 && !leaving {
		return
	}
	ev := h.f.log.Info().Str("host", name)
	switch {
	case up:
		ev.Msg("fleet: host up")
	case leaving:
		ev.Msg("fleet: host left")
	default:
		h.f.log.Warn().Str("host", name).Dur("silent_for", h.f.cfg.DownAfter).Msg("fleet: host down: no heartbeat")
	}
	for _, fn := range calls {
		go fn(name)
	}
}

// loop sends heartbeats, saves the machine record now and then, and takes
// hosts that fell silent to be down.
func (h *hosts) loop() {
	defer h.done.Done()
	beat := time.NewTicker(h.f.cfg.HeartbeatEvery)
	defer beat.Stop()
	check := time.NewTicker(max(h.f.cfg.DownAfter/8, 10*time.Millisecond))
	defer check.Stop()
	lastSave := time.Now()
	for {
		select {
		case <-h.quit:
			return
		case now := <-beat.C:
			h.beat(false)
			if now.Sub(lastSave) >= 5*time.Second {
				lastSave = now
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				h.save(ctx)
				cancel()
			}
		case now := <-check.C:
			h.mu.Lock()
			var down []string
			for name, e := range h.table {
				if e.up && now.Sub(e.seen) > h.f.cfg.DownAfter {
					e.up = false
					down = append(down, name)
				}
			}
			calls := h.onDown
			h.mu.Unlock()
			for _, name := range down {
				h.notify(name, false, false, calls)
			}
		}
	}
}

func (h *hosts) stop() {
	select {
	case <-h.quit:
		return
	default:
	}
	close(h.quit)
	h.done.Wait()
	if h.sub != nil {
		_ = h.sub.Unsubscribe()
	}
	h.beat(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	h.save(ctx)
	cancel()
	_ = h.f.nc.Flush()
}

// OnDown has fn called (in a goroutine of its own) with the name of each
// host found down: silent for DownAfter, or left. A host known from an
// earlier life of the fleet that does not say it is alive within
// DownAfter of this host's start is found down too.
func (f *Fleet) OnDown(fn func(host string)) {
	f.hosts.mu.Lock()
	f.hosts.onDown = append(f.hosts.onDown, fn)
	f.hosts.mu.Unlock()
}

// OnUp has fn called (in a goroutine of its own) with the name of each
// host that comes up, or back.
func (f *Fleet) OnUp(fn func(host string)) {
	f.hosts.mu.Lock()
	f.hosts.onUp = append(f.hosts.onUp, fn)
	f.hosts.mu.Unlock()
}

// Up says whether host is up: this host, or one heard within DownAfter.
func (f *Fleet) Up(host string) bool {
	if host == f.cfg.Host {
		return true
	}
	f.hosts.mu.Lock()
	defer f.hosts.mu.Unlock()
	e := f.hosts.table[host]
	return e != nil && e.up
}

// Machines lists the fleet's hosts, this one included, by name.
func (f *Fleet) Machines() []Machine {
	ms := []Machine{f.hosts.self()}
	f.hosts.mu.Lock()
	for _, e := range f.hosts.table {
		m := e.m
		m.Up = e.up
		if !e.seen.Equal(f.hosts.started) || m.LastHeartbeat.IsZero() {
			m.LastHeartbeat = e.seen
		}
		ms = append(ms, m)
	}
	f.hosts.mu.Unlock()
	slices.SortFunc(ms, func(a, b Machine) int { return strings.Compare(a.Name, b.Name) })
	return ms
}

// Known says whether the fleet has a host called name: this one, one heard
// or listed, or one whose machine record the fleet keeps (a host that
// started a moment ago may not have been heard yet).
func (f *Fleet) Known(name string) bool {
	if name == f.cfg.Host {
		return true
	}
	f.hosts.mu.Lock()
	_, ok := f.hosts.table[name]
	f.hosts.mu.Unlock()
	if ok {
		return true
	}
	if CheckName(name) != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := f.hosts.kv.Get(ctx, name)
	return err == nil
}
