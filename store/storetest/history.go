// Package storetest checks that an implementation of store.History and
// store.Outputs keeps their contracts. TestHistory and TestOutputs run the
// subtests that any implementation must pass: the single-host *store.Store
// (SQLite and files) as well as one shared by several hosts. The package
// depends on the interfaces, types and error kinds of package store only,
// never on *store.Store.
//
// The suites assert what the interfaces' doc comments promise, and what
// their callers (package detached, webapi) rely on where a comment is
// silent; each such place says so. Waits are bounded generously (Patience)
// where something must happen, and short (Quiet) where they only show that
// something did not happen early: no assertion depends on the speed of the
// machine.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/store"
)

// Patience bounds the waits for something that must happen (a follower
// getting bytes, a concurrent batch finishing): long enough for a loaded
// machine running -race, so that reaching it means a bug, not a slow host.
const Patience = 10 * time.Second

// Quiet is how long a suite watches for something that must not happen
// (a follower returning while the run is still writing). It only proves
// that the thing did not happen early.
const Quiet = 100 * time.Millisecond

// clockSkew is how far the clock of the history (another host's, for a
// shared one) may be from this process's when the suite checks a time the
// history took itself, such as QueuedAt.
const clockSkew = time.Minute

// The first and last times the history can store (see store.StorableTime):
// UNIX nanoseconds in an int64.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// TestHistory runs the conformance subtests of store.History. open returns
// a new, empty history, released at the end of the t it is given.
func TestHistory(t *testing.T, open func(t *testing.T) store.History) {
	for _, tc := range []struct {
		name string
		test func(*testing.T, store.History)
	}{
		{"Create", testCreate},
		{"CreateIgnoresOtherFields", testCreateIgnores},
		{"CreateNoArgs", testCreateNoArgs},
		{"CreateInvalid", testCreateInvalid},
		{"Timeout", testTimeout},
		{"IDs", testIDs},
		{"GetUnknown", testGetUnknown},
		{"StorableTimes", testStorableTimes},
		{"MarkStarted", testMarkStarted},
		{"SetProgress", testSetProgress},
		{"SetResult", testSetResult},
		{"MarkDone", testMarkDone},
		{"MarkDoneSignal", testMarkDoneSignal},
		{"MarkDoneQueued", testMarkDoneQueued},
		{"MarkDoneUsage", testMarkDoneUsage},
		{"MarkDoneInvalid", testMarkDoneInvalid},
		{"MarkDoneZeroTime", testMarkDoneZeroTime},
		{"Delete", testDelete},
		{"UnknownID", testUnknownID},
		{"ListOrder", testListOrder},
		{"QueuedAtOrder", testQueuedAtOrder},
		{"Recover", testRecover},
		{"DeleteEndedBefore", testDeleteEndedBefore},
		{"DeleteEndedBeforeFarTimes", testDeleteEndedBeforeFarTimes},
		{"Concurrent", testConcurrent},
		{"ListRuns", testListRuns},
		{"ListRunsFilters", testListRunsFilters},
		{"ListRunsLimit", testListRunsLimit},
		{"ListRunsBadCursor", testListRunsBadCursor},
		{"ListRunsDeleted", testListRunsDeleted},
		{"ListRunsPages", testListRunsPages},
		{"TaskTimes", testTaskTimes},
		{"TaskTimesEveryRead", testTaskTimesEveryRead},
		{"TaskTimesBounded", testTaskTimesBounded},
		{"TaskTimesInvalid", testTaskTimesInvalid},
		{"TaskTimesMarkDone", testTaskTimesMarkDone},
		{"TaskTimesRecover", testTaskTimesRecover},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, open(t)) })
	}
}

// MustCreate records a queued run of script with args.
func MustCreate(t *testing.T, h store.History, script string, args ...string) store.Run {
	t.Helper()
	r := store.Run{Script: script, Args: args, Who: "key-1"}
	if err := h.Create(context.Background(), &r); err != nil {
		t.Fatalf("Create(%s): %v", script, err)
	}
	return r
}

// MustGet returns the run id.
func MustGet(t *testing.T, h store.History, id string) store.Run {
	t.Helper()
	r, err := h.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return r
}

// mustStart moves run id to running as process pid.
func mustStart(t *testing.T, h store.History, id string, pid int) {
	t.Helper()
	if err := h.MarkStarted(context.Background(), id, pid, time.Now()); err != nil {
		t.Fatalf("MarkStarted(%s): %v", id, err)
	}
}

// mustDone moves run id to done, ended as o says.
func mustDone(t *testing.T, h store.History, id string, o store.Outcome) {
	t.Helper()
	if err := h.MarkDone(context.Background(), id, o); err != nil {
		t.Fatalf("MarkDone(%s): %v", id, err)
	}
}

func ids(runs []store.Run) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	return out
}

func intp(i int) *int { return &i }

