// Package queuetest checks that an implementation of detached.Queue keeps
// its contract: TestQueue runs the subtests that any implementation must
// pass, the single-host memory queue as well as one shared by several
// hosts. It depends on the detached.Queue interface only.
//
// A Queue need not be safe for concurrent use, and none of its methods
// waits, so the suite calls it from one goroutine and passes the times
// (notBefore, now) itself: nothing depends on the clock.
package queuetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rexec/rexec/detached"
)

// T0 is the "now" the suite's times are around.
var T0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// TestQueue runs the conformance subtests of detached.Queue. open returns
// a new, empty queue.
func TestQueue(t *testing.T, open func() detached.Queue) {
	for _, tc := range []struct {
		name string
		test func(*testing.T, detached.Queue)
	}{
		{"Empty", testEmpty},
		{"FIFO", testFIFO},
		{"Position", testPosition},
		{"StartTimes", testStartTimes},
		{"DueAtItsTime", testDueAtItsTime},
		{"StartTimesKeepOrder", testStartTimesKeepOrder},
		{"Next", testNext},
		{"AddFront", testAddFront},
		{"AddFrontWithTime", testAddFrontWithTime},
		{"Remove", testRemove},
		{"RemoveForgetsTime", testRemoveForgetsTime},
		{"Scripts", testScripts},
		{"ManyScripts", testManyScripts},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, open()) })
	}
}

// TakeReady takes every run of script that is ready at now, in order.
func TakeReady(q detached.Queue, script string, now time.Time) []string {
	var ids []string
	for {
		id, ok := q.Ready(script, now)
		if !ok {
			return ids
		}
		ids = append(ids, id)
	}
}

func testEmpty(t *testing.T, q detached.Queue) {
	if id, ok := q.Ready("s", T0); ok {
		t.Errorf("Ready of an empty queue = %q", id)
	}
	if got := q.Position("a"); got != 0 {
		t.Errorf("Position of a run not queued = %d", got)
	}
	if got := q.Len("s"); got != 0 {
		t.Errorf("Len = %d", got)
	}
	if got := q.Scripts(); len(got) != 0 {
		t.Errorf("Scripts = %v", got)
	}
	if got := q.Next(T0); !got.IsZero() {
		t.Errorf("Next = %v, want zero", got)
	}
	if q.Remove("a") {
		t.Error("Remove of a run not queued = true")
	}
}

// testFIFO: runs without a time start in the order they were queued.
func testFIFO(t *testing.T, q detached.Queue) {
	for _, id := range []string{"a", "b", "c", "d"} {
		q.Add("s", id, time.Time{})
	}
	if got := q.Len("s"); got != 4 {
		t.Fatalf("Len = %d, want 4", got)
	}
	if got := q.Next(T0); !got.IsZero() {
		t.Errorf("Next without times = %v, want zero", got)
	}
	if got := TakeReady(q, "s", T0); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("Ready order = %v", got)
	}
	if got := q.Len("s"); got != 0 {
		t.Errorf("Len after draining = %d", got)
	}
	if got := q.Scripts(); len(got) != 0 {
		t.Errorf("Scripts after draining = %v", got)
	}
	if id, ok := q.Ready("s", T0); ok {
		t.Errorf("Ready of a drained queue = %q", id)
	}
	if id, ok := q.Ready("never", T0); ok {
		t.Errorf("Ready of an unknown script = %q", id)
	}
	// Taken runs are no longer queued.
	if got := q.Position("a"); got != 0 {
		t.Errorf("Position of a taken run = %d", got)
	}
}

