package detached

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"
)

var queueT0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// queueTakeReady takes every run of script that is ready at now, in order.
func queueTakeReady(q Queue, script string, now time.Time) []string {
	var ids []string
	for {
		id, ok := q.Ready(script, now)
		if !ok {
			return ids
		}
		ids = append(ids, id)
	}
}

// The generic behaviour of a Queue is checked by package queuetest
// (queue_suite_test.go); the tests here are of the memory queue's own
// promises: its cost, its handling of an id added twice and of monotonic
// clock readings, and its agreement with a plain model.

// TestMemQueueAddAgainMoves: the Queue interface leaves an Add of an id that
// is queued already open; the memory queue moves it.
func TestMemQueueAddAgainMoves(t *testing.T) {
	q := NewMemQueue()
	q.Add("s", "a", queueT0.Add(time.Hour))
	q.Add("s", "b", time.Time{})
	q.Add("t", "a", time.Time{}) // moves a to t, without its time
	if got, want := q.Len("s"), 1; got != want {
		t.Errorf("Len(s) = %d, want %d", got, want)
	}
	if got := q.Position("a"); got != 1 {
		t.Errorf("Position(a) = %d, want 1", got)
	}
	if got := q.Next(queueT0); !got.IsZero() {
		t.Errorf("Next = %v, want zero", got)
	}
	if got := queueTakeReady(q, "t", queueT0); !slices.Equal(got, []string{"a"}) {
		t.Errorf("ready in t = %v", got)
	}
}

// TestMemQueueLarge checks positions in a long queue; it would be quadratic,
// and slow, if Position, Remove or Ready walked the queue.
func TestMemQueueLarge(t *testing.T) {
	const n = 30_000
	q := NewMemQueue()
	for i := range n {
		q.Add("s", fmt.Sprint(i), time.Time{})
	}
	for i := range n {
		if got := q.Position(fmt.Sprint(i)); got != i+1 {
			t.Fatalf("Position(%d) = %d", i, got)
		}
	}
	for i := 1; i < n; i += 2 {
		q.Remove(fmt.Sprint(i))
	}
	for i := 0; i < n; i += 2 {
		if got := q.Position(fmt.Sprint(i)); got != i/2+1 {
			t.Fatalf("Position(%d) after removing the odd ones = %d", i, got)
		}
	}
	// Every run waits but the last: Ready must find it without taking the others.
	q2 := NewMemQueue()
	for i := range n {
		q2.Add("s", fmt.Sprint(i), queueT0.Add(time.Duration(n-i)*time.Second))
	}
	q2.Add("s", "now", time.Time{})
	for range 1000 {
		id, ok := q2.Ready("s", queueT0)
		if !ok || id != "now" {
			t.Fatalf("Ready = %q, %v", id, ok)
		}
		q2.AddFront("s", "now", time.Time{})
		q2.Remove("now")
		q2.Add("s", "now", time.Time{})
	}
	if got := q2.Next(queueT0); !got.Equal(queueT0.Add(time.Second)) {
		t.Errorf("Next = %v", got)
	}
}

// queueModel is the obvious Queue, to check memQueue against.
type queueModel struct {
	runs []queueModelRun // front first, scripts mixed
}

type queueModelRun struct {
	script, id string
	notBefore  time.Time
}

func (r *queueModel) Add(script, id string, at time.Time) {
	r.Remove(id)
	r.runs = append(r.runs, queueModelRun{script, id, at})
}

func (r *queueModel) AddFront(script, id string, at time.Time) {
	r.Remove(id)
	r.runs = append([]queueModelRun{{script, id, at}}, r.runs...)
}

func (r *queueModel) Done(string) {}

func (r *queueModel) Remove(id string) bool {
	for i, x := range r.runs {
		if x.id == id {
			r.runs = slices.Delete(r.runs, i, i+1)
			return true
		}
	}
	return false
}

func (r *queueModel) Ready(script string, now time.Time) (string, bool) {
	for i, x := range r.runs {
		if x.script == script && !x.notBefore.After(now) {
			r.runs = slices.Delete(r.runs, i, i+1)
			return x.id, true
		}
	}
	return "", false
}