// unknownIDs are IDs no history has: the form of one of the store's, and
// others that must not reach a file system or a subject as they are.
var unknownIDs = []string{"zzzzzzzzzzzzzzzzzzzzzzzzzz", "aaaaaaaaaaaaaaaaaaaaaaaaaa", "", "nope",
	"../../etc/passwd", "../rexec.db", "a.b.>", "*"}

// near says whether the history's time got is within clockSkew of the
// interval [before, after] this process saw around the call.
func near(got, before, after time.Time) bool {
	return !got.Before(before.Add(-clockSkew)) && !got.After(after.Add(clockSkew))
}

func testCreate(t *testing.T, h store.History) {
	ctx := context.Background()
	startAt := time.Unix(1_700_000_000, 123456789)
	args := []string{"; rm -rf /", "$(id)", "", "ünï cödé", `"quoted" \ back`, "new\nline", "nul\x00byte"}
	r := store.Run{Script: "backup", Args: args, Who: "ops-key", StartAt: startAt, Timeout: 90 * time.Second}
	before := time.Now()
	if err := h.Create(ctx, &r); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if r.ID == "" || r.State != store.StateQueued || !near(r.QueuedAt, before, after) {
		t.Fatalf("after Create: ID %q, state %q, queued at %v (called between %v and %v)", r.ID, r.State, r.QueuedAt, before, after)
	}
	got := MustGet(t, h, r.ID)
	if got.ID != r.ID || got.Script != "backup" || got.Who != "ops-key" || !slices.Equal(got.Args, args) {
		t.Errorf("Get = %+v", got)
	}
	if got.State != store.StateQueued || got.Ended != "" || got.ExitCode != nil || got.Signal != "" ||
		got.Result != nil || got.OutputTruncated != "" || got.Pid != 0 || got.Pgid != 0 {
		t.Errorf("new run: %+v", got)
	}
	if got.Timeout != 90*time.Second {
		t.Errorf("Timeout %v, want 90s", got.Timeout)
	}
	if !got.QueuedAt.Equal(r.QueuedAt) || !got.StartAt.Equal(startAt) || !got.StartedAt.IsZero() || !got.EndedAt.IsZero() {
		t.Errorf("times: queued %v (Create said %v), start %v (want %v), started %v, ended %v",
			got.QueuedAt, r.QueuedAt, got.StartAt, startAt, got.StartedAt, got.EndedAt)
	}
	// The lists return the same record.
	for name, list := range map[string]func() ([]store.Run, error){
		"ListQueued": func() ([]store.Run, error) { return h.ListQueued(ctx, "backup") },
		"ListActive": func() ([]store.Run, error) { return h.ListActive(ctx) },
	} {
		runs, err := list()
		if err != nil || len(runs) != 1 {
			t.Errorf("%s: %v, %v", name, ids(runs), err)
			continue
		}
		l := runs[0]
		if l.ID != r.ID || !slices.Equal(l.Args, args) || l.Who != "ops-key" || l.Timeout != 90*time.Second ||
			!l.StartAt.Equal(startAt) || !l.QueuedAt.Equal(r.QueuedAt) || l.State != store.StateQueued {
			t.Errorf("%s: %+v", name, l)
		}
	}
}