// testPosition: a run's place counts the runs of its script before it,
// and moves up as they leave.
func testPosition(t *testing.T, q detached.Queue) {
	for _, id := range []string{"a1", "b1", "a2", "a3", "b2"} {
		q.Add(id[:1], id, time.Time{})
	}
	for id, want := range map[string]int{"a1": 1, "a2": 2, "a3": 3, "b1": 1, "b2": 2, "c1": 0} {
		if got := q.Position(id); got != want {
			t.Errorf("Position(%s) = %d, want %d", id, got, want)
		}
	}
	if got, want := q.Len("a"), 3; got != want {
		t.Errorf("Len(a) = %d, want %d", got, want)
	}
	if id, ok := q.Ready("a", T0); !ok || id != "a1" {
		t.Fatalf("Ready(a) = %q, %v", id, ok)
	}
	for id, want := range map[string]int{"a1": 0, "a2": 1, "a3": 2, "b1": 1, "b2": 2} {
		if got := q.Position(id); got != want {
			t.Errorf("after Ready(a): Position(%s) = %d, want %d", id, got, want)
		}
	}
}

// testStartTimes: a run waiting for its time keeps its place, and does
// not hold back the runs behind it whose time has come.
func testStartTimes(t *testing.T, q detached.Queue) {
	q.Add("s", "later", T0.Add(time.Hour))
	q.Add("s", "now", time.Time{})
	q.Add("s", "soon", T0.Add(time.Minute))
	q.Add("s", "past", T0.Add(-time.Minute))

	if got := q.Position("later"); got != 1 {
		t.Errorf("a waiting run keeps its place: Position = %d, want 1", got)
	}
	if got := q.Len("s"); got != 4 {
		t.Errorf("Len = %d, want 4 (waiting runs count)", got)
	}
	if got := TakeReady(q, "s", T0); !slices.Equal(got, []string{"now", "past"}) {
		t.Fatalf("ready at t0 = %v, want [now past]", got)
	}
	if got := q.Position("soon"); got != 2 {
		t.Errorf("Position(soon) = %d, want 2", got)
	}
	if got := TakeReady(q, "s", T0.Add(time.Minute-time.Nanosecond)); len(got) != 0 {
		t.Errorf("ready just before its time: %v", got)
	}
	if got := TakeReady(q, "s", T0.Add(2*time.Hour)); !slices.Equal(got, []string{"later", "soon"}) {
		t.Errorf("ready at t0+2h = %v, want [later soon]", got)
	}
	if got := q.Scripts(); len(got) != 0 {
		t.Errorf("Scripts = %v, want none", got)
	}
}

// testDueAtItsTime: a run's time has come at that time exactly.
func testDueAtItsTime(t *testing.T, q detached.Queue) {
	q.Add("s", "a", T0.Add(time.Minute))
	if got := TakeReady(q, "s", T0.Add(time.Minute)); !slices.Equal(got, []string{"a"}) {
		t.Errorf("ready at its time = %v, want [a]", got)
	}
}

// testStartTimesKeepOrder: once their times have come, runs start in the
// order they were queued, not in the order of their times.
func testStartTimesKeepOrder(t *testing.T, q detached.Queue) {
	q.Add("s", "b", T0.Add(2*time.Minute))
	q.Add("s", "a", T0.Add(time.Minute))
	q.Add("s", "c", T0.Add(3*time.Minute))
	q.Add("s", "d", time.Time{})
	if got := TakeReady(q, "s", T0.Add(time.Hour)); !slices.Equal(got, []string{"b", "a", "c", "d"}) {
		t.Errorf("order = %v, want [b a c d]", got)
	}
}

// testNext: Next is the earliest time in the future, over every script,
// for the manager's timer.
func testNext(t *testing.T, q detached.Queue) {
	q.Add("s", "later", T0.Add(time.Hour))
	q.Add("t", "soon", T0.Add(time.Minute))
	q.Add("s", "now", time.Time{})
	q.Add("u", "past", T0.Add(-time.Minute))
	for _, tc := range []struct {
		now, want time.Time
	}{
		{T0, T0.Add(time.Minute)},
		{T0.Add(-time.Hour), T0.Add(-time.Minute)},
		{T0.Add(time.Minute - time.Nanosecond), T0.Add(time.Minute)},
		{T0.Add(time.Minute), T0.Add(time.Hour)}, // not in the future at its time
		{T0.Add(time.Hour), time.Time{}},
	} {
		if got := q.Next(tc.now); !got.Equal(tc.want) {
			t.Errorf("Next(t0%+v) = %v, want %v", tc.now.Sub(T0), got, tc.want)
		}
	}
	// Next takes nothing out.
	if got := q.Len("s") + q.Len("t") + q.Len("u"); got != 4 {
		t.Errorf("%d runs queued after Next, want 4", got)
	}
	TakeReady(q, "t", T0.Add(time.Minute))
	if got := q.Next(T0); !got.Equal(T0.Add(time.Hour)) {
		t.Errorf("Next after the soonest started = %v, want t0+1h", got)
	}
	TakeReady(q, "s", T0.Add(time.Hour))
	if got := q.Next(T0); !got.IsZero() {
		t.Errorf("Next with no time in the future = %v, want zero", got)
	}
}

