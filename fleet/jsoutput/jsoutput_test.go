package jsoutput

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/internal/testnats"
	"github.com/rexec/rexec/store"
	"github.com/rexec/rexec/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testnats.LeakOptions()...)
}

// fleets numbers the fleets of the tests, so that each test (and each of
// the suite's subtests) has streams of its own on a shared server.
var fleets atomic.Int64

func newNames(t *testing.T) fleet.Names {
	t.Helper()
	n, err := fleet.NewNames("t" + strconv.FormatInt(fleets.Add(1), 10))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// newHistory opens a single-host history in t's temporary directory.
func newHistory(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// mustOpen opens the outputs of fleet n on js with o's other options.
func mustOpen(t *testing.T, js jetstream.JetStream, n fleet.Names, h store.History, o Options) *Outputs {
	t.Helper()
	o.JS, o.Names, o.History = js, n, h
	out, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// suiteMax is the output cap the conformance suite runs with.
const suiteMax = 1000

// TestOutputs runs the conformance suite of store.Outputs, each subtest
// on a fleet of its own on one server, with a history that takes the
// output sizes from the Outputs (see sizedHistory).
func TestOutputs(t *testing.T) {
	srv := testnats.Start(t)
	storetest.TestOutputs(t, suiteMax, func(t *testing.T) (store.History, store.Outputs) {
		st := newHistory(t)
		_, js := testnats.Connect(t, srv)
		out := mustOpen(t, js, newNames(t), st, Options{MaxOutput: suiteMax})
		return &sizedHistory{Store: st, out: out}, out
	})
}

// sizedHistory is the single-host history with the output sizes of a
// JetStream Outputs. store.Store fills OutputSize from its own output
// files (live while a run is not done, recorded by MarkDone and Recover),
// which this package does not write: a history shared by a fleet has to
// take the sizes from the fleet's Outputs (Outputs.Size), and this is what
// it does, around store.Store, which records no size of its own here.
type sizedHistory struct {
	*store.Store
	out *Outputs

	mu       sync.Mutex
	recorded map[string]int64 // by run: the size when it was marked done
}

func (h *sizedHistory) record(ctx context.Context, id string) error {
	size, err := h.out.Size(ctx, id)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.recorded == nil {
		h.recorded = map[string]int64{}
	}
	h.recorded[id] = size
	return nil
}

func (h *sizedHistory) fill(ctx context.Context, r *store.Run) error {
	if r.State == store.StateDone {
		h.mu.Lock()
		r.OutputSize = h.recorded[r.ID]
		h.mu.Unlock()
		return nil
	}
	size, err := h.out.Size(ctx, r.ID)
	r.OutputSize = size
	return err
}

func (h *sizedHistory) fillAll(ctx context.Context, runs []store.Run, err error) ([]store.Run, error) {
	for i := range runs {
		if err != nil {
			break
		}
		err = h.fill(ctx, &runs[i])
	}
	return runs, err
}

func (h *sizedHistory) Get(ctx context.Context, id string) (store.Run, error) {
	r, err := h.Store.Get(ctx, id)
	if err == nil {
		err = h.fill(ctx, &r)
	}
	return r, err
}

func (h *sizedHistory) ListActive(ctx context.Context) ([]store.Run, error) {
	runs, err := h.Store.ListActive(ctx)
	return h.fillAll(ctx, runs, err)
}

func (h *sizedHistory) ListQueued(ctx context.Context, script string) ([]store.Run, error) {
	runs, err := h.Store.ListQueued(ctx, script)
	return h.fillAll(ctx, runs, err)
}

func (h *sizedHistory) ListRuns(ctx context.Context, q store.RunQuery) ([]store.Run, string, error) {
	runs, next, err := h.Store.ListRuns(ctx, q)
	runs, err = h.fillAll(ctx, runs, err)
	return runs, next, err
}

func (h *sizedHistory) MarkDone(ctx context.Context, id string, o store.Outcome) error {
	if err := h.Store.MarkDone(ctx, id, o); err != nil {
		return err
	}
	return h.record(ctx, id)
}

func (h *sizedHistory) Recover(ctx context.Context) ([]store.Run, error) {
	runs, err := h.Store.Recover(ctx)
	for i := range runs {
		if err != nil {
			break
		}
		if err = h.record(ctx, runs[i].ID); err == nil {
			err = h.fill(ctx, &runs[i])
		}
	}
	return runs, err
}

var _ store.History = (*sizedHistory)(nil)

// stop shuts srv down.
func stop(srv *server.Server) {
	srv.Shutdown()
	srv.WaitForShutdown()
}