// testCreateIgnores: only Script, Args, Who, StartAt and Timeout are taken
// from the caller's Run.
func testCreateIgnores(t *testing.T, h store.History) {
	r := store.Run{
		ID: "chosen-by-caller", Script: "x", State: store.StateDone, QueuedAt: time.Unix(1, 0),
		StartedAt: time.Unix(2, 0), EndedAt: time.Unix(3, 0), ExitCode: intp(3), Signal: "SIGKILL",
		Ended: store.EndedExit, Progress: store.Progress{Task: 1, TaskTitle: "t"}, Result: json.RawMessage(`{"a":1}`),
		Pid: 7, Pgid: 7, OutputSize: 99, OutputTruncated: "no",
		TaskStartedAt: time.Unix(4, 0), Tasks: []store.TaskSpan{{Title: "t", Start: time.Unix(1, 0), End: time.Unix(2, 0)}},
	}
	if err := h.Create(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	if r.ID == "chosen-by-caller" || r.State != store.StateQueued || r.QueuedAt.Equal(time.Unix(1, 0)) {
		t.Errorf("after Create: ID %q, state %q, queued at %v", r.ID, r.State, r.QueuedAt)
	}
	got := MustGet(t, h, r.ID)
	if got.State != store.StateQueued || !got.StartedAt.IsZero() || !got.EndedAt.IsZero() || got.ExitCode != nil ||
		got.Signal != "" || got.Ended != "" || got.Progress != (store.Progress{}) || got.Result != nil ||
		got.Pid != 0 || got.Pgid != 0 || got.OutputSize != 0 || got.OutputTruncated != "" ||
		!got.TaskStartedAt.IsZero() || got.Tasks != nil {
		t.Errorf("fields not taken from the caller were kept: %+v", got)
	}
}

func testCreateNoArgs(t *testing.T, h store.History) {
	r := store.Run{Script: "noargs"}
	if err := h.Create(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	got := MustGet(t, h, r.ID)
	if len(got.Args) != 0 || got.Who != "" || !got.StartAt.IsZero() || got.Timeout != 0 {
		t.Errorf("args %q, who %q, start at %v, timeout %v", got.Args, got.Who, got.StartAt, got.Timeout)
	}
}

func testCreateInvalid(t *testing.T, h store.History) {
	ctx := context.Background()
	for name, r := range map[string]store.Run{
		"no script":            {Args: []string{"a"}},
		"negative timeout":     {Script: "x", Timeout: -time.Second},
		"start after 2262":     {Script: "x", StartAt: maxTime.Add(time.Nanosecond)},
		"start before 1677":    {Script: "x", StartAt: minTime.Add(-time.Nanosecond)},
		"start in the year 1":  {Script: "x", StartAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
		"start in 9999":        {Script: "x", StartAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)},
		"start past, in +1400": {Script: "x", StartAt: time.Date(2262, 4, 12, 14, 0, 0, 0, time.FixedZone("east", 14*3600))},
	} {
		if err := h.Create(ctx, &r); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Create with %s: %v, want ErrInvalid", name, err)
		}
	}
	if active, err := h.ListActive(ctx); err != nil || len(active) != 0 {
		t.Errorf("after refused Creates: %d runs recorded (%v)", len(active), err)
	}
}

// testTimeout: a time limit is kept in whole milliseconds, rounded up, so
// that a positive one never becomes none.
func testTimeout(t *testing.T, h store.History) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, 0},
		{time.Nanosecond, time.Millisecond},
		{1500 * time.Microsecond, 2 * time.Millisecond},
		{time.Hour, time.Hour},
		{math.MaxInt64, math.MaxInt64},
	} {
		r := store.Run{Script: "t", Timeout: tc.in}
		if err := h.Create(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
		if got := MustGet(t, h, r.ID).Timeout; got != tc.want {
			t.Errorf("timeout %v read back as %v, want %v", tc.in, got, tc.want)
		}
	}
}

// testIDs: IDs are unique and URL-safe. Unguessable cannot be tested; at
// least 22 characters (128 bits in base64) are required of them.
func testIDs(t *testing.T, h store.History) {
	seen := map[string]bool{}
	for range 50 {
		r := MustCreate(t, h, "x")
		if len(r.ID) < 22 || url.PathEscape(r.ID) != r.ID || strings.ContainsAny(r.ID, "./") || seen[r.ID] {
			t.Fatalf("ID %q: too short, not URL-safe or repeated", r.ID)
		}
		seen[r.ID] = true
	}
}

func testGetUnknown(t *testing.T, h store.History) {
	MustCreate(t, h, "x")
	for _, id := range unknownIDs {
		if _, err := h.Get(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", id, err)
		}
	}
}

// testStorableTimes: the first and last storable times are kept to the
// nanosecond, and MarkStarted and MarkDone refuse the others.
func testStorableTimes(t *testing.T, h store.History) {
	ctx := context.Background()
	if !store.StorableTime(minTime) || !store.StorableTime(maxTime) || store.StorableTime(maxTime.Add(time.Nanosecond)) {
		t.Fatal("the suite's idea of the storable times is not store.StorableTime's")
	}
	for _, at := range []time.Time{minTime, maxTime, time.Unix(0, 0), time.Unix(1_700_000_000, 1)} {
		r := store.Run{Script: "x", StartAt: at}
		if err := h.Create(ctx, &r); err != nil {
			t.Fatalf("Create starting at %v: %v", at, err)
		}
		if got := MustGet(t, h, r.ID); !got.StartAt.Equal(at) {
			t.Errorf("StartAt %v read back as %v", at, got.StartAt)
		}
	}
	r := MustCreate(t, h, "x")
	if err := h.MarkStarted(ctx, r.ID, 1, maxTime.Add(time.Hour)); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("MarkStarted after 2262: %v, want ErrInvalid", err)
	}
	if err := h.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedExit, EndedAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("MarkDone in 3000: %v, want ErrInvalid", err)
	}
	if got := MustGet(t, h, r.ID); got.State != store.StateQueued {
		t.Errorf("after refused changes the run is %s, want queued", got.State)
	}
	started := minTime.Add(time.Hour)
	if err := h.MarkStarted(ctx, r.ID, 1, started); err != nil {
		t.Fatalf("MarkStarted in 1677: %v", err)
	}
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0), EndedAt: maxTime})
	if got := MustGet(t, h, r.ID); !got.StartedAt.Equal(started) || !got.EndedAt.Equal(maxTime) {
		t.Errorf("started %v ended %v, want %v and %v", got.StartedAt, got.EndedAt, started, maxTime)
	}
}