func (r *queueModel) Position(id string) int {
	script, pos := "", 0
	for _, x := range r.runs {
		if x.id == id {
			script = x.script
		}
	}
	for _, x := range r.runs {
		if x.script == script {
			pos++
		}
		if x.id == id {
			return pos
		}
	}
	return 0
}

func (r *queueModel) Len(script string) int {
	n := 0
	for _, x := range r.runs {
		if x.script == script {
			n++
		}
	}
	return n
}

func (r *queueModel) Scripts() []string {
	var s []string
	for _, x := range r.runs {
		if !slices.Contains(s, x.script) {
			s = append(s, x.script)
		}
	}
	sort.Strings(s)
	return s
}

func (r *queueModel) Next(now time.Time) time.Time {
	var next time.Time
	for _, x := range r.runs {
		if x.notBefore.After(now) && (next.IsZero() || x.notBefore.Before(next)) {
			next = x.notBefore
		}
	}
	return next
}

// queueOps drives q and a queueModel with the operations that next (a source
// of small numbers) picks, and fails at the first difference.
func queueOps(t *testing.T, next func(n int) int, steps int) {
	t.Helper()
	q, ref := NewMemQueue(), &queueModel{}
	scripts := []string{"a", "b", "c"}
	at := func() time.Time {
		if next(3) == 0 {
			return time.Time{}
		}
		return queueT0.Add(time.Duration(next(10)) * time.Second)
	}
	var log []string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("after %v:\n"+format, append([]any{log}, args...)...)
	}
	for range steps {
		script, id, now := scripts[next(len(scripts))], fmt.Sprint(next(12)), queueT0.Add(time.Duration(next(12))*time.Second)
		switch next(5) {
		case 0, 1:
			a := at()
			log = append(log, fmt.Sprintf("Add(%s,%s,%v)", script, id, a.Sub(queueT0)))
			q.Add(script, id, a)
			ref.Add(script, id, a)
		case 2:
			a := at()
			log = append(log, fmt.Sprintf("AddFront(%s,%s,%v)", script, id, a.Sub(queueT0)))
			q.AddFront(script, id, a)
			ref.AddFront(script, id, a)
		case 3:
			log = append(log, "Remove("+id+")")
			if got, want := q.Remove(id), ref.Remove(id); got != want {
				fail("Remove(%s) = %v, want %v", id, got, want)
			}
		case 4:
			log = append(log, fmt.Sprintf("Ready(%s,%v)", script, now.Sub(queueT0)))
			gotID, gotOK := q.Ready(script, now)
			wantID, wantOK := ref.Ready(script, now)
			if gotID != wantID || gotOK != wantOK {
				fail("Ready = %q, %v, want %q, %v", gotID, gotOK, wantID, wantOK)
			}
		}
		for i := range 12 {
			id := fmt.Sprint(i)
			if got, want := q.Position(id), ref.Position(id); got != want {
				fail("Position(%s) = %d, want %d", id, got, want)
			}
		}
		for _, s := range scripts {
			if got, want := q.Len(s), ref.Len(s); got != want {
				fail("Len(%s) = %d, want %d", s, got, want)
			}
		}
		if got, want := q.Scripts(), ref.Scripts(); !slices.Equal(got, want) {
			fail("Scripts = %v, want %v", got, want)
		}
		if got, want := q.Next(now), ref.Next(now); !got.Equal(want) {
			fail("Next(%v) = %v, want %v", now.Sub(queueT0), got, want)
		}
	}
}

func TestMemQueueAgainstModel(t *testing.T) {
	for seed := range uint64(200) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			queueOps(t, rng.IntN, 300)
		})
	}
}

func TestMemQueueMonotonicClock(t *testing.T) {
	// A time with a monotonic reading and the same instant read back from
	// a store (wall clock only) compare alike.
	now := time.Now()
	q := NewMemQueue()
	q.Add("s", "a", now.Add(time.Minute))
	if got := q.Next(now.Round(0)); !got.Equal(now.Add(time.Minute)) {
		t.Errorf("Next = %v, want %v", got, now.Add(time.Minute))
	}
	if _, ok := q.Ready("s", now.Add(time.Minute).Round(0)); !ok {
		t.Error("not ready at its time read from the wall clock")
	}
}
