package detached

import (
	"maps"
	"math/rand/v2"
	"slices"
	"time"
)

// Queue holds queued runs per script, first in first out. A run may carry a
// time before which it must not start. Implementations need not be safe for
// concurrent use: one goroutine (the manager's loop) owns a Queue.
type Queue interface {
	// Add puts id at the back of script's queue; notBefore zero means now.
	Add(script, id string, notBefore time.Time)
	// AddFront puts id back at the front (a start that had to be retried).
	AddFront(script, id string, notBefore time.Time)
	// Remove takes id out wherever it is; false if it was not queued.
	Remove(id string) bool
	// Ready takes out and returns the first run of script whose time has come
	// (earlier runs still waiting for their time do not block it).
	Ready(script string, now time.Time) (id string, ok bool)
	// Position is id's 1-based place in its script's queue, 0 if not queued.
	Position(id string) int
	// Len is how many runs of script are queued.
	Len(script string) int
	// Scripts lists the scripts with queued runs, sorted.
	Scripts() []string
	// Next is the earliest notBefore in the future among queued runs (zero if none), for timers.
	Next(now time.Time) time.Time
	// Done says that run id, which Ready gave out, has ended, or goes back
	// to the queue (AddFront) or out of it: a shared queue frees what it
	// held for the run (its slot of the script's -s across the fleet).
	// The memory queue holds nothing.
	Done(id string)
}

// SharedQueue is a Queue that the hosts of a fleet share (package
// fleet/jsqueue): Ready gives this host only the runs it may take, and a
// run submitted on one host may start on another.
type SharedQueue interface {
	Queue
	// AddFor is Add of a run that only a host matching t may take.
	AddFor(script, id string, notBefore time.Time, t Target)
	// Held is how many runs of script hold a slot of its -s across the
	// fleet (running, or starting), for its -m.
	Held(script string) int
	// Changed receives a value when the queue changed in a way that may
	// let a run start here (a run added by another host, a slot of a
	// script's -s freed elsewhere): the manager schedules then.
	Changed() <-chan struct{}
}

// Target is where a run must start: on the host named Host, if not "",
// and on a host that carries every label of Labels.
type Target struct {
	Host   string   `json:"host,omitempty"`
	Labels []string `json:"labels,omitempty"`
}

// IsZero says whether t lets any host take the run.
func (t Target) IsZero() bool { return t.Host == "" && len(t.Labels) == 0 }

// NewMemQueue returns the single-host Queue, kept in memory. For n queued
// runs, Add, AddFront, Remove, Ready, Position and Next take O(log n) and
// Len O(1); Scripts sorts the names of the scripts with queued runs. Adding
// an id that is already queued moves it: an id is queued at most once. A
// run whose notBefore is not after now is due; times are compared by the
// wall clock (monotonic readings are dropped), as times read back from the
// store have none.
func NewMemQueue() Queue {
	return &memQueue{
		byScript: map[string]*runTree{},
		runs:     map[string]*queuedRun{},
		timed:    runTree{less: runByTimeThenSeq},
	}
}

// memQueue keeps each script's queue in a tree ordered by place in the
// queue, which counts the runs (for Position) and knows the earliest start
// time below each node (for Ready), and the runs with a start time in a
// second tree ordered by that time (for Next).
type memQueue struct {
	byScript map[string]*runTree   // by seq; one per script with queued runs
	timed    runTree               // the runs with a notBefore, by (notBefore, seq)
	runs     map[string]*queuedRun // every queued run, by ID
	// front and back are the seq last given by AddFront (counting down) and
	// Add (counting up): a smaller seq is nearer the front of its queue.
	front, back int64
}

type queuedRun struct {
	id, script string
	notBefore  time.Time // zero: now
	seq        int64
}

func runBySeq(a, b *queuedRun) bool { return a.seq < b.seq }

func runByTimeThenSeq(a, b *queuedRun) bool {
	if c := a.notBefore.Compare(b.notBefore); c != 0 {
		return c < 0
	}
	return a.seq < b.seq
}

func (q *memQueue) Add(script, id string, notBefore time.Time) {
	q.back++
	q.insert(script, id, notBefore, q.back)
}

func (q *memQueue) AddFront(script, id string, notBefore time.Time) {
	q.front--
	q.insert(script, id, notBefore, q.front)
}

func (q *memQueue) insert(script, id string, notBefore time.Time, seq int64) {
	q.Remove(id)
	r := &queuedRun{id: id, script: script, notBefore: notBefore.Round(0), seq: seq}
	q.runs[id] = r
	t := q.byScript[script]
	if t == nil {
		t = &runTree{less: runBySeq}
		q.byScript[script] = t
	}
	t.insert(r)
	if !r.notBefore.IsZero() {
		q.timed.insert(r)
	}
}