func testMarkStarted(t *testing.T, h store.History) {
	ctx := context.Background()
	r := MustCreate(t, h, "build", "v1")
	started := time.Unix(1_700_000_100, 123456789)
	if err := h.MarkStarted(ctx, r.ID, 4242, started); err != nil {
		t.Fatal(err)
	}
	got := MustGet(t, h, r.ID)
	// A child leads its own process group: Pgid is Pid.
	if got.State != store.StateRunning || got.Pid != 4242 || got.Pgid != 4242 || !got.StartedAt.Equal(started) ||
		got.Ended != "" || !got.EndedAt.IsZero() {
		t.Fatalf("after MarkStarted: %+v", got)
	}
	if err := h.MarkStarted(ctx, r.ID, 1, time.Now()); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("MarkStarted of a running run: %v, want ErrWrongState", err)
	}
	if got := MustGet(t, h, r.ID); got.Pid != 4242 || !got.StartedAt.Equal(started) {
		t.Errorf("a refused MarkStarted changed the run: %+v", got)
	}
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0)})
	if err := h.MarkStarted(ctx, r.ID, 1, time.Now()); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("MarkStarted of a done run: %v, want ErrWrongState", err)
	}
}

// testSetProgress: the progress is replaced, in every state.
func testSetProgress(t *testing.T, h store.History) {
	ctx := context.Background()
	r := MustCreate(t, h, "build")
	set := func(p store.Progress) {
		t.Helper()
		if err := h.SetProgress(ctx, r.ID, p); err != nil {
			t.Fatal(err)
		}
		if got := MustGet(t, h, r.ID).Progress; got != p {
			t.Errorf("progress %+v, want %+v", got, p)
		}
	}
	set(store.Progress{Task: 1, TaskTitle: "queued"})
	mustStart(t, h, r.ID, 10)
	p := store.Progress{Task: 2, TaskTotal: 3, TaskTitle: "Compile", SubtaskPercent: 50, SubtaskTitle: "Linking..."}
	set(p)
	set(store.Progress{Task: 3, TaskTotal: 3, TaskTitle: "Ünïcode ✓"})
	set(p)
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0)})
	if got := MustGet(t, h, r.ID).Progress; got != p {
		t.Errorf("MarkDone changed the progress: %+v, want %+v", got, p)
	}
	set(store.Progress{})
}

func testSetResult(t *testing.T, h store.History) {
	ctx := context.Background()
	r := MustCreate(t, h, "build")
	mustStart(t, h, r.ID, 10)
	res := json.RawMessage(` {"artifacts": ["a.tgz"], "ok": true, "n": 1.5} `)
	if err := h.SetResult(ctx, r.ID, res); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(MustGet(t, h, r.ID).Result, &m); err != nil || m["ok"] != true || m["n"] != 1.5 {
		t.Errorf("result %v, %v", m, err)
	}
	for _, bad := range []string{`[1,2]`, `"s"`, `{`, ``, `null`, `1`, `{"a":1} {}`} {
		if err := h.SetResult(ctx, r.ID, json.RawMessage(bad)); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SetResult(%q): %v, want ErrInvalid", bad, err)
		}
	}
	if err := json.Unmarshal(MustGet(t, h, r.ID).Result, &m); err != nil || m["ok"] != true {
		t.Errorf("after refused results: %v, %v", m, err)
	}
	// A run posts its result before it ends; the done run keeps it, and it
	// can still be replaced or removed.
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0)})
	if got := MustGet(t, h, r.ID); got.Result == nil {
		t.Error("MarkDone dropped the result")
	}
	if err := h.SetResult(ctx, r.ID, json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	if got := MustGet(t, h, r.ID); string(got.Result) != "{}" {
		t.Errorf("result %s, want {}", got.Result)
	}
	if err := h.SetResult(ctx, r.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got := MustGet(t, h, r.ID); got.Result != nil {
		t.Errorf("result after SetResult(nil) = %s", got.Result)
	}
}

func testMarkDone(t *testing.T, h store.History) {
	ctx := context.Background()
	r := MustCreate(t, h, "build")
	started := time.Unix(1_700_000_100, 123456789)
	if err := h.MarkStarted(ctx, r.ID, 4242, started); err != nil {
		t.Fatal(err)
	}
	ended := started.Add(90*time.Second + time.Nanosecond)
	const reason = "output larger than 100 bytes"
	mustDone(t, h, r.ID, store.Outcome{ExitCode: intp(3), Ended: store.EndedExit, EndedAt: ended, OutputTruncated: reason})
	got := MustGet(t, h, r.ID)
	if got.State != store.StateDone || got.Ended != store.EndedExit || got.ExitCode == nil || *got.ExitCode != 3 ||
		got.Signal != "" || !got.EndedAt.Equal(ended) || !got.StartedAt.Equal(started) || got.Pid != 4242 ||
		got.OutputTruncated != reason {
		t.Errorf("after MarkDone: %+v", got)
	}
	if err := h.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedCancelled}); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("MarkDone of a done run: %v, want ErrWrongState", err)
	}
	if got := MustGet(t, h, r.ID); got.Ended != store.EndedExit || !got.EndedAt.Equal(ended) {
		t.Errorf("a refused MarkDone changed the run: %+v", got)
	}
	for _, ended := range []store.Ended{store.EndedExit, store.EndedCancelled, store.EndedTimeout, store.EndedInterrupted, store.EndedStartFailed, store.EndedOOM} {
		r := MustCreate(t, h, "build")
		mustDone(t, h, r.ID, store.Outcome{Ended: ended, EndedAt: time.Now()})
		if got := MustGet(t, h, r.ID); got.Ended != ended {
			t.Errorf("ended %q read back as %q", ended, got.Ended)
		}
	}
}

