package fleet

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WatchEvery is how often WatchReader looks at a reader.
const WatchEvery = 5 * time.Second

// WatchReader calls stuck, on a goroutine of its own, each time the reader
// of a stream has read nothing for a whole period of every while the
// stream holds more than it read: read says how far the reader has read
// (a stream sequence), last where the stream ends. It returns when ctx
// ends.
//
// nats.go's ordered consumer remakes itself after a missed heartbeat; after
// a kill -9 of the server that led the stream it was seen not to, for
// minutes, while the stream took writes again within seconds. A reader
// that stuck calls remakes its consumer from where it read.
func WatchReader(ctx context.Context, every time.Duration, read func() uint64, last func(context.Context) (uint64, error), stuck func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	prev := read()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := read()
		if now == prev {
			lctx, cancel := context.WithTimeout(ctx, every)
			l, err := last(lctx)
			cancel()
			if err == nil && l > now {
				stuck()
			}
		}
		prev = now
	}
}

// StopConsuming stops cc and waits until it has, at most wait; it says
// whether it has. A consumer that nats.go is remaking stops only when the
// remaking ends: it is left to, on a goroutine of its own.
func StopConsuming(cc jetstream.ConsumeContext, wait time.Duration) bool {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		cc.Stop()
		<-cc.Closed()
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-stopped:
		return true
	case <-t.C:
		return false
	}
}

// Refollow is how a reader of a stream remakes its consumer (the stuck
// of WatchReader): it stops old (StopConsuming, at most wait), then calls
// follow with the sequence after the last one read (next), within wait,
// unless ctx ends first. It returns the sequence it followed from. What
// old still delivers is the reader's to skip, as read.
func Refollow(ctx context.Context, old jetstream.ConsumeContext, wait time.Duration, next func() uint64,
	follow func(ctx context.Context, from uint64) error) (uint64, error) {
	StopConsuming(old, wait)
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	from := next()
	fctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return from, follow(fctx, from)
}
