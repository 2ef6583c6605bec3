package fleet

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rexec/rexec/internal/testnats"
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

// Refollow stops a reader's consumer and follows the stream again from
// the sequence after the last one read: every message is read, once.
func TestRefollow(t *testing.T) {
	srv := testnats.Start(t)
	_, js := testnats.Connect(t, srv)
	ctx := context.Background()
	if _, err := EnsureStream(ctx, js, jetstream.StreamConfig{Name: "W", Subjects: []string{"w.>"}}); err != nil {
		t.Fatal(err)
	}
	publish := func(n int) {
		for range n {
			if _, err := js.Publish(ctx, "w.x", []byte("m")); err != nil {
				t.Fatal(err)
			}
		}
	}
	var mu sync.Mutex
	var read uint64
	times := map[uint64]int{} // deliveries, by stream sequence
	var cc jetstream.ConsumeContext
	follow := func(ctx context.Context, from uint64) error {
		cons, err := js.OrderedConsumer(ctx, "W", jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
		if err != nil {
			return err
		}
		c, err := cons.Consume(func(m jetstream.Msg) {
			md, _ := m.Metadata()
			mu.Lock()
			defer mu.Unlock()
			times[md.Sequence.Stream]++
			read = max(read, md.Sequence.Stream)
		})
		if err != nil {
			return err
		}
		mu.Lock()
		cc = c
		mu.Unlock()
		return nil
	}
	readNow := func() uint64 { mu.Lock(); defer mu.Unlock(); return read }
	waitRead := func(n uint64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); readNow() < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("read %d of %d", readNow(), n)
			}
		}
	}
	publish(10)
	if err := follow(ctx, 1); err != nil {
		t.Fatal(err)
	}
	waitRead(10)
	mu.Lock()
	old := cc
	mu.Unlock()
	from, err := Refollow(ctx, old, 5*time.Second, func() uint64 { return readNow() + 1 }, follow)
	if err != nil || from != 11 {
		t.Fatalf("Refollow = %d, %v; want 11", from, err)
	}
	publish(5)
	waitRead(15)
	mu.Lock()
	defer mu.Unlock()
	for seq := uint64(1); seq <= 15; seq++ {
		if times[seq] != 1 {
			t.Errorf("message %d read %d times", seq, times[seq])
		}
	}
	if cc == old {
		t.Error("the consumer was not remade")
	}
	if !StopConsuming(cc, 5*time.Second) {
		t.Error("the new consumer did not stop")
	}
}
