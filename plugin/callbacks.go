package plugin

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/creachadair/jrpc2"
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
}

// The methods of the server a command may call, and the perms that grant
// them. A perm with a context grants the method for that script only
// ("run.start[backup]"); without one, for every script.
const (
	MethodRunStart     = "run.start"     // params {"script", "args"}: start a detached run
	MethodRunStatus    = "run.status"    // params {"id"}: a run's status
	MethodMachinesList = "machines.list" // no params: the machines this server knows
)

// notGranted is the one answer to a method that is not there and to one
// the command's perms do not grant: a command cannot probe what it may not
// call.
func notGranted(method string) error {
	return jrpc2.Errorf(jrpc2.MethodNotFound, "no method %s (or the plugin's perms do not grant it)", method)
}

// Callbacks returns the handler of the calls that a process of comp makes
// to host, each allowed by comp's perms.
func Callbacks(host Host, comp Component) jrpc2.Handler {
	who := "plugin:" + comp.FullID()
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
			if !comp.grants(method, p.Script) {
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
			if !comp.grantsAny(method) {
				return nil, notGranted(method)
			}
			script, st, err := host.RunStatus(ctx, p.ID)
			if err == nil && !comp.grants(method, script) {
				// Another script's run: as if there were none.
				return nil, jrpc2.Errorf(jrpc2.InvalidParams, "no run %q", p.ID)
			}
			return callError(st, err)
		case MethodMachinesList:
			if !comp.grants(method, "") {
				return nil, notGranted(method)
			}
			return callError(host.Machines(ctx))
		}
		return nil, notGranted(method)
	}
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

// grants reports whether c's perms grant method for the script ctx: the
// perm without a context, or with ctx as its context.
func (c Component) grants(method, ctx string) bool {
	for _, p := range c.Perms {
		if p.Name == method && (p.Context == "" || p.Context == ctx) {
			return true
		}
	}
	return false
}

// grantsAny reports whether c's perms grant method for some context.
func (c Component) grantsAny(method string) bool {
	for _, p := range c.Perms {
		if p.Name == method {
			return true
		}
	}
	return false
}
