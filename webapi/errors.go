package webapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"syscall"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/plugin"
	"github.com/rexec/rexec/store"
	"github.com/rs/zerolog"
)

var (
	errUnauthorized    = errors.New("unauthorized: send Authorization: Bearer <token>")
	errUnauthorizedTLS = errors.New("unauthorized: present a client certificate that the server's --tls-client-ca verifies, " +
		"or send Authorization: Bearer <token>")
	errUnauthorizedAPIKey = errors.New("invalid or missing API key: send X-APIKey: <key>, the admin token or a guest key")
	errBodyTimeout        = errors.New("the request body took too long to arrive (--body-timeout)")
)

// retryAfter is the Retry-After of a 503: the conditions it names (out of
// descriptors, a busy store) are usually over within a second or so.
const retryAfter = "1"

// kindOf is the one place where error kinds become an HTTP status, the
// errorcode of the /scripts/v1 API and a message safe to show. A condition
// of the server (out of descriptors, processes or memory; the store busy or
// full; shutting down) is a 503 that names it, never a 404 or a bare 500;
// anything unexpected is a 500 whose detail goes to the log only.
func kindOf(err error) (status int, code, msg string) {
	var bad *badRequest
	var badEvent *plugin.EventError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &bad):
		return http.StatusBadRequest, "invalid_request", bad.msg
	case errors.As(err, &badEvent):
		return http.StatusBadRequest, "invalid_request", badEvent.Msg
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, "too_large", "request body larger than the limit (--max-body)"
	case errors.Is(err, errBodyTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, "body_timeout", errBodyTimeout.Error()
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, "unauthorized", err.Error()

	// Conditions of the server: the same request may succeed later.
	case errors.Is(err, child.ErrNoResources):
		return http.StatusServiceUnavailable, "no_resources", err.Error()
	case errors.Is(err, store.ErrFull), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return http.StatusServiceUnavailable, "storage_full", "the server's disk is full: the run history cannot be written"
	case errors.Is(err, store.ErrBusy):
		return http.StatusServiceUnavailable, "storage_busy", "the run history is locked by another process: try again"
	case errors.Is(err, broker.ErrTooManyProcs):
		return http.StatusServiceUnavailable, "too_many_procs", err.Error()
	case errors.Is(err, broker.ErrShuttingDown), errors.Is(err, detached.ErrClosed), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "shutting_down", "server is shutting down"

	// The request's arguments.
	case errors.Is(err, catalog.ErrMissingArgument), errors.Is(err, catalog.ErrTooManyArguments),
		errors.Is(err, catalog.ErrInvalidArgument), errors.Is(err, catalog.ErrOptionArgument),
		errors.Is(err, child.ErrArgTooLong):
		return http.StatusBadRequest, "invalid_args", err.Error()
	case errors.Is(err, launch.ErrStdin):
		return http.StatusBadRequest, "invalid_stdin", err.Error()
	case errors.Is(err, cgroup.ErrLimit):
		return http.StatusBadRequest, "invalid_limit", err.Error()
	case errors.Is(err, launch.ErrTTY), errors.Is(err, child.ErrNotTTY):
		return http.StatusBadRequest, "invalid_tty", err.Error()
	case errors.Is(err, launch.ErrNoProcess), errors.Is(err, launch.ErrTimeout):
		return http.StatusBadRequest, "invalid_request", err.Error()

	// What the request names.
	case errors.Is(err, launch.ErrNoSuchScript):
		return http.StatusNotFound, "invalid_name", err.Error()
	case errors.Is(err, errNoScripts):
		return http.StatusNotFound, "no_scripts", err.Error()
	case errors.Is(err, broker.ErrNoSuchAlias):
		return http.StatusNotFound, "invalid_alias", err.Error()
	case errors.Is(err, store.ErrNoSuchGuest):
		return http.StatusNotFound, "invalid_id", "no guest key with this id"
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "invalid_id", "no run with this id"
	case errors.Is(err, store.ErrBadCursor):
		return http.StatusBadRequest, "invalid_request", "cursor is not one this server gave out: pass the next_cursor of the page before, as it is"
	case errors.Is(err, store.ErrBadOffset):
		return http.StatusRequestedRangeNotSatisfiable, "invalid_offset", err.Error()
	case errors.Is(err, child.ErrStartFailed):
		return http.StatusNotFound, "start_failed", err.Error()

	// Rights and limits.
	case errors.Is(err, errScriptsOnly):
		return http.StatusForbidden, "forbidden", err.Error()
	case errors.Is(err, errForbidden):
		return http.StatusForbidden, "forbidden", err.Error()
	case errors.Is(err, errNoToken):
		return http.StatusForbidden, "no_token", err.Error()
	case errors.Is(err, detached.ErrRunToken):
		return http.StatusForbidden, "invalid_token", err.Error()
	case errors.Is(err, broker.ErrGroupBusy):
		return http.StatusTooManyRequests, "busy", err.Error()
	case errors.Is(err, detached.ErrQueueFull):
		return http.StatusTooManyRequests, "queue_full", err.Error()
	case errors.Is(err, detached.ErrNoFleet):
		return http.StatusBadRequest, "no_fleet", err.Error()
	case errors.Is(err, detached.ErrUnknownHost):
		return http.StatusBadRequest, "unknown_host", err.Error()
	case errors.Is(err, detached.ErrTooManyQueued):
		return http.StatusTooManyRequests, "too_many_queued", err.Error()
	case errors.Is(err, detached.ErrTooMuchStdin):
		return http.StatusTooManyRequests, "too_much_stdin", err.Error()
	case errors.Is(err, errTooManyMonitors):
		return http.StatusTooManyRequests, "too_many_monitors", err.Error()
	case errors.Is(err, broker.ErrAliasInUse):
		return http.StatusConflict, "alias_in_use", err.Error()
	case errors.Is(err, detached.ErrDone):
		return http.StatusConflict, "already_done", err.Error()

	// Plugin commands (/plugins/v1).
	case errors.Is(err, plugin.ErrNoSuchComponent):
		return http.StatusNotFound, "invalid_component", err.Error()
	case errors.Is(err, plugin.ErrNotCommand):
		return http.StatusBadRequest, "not_a_command", err.Error()
	case errors.Is(err, plugin.ErrNoSuchSession):
		return http.StatusNotFound, "invalid_session", err.Error()
	case errors.Is(err, plugin.ErrForbidden):
		return http.StatusForbidden, "forbidden", err.Error()
	case errors.Is(err, plugin.ErrTooManySessions):
		return http.StatusTooManyRequests, "too_many_sessions", err.Error()
	case errors.Is(err, plugin.ErrTooManyProcs):
		return http.StatusServiceUnavailable, "too_many_plugin_procs", err.Error()
	case errors.Is(err, plugin.ErrBreakerOpen):
		return http.StatusServiceUnavailable, "plugin_failing", err.Error()
	case errors.Is(err, plugin.ErrClosed):
		return http.StatusServiceUnavailable, "shutting_down", "server is shutting down"
	case errors.Is(err, plugin.ErrDeadline):
		return http.StatusGatewayTimeout, "plugin_timeout", err.Error()
	case errors.Is(err, plugin.ErrEnded):
		return http.StatusBadGateway, "plugin_ended", err.Error()
	case errors.Is(err, plugin.ErrStartFailed):
		return http.StatusBadGateway, "plugin_start_failed", err.Error()
	}
	return http.StatusInternalServerError, "internal_error", "internal error"
}

