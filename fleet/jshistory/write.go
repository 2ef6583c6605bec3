package jshistory

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rexec/rexec/store"
)

// The writes of store.History. Each checks what it can here (the store's
// own rules), fills in what the operation must carry (a new run's ID, a
// time left zero, an output size), publishes the operation and waits until
// this host's copy applied it, and returns what applying it said: every
// host applies the same operations in the same order to the same state, so
// that is the answer every host got.

// publish publishes o and returns what applying it here said. The error is
// of the publication, or of the wait (ErrPending, ErrClosed,
// ErrNotApplied); the result's error is the application's.
func (h *History) publish(ctx context.Context, o *op) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
	defer cancel()
	o.V, o.ID = opVersion, rand.Text()
	data, err := json.Marshal(o)
	if err != nil {
		return result{}, fmt.Errorf("jshistory: %s: %w", o.Kind, err)
	}
	ch := make(chan result, 1)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return result{}, ErrClosed
	}
	// Before the publication: the applier may apply it before Publish
	// returns.
	h.waiters[o.ID] = ch
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.waiters, o.ID)
		h.mu.Unlock()
	}()

	seq, err := h.send(ctx, o.ID, data)
	if err != nil {
		return result{}, fmt.Errorf("jshistory: %s: publishing: %w", o.Kind, err)
	}
	for {
		h.mu.Lock()
		applied, advanced := h.applied, h.advanced
		h.mu.Unlock()
		// The applier delivers the result before it advances applied.
		if applied >= seq {
			select {
			case res := <-ch:
				return res, nil
			default:
				return result{}, fmt.Errorf("%w: entry %d (%s)", ErrNotApplied, seq, o.Kind)
			}
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return result{}, fmt.Errorf("%w: entry %d (%s), applied here up to %d: %w", ErrPending, seq, o.Kind, applied, ctx.Err())
		case <-h.done:
			return result{}, ErrClosed
		}
	}
}

// send publishes an operation and returns its entry's sequence, trying again
// while the stream has no leader or does not answer in time. A retry that
// reaches the stream after the first attempt did is not stored again
// (Nats-Msg-Id): its acknowledgement names the first one's entry.
func (h *History) send(ctx context.Context, id string, data []byte) (uint64, error) {
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		ack, err := h.o.JS.Publish(ctx, h.subj, data, jetstream.WithMsgID(id), jetstream.WithExpectStream(h.stream))
		if err == nil {
			return ack.Sequence, nil
		}
		if ctx.Err() != nil || !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) &&
			!errors.Is(err, context.DeadlineExceeded) {
			return 0, err
		}
		h.log.Warn().Err(err).Dur("retry_in", wait).Msg("publishing to the history stream")
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, err
		case <-h.quit:
			t.Stop()
			return 0, ErrClosed
		}
	}
}

// apply publishes o and returns the error of applying it, or of getting it
// applied.
func (h *History) write(ctx context.Context, o *op) error {
	res, err := h.publish(ctx, o)
	if err != nil {
		return err
	}
	return res.err
}

// notFound is the error of an ID no run can have.
func notFound(what, id string) error {
	return fmt.Errorf("jshistory: %s: run %q: %w", what, id, store.ErrNotFound)
}

// Create implements store.History. The run's ID is made here; its QueuedAt
// is the time the stream stored the operation, or the QueuedAt of the run
// created before it if that is later (see store.Entry.CreateAs): the order
// of QueuedAt is the order of the stream.
func (h *History) Create(ctx context.Context, r *store.Run) error {
	if err := store.CheckNewRun(r); err != nil {
		return fmt.Errorf("jshistory: create: %w", err)
	}
	o := op{Kind: opCreate, Run: store.NewID(), Script: r.Script, Args: r.Args, Who: r.Who, StartAt: r.StartAt, Timeout: r.Timeout}
	res, err := h.publish(ctx, &o)
	if err != nil {
		return err
	}
	if res.err != nil {
		return res.err
	}
	r.ID, r.QueuedAt, r.State = res.run.ID, res.run.QueuedAt, res.run.State
	return nil
}

// MarkStarted implements store.History. It records this host as the run's
// Host; a zero startedAt is now.
func (h *History) MarkStarted(ctx context.Context, id string, pid int, startedAt time.Time) error {
	if !store.ValidID(id) {
		return notFound("mark started", id)
	}
	if startedAt.IsZero() {
		startedAt = time.Now()
	}
	if !store.StorableTime(startedAt) {
		return fmt.Errorf("jshistory: mark started %q: start time %v: %w", id, startedAt, store.ErrInvalid)
	}
	return h.write(ctx, &op{Kind: opStart, Run: id, Host: h.o.Host, Pid: pid, At: startedAt})
}

