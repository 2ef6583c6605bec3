package jsqueue

import (
	"slices"
	"time"

	"github.com/rexec/rexec/detached"
)

// Kinds of op.
const (
	opAdd    = "add"    // Add, AddFor: id to the back of its script's queue
	opFront  = "front"  // AddFront: id to the front
	opRemove = "remove" // Remove
	opTake   = "take"   // Ready: the first run of Script due at Now that Host, Labels may take
)

// op is one change of the queue: a message of the QUEUE stream, in JSON.
// Every host applies the stream's ops in the stream's order to its replica,
// so every host computes the same result for each op.
type op struct {
	Kind      string          `json:"op"`
	ID        string          `json:"id,omitempty"`
	Script    string          `json:"script,omitempty"`
	NotBefore time.Time       `json:"not_before,omitzero"`
	Target    detached.Target `json:"target,omitzero"`
	// Now, Host and Labels are a take's: the taker's clock and what the
	// taker is.
	Now    time.Time `json:"now,omitzero"`
	Host   string    `json:"host,omitempty"`
	Labels []string  `json:"labels,omitempty"`
	// From is the Queue (one opening of it, see Queue.self) that published
	// the op, and Nonce the op's own name: the publisher waits for the
	// result of the op with its nonce, and JetStream drops a retried
	// publish of it as a duplicate (Nats-Msg-Id).
	From  string `json:"from"`
	Nonce string `json:"nonce"`
}

// result is what applying an op gave: for a take, the run taken (ok false
// if none); for a remove, whether the run was queued.
type result struct {
	id     string
	ok     bool
	target detached.Target // a taken run's
	// scanned is how many runs a take popped to find its run; it reached
	// maxScan when the take gave up.
	scanned int
}

// maxScan bounds the runs a take (or Ready's look at the replica) passes
// over, waiting for their time or meant for other hosts, before it gives up
// on a script for now.
const maxScan = 4096

// farFuture is a time after every run's notBefore: at farFuture, every run
// is due, so Ready pops runs in the queue's order.
var farFuture = time.Unix(1<<62, 0)

// replica is one host's copy of the fleet's queue: a detached.NewMemQueue
// for the order, the places and the times, and beside it what the memory
// queue does not say, each run's script, time and target. The Queue's
// applier alone changes it, under the Queue's mutex; Ready's look at it
// pops runs and puts them back in the same order (see find), which leaves
// the queue as it was.
type replica struct {
	mem  detached.Queue
	runs map[string]entry // every queued run, by ID
	// targeted counts the queued runs of each script that have a target:
	// a script without one is taken by memQueue's Ready alone.
	targeted map[string]int
}

type entry struct {
	script    string
	notBefore time.Time
	target    detached.Target
}

func newReplica() *replica {
	return &replica{mem: detached.NewMemQueue(), runs: map[string]entry{}, targeted: map[string]int{}}
}

// apply applies o and returns its result, which depends on o and on the
// replica alone: every host computes the same.
func (r *replica) apply(o op) result {
	switch o.Kind {
	case opAdd:
		r.put(o.Script, o.ID, o.NotBefore, o.Target, false)
		return result{id: o.ID, ok: true}
	case opFront:
		t := o.Target
		if e, ok := r.runs[o.ID]; ok && t.IsZero() {
			t = e.target // put back where it was queued: it keeps its target
		}
		r.put(o.Script, o.ID, o.NotBefore, t, true)
		return result{id: o.ID, ok: true}
	case opRemove:
		return result{id: o.ID, ok: r.remove(o.ID)}
	case opTake:
		return r.find(o.Script, o.Now, func(t detached.Target) bool { return mayTake(t, o.Host, o.Labels) }, true)
	}
	return result{}
}

// mayTake says whether a host called host with labels may take a run of
// target t.
func mayTake(t detached.Target, host string, labels []string) bool {
	if t.Host != "" && t.Host != host {
		return false
	}
	for _, l := range t.Labels {
		if !slices.Contains(labels, l) {
			return false
		}
	}
	return true
}

// put queues id, at the back or the front, moving it if it was queued.
func (r *replica) put(script, id string, notBefore time.Time, t detached.Target, front bool) {
	r.remove(id)
	if front {
		r.mem.AddFront(script, id, notBefore)
	} else {
		r.mem.Add(script, id, notBefore)
	}
	if !t.IsZero() {
		t.Labels = slices.Clone(t.Labels)
		r.targeted[script]++
	}
	r.runs[id] = entry{script: script, notBefore: notBefore, target: t}
}

func (r *replica) remove(id string) bool {
	e, ok := r.runs[id]
	if !ok {
		return false
	}
	r.forget(id, e)
	r.mem.Remove(id)
	return true
}

// forget drops what r keeps beside the memory queue of id, queued as e.
func (r *replica) forget(id string, e entry) {
	delete(r.runs, id)
	if !e.target.IsZero() {
		if r.targeted[e.script]--; r.targeted[e.script] <= 0 {
			delete(r.targeted, e.script)
		}
	}
}

// find returns the first run of script that is due at now and whose
// target may allows; take says whether to take it out of the queue. The
// runs it passes over keep their places and times. A script without
// targeted runs is the memory queue's Ready. Otherwise find pops the runs
// in the queue's order (Ready at farFuture), at most maxScan of them, until
// it finds one, and puts those it passed over back at the front, in
// reverse: the queue's order is then what it was, only the memory queue's
// private sequence numbers differ from one host to another, and they
// never show. A look (take false) puts the run found back too.
func (r *replica) find(script string, now time.Time, may func(detached.Target) bool, take bool) result {
	if take && r.targeted[script] == 0 {
		id, ok := r.mem.Ready(script, now)
		if !ok {
			return result{}
		}
		r.forget(id, r.runs[id])
		return result{id: id, ok: true, scanned: 1}
	}
	var popped []string
	defer func() {
		for _, id := range slices.Backward(popped) {
			r.mem.AddFront(script, id, r.runs[id].notBefore)
		}
	}()
	for range maxScan {
		id, ok := r.mem.Ready(script, farFuture)
		if !ok {
			return result{scanned: len(popped)}
		}
		e := r.runs[id]
		if e.notBefore.After(now) || !may(e.target) {
			popped = append(popped, id)
			continue
		}
		if !take {
			popped = append(popped, id)
			return result{id: id, ok: true, target: e.target, scanned: len(popped)}
		}
		r.forget(id, e)
		return result{id: id, ok: true, target: e.target, scanned: len(popped) + 1}
	}
	return result{scanned: maxScan}
}

// Read-only views, as detached.Queue's.

func (r *replica) position(id string) int       { return r.mem.Position(id) }
func (r *replica) length(script string) int     { return r.mem.Len(script) }
func (r *replica) scripts() []string            { return r.mem.Scripts() }
func (r *replica) next(now time.Time) time.Time { return r.mem.Next(now) }
