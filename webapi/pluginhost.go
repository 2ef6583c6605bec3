package webapi

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/creachadair/jrpc2"

	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/plugin"
)

// PluginCallbacks is what this server offers plugin commands to call
// (plugin.Host): detached runs of its scripts, as /scripts/v1 starts and
// shows them, and the machines it knows.
func (s *Server) PluginCallbacks() plugin.Host { return pluginCalls{s} }

type pluginCalls struct{ s *Server }

var errNoScripts = errors.New("this server runs no scripts (start it with --scripts FILE)")

func (p pluginCalls) StartRun(ctx context.Context, script string, args []string, who string) (json.RawMessage, error) {
	if p.s.cfg.Runs == nil {
		return nil, errNoScripts
	}
	run, pos, err := p.s.cfg.Runs.Submit(ctx, detached.Request{Script: script, Args: args, Who: who})
	if err != nil {
		return nil, rpcError(err)
	}
	st := statusObject(run, pos, p.s.cfg.Runs.Waiting(run), false)
	st["success"] = true
	return json.Marshal(st)
}

func (p pluginCalls) RunStatus(ctx context.Context, id string) (string, json.RawMessage, error) {
	if p.s.cfg.Runs == nil {
		return "", nil, errNoScripts
	}
	run, err := p.s.cfg.Runs.Get(ctx, id)
	if err != nil {
		return "", nil, rpcError(err)
	}
	st := p.s.runStatus(run, false)
	st["success"] = true
	b, err := json.Marshal(st)
	return run.Script, b, err
}

func (p pluginCalls) Machines(context.Context) (json.RawMessage, error) {
	return json.Marshal(p.s.machines())
}

// Emit and ClientEvents use the feed, which a server with plugins has
// (Config.Plugins).
func (p pluginCalls) Emit(e feed.Event) { p.s.cfg.Events.Publish(e) }

func (p pluginCalls) ClientEvents() feed.Subscription {
	sub, _ := p.s.cfg.Events.Subscribe(0, feed.ClientEvents(feed.AllClientEvents))
	return sub
}

// machines are the machines this server knows, as getAllMachines (XML-RPC)
// and machines.list (plugins) list them: the fleet's hosts (this one on a
// single host), each with its name and url, as before there were fleets,
// and what GET /fleet/v1/machines says of it.
func (s *Server) machines() []map[string]any {
	var out []map[string]any
	for _, m := range s.fleetMachines() {
		out = append(out, map[string]any{
			"name": m.Name, "url": m.Address, "up": m.Up, "scripts": anys(m.Scripts), "labels": anys(m.Labels),
			"slots_used": m.SlotsUsed, "slots_max": m.SlotsMax, "version": m.Version,
			"last_heartbeat": m.LastHeartbeat.UTC().Format(time.RFC3339Nano),
		})
	}
	return out
}

// anys is ss as the []any that XML-RPC encodes as an array.
func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// rpcError is err as a plugin reads it: a server error with the message and
// the errorcode that /scripts/v1 would give (kindOf).
func rpcError(err error) error {
	_, code, msg := kindOf(err)
	data, _ := json.Marshal(map[string]string{"errorcode": code})
	return &jrpc2.Error{Code: -32000, Message: msg, Data: data}
}
