//go:build !unix

package main

import (
	"context"
	"time"
)

// sizePoll is how often watchSize looks at the terminal's size where no
// signal says it changed (Windows).
const sizePoll = 250 * time.Millisecond

// watchSize calls resize with the size of terminal fd now and every
// sizePoll, until ctx ends or stop is called.
func watchSize(ctx context.Context, fd int, resize func(rows, cols int)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(sizePoll)
		defer t.Stop()
		for {
			resize(terminalSize(fd))
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
