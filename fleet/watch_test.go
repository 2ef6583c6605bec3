package fleet

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// WatchReader calls stuck for a reader that read nothing for a period
// while the stream holds more, and only then: not for one that reads, nor
// for one that read everything, nor when the stream cannot say where it
// ends.
func TestWatchReader(t *testing.T) {
	const every = 20 * time.Millisecond
	for _, tc := range []struct {
		name      string
		reads     bool   // the reader advances each time it is asked
		last      uint64 // where the stream ends
		lastErr   error
		wantStuck bool
	}{
		{name: "behind, reading nothing", last: 10, wantStuck: true},
		{name: "behind, reading", reads: true, last: 1 << 40},
		{name: "read everything", last: 5},
		{name: "the stream does not answer", last: 10, lastErr: errors.New("no response from stream")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var read atomic.Uint64
			read.Store(5)
			var stuck atomic.Int64
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() {
				WatchReader(ctx, every,
					func() uint64 {
						if tc.reads {
							return read.Add(1)
						}
						return read.Load()
					},
					func(context.Context) (uint64, error) { return tc.last, tc.lastErr },
					func() { stuck.Add(1) })
			})
			time.Sleep(10 * every)
			cancel()
			wg.Wait() // it returns once ctx ends
			if got := stuck.Load() > 0; got != tc.wantStuck {
				t.Errorf("stuck called %d times, want called: %v", stuck.Load(), tc.wantStuck)
			}
		})
	}
}
