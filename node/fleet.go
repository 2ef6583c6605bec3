package node

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/fleet/jsfeed"
	"github.com/rexec/rexec/fleet/jsoutput"
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

// fleetStatus is what this host's heartbeats say.
func (n *Node) fleetStatus() fleet.Status {
	st := fleet.Status{SlotsMax: n.cfg.Broker.MaxProcs}
	if cat := n.Scripts.Load(); cat != nil {
		st.Scripts = cat.Names()
	}
	if n.Broker != nil {
		a, d := n.Broker.Running()
		for _, c := range a {
			st.SlotsUsed += c
		}
		for _, c := range d {
			st.SlotsUsed += c
		}
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

// openFleetOutputs opens the fleet's output store on the history h.
func (n *Node) openFleetOutputs(h store.History) (*jsoutput.Outputs, error) {
	out, err := jsoutput.Open(context.Background(), jsoutput.Options{
		JS: n.Fleet.JS(), Names: n.Fleet.Names(), Replicas: n.Fleet.Replicas(), History: h,
		MaxOutput: n.cfg.Store.MaxOutput, MaxAge: n.cfg.Detached.Retain, Logger: n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	return out, nil
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