func testMarkDoneSignal(t *testing.T, h store.History) {
	r := MustCreate(t, h, "build")
	mustStart(t, h, r.ID, 7)
	mustDone(t, h, r.ID, store.Outcome{Signal: "SIGKILL", Ended: store.EndedTimeout, EndedAt: time.Now()})
	got := MustGet(t, h, r.ID)
	if got.ExitCode != nil || got.Signal != "SIGKILL" || got.Ended != store.EndedTimeout || got.StartedAt.IsZero() || got.EndedAt.IsZero() {
		t.Errorf("%+v", got)
	}
}

// testMarkDoneUsage: what a run used is kept with it, every figure as it
// was given, and a figure the kernel did not give stays absent.
func testMarkDoneUsage(t *testing.T, h store.History) {
	peak, cpu, zero := int64(64<<20), int64(1234), int64(0)
	usage := &cgroup.Report{MemoryPeak: &peak, CPUMillis: &cpu, IORead: &zero, OOMKills: 1, PidsLimitHits: 3}
	r := MustCreate(t, h, "hog")
	mustStart(t, h, r.ID, 9)
	mustDone(t, h, r.ID, store.Outcome{Signal: "SIGKILL", Ended: store.EndedOOM, EndedAt: time.Now(), Usage: usage})
	got := MustGet(t, h, r.ID)
	if got.Ended != store.EndedOOM || got.Usage == nil || !reflect.DeepEqual(*got.Usage, *usage) {
		t.Errorf("ended %q usage %+v, want oom and %+v", got.Ended, got.Usage, usage)
	}
	if got.Usage != nil && (got.Usage.IOWrite != nil || got.Usage.IORead == nil) {
		t.Errorf("io figures %v %v: an absent one must stay absent, a zero one zero", got.Usage.IORead, got.Usage.IOWrite)
	}
	list, _, err := h.ListRuns(context.Background(), store.RunQuery{Script: "hog"})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range list {
		if l.ID == r.ID && (l.Usage == nil || !reflect.DeepEqual(*l.Usage, *usage)) {
			t.Errorf("List: usage %+v", l.Usage)
		}
	}
	r2 := MustCreate(t, h, "plain")
	mustDone(t, h, r2.ID, store.Outcome{Ended: store.EndedCancelled, EndedAt: time.Now()})
	if got := MustGet(t, h, r2.ID); got.Usage != nil {
		t.Errorf("a run without usage reads back with %+v", got.Usage)
	}
}

// testMarkDoneQueued: a queued run can end without starting (cancelled).
func testMarkDoneQueued(t *testing.T, h store.History) {
	ctx := context.Background()
	r := MustCreate(t, h, "build")
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedCancelled, EndedAt: time.Now()})
	got := MustGet(t, h, r.ID)
	if got.State != store.StateDone || got.Ended != store.EndedCancelled || !got.StartedAt.IsZero() || got.Pid != 0 || got.EndedAt.IsZero() {
		t.Errorf("%+v", got)
	}
	if err := h.MarkStarted(ctx, r.ID, 1, time.Now()); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("MarkStarted of a cancelled run: %v, want ErrWrongState", err)
	}
}

// testMarkDoneInvalid: Ended is required and must be one of the Ended
// values; a refused MarkDone changes nothing.
func testMarkDoneInvalid(t *testing.T, h store.History) {
	ctx := context.Background()
	r := MustCreate(t, h, "build")
	mustStart(t, h, r.ID, 1)
	for _, ended := range []store.Ended{"", "exploded", "EXIT"} {
		if err := h.MarkDone(ctx, r.ID, store.Outcome{Ended: ended, ExitCode: intp(0)}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("MarkDone with Ended %q: %v, want ErrInvalid", ended, err)
		}
	}
	if got := MustGet(t, h, r.ID); got.State != store.StateRunning || got.Ended != "" {
		t.Errorf("after refused MarkDones the run is %s (%q), want running", got.State, got.Ended)
	}
}

