package webapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/creachadair/jrpc2"

	"github.com/rexec/rexec/plugin"
)

// The /plugins/v1 API: plugin commands (package plugin), as the Serverboards
// seed defines them. A caller starts a session on a command, calls its
// methods, and stops it; or calls once, which does all three. Answers have
// the shape of /scripts/v1: "success", and "error" and "errorcode" when it
// failed.

// PluginHost runs the plugin commands of --plugins: the plugins in force
// and the manager of their processes.
type PluginHost interface {
	Plugins() []plugin.Plugin
	Component(fullID string) (plugin.Component, bool)
	Start(fullID, owner string) (string, error)
	Call(ctx context.Context, session, owner, method string, params json.RawMessage) (json.RawMessage, error)
	Stop(session, owner string) error
	CallOnce(ctx context.Context, fullID, owner, method string, params json.RawMessage) (json.RawMessage, error)
}

// isPluginsAPI reports whether path is in the /plugins/v1 API.
func isPluginsAPI(path string) bool {
	return path == "/plugins/v1" || strings.HasPrefix(path, "/plugins/v1/")
}

// pluginsHandler checks the method, as scriptsHandler does, and that the
// server runs plugins.
func (s *Server) pluginsHandler(methods []string, h http.HandlerFunc) http.HandlerFunc {
	return s.methodsHandler(methods, func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Plugins == nil {
			writeScriptsError(w, r, http.StatusNotFound, "no_plugins", "this server runs no plugins (start it with --plugins DIR)")
			return
		}
		h(w, r)
	})
}

// callerPerms are the perms of the request's key, and whether it is the
// admin's (who may use every command).
func callerPerms(r *http.Request) ([]string, bool) {
	if g := guestOf(r); g != nil {
		return g.Perms, false
	}
	return nil, true
}

// handleListPlugins is GET /plugins/v1: the plugins, each with the
// components the key may use (every one for the admin); never a path.
func (s *Server) handleListPlugins(w http.ResponseWriter, r *http.Request) {
	perms, admin := callerPerms(r)
	list := []map[string]any{}
	for _, p := range s.cfg.Plugins.Plugins() {
		comps := []map[string]any{}
		for _, c := range p.Components {
			if c.Type == plugin.TypeCmd && c.Allows(perms, admin) != nil || c.Type != plugin.TypeCmd && !admin {
				continue
			}
			comps = append(comps, componentInfo(c))
		}
		if len(comps) == 0 && !admin {
			continue
		}
		list = append(list, map[string]any{"id": p.ID, "name": p.Name, "version": p.Version,
			"description": p.Description, "components": comps})
	}
	writeScripts(w, http.StatusOK, map[string]any{"plugins": list})
}

// componentInfo is a component as GET /plugins/v1 shows it.
func componentInfo(c plugin.Component) map[string]any {
	info := map[string]any{"id": c.FullID(), "name": c.Name, "type": c.Type}
	if c.Type == plugin.TypeCmd {
		info["strategy"] = c.Strategy
		info["timeout"] = c.Timeout.Seconds()
		info["user_perms"] = c.UserPerms // null: only the implicit perm opens it
	}
	return info
}

type startPluginRequest struct {
	Component string `json:"component"`
}

type callPluginRequest struct {
	Component string          `json:"component"` // the one-shot call only
	Method    string          `json:"method"`
	Params    json.RawMessage `json:"params"`
}

// handleStartPlugin is POST /plugins/v1/start: a session on a command.
func (s *Server) handleStartPlugin(w http.ResponseWriter, r *http.Request) {
	var req startPluginRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		s.failScripts(w, r, err)
		return
	}
	comp, err := s.usableComponent(r, req.Component)
	if err == nil {
		var id string
		if id, err = s.cfg.Plugins.Start(comp.FullID(), whoOf(r)); err == nil {
			writeScripts(w, http.StatusOK, map[string]any{"session": id, "component": comp.FullID()})
			return
		}
	}
	s.failScripts(w, r, err)
}

