package jshistory

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/internal/testnats"
	"github.com/rexec/rexec/store"
)

// heldStream is the real stream, whose Info waits for release, and which
// counts the Info calls and the most in flight at once.
type heldStream struct {
	jetstream.Stream
	release       chan struct{}
	calls         atomic.Int64
	inFlight, max atomic.Int64
}

func (s *heldStream) Info(ctx context.Context, opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	s.calls.Add(1)
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for m := s.max.Load(); n > m && !s.max.CompareAndSwap(m, n); m = s.max.Load() {
	}
	<-s.release
	return s.Stream.Info(ctx, opts...)
}

// Misses of runs that do not exist, however many at once, ask the stream
// where it ends one request at a time, and share those requests: the
// misses that came while one was in flight all wait for the next one.
func TestCatchUpShared(t *testing.T) {
	srv := testnats.Start(t)
	_, js := testnats.Connect(t, srv)
	names, err := fleet.NewNames("shared")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	local, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	h, err := Open(ctx, Options{JS: js, Names: names, Host: "h", Local: local})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	held := &heldStream{Stream: h.s, release: make(chan struct{})}
	h.s = held // before any read

	const misses = 50
	var wg sync.WaitGroup
	errs := make(chan error, misses)
	for range misses {
		wg.Go(func() {
			if _, err := h.Get(ctx, store.NewID()); !errors.Is(err, store.ErrNotFound) {
				errs <- err
			}
		})
	}
	// The first request is held; the other misses queue behind it. Once
	// one has (without the sharing it would have asked the stream itself,
	// a second request in flight), the others are given a moment more: one
	// that comes late costs a request more, not a failure.
	queued := func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.nextLookup != nil }
	for deadline := time.Now().Add(10 * time.Second); held.calls.Load() == 0 || !queued(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %d requests held, a miss queued behind: %v", held.calls.Load(), queued())
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(held.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a run that does not exist: %v", err)
	}
	t.Logf("%d misses at once: %d requests to the stream, at most %d in flight", misses, held.calls.Load(), held.max.Load())
	if held.max.Load() != 1 {
		t.Errorf("%d requests to the stream in flight at once, want 1", held.max.Load())
	}
	if n := held.calls.Load(); n >= misses {
		t.Errorf("%d misses at once asked the stream %d times; they share their requests", misses, n)
	}
}
