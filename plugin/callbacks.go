package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/creachadair/jrpc2"
	"github.com/rs/zerolog"

	"github.com/rexec/rexec/feed"
)

// Host is what the server offers plugin commands to call, through
// Callbacks: the methods of rexec's own, each granted by a perm of the
// command's manifest.
type Host interface {
	// StartRun starts a detached run of an exectab script for who, and
	// returns its status (as GET /scripts/v1/status/{id} shows it).
	StartRun(ctx context.Context, script string, args []string, who string) (json.RawMessage, error)
	// RunStatus returns the script of run id and its status.
	RunStatus(ctx context.Context, id string) (script string, status json.RawMessage, err error)
	// Machines lists the machines this server knows: itself, until a
	// fleet.
	Machines(ctx context.Context) (json.RawMessage, error)
	// Emit publishes a client event, made by NewEvent.
	Emit(e feed.Event)
	// ClientEvents subscribes to every client event from now on.
	ClientEvents() feed.Subscription
}

// Peer is the process whose calls a handler of Callbacks serves: the
// handler sends it the client events it subscribed to.
type Peer interface {
	// Notify sends the process a notification. It blocks until the
	// message is written, or the process has ended.
	Notify(ctx context.Context, method string, params any) error
	// Done is closed when the process has ended.
	Done() <-chan struct{}
	// Logger is the process's logger.
	Logger() *zerolog.Logger
}

// The methods of the server a command may call, and the perms that grant
// them. A perm with a context grants the method for that script only
// ("run.start[backup]"); without one, for every script.
const (
	MethodRunStart     = "run.start"     // params {"script", "args"}: start a detached run
	MethodRunStatus    = "run.status"    // params {"id"}: a run's status
	MethodMachinesList = "machines.list" // no params: the machines this server knows
)

// ServerMethods are the methods of the server a command may call, each
// granted by the perm of its name: a perm of a manifest's perms that is
// none of them grants nothing (UnusedPerms).
var ServerMethods = []string{MethodRunStart, MethodRunStatus, MethodMachinesList,
	MethodEventEmit, MethodEventSubscribe}

// UnusedPerms are the perms of c that grant none of ServerMethods: often a
// typo, or a perm of the seed's server that rexec does not have.
func (c Component) UnusedPerms() []Perm {
	var unused []Perm
	for _, p := range c.Perms {
		if !slices.Contains(ServerMethods, p.Name) {
			unused = append(unused, p)
		}
	}
	return unused
}

// notGranted is the one answer to a method that is not there and to one
// the command's perms do not grant: a command cannot probe what it may not
// call.
func notGranted(method string) error {
	return jrpc2.Errorf(jrpc2.MethodNotFound, "no method %s (or the plugin's perms do not grant it)", method)
}

// Callbacks returns the handler of the calls that peer, a process of comp,
// makes to host, each allowed by comp's perms.
func Callbacks(host Host, comp Component, peer Peer) jrpc2.Handler {
	who := "plugin:" + comp.FullID()
	events := &subscriber{host: host, comp: comp, peer: peer, names: map[string]bool{}}
	return func(ctx context.Context, req *jrpc2.Request) (any, error) {
		method := req.Method()
		switch method {
		case MethodRunStart:
			var p struct {
				Script string   `json:"script"`
				Args   []string `json:"args"`
			}
			if err := req.UnmarshalParams(&p); err != nil || p.Script == "" {
				return nil, jrpc2.Errorf(jrpc2.InvalidParams, `want {"script": "<name>", "args": ["..."]}`)
			}
			if !grants(comp.Perms, method, p.Script) {
				return nil, notGranted(method)
			}
			return callError(host.StartRun(ctx, p.Script, p.Args, who))
		case MethodRunStatus:
			var p struct {
				ID string `json:"id"`
			}
			if err := req.UnmarshalParams(&p); err != nil || p.ID == "" {
				return nil, jrpc2.Errorf(jrpc2.InvalidParams, `want {"id": "<run id>"}`)
			}
			if !grantsAny(comp.Perms, method) {
				return nil, notGranted(method)
			}
			script, st, err := host.RunStatus(ctx, p.ID)
			if err == nil && !grants(comp.Perms, method, script) {
				// Another script's run: as if there were none.
				return nil, jrpc2.Errorf(jrpc2.InvalidParams, "no run %q", p.ID)
			}
			return callError(st, err)
		case MethodMachinesList:
			if !grants(comp.Perms, method, "") {
				return nil, notGranted(method)
			}
			return callError(host.Machines(ctx))
		case MethodEventEmit:
			if !grantsAny(comp.Perms, method) {
				return nil, notGranted(method)
			}
			return emit(host, comp, who, req)
		case MethodEventSubscribe, MethodEventUnsubscribe, MethodEventSubscriptions:
			if !grantsAny(comp.Perms, MethodEventSubscribe) {
				return nil, notGranted(method)
			}
			return events.call(req)
		}
		return nil, notGranted(method)
	}
}

