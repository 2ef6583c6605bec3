package webapi

import (
	"errors"
	"fmt"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/detached"
)

var (
	errScriptsOnly = errors.New(`ad-hoc commands are disabled on this server (--scripts-only): ` +
		`run a script with {"alias":...,"script":"name","args":[...]}`)
	errNoSuchScript = errors.New("no such script")
)

// maxScriptStdin bounds the stdin string a script run may carry.
const maxScriptStdin = 1 << 20

// runSpec is what a request starts: an ad-hoc command as it asks, or a
// script of the exectab with the request's arguments substituted, under
// the script's limit of runs at once.
func (s *Server) runSpec(req *processRequest, ndjson, liveStdin bool) (child.Spec, broker.Limit, error) {
	if req.Script == "" {
		if s.cfg.ScriptsOnly {
			return child.Spec{}, broker.Limit{}, errScriptsOnly
		}
		return req.spec(s.cfg.Env, ndjson), broker.Limit{}, nil
	}
	sc, ok := s.scripts().Lookup(req.Script)
	if !ok {
		return child.Spec{}, broker.Limit{}, fmt.Errorf("%w named %q", errNoSuchScript, req.Script)
	}
	if sc.NoProcess {
		return child.Spec{}, broker.Limit{}, badRequestf("script %q starts no process (-n): it only notifies monitors", sc.Name)
	}
	if (req.Stdin != nil || liveStdin) && !sc.AllowStdin {
		return child.Spec{}, broker.Limit{}, badRequestf("script %q takes no stdin (its exectab line has no -i)", sc.Name)
	}
	if req.Stdin != nil && len(*req.Stdin) > maxScriptStdin {
		return child.Spec{}, broker.Limit{}, badRequestf("stdin of a script run is limited to %d bytes", maxScriptStdin)
	}
	args, err := sc.Argv(req.Args)
	if err != nil {
		return child.Spec{}, broker.Limit{}, err
	}
	cred, err := sc.Credential()
	if err != nil {
		return child.Spec{}, broker.Limit{}, &child.StartError{Op: "credential", Err: err}
	}
	spec := req.spec(s.cfg.Env, ndjson)
	spec.Path, spec.Args, spec.Dir = sc.Path, args, sc.Dir
	spec.Env = sc.Environ(s.cfg.Env)
	spec.Credential = cred
	spec.Timeout = detached.EffectiveTimeout(req.timeout, sc) // the script's -t caps it
	return spec, broker.Limit{Group: "script " + sc.Name, Max: sc.Concurrency}, nil
}

// scripts is the catalogue in force (empty without --scripts).
func (s *Server) scripts() *catalog.Catalog {
	if s.cfg.Scripts == nil {
		return nil
	}
	return s.cfg.Scripts()
}
