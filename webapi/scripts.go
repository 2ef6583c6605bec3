package webapi

import (
	"errors"
	"strings"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/launch"
)

var errScriptsOnly = errors.New(`ad-hoc commands are disabled on this server (--scripts-only): ` +
	`run a script with {"alias":...,"script":"name","args":[...]}`)

// runSpec is what a request starts: an ad-hoc command as it asks, or a
// script of the exectab as package launch makes it, with the stdin and
// stderr the request chose.
func (s *Server) runSpec(req *processRequest, ndjson, liveStdin bool) (child.Spec, broker.Limit, error) {
	if req.Script == "" {
		if s.cfg.ScriptsOnly {
			return child.Spec{}, broker.Limit{}, errScriptsOnly
		}
		return req.spec(s.cfg.Env, ndjson), broker.Limit{}, nil
	}
	sc, err := launch.Lookup(s.scripts(), req.Script)
	if err != nil {
		return child.Spec{}, broker.Limit{}, err
	}
	lr := launch.Request{Args: req.Args, LiveStdin: liveStdin, Timeout: req.timeout}
	if req.Stdin != nil {
		lr.Stdin = int64(len(*req.Stdin))
	}
	spec, err := launch.Spec(sc, lr, s.cfg.Env)
	if err != nil {
		return child.Spec{}, broker.Limit{}, err
	}
	asked := req.spec(s.cfg.Env, ndjson)
	spec.Stderr = asked.Stderr
	if req.Stdin != nil && *req.Stdin != "" {
		spec.Stdin = strings.NewReader(*req.Stdin)
	}
	return spec, launch.Limit(sc), nil
}

// scripts is the catalogue in force (empty without --scripts).
func (s *Server) scripts() *catalog.Catalog {
	if s.cfg.Scripts == nil {
		return nil
	}
	return s.cfg.Scripts()
}