// testAddFront: a run put back (a start to retry) goes before the others.
func testAddFront(t *testing.T, q detached.Queue) {
	q.Add("s", "a", time.Time{})
	q.Add("s", "b", time.Time{})
	id, _ := q.Ready("s", T0)
	if id != "a" {
		t.Fatalf("Ready = %q, want a", id)
	}
	q.AddFront("s", id, time.Time{})
	if got := q.Position("a"); got != 1 {
		t.Errorf("Position(a) after AddFront = %d, want 1", got)
	}
	if got := q.Position("b"); got != 2 {
		t.Errorf("Position(b) after AddFront = %d, want 2", got)
	}
	q.AddFront("s", "z", time.Time{})
	q.Add("s", "c", time.Time{})
	if got := q.Len("s"); got != 4 {
		t.Errorf("Len = %d, want 4", got)
	}
	if got := TakeReady(q, "s", T0); !slices.Equal(got, []string{"z", "a", "b", "c"}) {
		t.Errorf("order = %v, want [z a b c]", got)
	}
	// To an empty script's queue.
	q.AddFront("new", "n", time.Time{})
	if got := q.Position("n"); got != 1 || !slices.Equal(q.Scripts(), []string{"new"}) {
		t.Errorf("AddFront to an empty queue: Position %d, Scripts %v", got, q.Scripts())
	}
}

// testAddFrontWithTime: a run put back at the front with a time still
// waits for it, without holding back the others.
func testAddFrontWithTime(t *testing.T, q detached.Queue) {
	q.Add("s", "x", time.Time{})
	q.AddFront("s", "y", T0.Add(time.Second))
	if got := q.Position("y"); got != 1 {
		t.Errorf("Position(y) = %d, want 1", got)
	}
	if got := q.Next(T0); !got.Equal(T0.Add(time.Second)) {
		t.Errorf("Next = %v, want t0+1s", got)
	}
	if got := TakeReady(q, "s", T0); !slices.Equal(got, []string{"x"}) {
		t.Errorf("ready = %v, want [x]", got)
	}
	if got := TakeReady(q, "s", T0.Add(time.Second)); !slices.Equal(got, []string{"y"}) {
		t.Errorf("ready = %v, want [y]", got)
	}
}

func testRemove(t *testing.T, q detached.Queue) {
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		q.Add("s", id, time.Time{})
	}
	q.Add("other", "o", time.Time{})
	if !q.Remove("c") {
		t.Fatal("Remove(c) = false")
	}
	if q.Remove("c") {
		t.Error("second Remove(c) = true")
	}
	if q.Remove("unknown") {
		t.Error("Remove(unknown) = true")
	}
	for id, pos := range map[string]int{"a": 1, "b": 2, "c": 0, "d": 3, "e": 4, "o": 1} {
		if got := q.Position(id); got != pos {
			t.Errorf("Position(%s) = %d, want %d", id, got, pos)
		}
	}
	if got := q.Len("s"); got != 4 {
		t.Errorf("Len = %d, want 4", got)
	}
	q.Remove("a")
	if got := q.Position("e"); got != 3 {
		t.Errorf("Position(e) = %d, want 3", got)
	}
	q.Remove("e")
	if got := TakeReady(q, "s", T0); !slices.Equal(got, []string{"b", "d"}) {
		t.Errorf("order = %v, want [b d]", got)
	}
	if !q.Remove("o") {
		t.Error("Remove(o) = false")
	}
	if got := q.Scripts(); len(got) != 0 {
		t.Errorf("Scripts = %v, want none", got)
	}
	// A taken run is not queued: Remove says so.
	q.Add("s", "t", time.Time{})
	q.Ready("s", T0)
	if q.Remove("t") {
		t.Error("Remove of a run Ready took = true")
	}
}