// testMarkDoneZeroTime: an Outcome without EndedAt ends the run now. The
// doc comments do not say so, but package detached relies on it (a run
// whose stdin could not be kept is marked done without a time), and a run
// without an end time would escape retention.
func testMarkDoneZeroTime(t *testing.T, h store.History) {
	r := MustCreate(t, h, "build")
	before := time.Now()
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedStartFailed})
	after := time.Now()
	if got := MustGet(t, h, r.ID); !near(got.EndedAt, before, after) {
		t.Errorf("EndedAt %v, want about now (%v)", got.EndedAt, before)
	}
}

func testDelete(t *testing.T, h store.History) {
	ctx := context.Background()
	r := MustCreate(t, h, "build")
	other := MustCreate(t, h, "build")
	if err := h.Delete(ctx, r.ID); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("Delete of a queued run: %v, want ErrWrongState", err)
	}
	mustStart(t, h, r.ID, 1)
	if err := h.Delete(ctx, r.ID); !errors.Is(err, store.ErrWrongState) {
		t.Errorf("Delete of a running run: %v, want ErrWrongState", err)
	}
	if got := MustGet(t, h, r.ID); got.State != store.StateRunning {
		t.Errorf("after refused Deletes the run is %s", got.State)
	}
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0)})
	if err := h.Delete(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Get(ctx, r.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := h.Delete(ctx, r.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	if active, err := h.ListActive(ctx); err != nil || !slices.Equal(ids(active), []string{other.ID}) {
		t.Errorf("ListActive after Delete: %v, %v", ids(active), err)
	}
	MustGet(t, h, other.ID)
}

func testUnknownID(t *testing.T, h store.History) {
	ctx := context.Background()
	MustCreate(t, h, "x")
	for _, id := range unknownIDs {
		for name, err := range map[string]error{
			"MarkStarted": h.MarkStarted(ctx, id, 1, time.Now()),
			"MarkDone":    h.MarkDone(ctx, id, store.Outcome{Ended: store.EndedExit}),
			"SetProgress": h.SetProgress(ctx, id, store.Progress{}),
			"SetTaskProgress": h.SetTaskProgress(ctx, id, store.Progress{Task: 1}, time.Now(),
				[]store.TaskSpan{{Title: "t", Start: time.Now(), End: time.Now()}}),
			"SetResult": h.SetResult(ctx, id, json.RawMessage(`{}`)),
			"Delete":    h.Delete(ctx, id),
		} {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s(%q): %v, want ErrNotFound", name, id, err)
			}
		}
	}
}

// testListOrder: ListActive is oldest first, ListQueued first in first out,
// whatever the states of the runs around.
func testListOrder(t *testing.T, h store.History) {
	ctx := context.Background()
	var all []store.Run
	for i := range 8 {
		all = append(all, MustCreate(t, h, []string{"a", "b"}[i%2], fmt.Sprint(i)))
	}
	// a: 0 2 4 6, b: 1 3 5 7. Start a0 and a4, end b1, start and end b5.
	mustStart(t, h, all[0].ID, 100)
	mustStart(t, h, all[4].ID, 104)
	mustDone(t, h, all[1].ID, store.Outcome{Ended: store.EndedCancelled})
	mustStart(t, h, all[5].ID, 105)
	mustDone(t, h, all[5].ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0)})

	for _, tc := range []struct {
		name string
		list func() ([]store.Run, error)
		want []store.Run
	}{
		{"active", func() ([]store.Run, error) { return h.ListActive(ctx) }, []store.Run{all[0], all[2], all[3], all[4], all[6], all[7]}},
		{"queued a", func() ([]store.Run, error) { return h.ListQueued(ctx, "a") }, []store.Run{all[2], all[6]}},
		{"queued b", func() ([]store.Run, error) { return h.ListQueued(ctx, "b") }, []store.Run{all[3], all[7]}},
		{"queued all", func() ([]store.Run, error) { return h.ListQueued(ctx, "") }, []store.Run{all[2], all[3], all[6], all[7]}},
		{"queued none", func() ([]store.Run, error) { return h.ListQueued(ctx, "c") }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.list()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), ids(tc.want)) {
				t.Errorf("got %v, want %v", ids(got), ids(tc.want))
			}
			for _, r := range got {
				if want := MustGet(t, h, r.ID); r.State != want.State || r.Script != want.Script || r.Pid != want.Pid {
					t.Errorf("listed %+v, Get says %+v", r, want)
				}
			}
		})
	}
}