// fail answers a POST /process request with the status and message of err's
// kind. Internal faults are logged with their detail, which the client does
// not see.
func fail(w http.ResponseWriter, log zerolog.Logger, err error) {
	status, _, msg := kindOf(err)
	logRefusal(log, status, err)
	writeError(w, status, msg)
}

// failScripts answers a /scripts/v1 request with the status, errorcode and
// message of err's kind, in the Cloud Storage Server's convention when r
// comes from one of its clients (seedwire.go).
func (s *Server) failScripts(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := kindOf(err)
	logRefusal(s.log, status, err)
	if seedClient(r) {
		code = seedCodeOf(err, code)
	}
	writeScriptsError(w, r, status, code, msg)
}

func logRefusal(log zerolog.Logger, status int, err error) {
	switch {
	case status == http.StatusInternalServerError:
		log.Error().Err(err).Msg("internal error")
	case status == http.StatusServiceUnavailable:
		log.Warn().Err(err).Int("status", status).Msg("request refused: the server cannot take it now")
	default:
		log.Debug().Err(err).Int("status", status).Msg("request refused")
	}
}

// writeError writes the error body of POST /process and the paths outside
// the /scripts/v1 API: {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	setErrorHeaders(w.Header(), status)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// writeScriptsError writes the error body of the /scripts/v1 API: to a
// client of the Cloud Storage Server, with its status and errorcode for the
// condition (seedwire.go).
func writeScriptsError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if seedClient(r) {
		status, code = seedStatus(status, code)
	}
	setErrorHeaders(w.Header(), status)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"success": false, "error": msg, "errorcode": code})
}

func setErrorHeaders(h http.Header, status int) {
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		h.Set("Retry-After", retryAfter)
	}
}
