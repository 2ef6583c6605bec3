package webapi

import (
	"net/http"
	"strings"

	"github.com/rexec/rexec/console"
)

// The server's routing table: every path it serves, the methods each one
// serves and its handler, in one list. Handler registers it on a ServeMux;
// the contract test (webapi/contract) reads it to check that openapi.json
// documents every route and method, and no other.

// A route is a ServeMux pattern, the methods its handler serves and the
// handler. The pattern names no method: the handler answers any other
// method itself, 405 with Allow in its API's error shape. A route that
// serves GET also serves HEAD.
type route struct {
	pattern string
	methods []string // nil: every method (the catch-all)
	handler http.HandlerFunc
}

// routes is the routing table.
func (s *Server) routes() []route {
	const get, post, del = http.MethodGet, http.MethodPost, http.MethodDelete
	// A route of the /scripts/v1 API serves its methods, which
	// scriptsHandler checks.
	scripts := func(method, pattern string, h http.HandlerFunc, more ...string) route {
		methods := append([]string{method}, more...)
		return route{pattern, methods, s.scriptsHandler(methods, h)}
	}
	plugins := func(method, pattern string, h http.HandlerFunc) route {
		return route{pattern, []string{method}, s.pluginsHandler([]string{method}, h)}
	}
	return []route{
		{"/process", []string{get, post}, s.handleProcess},
		{"/process/{alias}", []string{del}, s.handleStop},
		{"/process/attach", []string{get}, s.handleAttach}, // an interactive run, over a WebSocket (attach.go)
		{"/healthz", []string{get}, s.handleHealthz},
		{"/readyz", []string{get}, s.handleReadyz},
		{"/metrics", []string{get}, s.handleMetrics},
		{openAPIPath, []string{get}, s.handleOpenAPI},
		scripts(post, "/scripts/v1/run", s.handleRunScript),
		scripts(post, "/scripts/v1/cancel/{id}", s.handleCancelRun),
		scripts(get, "/scripts/v1/status", s.handleListRuns),
		scripts(get, "/scripts/v1/status/{id}", s.handleRunStatus),
		scripts(get, "/scripts/v1/scripts", s.handleListScripts),
		scripts(get, "/scripts/v1/runs", s.handleRunHistory),
		scripts(get, "/scripts/v1/output/{id}", s.handleRunOutput),
		// The feed's monitors: on a server with plugins and no scripts,
		// for client events (admitFeedMonitor answers when there is no
		// feed).
		{"/scripts/v1/events", []string{get}, s.methodsHandler([]string{get}, s.handleEvents)},
		{"/scripts/v1/monitor", []string{get}, s.methodsHandler([]string{get}, s.handleMonitor)},
		scripts(post, "/scripts/v1/result/{id}", s.handlePostResult),
		scripts(post, "/scripts/v1/progress/{id}", s.handlePostProgress),
		scripts(get, "/scripts/v1/guest/list", s.guestsHandler(s.handleListGuests)),
		scripts(post, "/scripts/v1/guest/create", s.guestsHandler(s.handleCreateGuest)),
		// DELETE too: the Cloud Storage Server SDK deletes with it.
		scripts(post, "/scripts/v1/guest/delete/{id}", s.guestsHandler(s.handleDeleteGuest), del),
		// The Cloud Storage Server's WebSocket API (seedsocket.go): its SDK
		// opens /scripts/v1, and before 2020 /scripts.
		scripts(get, "/scripts/v1", s.handleScriptsSocket),
		scripts(get, "/scripts", s.handleScriptsSocket),
		{xmlrpcPath, []string{post}, s.handleXMLRPC}, // Symbolic's callback (xmlrpc.go)
		// Plugin commands (plugins.go).
		plugins(get, "/plugins/v1", s.handleListPlugins),
		plugins(post, "/plugins/v1/start", s.handleStartPlugin),
		plugins(post, "/plugins/v1/call", s.handleCallPluginOnce),
		plugins(post, "/plugins/v1/call/{session}", s.handleCallPlugin),
		plugins(post, "/plugins/v1/stop/{session}", s.handleStopPlugin),
		// Client events: the feed's, with or without plugins.
		{"/plugins/v1/events", []string{post}, s.methodsHandler([]string{post}, s.handleEmitEvent)},
		// The fleet's hosts (fleet.go); a single host lists itself.
		{"/fleet/v1/machines", []string{get}, s.methodsHandler([]string{get}, s.handleMachines)},
		// The web console (package console): the page, and its files.
		{"/{$}", []string{get}, s.consoleHandler()},
		{console.Prefix, []string{get}, s.consoleHandler()},
		{"/", nil, handleNotImplemented},
	}
}

// consoleHandler serves the web console (GET and HEAD; another method is
// 405), or says, whatever the method, that the server has none (501).
func (s *Server) consoleHandler() http.HandlerFunc {
	serve := s.methodsHandler([]string{http.MethodGet}, func(w http.ResponseWriter, r *http.Request) {
		s.cfg.Console.ServeHTTP(w, r)
	})
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Console == nil {
			handleNotImplemented(w, r)
			return
		}
		serve(w, r)
	}
}

// handleNotImplemented answers every path that the table has no route for;
// under /scripts/, the Cloud Storage Server's clients get its answer to an
// unknown call.
func handleNotImplemented(w http.ResponseWriter, r *http.Request) {
	msg := "not implemented: " + r.URL.Path + " (the API is POST /process and /scripts/v1)"
	if seedClient(r) && isScriptsAPI(r.URL.Path) {
		writeScriptsError(w, r, http.StatusNotImplemented, "invalid_api_call", msg)
		return
	}
	writeError(w, http.StatusNotImplemented, msg)
}

// isScriptsAPI reports whether path is in the /scripts/v1 API: /scripts,
// or under /scripts/ (the Cloud Storage Server's clients open /scripts and
// /scripts/v1 as WebSockets). Guest keys are for it, and its errors have
// its shape.
// isFleetAPI reports whether path is of the /fleet/v1 API, whose errors
// take /scripts/v1's shape.
func isFleetAPI(path string) bool { return strings.HasPrefix(path, "/fleet/") }

func isScriptsAPI(path string) bool {
	return path == "/scripts" || strings.HasPrefix(path, "/scripts/")
}

// Route is one entry of the routing table: a pattern and its methods.
type Route struct {
	Pattern string
	Methods []string // nil: every method (the catch-all)
}

// RouteTable is the server's routing table, in its order: what the
// contract test (webapi/contract) compares GET /openapi.json with.
func RouteTable() []Route {
	var s Server
	var table []Route
	for _, r := range s.routes() {
		table = append(table, Route{Pattern: r.pattern, Methods: r.methods})
	}
	return table
}