// testRemoveForgetsTime: a removed run's time no longer counts for Next.
func testRemoveForgetsTime(t *testing.T, q detached.Queue) {
	q.Add("s", "t", T0.Add(time.Hour))
	q.Add("s", "u", T0.Add(2*time.Hour))
	q.Remove("t")
	if got := q.Next(T0); !got.Equal(T0.Add(2 * time.Hour)) {
		t.Errorf("Next after removing the soonest = %v, want t0+2h", got)
	}
	q.Remove("u")
	if got := q.Next(T0); !got.IsZero() {
		t.Errorf("Next after removing every scheduled run = %v", got)
	}
}

// testScripts: the scripts with queued runs, sorted, waiting runs
// included, emptied ones gone.
func testScripts(t *testing.T, q detached.Queue) {
	q.Add("zeta", "z", time.Time{})
	q.Add("alpha", "a", T0.Add(time.Hour))
	q.Add("mid", "m", time.Time{})
	q.Add("alpha", "a2", time.Time{})
	if got := q.Scripts(); !slices.Equal(got, []string{"alpha", "mid", "zeta"}) {
		t.Errorf("Scripts = %v", got)
	}
	q.Ready("mid", T0)
	q.Remove("z")
	q.Ready("alpha", T0)
	if got := q.Scripts(); !slices.Equal(got, []string{"alpha"}) {
		t.Errorf("Scripts = %v, want [alpha] (its run waits)", got)
	}
}

// testManyScripts: each script's queue keeps its own order, however the
// runs of many scripts were queued between each other.
func testManyScripts(t *testing.T, q detached.Queue) {
	var scripts []string
	for i := range 50 {
		scripts = append(scripts, fmt.Sprintf("script-%02d", i))
	}
	for j := range 20 {
		for i := len(scripts) - 1; i >= 0; i-- {
			var at time.Time
			if j%5 == 4 {
				at = T0.Add(time.Duration(i+1) * time.Minute)
			}
			q.Add(scripts[i], fmt.Sprintf("%s/%02d", scripts[i], j), at)
		}
	}
	if got := q.Scripts(); !slices.Equal(got, scripts) {
		t.Fatalf("Scripts = %v", got)
	}
	if got := q.Next(T0); !got.Equal(T0.Add(time.Minute)) {
		t.Errorf("Next = %v, want t0+1m", got)
	}
	for i, s := range scripts {
		if got := q.Len(s); got != 20 {
			t.Fatalf("Len(%s) = %d", s, got)
		}
		if got := q.Position(fmt.Sprintf("%s/%02d", s, 7)); got != 8 {
			t.Errorf("Position(%s/07) = %d, want 8", s, got)
		}
		var want []string
		for j := range 20 {
			if j%5 != 4 {
				want = append(want, fmt.Sprintf("%s/%02d", s, j))
			}
		}
		if got := TakeReady(q, s, T0); !slices.Equal(got, want) {
			t.Errorf("ready of %s at t0 = %v, want %v", s, got, want)
		}
		if got := q.Len(s); got != 4 {
			t.Errorf("Len(%s) after the ready ones = %d, want 4", s, got)
		}
		if got := TakeReady(q, s, T0.Add(time.Duration(i+1)*time.Minute)); len(got) != 4 {
			t.Errorf("ready of %s at its time = %v", s, got)
		}
	}
	if got := q.Scripts(); len(got) != 0 {
		t.Errorf("Scripts = %v, want none", got)
	}
}