// testQueuedAtOrder: runs created at the same time by many callers are
// listed in the order of their QueuedAt, which is the order the history
// took them in: a caller whose Create returned before another's began is
// listed first.
func testQueuedAtOrder(t *testing.T, h store.History) {
	ctx := context.Background()
	const callers, each = 8, 8
	var (
		wg   sync.WaitGroup
		errs = make(chan error, callers)
		mu   sync.Mutex
		made = map[int][]string{} // by caller, in the caller's order
	)
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				r := store.Run{Script: []string{"a", "b"}[c%2], Args: []string{fmt.Sprint(c, i)}}
				if err := h.Create(ctx, &r); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				made[c] = append(made[c], r.ID)
				mu.Unlock()
			}
		})
	}
	waitGroup(t, &wg)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	check := func(name string, runs []store.Run, want int) {
		t.Helper()
		if len(runs) != want {
			t.Fatalf("%s: %d runs, want %d", name, len(runs), want)
		}
		place := map[string]int{}
		for i, r := range runs {
			place[r.ID] = i
			if i > 0 && r.QueuedAt.Before(runs[i-1].QueuedAt) {
				t.Errorf("%s: run %d queued at %v, before run %d (%v)", name, i, r.QueuedAt, i-1, runs[i-1].QueuedAt)
			}
		}
		for c, made := range made {
			prev := -1
			for _, id := range made {
				p, ok := place[id]
				if !ok {
					continue // another script's list
				}
				if p < prev {
					t.Errorf("%s: caller %d's runs out of the order it made them", name, c)
				}
				prev = p
			}
		}
	}
	active, err := h.ListActive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check("ListActive", active, callers*each)
	queued, err := h.ListQueued(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	check("ListQueued", queued, callers*each)
	if !slices.Equal(ids(active), ids(queued)) {
		t.Error("ListActive and ListQueued of queued runs differ in order")
	}
	a, err := h.ListQueued(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	check("ListQueued(a)", a, callers*each/2)
}

// testRecover: Recover ends the running runs as interrupted and returns
// them with their process groups; queued and done runs are left alone.
func testRecover(t *testing.T, h store.History) {
	ctx := context.Background()
	queued := MustCreate(t, h, "q")
	running1 := MustCreate(t, h, "r", "1")
	running2 := MustCreate(t, h, "r", "2")
	done := MustCreate(t, h, "d")
	p := store.Progress{Task: 1, TaskTitle: "half way"}
	for i, r := range []store.Run{running1, running2, done} {
		mustStart(t, h, r.ID, 1000+i)
	}
	if err := h.SetProgress(ctx, running1.ID, p); err != nil {
		t.Fatal(err)
	}
	doneAt := time.Unix(1_700_000_000, 0)
	mustDone(t, h, done.ID, store.Outcome{ExitCode: intp(0), Ended: store.EndedExit, EndedAt: doneAt})

	before := time.Now()
	interrupted, err := h.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	got := ids(interrupted)
	slices.Sort(got)
	want := []string{running1.ID, running2.ID}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Recover returned %v, want %v", ids(interrupted), want)
	}
	pids := map[string]int{running1.ID: 1000, running2.ID: 1001}
	for _, r := range interrupted {
		// The caller kills the process groups that survived.
		if r.Pid != pids[r.ID] || r.Pgid != pids[r.ID] || r.Script != "r" {
			t.Errorf("returned %+v, want pid and pgid %d", r, pids[r.ID])
		}
		got := MustGet(t, h, r.ID)
		if got.State != store.StateDone || got.Ended != store.EndedInterrupted || got.ExitCode != nil ||
			got.Pid != pids[r.ID] || got.StartedAt.IsZero() || !near(got.EndedAt, before, after) {
			t.Errorf("recorded %+v", got)
		}
	}
	if got := MustGet(t, h, running1.ID); got.Progress != p {
		t.Errorf("progress of the interrupted run %+v, want %+v", got.Progress, p)
	}
	if got := MustGet(t, h, queued.ID); got.State != store.StateQueued {
		t.Errorf("queued run is %s after Recover", got.State)
	}
	if got := MustGet(t, h, done.ID); got.Ended != store.EndedExit || got.ExitCode == nil || *got.ExitCode != 0 || !got.EndedAt.Equal(doneAt) {
		t.Errorf("done run after Recover: %+v", got)
	}
	active, err := h.ListActive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(active), []string{queued.ID}) {
		t.Errorf("active after Recover: %v", ids(active))
	}
	if again, err := h.Recover(ctx); err != nil || len(again) != 0 {
		t.Errorf("second Recover: %v, %v", ids(again), err)
	}
	// The queued run can still start.
	mustStart(t, h, queued.ID, 2000)
}

