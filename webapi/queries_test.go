package webapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/store"
)

// getAs is a GET of path with key as the bearer token ("" none), and its
// answer as JSON.
func getAs(t *testing.T, base, key, path string) (int, apiAnswer) {
	t.Helper()
	var header []string
	if key != "" {
		header = []string{"Authorization", "Bearer " + key}
	}
	code, _, body := request(t, base, "GET", path, "", header...)
	var a apiAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("GET %s: %d, not JSON: %q", path, code, body)
	}
	if _, ok := a["success"]; !ok {
		t.Fatalf("GET %s: no success field in %v", path, a)
	}
	return code, a
}

// createGuest makes a guest key with the admin token and returns the key.
func (s *detachedServer) createGuest(t *testing.T, spec map[string]any) string {
	t.Helper()
	code, a := s.call(t, "POST", "/scripts/v1/guest/create", spec)
	if code != 200 {
		t.Fatalf("create guest %v: %d %v", spec, code, a)
	}
	return a["info"].(map[string]any)["apikey"].(string)
}

// GET /scripts/v1/scripts: what a client needs to call each script the key
// may run or see the runs of, sorted by name, and nothing of how the server
// runs it.
func TestListScripts(t *testing.T) {
	const admin = "admin-token"
	dataDir := t.TempDir()
	s := newDetachedServerToken(t, dataDir, detached.Config{}, admin,
		"-e=TESTCHILD=args -e=SECRET_TOKEN=hunter2 -d=/srv/private-dir -s=3 -m=10 -t=90s zeta EXE --to=@@2 @@1 @@2",
		"-e=TESTCHILD=cat -i -r alpha EXE",
		"-n note @@1",
		"-e=TESTCHILD=exit -t=1d mid EXE 0",
	)
	code, _, body := request(t, s.url, "GET", "/scripts/v1/scripts", "", "Authorization", "Bearer "+admin)
	if code != 200 {
		t.Fatalf("admin: %d %s", code, body)
	}
	var got struct {
		Success bool             `json:"success"`
		Scripts []map[string]any `json:"scripts"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || !got.Success {
		t.Fatalf("answer %s: %v", body, err)
	}
	want := []map[string]any{
		{"name": "alpha", "args": 0.0, "stdin": true, "concurrency": 1.0, "max_queue": 0.0, "timeout": 0.0, "notify_only": false, "remove_done": true},
		{"name": "mid", "args": 0.0, "stdin": false, "concurrency": 1.0, "max_queue": 0.0, "timeout": 86400.0, "notify_only": false, "remove_done": false},
		{"name": "note", "args": 1.0, "stdin": false, "concurrency": 1.0, "max_queue": 0.0, "timeout": 0.0, "notify_only": true, "remove_done": false},
		{"name": "zeta", "args": 2.0, "stdin": false, "concurrency": 3.0, "max_queue": 10.0, "timeout": 90.0, "notify_only": false, "remove_done": false},
	}
	if !reflect.DeepEqual(got.Scripts, want) {
		t.Errorf("scripts:\n%v\nwant\n%v", got.Scripts, want)
	}
	exe, _ := testchild.Command("")
	for _, secret := range []string{"hunter2", "SECRET_TOKEN", "/srv/private-dir", "TESTCHILD", "--to=", "@@", filepath.Base(exe)} {
		if strings.Contains(body, secret) {
			t.Errorf("the list shows %q: %s", secret, body)
		}
	}
	for _, leak := range []string{"path", "dir", "env", "user", "group", "params"} {
		if strings.Contains(body, `"`+leak+`"`) {
			t.Errorf("the list has a field %q: %s", leak, body)
		}
	}

	names := func(key string) []string {
		t.Helper()
		code, a := getAs(t, s.url, key, "/scripts/v1/scripts")
		if code != 200 {
			t.Fatalf("GET scripts: %d %v", code, a)
		}
		var out []string
		for _, sc := range a["scripts"].([]any) {
			out = append(out, sc.(map[string]any)["name"].(string))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		spec map[string]any
		want []string
	}{
		{"run one script", map[string]any{"name": "zeta", "run": true}, []string{"zeta"}},
		{"status of one script", map[string]any{"name": "mid", "status": true}, []string{"mid"}},
		{"status of every script", map[string]any{"status": true}, []string{"alpha", "mid", "note", "zeta"}},
		{"run every script", map[string]any{"run": true}, []string{"alpha", "mid", "note", "zeta"}},
		{"cancel only", map[string]any{"name": "zeta", "cancel": true}, nil},
		{"monitor every script only", map[string]any{"monitor": true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := names(s.createGuest(t, tc.spec)); !slices.Equal(got, tc.want) {
				t.Errorf("a key with %v sees %v, want %v", tc.spec, got, tc.want)
			}
		})
	}
	t.Run("reload", func(t *testing.T) {
		s.scripts.Store(exectab(t, "-e=TESTCHILD=exit beta EXE 0").Load())
		if got := names(admin); !slices.Equal(got, []string{"beta"}) {
			t.Errorf("after a reload: %v", got)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		if code, _, body := request(t, s.url, "POST", "/scripts/v1/scripts", "{}", "Authorization", "Bearer "+admin); code != 405 ||
			!strings.Contains(body, "method_not_allowed") {
			t.Errorf("POST: %d %s", code, body)
		}
		if code, _, body := request(t, s.url, "GET", "/scripts/v1/scripts", ""); code != 401 {
			t.Errorf("no token: %d %s", code, body)
		}
		if code, _, body := request(t, s.url, "GET", "/scripts/v1/scripts", "", "Authorization", "Bearer "+admin,
			"Origin", "https://evil.example"); code != 403 || !strings.Contains(body, "forbidden_origin") {
			t.Errorf("another site's page: %d %s", code, body)
		}
	})
	t.Run("no scripts", func(t *testing.T) {
		plain := newServer(t, serverOpts{})
		for _, path := range []string{"/scripts/v1/scripts", "/scripts/v1/runs"} {
			if code, _, body := request(t, plain.url, "GET", path, ""); code != 404 || !strings.Contains(body, `"no_scripts"`) {
				t.Errorf("%s without --scripts: %d %s", path, code, body)
			}
		}
	})
}

// historyPage is one page of GET /scripts/v1/runs.
type historyPage struct {
	Success    bool             `json:"success"`
	Runs       []map[string]any `json:"runs"`
	NextCursor *string          `json:"next_cursor"`
	Error      string           `json:"error"`
	ErrorCode  string           `json:"errorcode"`
}

func getHistory(t *testing.T, base, key string, q url.Values) (int, historyPage) {
	t.Helper()
	var header []string
	if key != "" {
		header = []string{"Authorization", "Bearer " + key}
	}
	path := "/scripts/v1/runs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	code, _, body := request(t, base, "GET", path, "", header...)
	var p historyPage
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("GET %s: %d, not JSON: %q", path, code, body)
	}
	if code == 200 && (!p.Success || p.Runs == nil) {
		t.Fatalf("GET %s: %s", path, body)
	}
	return code, p
}

// historyAll pages through GET /scripts/v1/runs with q and returns the IDs
// listed, in order, and the number of pages.
func historyAll(t *testing.T, base, key string, q url.Values) ([]string, int) {
	t.Helper()
	q = maps(q)
	var listed []string
	for pages := 1; ; pages++ {
		code, p := getHistory(t, base, key, q)
		if code != 200 {
			t.Fatalf("page %d of %v: %d %s %s", pages, q, code, p.ErrorCode, p.Error)
		}
		for _, r := range p.Runs {
			listed = append(listed, r["id"].(string))
		}
		if p.NextCursor == nil {
			return listed, pages
		}
		if *p.NextCursor == "" || *p.NextCursor == q.Get("cursor") {
			t.Fatalf("page %d: next_cursor %q", pages, *p.NextCursor)
		}
		q.Set("cursor", *p.NextCursor)
	}
}

func maps(q url.Values) url.Values {
	c := url.Values{}
	for k, v := range q {
		c[k] = slices.Clone(v)
	}
	return c
}

func params(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}

// historyRuns is how many runs TestRunHistory records before it pages.
const historyRuns = 10_000

// GET /scripts/v1/runs over 10,000 recorded runs: newest first, pages
// without gaps or repeats while runs are submitted, each filter, guest
// scoping, refusals.
func TestRunHistory(t *testing.T) {
	ctx := context.Background()
	const admin = "admin-token"
	s := newDetachedServerToken(t, t.TempDir(), detached.Config{}, admin,
		"-e=TESTCHILD=args job EXE @@1",
		"-e=TESTCHILD=exit other EXE 0",
		"-e=TESTCHILD=hang long EXE",
		"-n note @@1",
	)

	// The bulk, straight into the store (its runs are records only: the
	// server did not queue them), in a spread of seconds.
	scripts := []string{"job", "other", "gone"}
	made := make([]store.Run, historyRuns)
	var wg sync.WaitGroup
	var failed atomic.Value
	const makers = 4
	for m := range makers {
		wg.Go(func() {
			for i := m; i < historyRuns; i += makers {
				r := store.Run{Script: scripts[i%len(scripts)], Args: []string{fmt.Sprint(i)}}
				if err := s.store.Create(ctx, &r); err != nil {
					failed.Store(err)
					return
				}
				made[i] = r
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	// Newest first, as the store took them.
	slices.SortFunc(made, func(a, b store.Run) int { return b.QueuedAt.Compare(a.QueuedAt) })
	if err := s.store.SetResult(ctx, made[0].ID, json.RawMessage(`{"files":3}`)); err != nil {
		t.Fatal(err)
	}
	// Real runs on top: done with output, running, and a notification.
	jobID := s.submit(t, map[string]any{"name": "job", "args": []string{"hello"}})
	s.waitState(t, jobID, "done")
	longID := s.submit(t, map[string]any{"name": "long"})
	s.waitState(t, longID, "running")
	// Its status is still only once it said "ready": then it waits.
	for deadline := time.Now().Add(15 * time.Second); s.status(t, longID)["output_size"] != float64(len("ready\n")); {
		if time.Now().After(deadline) {
			t.Fatalf("the long run never said ready: %v", s.status(t, longID))
		}
		time.Sleep(10 * time.Millisecond)
	}
	noteID := s.submit(t, map[string]any{"name": "note", "args": []string{"x"}})
	realRuns := []string{noteID, longID, jobID}

	t.Run("same as status", func(t *testing.T) {
		code, p := getHistory(t, s.url, admin, params("limit", "4"))
		if code != 200 || len(p.Runs) != 4 || p.NextCursor == nil {
			t.Fatalf("%d %+v", code, p)
		}
		wantIDs := append(slices.Clone(realRuns), made[0].ID)
		for i, item := range p.Runs {
			if item["id"] != wantIDs[i] {
				t.Fatalf("item %d is %v, want %s", i, item["id"], wantIDs[i])
			}
			st := s.status(t, wantIDs[i])
			delete(st, "success")
			if !reflect.DeepEqual(map[string]any(st), item) {
				t.Errorf("item %d:\n%v\nstatus says\n%v", i, item, st)
			}
		}
		if job := p.Runs[2]; job["output_size"] != float64(len("\"hello\"\n")) || job["ended"] != "exit" || job["state"] != "done" {
			t.Errorf("the done job: %v", job)
		}
		if res, _ := p.Runs[3]["result"].(map[string]any); res["files"] != 3.0 {
			t.Errorf("the run with a result: %v", p.Runs[3])
		}
	})

	var submitted []string // by the background submitter, while the listings run
	t.Run("pages while runs are submitted", func(t *testing.T) {
		stop := make(chan struct{})
		var bg sync.WaitGroup
		var mu sync.Mutex
		bg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				id, err := submitAs(s.url, admin, `{"name":"note","args":["bg"]}`)
				if err != nil {
					t.Errorf("submit during the listing: %v", err)
					return
				}
				mu.Lock()
				submitted = append(submitted, id)
				mu.Unlock()
			}
		})
		defer func() {
			close(stop)
			bg.Wait()
		}()
		before := map[string]bool{}
		for _, r := range made {
			before[r.ID] = true
		}
		for _, id := range realRuns {
			before[id] = true
		}
		for _, limit := range []string{"1000", "333"} {
			listed, pages := historyAll(t, s.url, admin, params("limit", limit))
			seen := map[string]bool{}
			for _, id := range listed {
				if seen[id] {
					t.Fatalf("limit %s: run %s listed twice", limit, id)
				}
				seen[id] = true
			}
			for id := range before {
				if !seen[id] {
					t.Fatalf("limit %s: run %s not listed", limit, id)
				}
			}
			// The recorded runs, in the store's order, after whatever was
			// submitted before the first page.
			var recorded []string
			for _, id := range listed {
				if slices.Contains(realRuns, id) || !before[id] {
					continue
				}
				recorded = append(recorded, id)
			}
			for i, r := range made {
				if recorded[i] != r.ID {
					t.Fatalf("limit %s: the %dth recorded run listed is %s, want %s", limit, i, recorded[i], r.ID)
				}
			}
			mu.Lock()
			t.Logf("limit %s: %d pages, %d runs (%d submitted so far)", limit, pages, len(listed), len(submitted))
			mu.Unlock()
		}
	})

	// Every run there is now, as recorded, newest first: what the filters
	// are checked against.
	all := slices.Clone(made)
	for _, id := range append(realRuns, submitted...) {
		r, err := s.store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
	}
	slices.SortFunc(all, func(a, b store.Run) int { return b.QueuedAt.Compare(a.QueuedAt) })
	// expect lists the IDs of the runs that keep says, newest first.
	expect := func(keep func(store.Run) bool) []string {
		var ids []string
		for _, r := range all {
			if keep(r) {
				ids = append(ids, r.ID)
			}
		}
		return ids
	}
	mid := made[historyRuns/2].QueuedAt.Unix() // a second inside the bulk
	t.Run("filters", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			q    url.Values
			want []string
		}{
			{"name", params("name", "gone"), expect(func(r store.Run) bool { return r.Script == "gone" })},
			{"name not in the exectab", params("name", "nothing"), nil},
			{"state done", params("state", "done", "name", "job"), []string{jobID}},
			{"state running", params("state", "running"), []string{longID}},
			{"since", params("since", fmt.Sprint(mid), "name", "other"),
				expect(func(r store.Run) bool { return r.Script == "other" && r.QueuedAt.Unix() >= mid })},
			{"until", params("until", fmt.Sprint(mid), "state", "queued"),
				expect(func(r store.Run) bool { return r.State == store.StateQueued && r.QueuedAt.Unix() < mid })},
			{"state queued", params("state", "queued", "name", "other"),
				expect(func(r store.Run) bool { return r.State == store.StateQueued && r.Script == "other" })},
			{"state empty is every state", params("state", "", "since", fmt.Sprint(mid)),
				expect(func(r store.Run) bool { return r.QueuedAt.Unix() >= mid })},
			{"since and until", params("since", fmt.Sprint(mid), "until", fmt.Sprint(mid+1)),
				expect(func(r store.Run) bool { return r.QueuedAt.Unix() == mid })},
			{"everything", params("name", "job", "state", "queued", "since", "0", "until", fmt.Sprint(mid+1)),
				expect(func(r store.Run) bool {
					return r.Script == "job" && r.State == store.StateQueued && r.QueuedAt.Unix() <= mid
				})},
			{"far future", params("since", "99999999999"), nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				q := maps(tc.q)
				q.Set("limit", "250")
				got, pages := historyAll(t, s.url, admin, q)
				if !slices.Equal(got, tc.want) {
					t.Errorf("%d runs listed, want %d", len(got), len(tc.want))
					if len(got) < 10 {
						t.Errorf("got %v, want %v", got, tc.want)
					}
				}
				if want := max(1, (len(tc.want)+249)/250); pages != want {
					t.Errorf("%d pages, want %d", pages, want)
				}
			})
		}
		if len(expect(func(r store.Run) bool { return r.QueuedAt.Unix() == mid })) == 0 {
			t.Fatal("no run in the middle second")
		}
	})

	t.Run("limit", func(t *testing.T) {
		if code, p := getHistory(t, s.url, admin, nil); code != 200 || len(p.Runs) != store.DefaultListLimit || p.NextCursor == nil {
			t.Errorf("no limit: %d, %d runs, next %v; want %d and a cursor", code, len(p.Runs), p.NextCursor, store.DefaultListLimit)
		}
		if code, p := getHistory(t, s.url, admin, params("limit", "1000")); code != 200 || len(p.Runs) != 1000 {
			t.Errorf("limit 1000: %d, %d runs", code, len(p.Runs))
		}
		code, p := getHistory(t, s.url, admin, params("limit", "1001"))
		if code != 400 || p.ErrorCode != "invalid_request" || !strings.Contains(p.Error, "1000") {
			t.Errorf("limit 1001: %d %s %q", code, p.ErrorCode, p.Error)
		}
		// The last page: no next_cursor at all.
		if code, p := getHistory(t, s.url, admin, params("name", "job", "state", "done")); code != 200 || len(p.Runs) != 1 || p.NextCursor != nil {
			t.Errorf("the only page: %d, %d runs, next %v", code, len(p.Runs), p.NextCursor)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		_, p := getHistory(t, s.url, admin, params("limit", "2"))
		good := *p.NextCursor
		for _, tc := range []struct {
			name  string
			query string
			says  string
		}{
			{"bad state", "state=finished", "state"},
			{"since not a number", "since=yesterday", "since"},
			{"since negative", "since=-5", "since"},
			{"until a float", "until=1.5", "until"},
			{"until before since", "since=200&until=100", "until"},
			{"until = since", "since=200&until=200", "until"},
			{"limit 0", "limit=0", "limit"},
			{"limit negative", "limit=-1", "limit"},
			{"limit huge", "limit=99999999999999999999999", "1000"},
			{"limit not a number", "limit=ten", "limit"},
			{"malformed cursor", "cursor=not-a-cursor", "cursor"},
			{"cursor cut short", "cursor=" + good[:len(good)-2], "cursor"},
			{"cursor with padding", "cursor=" + good + "%3D", "cursor"},
			{"unknown parameter", "nmae=job", "nmae"},
			{"parameter twice", "name=job&name=other", "more than once"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, _, body := request(t, s.url, "GET", "/scripts/v1/runs?"+tc.query, "", "Authorization", "Bearer "+admin)
				var a apiAnswer
				json.Unmarshal([]byte(body), &a)
				if code != 400 || a["errorcode"] != "invalid_request" || a["success"] != false {
					t.Fatalf("%s: %d %s", tc.query, code, body)
				}
				if msg, _ := a["error"].(string); !strings.Contains(msg, tc.says) {
					t.Errorf("%s: message %q does not name %q", tc.query, msg, tc.says)
				}
			})
		}
		if code, _, body := request(t, s.url, "POST", "/scripts/v1/runs", "", "Authorization", "Bearer "+admin); code != 405 {
			t.Errorf("POST: %d %s", code, body)
		}
		if code, _, body := request(t, s.url, "GET", "/scripts/v1/runs", ""); code != 401 {
			t.Errorf("no token: %d %s", code, body)
		}
	})

	t.Run("guests", func(t *testing.T) {
		jobKey := s.createGuest(t, map[string]any{"name": "job", "status": true})
		listed, _ := historyAll(t, s.url, jobKey, params("limit", "1000"))
		want := expect(func(r store.Run) bool { return r.Script == "job" })
		if !slices.Equal(listed, want) {
			t.Errorf("a status key of job: %d runs listed, want its %d", len(listed), len(want))
		}
		if got, _ := historyAll(t, s.url, jobKey, params("name", "job", "state", "done")); !slices.Equal(got, []string{jobID}) {
			t.Errorf("a status key of job naming it: %v", got)
		}
		// By ?apikey=, as WebSocket clients send it.
		if code, p := getHistory(t, s.url, "", params("apikey", jobKey, "limit", "1")); code != 200 || len(p.Runs) != 1 || p.Runs[0]["id"] != jobID {
			t.Errorf("key in the URL: %d %+v", code, p)
		}
		if code, p := getHistory(t, s.url, jobKey, params("name", "other")); code != 403 || p.ErrorCode != "forbidden" {
			t.Errorf("a status key of job asking for other: %d %s", code, p.ErrorCode)
		}
		allKey := s.createGuest(t, map[string]any{"status": true})
		if code, p := getHistory(t, s.url, allKey, params("state", "running")); code != 200 || len(p.Runs) != 1 || p.Runs[0]["id"] != longID {
			t.Errorf("a status key of every script: %d %+v", code, p)
		}
		for _, spec := range []map[string]any{
			{"name": "job", "run": true, "cancel": true, "monitor": true},
			{"run": true},
		} {
			key := s.createGuest(t, spec)
			if code, p := getHistory(t, s.url, key, nil); code != 403 || p.ErrorCode != "forbidden" {
				t.Errorf("a key without the status right (%v): %d %s", spec, code, p.ErrorCode)
			}
		}
	})
}

// While the history cannot take a run's end (its database locked by
// another process), the history lists the run as it ended, under the state
// it is shown in.
func TestRunHistoryShowsUnrecordedEnd(t *testing.T) {
	s := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=hang long EXE", "-e=TESTCHILD=exit job EXE 0")
	done := s.submit(t, map[string]any{"name": "job"})
	s.waitState(t, done, "done")
	id := s.submit(t, map[string]any{"name": "long"})
	s.waitState(t, id, "running")

	lockHistory(t, s.dir)
	if code, a := s.call(t, "POST", "/scripts/v1/cancel/"+id, nil); code != 200 {
		t.Fatalf("cancel: %d %v", code, a)
	}
	s.waitState(t, id, "done")
	if r, err := s.store.Get(context.Background(), id); err != nil || r.State != store.StateRunning {
		t.Fatalf("the store has the run as %s (%v): the test needs its end unrecorded", r.State, err)
	}
	for _, tc := range []struct {
		state string
		want  []string
	}{{"done", []string{id, done}}, {"running", nil}, {"", []string{id, done}}} {
		code, p := getHistory(t, s.url, "", params("state", tc.state))
		var got []string
		for _, r := range p.Runs {
			got = append(got, r["id"].(string))
			if r["id"] == id && (r["state"] != "done" || r["ended"] != "cancelled") {
				t.Errorf("state=%s: the cancelled run is listed as %v", tc.state, r)
			}
		}
		if code != 200 || !slices.Equal(got, tc.want) {
			t.Errorf("state=%s: %d %v, want %v", tc.state, code, got, tc.want)
		}
	}
}

// submitAs posts a run with key and returns its id; safe to call from any
// goroutine.
func submitAs(base, key, body string) (string, error) {
	req, err := http.NewRequest("POST", base+"/scripts/v1/run", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var a struct {
		ID    string `json:"id"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("%d %s (%v)", resp.StatusCode, a.Error, err)
	}
	return a.ID, nil
}