// MarkDone implements store.History. A zero EndedAt is now; the output size
// recorded is Options.OutputSize's.
func (h *History) MarkDone(ctx context.Context, id string, o store.Outcome) error {
	if !store.ValidID(id) {
		return notFound("mark done", id)
	}
	if o.EndedAt.IsZero() {
		o.EndedAt = time.Now()
	}
	if err := store.CheckOutcome(o); err != nil {
		return fmt.Errorf("jshistory: mark done %q: %w", id, err)
	}
	size, err := h.outputSize(ctx, id)
	if err != nil {
		// The end is recorded all the same: a run lost with its host, whose
		// output stream is electing a leader, must not stay running for
		// want of its size. Its output stays readable in full.
		h.log.Warn().Err(err).Str("run", id).Msg("the output size of an ended run is unknown: recorded as 0")
		size = 0
	}
	return h.write(ctx, &op{Kind: opDone, Run: id, At: o.EndedAt, ExitCode: o.ExitCode, Signal: o.Signal, Ended: o.Ended,
		OutputTruncated: o.OutputTruncated, Usage: o.Usage, OutputSize: size})
}

func (h *History) outputSize(ctx context.Context, id string) (int64, error) {
	if h.o.OutputSize == nil {
		return 0, nil
	}
	return h.o.OutputSize(ctx, id)
}

// SetProgress implements store.History.
func (h *History) SetProgress(ctx context.Context, id string, p store.Progress) error {
	if !store.ValidID(id) {
		return notFound("set progress", id)
	}
	return h.write(ctx, &op{Kind: opProgress, Run: id, Progress: &p})
}

// SetTaskProgress implements store.History.
func (h *History) SetTaskProgress(ctx context.Context, id string, p store.Progress, taskStartedAt time.Time, tasks []store.TaskSpan) error {
	if !store.ValidID(id) {
		return notFound("set task progress", id)
	}
	if err := store.CheckTaskTimes(taskStartedAt, tasks); err != nil {
		return fmt.Errorf("jshistory: set task progress %q: %w", id, err)
	}
	return h.write(ctx, &op{Kind: opTasks, Run: id, Progress: &p, TaskStartedAt: taskStartedAt, Tasks: toSpans(tasks)})
}

// SetResult implements store.History.
func (h *History) SetResult(ctx context.Context, id string, result json.RawMessage) error {
	if !store.ValidID(id) {
		return notFound("set result", id)
	}
	r, err := store.CheckResult(result)
	if err != nil {
		return fmt.Errorf("jshistory: set result %q: %w", id, err)
	}
	o := op{Kind: opResult, Run: id}
	if r != nil {
		s := string(r)
		o.Result = &s
	}
	return h.write(ctx, &o)
}

// Delete implements store.History. Once the run's record is deleted, this
// host (only) removes its output with Options.DeleteOutput.
func (h *History) Delete(ctx context.Context, id string) error {
	if !store.ValidID(id) {
		return notFound("delete", id)
	}
	if err := h.write(ctx, &op{Kind: opDelete, Run: id}); err != nil {
		return err
	}
	return h.deleteOutput(ctx, id)
}

func (h *History) deleteOutput(ctx context.Context, id string) error {
	if h.o.DeleteOutput == nil {
		return nil
	}
	if err := h.o.DeleteOutput(ctx, id); err != nil {
		h.log.Error().Err(err).Str("run", id).Msg("the run is deleted, its output is not")
		return fmt.Errorf("jshistory: deleting the output of run %q: %w", id, err)
	}
	return nil
}

// DeleteEndedBefore implements store.History. This host (only) removes the
// output of each run deleted with Options.DeleteOutput; the count is of the
// runs deleted, whose output may not all be.
func (h *History) DeleteEndedBefore(ctx context.Context, t time.Time) (int, error) {
	res, err := h.publish(ctx, &op{Kind: opRetention, At: store.ClampTime(t)})
	if err != nil {
		return 0, err
	}
	if res.err != nil {
		return 0, res.err
	}
	var errs []error
	for _, id := range res.ids {
		if err := h.deleteOutput(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return len(res.ids), errors.Join(errs...)
}

// Recover implements store.History: it ends as interrupted the runs this
// host (Options.Host) was running, through the stream. Other hosts' runs,
// and queued runs, stay as they are. Call it after Open, which caught up
// with the stream: every start this host published before it stopped is
// applied.
func (h *History) Recover(ctx context.Context) ([]store.Run, error) {
	active, err := h.o.Local.ListActive(ctx)
	if err != nil {
		return nil, fmt.Errorf("jshistory: recover: %w", err)
	}
	sizes := map[string]int64{}
	for _, r := range active {
		if r.State != store.StateRunning || r.Host != h.o.Host {
			continue
		}
		if sizes[r.ID], err = h.outputSize(ctx, r.ID); err != nil {
			return nil, fmt.Errorf("jshistory: recover: output size of run %q: %w", r.ID, err)
		}
	}
	if len(sizes) == 0 {
		return nil, nil // nothing to publish
	}
	res, err := h.publish(ctx, &op{Kind: opRecover, Host: h.o.Host, At: time.Now(), Sizes: sizes})
	if err != nil {
		return nil, err
	}
	if res.err != nil {
		return nil, res.err
	}
	for _, r := range res.runs {
		h.log.Warn().Str("run", r.ID).Str("script", r.Script).Int("pid", r.Pid).
			Msg("run was running on this host when rexec stopped: marked interrupted")
	}
	return res.runs, nil
}