// usableComponent is the command fullID, if the request's key may use it.
func (s *Server) usableComponent(r *http.Request, fullID string) (plugin.Component, error) {
	if fullID == "" {
		return plugin.Component{}, fieldErrorf("component", `field "component" is required: "<plugin id>/<component id>"`)
	}
	comp, ok := s.cfg.Plugins.Component(fullID)
	if !ok {
		return plugin.Component{}, fmt.Errorf("%w: %q", plugin.ErrNoSuchComponent, clipName(fullID))
	}
	if comp.Type != plugin.TypeCmd {
		return plugin.Component{}, fmt.Errorf("%w: %q is of type %q", plugin.ErrNotCommand, fullID, comp.Type)
	}
	perms, admin := callerPerms(r)
	if err := comp.Allows(perms, admin); err != nil {
		return plugin.Component{}, err // it names the perm that is missing
	}
	return comp, nil
}

// handleCallPlugin is POST /plugins/v1/call/{session}: a call on a session.
func (s *Server) handleCallPlugin(w http.ResponseWriter, r *http.Request) {
	var req callPluginRequest
	if err := s.decodeCall(w, r, &req, false); err != nil {
		s.failScripts(w, r, err)
		return
	}
	res, err := s.cfg.Plugins.Call(r.Context(), r.PathValue("session"), whoOf(r), req.Method, req.Params)
	s.answerCall(w, r, res, err)
}

// handleCallPluginOnce is POST /plugins/v1/call: start, call and stop.
func (s *Server) handleCallPluginOnce(w http.ResponseWriter, r *http.Request) {
	var req callPluginRequest
	if err := s.decodeCall(w, r, &req, true); err != nil {
		s.failScripts(w, r, err)
		return
	}
	comp, err := s.usableComponent(r, req.Component)
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	res, err := s.cfg.Plugins.CallOnce(r.Context(), comp.FullID(), whoOf(r), req.Method, req.Params)
	s.answerCall(w, r, res, err)
}

// handleStopPlugin is POST /plugins/v1/stop/{session}.
func (s *Server) handleStopPlugin(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Plugins.Stop(r.PathValue("session"), whoOf(r)); err != nil {
		s.failScripts(w, r, err)
		return
	}
	writeScripts(w, http.StatusOK, map[string]any{})
}

// decodeCall reads a call's body: a method, and params that are absent,
// null, an array or an object (JSON-RPC 2.0's); with component, the
// one-shot call's component too.
func (s *Server) decodeCall(w http.ResponseWriter, r *http.Request, req *callPluginRequest, component bool) error {
	if err := s.decodeBody(w, r, req); err != nil {
		return err
	}
	switch {
	case !component && req.Component != "":
		return fieldErrorf("component", `field "component" is for POST /plugins/v1/call; a session's calls go to its command`)
	case req.Method == "":
		return fieldErrorf("method", `field "method" is required`)
	}
	if p := strings.TrimSpace(string(req.Params)); p != "" && p != "null" && p[0] != '[' && p[0] != '{' {
		return fieldErrorf("params", `field "params" must be an array or an object (JSON-RPC 2.0), or absent`)
	}
	if strings.TrimSpace(string(req.Params)) == "null" {
		req.Params = nil
	}
	return nil
}

// decodeBody reads the request's body (at most --max-body) as the JSON
// object v.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := s.readBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	return decodeStrict(body, v)
}

// answerCall writes a call's outcome: its result; an error the plugin
// answered, 422 plugin_error with the JSON-RPC error as rpc_error; or why
// there was no answer (kindOf).
func (s *Server) answerCall(w http.ResponseWriter, r *http.Request, res json.RawMessage, err error) {
	var rpcErr *jrpc2.Error
	switch {
	case err == nil:
		if res == nil {
			res = json.RawMessage("null")
		}
		writeScripts(w, http.StatusOK, map[string]any{"result": res})
	case errors.As(err, &rpcErr):
		msg := rpcErr.Message
		if msg == "" {
			msg = fmt.Sprintf("code %d, without a message", rpcErr.Code)
		}
		setErrorHeaders(w.Header(), http.StatusUnprocessableEntity)
		w.WriteHeader(http.StatusUnprocessableEntity)
		json.NewEncoder(w).Encode(map[string]any{"success": false, "errorcode": "plugin_error",
			"error": "the plugin answered an error: " + msg, "rpc_error": rpcErr})
	default:
		s.failScripts(w, r, err)
	}
}
