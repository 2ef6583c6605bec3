package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rexec/rexec/detached"

	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/fleet/jsfeed"
	"github.com/rexec/rexec/fleet/jshistory"
	"github.com/rexec/rexec/fleet/jsoutput"
	"github.com/rexec/rexec/fleet/jsqueue"
	"github.com/rexec/rexec/store"
)

// openFleet joins the fleet Config.Fleet names. Its heartbeats say what
// this host offers (the exectab in force) and uses (the broker's table).
func (n *Node) openFleet() error {
	cfg := *n.cfg.Fleet
	cfg.Logger = n.log
	if cfg.StoreDir == "" {
		cfg.StoreDir = n.cfg.DataDir + "/fleet"
	}
	f, err := fleet.Open(context.Background(), cfg, n.fleetStatus)
	if err != nil {
		return err
	}
	n.Fleet = f
	return nil
}

// fleetRetry opens one of the fleet's parts, trying again within the
// fleet's join timeout: a stream whose leader was a host that just died
// takes the raft election timeout (4-9 s) to answer again, and a host that
// restarts at once meets exactly that.
func (n *Node) fleetRetry(what string, open func() error) error {
	deadline := time.Now().Add(n.Fleet.JoinTimeout())
	for {
		err := open()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		n.log.Warn().Err(err).Str("part", what).Msg("fleet: waiting for the fleet's streams")
		time.Sleep(time.Second)
	}
}

// fleetStatus is what this host's heartbeats say.
func (n *Node) fleetStatus() fleet.Status {
	st := fleet.Status{SlotsMax: n.cfg.Broker.MaxProcs}
	if cat := n.Scripts.Load(); cat != nil {
		st.Scripts = cat.Names()
	}
	if n.Broker != nil {
		st.SlotsUsed = n.Broker.Total()
	}
	return st
}

// fleetAddress is the API URL the fleet's other hosts and their clients
// reach this host at: URL, but with the machine's name where the API
// listens on every address (URL's loopback is this machine's alone).
func (n *Node) fleetAddress() string {
	host, port, err := net.SplitHostPort(n.Addr())
	if err != nil {
		return n.URL()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil {
			scheme := "http://"
			if n.tls != nil {
				scheme = "https://"
			}
			return scheme + net.JoinHostPort(name, port)
		}
	}
	return n.URL()
}

// openFleetRuns opens the fleet's history, with st as this host's copy,
// and its output store. Each needs the other: the history records output
// sizes and deletes outputs, the outputs ask the history whether a run
// exists and is done.
func (n *Node) openFleetRuns(st *store.Store) (store.History, store.Outputs, error) {
	var out *jsoutput.Outputs // set below, before anything is read or written
	h, err := jshistory.Open(context.Background(), jshistory.Options{
		JS: n.Fleet.JS(), Names: n.Fleet.Names(), Replicas: n.Fleet.Replicas(), Host: n.Fleet.Host(), Local: st, Logger: n.log,
		DeleteOutput: func(ctx context.Context, id string) error { return out.Delete(ctx, id) },
		OutputSize: func(ctx context.Context, id string) (int64, error) {
			// A read of a running run's status asks it: bounded, so that a
			// stream electing a leader slows no status by seconds.
			ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			return out.Size(ctx, id)
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("fleet: the history: %w", err)
	}
	out, err = jsoutput.Open(context.Background(), jsoutput.Options{
		JS: n.Fleet.JS(), Names: n.Fleet.Names(), Replicas: n.Fleet.Replicas(), History: h,
		MaxOutput: n.cfg.Store.MaxOutput, MaxAge: n.cfg.Detached.Retain, Logger: n.log,
	})
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("fleet: the outputs: %w", err)
	}
	n.fleetHistory = h
	return h, out, nil
}

// openFleetQueue opens the fleet's queue of detached runs: this host takes
// the runs its name and labels allow, and each script's -s counts across
// the fleet.
func (n *Node) openFleetQueue() (*jsqueue.Queue, error) {
	q, err := jsqueue.Open(context.Background(), jsqueue.Options{
		JS: n.Fleet.JS(), Names: n.Fleet.Names(), Replicas: n.Fleet.Replicas(),
		Host: n.Fleet.Host(), Labels: n.Fleet.Labels(), Logger: n.log,
		Limit: func(script string) int {
			if sc, ok := n.Scripts.Load().Lookup(script); ok {
				return sc.Concurrency
			}
			return 0
		},
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: the queue: %w", err)
	}
	n.fleetQueue = q
	return q, nil
}

// openFleetFeed opens the fleet's event feed: one for every host, whose
// event IDs mean the same on each.
func (n *Node) openFleetFeed() (*jsfeed.Feed, error) {
	f, err := jsfeed.Open(context.Background(), jsfeed.Options{
		JS: n.Fleet.JS(), Names: n.Fleet.Names(), Replicas: n.Fleet.Replicas(),
		Replay: n.cfg.EventReplay, Queue: n.cfg.EventQueue, Logger: n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	return f, nil
}

// fleetRuns is the fleet as the manager of detached runs sees it
// (detached.Fleet): the hosts, and a cancel that reaches the host running
// a run.
type fleetRuns struct{ n *Node }

var _ detached.Fleet = fleetRuns{}

func (r fleetRuns) Host() string        { return r.n.Fleet.Host() }
func (r fleetRuns) Up(host string) bool { return r.n.Fleet.Up(host) }

func (r fleetRuns) HasHost(name string) bool { return r.n.Fleet.Known(name) }

// cancelAnswer is what a host answers a cancel with.
type cancelAnswer struct {
	Error string `json:"error,omitempty"`
	Done  bool   `json:"done,omitempty"` // the run had ended: detached.ErrDone
}

// Cancel asks host, over NATS, to cancel run id, which it runs.
func (r fleetRuns) Cancel(ctx context.Context, host, id string) error {
	if !r.n.Fleet.Up(host) {
		return fmt.Errorf("%w: its host %s is down", detached.ErrDone, host)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := r.n.Fleet.Conn().RequestWithContext(ctx, r.n.Fleet.Names().Subject("cancel", host), []byte(id))
	if err != nil {
		return fmt.Errorf("asking host %s to cancel run %s: %w", host, id, err)
	}
	var a cancelAnswer
	if err := json.Unmarshal(msg.Data, &a); err != nil {
		return fmt.Errorf("host %s answered a cancel with %q", host, msg.Data)
	}
	switch {
	case a.Done:
		return detached.ErrDone
	case a.Error != "":
		return fmt.Errorf("host %s: %s", host, a.Error)
	}
	return nil
}

// serveFleet answers the other hosts' cancels of the runs this host runs,
// and marks lost the runs of the hosts found down.
func (n *Node) serveFleet() error {
	_, err := n.Fleet.Conn().Subscribe(n.Fleet.Names().Subject("cancel", n.Fleet.Host()), func(msg *nats.Msg) {
		id := string(msg.Data)
		var a cancelAnswer
		switch err := n.Runs.Cancel(context.Background(), id); {
		case errors.Is(err, detached.ErrDone):
			a.Done = true
		case err != nil:
			a.Error = err.Error()
		}
		b, _ := json.Marshal(a)
		_ = msg.Respond(b)
	})
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	n.Fleet.OnDown(func(host string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		n.Runs.HostDown(ctx, host)
	})
	return nil
}
