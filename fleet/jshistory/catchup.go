package jshistory

import (
	"context"
	"errors"
	"time"

	"github.com/rexec/rexec/store"
)

// A read that finds nothing catches up before it says so. A write returns
// once the host that made it applied it; another host applies it a moment
// later. A client that made a run (or a guest key) on host A and asks host
// B for it at once must not get a 404 (or a 401) for that moment: B asks the
// stream where it ends, waits until it has applied that far, within
// catchUpBudget, and reads again. Only a miss costs this, and a miss of
// anything that exists is rare: a name that never existed pays one request
// to the stream.
//
// The requests to the stream are shared: at most one is in flight, and the
// reads that arrive meanwhile share the next one, which starts when it
// ends (a read must see where the stream ended after it began, not
// before). So reads of names that do not exist, however many, cost the
// stream at most one request at a time.

// catchUpBudget bounds the catching up of one read: past it (the stream
// electing a leader, say), the read answers from what this copy has.
const catchUpBudget = 2 * time.Second

// lastSeq is one request for the stream's last entry, shared by the reads
// waiting for it.
type lastSeq struct {
	done chan struct{} // closed once seq and err are set
	seq  uint64
	err  error
}

// catchUp waits until this copy has applied every entry the stream held
// when catchUp was called, within catchUpBudget.
func (h *History) catchUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, catchUpBudget)
	defer cancel()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	var l *lastSeq
	switch {
	case h.lookup == nil:
		l = &lastSeq{done: make(chan struct{})}
		h.lookup = l
		go h.lookUp(l)
	case h.nextLookup == nil:
		h.nextLookup = &lastSeq{done: make(chan struct{})}
		l = h.nextLookup
	default:
		l = h.nextLookup
	}
	h.mu.Unlock()
	select {
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if l.err != nil {
		return l.err
	}
	return h.WaitApplied(ctx, l.seq)
}

// lookUp asks the stream for its last entry for l, then for the reads that
// queued behind it, until none wait.
func (h *History) lookUp(l *lastSeq) {
	for l != nil {
		ctx, cancel := context.WithTimeout(h.ctx, catchUpBudget)
		info, err := h.s.Info(ctx)
		cancel()
		if err == nil {
			l.seq = info.State.LastSeq
		}
		l.err = err
		h.mu.Lock()
		close(l.done)
		l, h.nextLookup = h.nextLookup, nil
		h.lookup = l
		h.mu.Unlock()
	}
}

// caughtUp reads with read; when that finds nothing, it catches up and
// reads again.
func caughtUp[T any](ctx context.Context, h *History, read func() (T, error)) (T, error) {
	v, err := read()
	if !errors.Is(err, store.ErrNotFound) {
		return v, err
	}
	if h.catchUp(ctx) != nil {
		return v, err
	}
	return read()
}
