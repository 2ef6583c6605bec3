package fleet

import (
	"context"
	"time"
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
