//go:build unix

package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// watchSize calls resize with the size of terminal fd now, and each time
// it may have changed (SIGWINCH), until ctx ends or stop is called.
func watchSize(ctx context.Context, fd int, resize func(rows, cols int)) (stop func()) {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resize(terminalSize(fd)) // a change before the watch began
		for {
			select {
			case <-winch:
				resize(terminalSize(fd))
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		cancel()
		<-done
	}
}
