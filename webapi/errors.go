package webapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/child"
	"github.com/rs/zerolog"
)

var errUnauthorized = errors.New("unauthorized: send Authorization: Bearer <token>")

// statusOf is the one place where error kinds become HTTP statuses. The
// message is safe to show: internal faults get a generic one.
func statusOf(err error) (int, string) {
	var bad *badRequest
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &bad):
		return http.StatusBadRequest, bad.msg
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, "request body larger than the limit (--max-body)"
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, err.Error()
	case errors.Is(err, catalog.ErrMissingArgument), errors.Is(err, catalog.ErrTooManyArguments),
		errors.Is(err, catalog.ErrInvalidArgument):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, errScriptsOnly):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, errNoSuchScript):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, broker.ErrGroupBusy):
		return http.StatusTooManyRequests, err.Error()
	case errors.Is(err, broker.ErrAliasInUse):
		return http.StatusConflict, err.Error()
	case errors.Is(err, broker.ErrTooManyProcs), errors.Is(err, broker.ErrShuttingDown):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, child.ErrStartFailed):
		return http.StatusNotFound, err.Error()
	}
	return http.StatusInternalServerError, "internal error"
}

// fail answers a request with the status and message of err's kind. Internal
// faults are logged with their detail, which the client does not see.
func fail(w http.ResponseWriter, log zerolog.Logger, err error) {
	status, msg := statusOf(err)
	if status == http.StatusInternalServerError {
		log.Error().Err(err).Msg("internal error")
	} else {
		log.Debug().Err(err).Int("status", status).Msg("request refused")
	}
	writeError(w, status, msg)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