// emit serves event.emit: params ["name", {data}, guards] as the seed
// writes them, guards a list of perms or {"perms": [...], "context": "c"}
// (each perm in that context); or {"name", "data", "perms"}.
func emit(host Host, comp Component, who string, req *jrpc2.Request) (any, error) {
	const want = `want ["name", {data}, ["perm", ...]] or {"name": "...", "data": {...}, "perms": ["..."]}`
	var p struct {
		Name  string          `json:"name"`
		Data  json.RawMessage `json:"data"`
		Perms []string        `json:"perms"`
	}
	var pos []json.RawMessage
	if req.UnmarshalParams(&pos) == nil {
		if len(pos) == 0 || len(pos) > 3 || json.Unmarshal(pos[0], &p.Name) != nil {
			return nil, jrpc2.Errorf(jrpc2.InvalidParams, want)
		}
		if len(pos) > 1 {
			p.Data = pos[1]
		}
		if len(pos) > 2 {
			guards, err := parseGuards(pos[2])
			if err != nil {
				return nil, jrpc2.Errorf(jrpc2.InvalidParams, want)
			}
			p.Perms = guards
		}
	} else if err := req.UnmarshalParams(&p); err != nil {
		return nil, jrpc2.Errorf(jrpc2.InvalidParams, want)
	}
	if err := CheckEventName(p.Name); err != nil {
		return nil, jrpc2.Errorf(jrpc2.InvalidParams, "%s", err.Error())
	}
	if MayEmit(comp.Perms, p.Name) != nil {
		return nil, notGranted(MethodEventEmit)
	}
	e, err := NewEvent(p.Name, p.Data, p.Perms, who)
	if err != nil {
		return nil, jrpc2.Errorf(jrpc2.InvalidParams, "%s", err.Error())
	}
	host.Emit(e)
	return true, nil
}

// parseGuards reads the seed's guards of an event: a list of perms, or
// {"perms": [...], "context": "c"}, which guards with each perm in the
// context c.
func parseGuards(raw json.RawMessage) ([]string, error) {
	var list []string
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, nil
	}
	var g struct {
		Perms   []string `json:"perms"`
		Context string   `json:"context"`
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		return nil, err
	}
	if g.Context != "" {
		for i, p := range g.Perms {
			g.Perms[i] = p + "[" + g.Context + "]"
		}
	}
	return g.Perms, nil
}

// callError passes a result on, or makes the host's error one a plugin
// reads: a *jrpc2.Error stays as it is, another is a server error with its
// message.
func callError(res json.RawMessage, err error) (any, error) {
	if err == nil {
		return res, nil
	}
	var rpcErr *jrpc2.Error
	if errors.As(err, &rpcErr) {
		return nil, rpcErr
	}
	return nil, jrpc2.Errorf(relaxedCode, "%s", err.Error())
}