func (q *memQueue) Done(string) {}

func (q *memQueue) Remove(id string) bool {
	r, ok := q.runs[id]
	if !ok {
		return false
	}
	delete(q.runs, id)
	t := q.byScript[r.script]
	t.delete(r)
	if t.root == nil {
		delete(q.byScript, r.script)
	}
	if !r.notBefore.IsZero() {
		q.timed.delete(r)
	}
	return true
}

func (q *memQueue) Ready(script string, now time.Time) (string, bool) {
	t := q.byScript[script]
	if t == nil {
		return "", false
	}
	r := t.firstDue(now)
	if r == nil {
		return "", false
	}
	q.Remove(r.id)
	return r.id, true
}

func (q *memQueue) Position(id string) int {
	r, ok := q.runs[id]
	if !ok {
		return 0
	}
	return q.byScript[r.script].before(r) + 1
}

func (q *memQueue) Len(script string) int {
	if t := q.byScript[script]; t != nil {
		return t.root.count()
	}
	return 0
}

func (q *memQueue) Scripts() []string {
	return slices.Sorted(maps.Keys(q.byScript))
}

func (q *memQueue) Next(now time.Time) time.Time {
	var next time.Time
	for n := q.timed.root; n != nil; {
		if n.run.notBefore.After(now) {
			next = n.run.notBefore
			n = n.left
		} else {
			n = n.right
		}
	}
	return next
}

// runTree is a treap of runs: a binary search tree in the order of less, kept
// balanced (expected O(log n) depth) by random priorities that form a heap.
type runTree struct {
	root *runNode
	less func(a, b *queuedRun) bool // a strict total order: runs are unique
}

type runNode struct {
	run         *queuedRun
	prio        uint64
	left, right *runNode
	size        int       // runs in this subtree
	earliest    time.Time // earliest notBefore in this subtree
}

func (n *runNode) count() int {
	if n == nil {
		return 0
	}
	return n.size
}

// fix recomputes n's summary of its subtree after a child changed.
func (n *runNode) fix() {
	n.size = 1 + n.left.count() + n.right.count()
	n.earliest = n.run.notBefore
	if l := n.left; l != nil && l.earliest.Before(n.earliest) {
		n.earliest = l.earliest
	}
	if r := n.right; r != nil && r.earliest.Before(n.earliest) {
		n.earliest = r.earliest
	}
}

func (t *runTree) insert(r *queuedRun) {
	n := &runNode{run: r, prio: rand.Uint64()}
	n.fix()
	a, b := t.split(t.root, r)
	t.root = t.merge(t.merge(a, n), b)
}

// delete takes r, which must be in t, out of t.
func (t *runTree) delete(r *queuedRun) {
	a, b := t.split(t.root, r)
	t.root = t.merge(a, t.dropFirst(b)) // r is the first of b
}

// split parts the subtree n into the runs before r and the others.
func (t *runTree) split(n *runNode, r *queuedRun) (before, rest *runNode) {
	if n == nil {
		return nil, nil
	}
	if t.less(n.run, r) {
		n.right, rest = t.split(n.right, r)
		n.fix()
		return n, rest
	}
	before, n.left = t.split(n.left, r)
	n.fix()
	return before, n
}

// merge joins two treaps, every run of a coming before every run of b.
func (t *runTree) merge(a, b *runNode) *runNode {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.right = t.merge(a.right, b)
		a.fix()
		return a
	default:
		b.left = t.merge(a, b.left)
		b.fix()
		return b
	}
}

// dropFirst takes the first run out of the subtree n.
func (t *runTree) dropFirst(n *runNode) *runNode {
	if n.left == nil {
		return n.right
	}
	n.left = t.dropFirst(n.left)
	n.fix()
	return n
}

// before counts the runs of t before r, which must be in t.
func (t *runTree) before(r *queuedRun) int {
	k := 0
	for n := t.root; n != nil; {
		switch {
		case t.less(n.run, r):
			k += n.left.count() + 1
			n = n.right
		case t.less(r, n.run):
			n = n.left
		default:
			return k + n.left.count()
		}
	}
	return k
}

// firstDue returns the first run of t whose notBefore is not after now, or
// nil if there is none.
func (t *runTree) firstDue(now time.Time) *queuedRun {
	n := t.root
	if n == nil || n.earliest.After(now) {
		return nil
	}
	for {
		if l := n.left; l != nil && !l.earliest.After(now) {
			n = l
			continue
		}
		if !n.run.notBefore.After(now) {
			return n.run
		}
		n = n.right // holds the earliest, which is due
	}
}
