package jshistory

import (
	"context"
	"time"

	"github.com/rexec/rexec/store"
)

// The reads of store.History go to this host's copy, as far as it has
// applied the stream: a write returns once this host applied it, so a host
// reads its own writes; another host's, once it applied them too. A read
// of one run that finds none catches up first (catchUp): a run made on
// another host is found here as soon as its write returned there.
//
// ListRuns' cursors are the same on every host: a cursor is a run's
// (QueuedAt, seq), and both come from the stream (seq is the run's entry,
// QueuedAt the entry's time; see store.Entry.CreateAs), not from the host.

// Get implements store.History.
func (h *History) Get(ctx context.Context, id string) (store.Run, error) {
	r, err := caughtUp(ctx, h, func() (store.Run, error) { return h.o.Local.Get(ctx, id) })
	if err != nil {
		return store.Run{}, err
	}
	h.liveSize(ctx, &r)
	return r, nil
}

// ListActive implements store.History.
func (h *History) ListActive(ctx context.Context) ([]store.Run, error) {
	runs, err := h.o.Local.ListActive(ctx)
	if err != nil {
		return nil, err
	}
	h.liveSizes(ctx, runs)
	return runs, nil
}

// ListQueued implements store.History.
func (h *History) ListQueued(ctx context.Context, script string) ([]store.Run, error) {
	return h.o.Local.ListQueued(ctx, script) // no output yet
}

// ListRuns implements store.History.
func (h *History) ListRuns(ctx context.Context, q store.RunQuery) ([]store.Run, string, error) {
	runs, next, err := h.o.Local.ListRuns(ctx, q)
	if err != nil {
		return nil, "", err
	}
	h.liveSizes(ctx, runs)
	return runs, next, nil
}

// liveSizes fills in the output sizes of the running runs of a list, all
// within listSizeBudget: each is a request to the output stream, and a
// list must not cost a request's timeout per running run when the stream
// cannot answer (a leader being elected). Past the budget the recorded
// sizes stay.
func (h *History) liveSizes(ctx context.Context, runs []store.Run) {
	ctx, cancel := context.WithTimeout(ctx, listSizeBudget)
	defer cancel()
	for i := range runs {
		if ctx.Err() != nil {
			return
		}
		h.liveSize(ctx, &runs[i])
	}
}

// listSizeBudget bounds liveSizes.
const listSizeBudget = time.Second

// liveSize fills in the output size of a running run, as the single host's
// store does from the file: the size recorded is the one at its end. A
// queued run has no output yet; an error keeps what is recorded.
func (h *History) liveSize(ctx context.Context, r *store.Run) {
	if r.State != store.StateRunning || h.o.OutputSize == nil {
		return
	}
	if n, err := h.o.OutputSize(ctx, r.ID); err == nil {
		r.OutputSize = n
	}
}
