package webapi

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/store"
)

// The read-only queries of the /scripts/v1 API: the scripts a key may
// call, and the history of runs.

// scriptInfo is what a client needs to call a script, and nothing of how
// the server runs it: never its executable, directory, environment, user or
// group.
type scriptInfo struct {
	Name string `json:"name"`
	// Args is how many arguments a run must give: the highest @@N of the
	// script's params (the exectab has no variadic form).
	Args        int     `json:"args"`
	Stdin       bool    `json:"stdin"`       // -i: a run may send stdin
	Concurrency int     `json:"concurrency"` // -s: runs at once
	MaxQueue    int     `json:"max_queue"`   // -m: runs queued and running together, 0 no cap
	Timeout     float64 `json:"timeout"`     // -t in seconds, 0 none
	NotifyOnly  bool    `json:"notify_only"` // -n: a run starts no process
	RemoveDone  bool    `json:"remove_done"` // -r: successful and cancelled runs leave no history
}

func newScriptInfo(sc *catalog.Script) scriptInfo {
	return scriptInfo{Name: sc.Name, Args: sc.NumArgs(), Stdin: sc.AllowStdin, Concurrency: sc.Concurrency,
		MaxQueue: sc.MaxQueue, Timeout: sc.Timeout.Seconds(), NotifyOnly: sc.NoProcess, RemoveDone: sc.RemoveDone}
}

// canRunOrStatus is the right to see a script in the list: a key that may
// neither run it nor see its runs has no use for it.
func canRunOrStatus(g store.Guest) bool { return g.Run || g.Status }

// handleListScripts is GET /scripts/v1/scripts: the scripts of the exectab
// in force that the key may run or see the runs of, sorted by name.
func (s *Server) handleListScripts(w http.ResponseWriter, r *http.Request) {
	cat := s.scripts()
	list := make([]scriptInfo, 0, len(cat.Names()))
	for _, name := range cat.Names() {
		if allowed(r, canRunOrStatus, name) != nil {
			continue
		}
		if sc, ok := cat.Lookup(name); ok {
			list = append(list, newScriptInfo(sc))
		}
	}
	writeScripts(w, http.StatusOK, map[string]any{"scripts": list})
}

// historyParams are the query parameters of GET /scripts/v1/runs; apikey is
// a guest's credential (authorize).
var historyParams = []string{"name", "state", "since", "until", "limit", "cursor", "apikey"}

// handleRunHistory is GET /scripts/v1/runs: the runs of the history, newest
// first, a page at a time, each as GET /scripts/v1/status/{id} shows it. A
// guest key needs the status right, and sees only its script's runs.
func (s *Server) handleRunHistory(w http.ResponseWriter, r *http.Request) {
	q, err := historyQuery(r.URL.Query())
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	if g := guestOf(r); g != nil && g.Name != "" && q.Script == "" {
		q.Script = g.Name
	}
	if err := allowed(r, canStatus, q.Script); err != nil {
		s.failScripts(w, r, err)
		return
	}
	runs, next, err := s.cfg.Runs.ListRuns(r.Context(), q)
	if err != nil {
		s.failScripts(w, r, err)
		return
	}
	list := make([]map[string]any, 0, len(runs))
	for _, run := range runs {
		list = append(list, s.runStatus(run, seedClient(r)))
	}
	answer := map[string]any{"runs": list}
	if next != "" {
		answer["next_cursor"] = next
	}
	writeScripts(w, http.StatusOK, answer)
}

// historyQuery reads the parameters of GET /scripts/v1/runs. A parameter
// given empty is not given; one not known, or given twice, is refused, so
// that a typo never widens a listing silently.
func historyQuery(v url.Values) (store.RunQuery, error) {
	var q store.RunQuery
	for name, vals := range v {
		if !slices.Contains(historyParams, name) {
			return q, badRequestf("unknown parameter %q: the parameters are %s", name,
				strings.Join(historyParams[:len(historyParams)-1], ", "))
		}
		if len(vals) > 1 {
			return q, badRequestf("parameter %q given more than once", name)
		}
	}
	q.Script = v.Get("name")
	switch st := store.State(v.Get("state")); st {
	case "", store.StateQueued, store.StateRunning, store.StateDone:
		q.State = st
	default:
		return q, badRequestf("state must be queued, running or done, not %q", st)
	}
	var err error
	if q.Since, err = unixParam(v, "since"); err != nil {
		return q, err
	}
	if q.Until, err = unixParam(v, "until"); err != nil {
		return q, err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return q, badRequestf("until (%d) must be after since (%d): since is included, until is not",
			q.Until.Unix(), q.Since.Unix())
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		switch {
		case err != nil && strings.Trim(l, "0123456789") == "" && l != "":
			return q, badRequestf("limit %s is more than %d, the most runs a page holds", l, store.MaxListLimit)
		case err != nil || n < 1:
			return q, badRequestf("limit must be a number of runs from 1 to %d, not %q", store.MaxListLimit, l)
		case n > store.MaxListLimit:
			return q, badRequestf("limit %d is more than %d, the most runs a page holds", n, store.MaxListLimit)
		}
		q.Limit = n
	}
	q.Cursor = v.Get("cursor")
	return q, nil
}

// unixParam is the UNIX time in seconds of parameter name, the zero time
// when it is not given.
func unixParam(v url.Values, name string) (time.Time, error) {
	s := v.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, badRequestf("%s must be a UNIX time in seconds (0 or more), not %q", name, s)
	}
	// Past 2262 the history holds nothing: the store takes it as its
	// last time.
	return time.Unix(n, 0), nil
}
