package main

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// leakCheck runs many short runs one after the other, then many runs cut by
// a disconnect, and compares the server's fds, threads and RSS with its
// baseline after a warm-up: whatever a run leaks is multiplied by the count.
func (b *bench) leakCheck(ctx context.Context) error {
	if !b.cfg.leak {
		b.rep.note("leak check skipped: run with -leak (or -leak-runs/-leak-cuts)")
		return nil
	}
	pid := b.srv.pid
	c := newClient(b.srv.url, 1)
	defer c.close()
	// Warm up first: the server opens a few descriptors once, on first use
	// (/dev/null for the children's stdio, the epoll set that watches
	// exits); the baseline includes them, so only what grows with the
	// count is reported.
	if err := b.leakRuns(ctx, c, 100); err != nil {
		return err
	}
	if err := b.leakCuts(ctx, c, 10); err != nil {
		return err
	}
	idle, err := quiesce(pid)
	if err != nil {
		return err
	}

	if err := b.leakRuns(ctx, c, b.cfg.leakRuns); err != nil {
		return err
	}
	if err := b.leakCuts(ctx, c, b.cfg.leakCuts); err != nil {
		return err
	}
	c.close()
	if took, left := waitNoChildren(pid, 15*time.Second); left > 0 {
		b.rep.problem("leak check: %d children still there %s after the last cut", left, took.Round(time.Millisecond))
	}
	after, err := settle(pid, idle, 10*time.Second)
	if err != nil {
		return err
	}
	b.rep.note("leak check: idle %v; after %v", idle, after)
	b.compareToIdle(fmt.Sprintf("after %d runs + %d cuts", b.cfg.leakRuns, b.cfg.leakCuts), idle, after)
	return nil
}

// leakRuns does n sequential runs of `true` on one keep-alive connection.
func (b *bench) leakRuns(ctx context.Context, c *client, n int) error {
	runner := newAliasRunner("leak", "true")
	buf := make([]byte, 64<<10)
	start := time.Now()
	failed := 0
	var first error
	for i := range n {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := runner.run(rctx, c, buf)
		cancel()
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
		if (i+1)%max(1, n/10) == 0 {
			progress("leak: %d/%d runs", i+1, n)
		}
	}
	if failed > 0 {
		b.rep.problem("leak check: %d of %d runs failed, first: %v", failed, n, first)
	}
	b.rep.note("leak check: %d sequential runs in %s (%.0f/s)", n,
		time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	return nil
}

// leakCuts starts n runs of `sleep 60`, one after the other, each with an
// alias of its own, and closes each connection as soon as its headers are
// in: the server must kill and reap every one.
func (b *bench) leakCuts(ctx context.Context, c *client, n int) error {
	start := time.Now()
	failed := 0
	var first error
	for i := range n {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := c.start(rctx, processBody("cut"+strconv.Itoa(i), "sleep", "60"))
		cancel() // closes the connection
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		} else {
			resp.Body.Close()
		}
		if (i+1)%max(1, n/10) == 0 {
			progress("leak: %d/%d cuts", i+1, n)
		}
	}
	if failed > 0 {
		b.rep.problem("leak check: %d of %d cut runs failed to start, first: %v", failed, n, first)
	}
	b.rep.note("leak check: %d runs cut by a disconnect in %s", n, time.Since(start).Round(time.Millisecond))
	return nil
}