// testDeleteEndedBefore: retention removes the done runs that ended before
// the time, never the others, however old, and counts what it removed.
func testDeleteEndedBefore(t *testing.T, h store.History) {
	ctx := context.Background()
	now := time.Now()
	cut := now.Add(-24 * time.Hour)
	finish := func(r store.Run, endedAt time.Time) {
		t.Helper()
		mustDone(t, h, r.ID, store.Outcome{ExitCode: intp(0), Ended: store.EndedExit, EndedAt: endedAt})
	}
	old := MustCreate(t, h, "x")
	finish(old, now.Add(-48*time.Hour))
	atCut := MustCreate(t, h, "x") // ended at the time itself: not before it
	finish(atCut, cut)
	recent := MustCreate(t, h, "x")
	finish(recent, now.Add(-time.Hour))
	stillQueued := MustCreate(t, h, "x") // queued long ago (StartAt), never ended: kept
	running := MustCreate(t, h, "x")
	if err := h.MarkStarted(ctx, running.ID, 1, now.Add(-72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// More than a few: a history may delete in batches.
	var many []store.Run
	for i := range 300 {
		r := MustCreate(t, h, "bulk")
		finish(r, now.Add(-30*24*time.Hour-time.Duration(i)*time.Second))
		many = append(many, r)
	}

	n, err := h.DeleteEndedBefore(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	if n != 301 {
		t.Errorf("deleted %d runs, want 301", n)
	}
	for _, r := range append([]store.Run{old}, many...) {
		if _, err := h.Get(ctx, r.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("old run %s: %v, want ErrNotFound", r.ID, err)
		}
	}
	for _, r := range []store.Run{atCut, recent, stillQueued, running} {
		MustGet(t, h, r.ID)
	}
	if n, err := h.DeleteEndedBefore(ctx, cut); n != 0 || err != nil {
		t.Errorf("second pass: %d, %v; want 0", n, err)
	}
	if n, err := h.DeleteEndedBefore(ctx, cut.Add(time.Nanosecond)); n != 1 || err != nil {
		t.Errorf("a nanosecond later: %d, %v; want 1 (the run that ended at the cut)", n, err)
	}
}

// testDeleteEndedBeforeFarTimes: a time past the storable ones still
// compares as a time: nothing ended before the year 1000, everything done
// ended before 3000.
func testDeleteEndedBeforeFarTimes(t *testing.T, h store.History) {
	ctx := context.Background()
	r := MustCreate(t, h, "x")
	mustDone(t, h, r.ID, store.Outcome{Ended: store.EndedExit, EndedAt: time.Now()})
	q := MustCreate(t, h, "x")
	for _, at := range []time.Time{time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), {}, minTime} {
		if n, err := h.DeleteEndedBefore(ctx, at); n != 0 || err != nil {
			t.Errorf("DeleteEndedBefore(%v) = %d, %v; want 0", at, n, err)
		}
	}
	if n, err := h.DeleteEndedBefore(ctx, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); n != 1 || err != nil {
		t.Errorf("DeleteEndedBefore(3000) = %d, %v; want 1", n, err)
	}
	MustGet(t, h, q.ID)
}

// testConcurrent: the broker records runs while webapi reads them; every
// change is kept, none is lost or mixed up with another's.
func testConcurrent(t *testing.T, h store.History) {
	ctx := context.Background()
	const writers, each = 20, 10
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		made = map[string]store.Run{}
		errs = make(chan error, writers)
	)
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				r := store.Run{Script: fmt.Sprintf("s%d", g%3), Args: []string{fmt.Sprint(g, i)}}
				err := h.Create(ctx, &r)
				if err == nil && i%2 == 0 {
					err = h.MarkStarted(ctx, r.ID, 10000+g, time.Now())
					if err == nil {
						err = h.SetProgress(ctx, r.ID, store.Progress{Task: i, TaskTitle: fmt.Sprint(g)})
					}
					if err == nil {
						err = h.MarkDone(ctx, r.ID, store.Outcome{ExitCode: intp(g), Ended: store.EndedExit})
					}
				}
				if err == nil {
					_, err = h.ListActive(ctx) // readers among the writers
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d run %d: %w", g, i, err)
					return
				}
				mu.Lock()
				made[r.ID] = r
				mu.Unlock()
			}
		})
	}
	waitGroup(t, &wg)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(made) != writers*each {
		t.Fatalf("%d distinct runs made, want %d", len(made), writers*each)
	}
	active, err := h.ListActive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != writers*each/2 {
		t.Errorf("%d active runs, want %d", len(active), writers*each/2)
	}
	for id, r := range made {
		got := MustGet(t, h, id)
		var g, i int
		if _, err := fmt.Sscan(r.Args[0], &g, &i); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Args, r.Args) || got.Script != r.Script {
			t.Errorf("run %s: args %q script %q, want %q %q", id, got.Args, got.Script, r.Args, r.Script)
		}
		if i%2 == 0 && (got.State != store.StateDone || got.Pid != 10000+g || got.ExitCode == nil || *got.ExitCode != g ||
			got.Progress.Task != i || got.Progress.TaskTitle != fmt.Sprint(g)) {
			t.Errorf("run %s of writer %d: %+v", id, g, got)
		}
		if i%2 == 1 && got.State != store.StateQueued {
			t.Errorf("run %s of writer %d is %s, want queued", id, g, got.State)
		}
	}
}

// waitGroup waits for wg, failing t if that takes longer than Patience
// (a deadlock in the implementation).
func waitGroup(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(Patience):
		t.Fatalf("concurrent calls still going after %v", Patience)
	}
}
