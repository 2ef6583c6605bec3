package webapi

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/store"
)

// The Cloud Storage Server /scripts convention, for the applications built
// on that server's SDK (docs/seed-cloud-storage-wire.md has its wire).
//
// A request that carries the X-APIKey header is one of theirs: that SDK
// sends its key there, and rexec's own clients never do. Such a request gets
// the same answers as any other but for its errors: every error is a 400
// (the SDK reads an error's body only from a 400) whose errorcode is the
// seed's name for the condition where the seed has one, and a missing or
// wrong key is a 403 invalid_missing_apikey. Its status list is keyed by
// script name (seedRunLists), and its status objects carry the seed's
// "started" as a float. Everything else, the success shapes above all, is
// the same for every client.

// seedClient reports whether r comes from a client of the Cloud Storage
// Server's SDK: it carries X-APIKey, and is for the /scripts API, the one
// that SDK speaks.
func seedClient(r *http.Request) bool {
	return r != nil && len(r.Header.Values(apiKeyHeader)) > 0 && isScriptsAPI(r.URL.Path)
}

// seedCoded is an error that the seed's clients know by a code of its own:
// the condition is the same as the wrapped error's, which the rest of rexec
// sees (kindOf).
type seedCoded struct {
	err  error
	code string
}

func (e *seedCoded) Error() string { return e.err.Error() }
func (e *seedCoded) Unwrap() error { return e.err }

// seedAs tags err with the seed's errorcode for it.
func seedAs(code string, err error) error { return &seedCoded{err: err, code: code} }

// seedFieldCodes are the members of a request body whose bad value has a
// seed errorcode of its own, "invalid_" and the member's name.
var seedFieldCodes = []string{"name", "args", "stdin", "queue", "expires"}

// seedCodeOf is the seed's errorcode for err, whose kind's code is code: the
// error's own tag (seedAs), else the code of the member a bad body names,
// else code.
func seedCodeOf(err error, code string) string {
	var tagged *seedCoded
	var bad *badRequest
	switch {
	case errors.As(err, &tagged):
		return tagged.code
	case errors.As(err, &bad) && slices.Contains(seedFieldCodes, bad.field):
		return "invalid_" + bad.field
	case errors.Is(err, launch.ErrNoStdin):
		return "stdin_not_allowed"
	}
	return code
}

// seedStatus is the status and errorcode of an error answer to a seed's
// client, for rexec's status and code: 403 for a missing or wrong key, 400
// for everything else, with the seed's name for the conditions it names
// otherwise.
func seedStatus(status int, code string) (int, string) {
	switch code {
	case "unauthorized":
		return http.StatusForbidden, "invalid_missing_apikey"
	case "forbidden", "no_token":
		return http.StatusBadRequest, "access_denied"
	case "too_many_queued":
		return http.StatusBadRequest, "queue_full"
	}
	return http.StatusBadRequest, code
}

// seedMethodCode is the seed's errorcode for a method that a route of the
// given methods does not serve: use_delete_request, use_post_request or
// use_get_request.
func seedMethodCode(methods []string) string {
	for _, m := range []string{http.MethodDelete, http.MethodPost, http.MethodGet} {
		if slices.Contains(methods, m) {
			return "use_" + strings.ToLower(m) + "_request"
		}
	}
	return "invalid_api_call"
}

// seedRunLists is GET /scripts/v1/status without an id as the seed answers
// it: the ids of the queued and of the running runs, keyed by script name.
// Only names with runs appear, so nothing gives two empty objects.
func seedRunLists(active []store.Run) (queued, running map[string][]string) {
	queued, running = map[string][]string{}, map[string][]string{}
	for _, run := range active {
		if run.State == store.StateRunning {
			running[run.Script] = append(running[run.Script], run.ID)
		} else {
			queued[run.Script] = append(queued[run.Script], run.ID)
		}
	}
	return queued, running
}
