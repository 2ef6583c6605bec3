package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// throughput measures how fast a child's output streams through the
// service, against the same generator read from a pipe in-process: the
// ceiling is the pipe and the generator themselves. The server's RSS is
// sampled meanwhile, to show that it stays flat however much goes through.
// Note that ours runs three busy processes (generator, server, client)
// where the ceiling runs two: on a machine with few cores that shows.
func (b *bench) throughput(ctx context.Context) error {
	n := int64(b.cfg.mb) * 1_000_000
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	// The ceiling: best of reps.
	var ceil time.Duration
	for range b.cfg.reps {
		d, err := b.pipeThroughput(ctx, n)
		if err != nil {
			return fmt.Errorf("ceiling: %w", err)
		}
		if ceil == 0 || d < ceil {
			ceil = d
		}
	}

	c := newClient(b.srv.url, 1)
	defer c.close()
	before, err := readStats(b.srv.pid)
	if err != nil {
		return err
	}
	sampler := sampleRSS(b.srv.pid, 50*time.Millisecond)
	var ours time.Duration
	for range b.cfg.reps {
		d, err := b.serverThroughput(ctx, c, n)
		if err != nil {
			sampler.finish()
			return fmt.Errorf("ours: %w", err)
		}
		if ours == 0 || d < ours {
			ours = d
		}
	}
	peak, samples := sampler.finish()

	mbps := func(d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }
	b.rep.compare(fmt.Sprintf("throughput %d MB of 100 B lines (MB/s)", b.cfg.mb), "%.0f", mbps(ours), mbps(ceil))
	b.rep.single("server peak RSS while streaming (MiB)",
		fmt.Sprintf("%.1f (idle %.1f)", float64(peak)/(1<<20), float64(before.rss)/(1<<20)))
	b.rep.note("throughput: best of %d runs per side; server RSS sampled every 50ms, %d samples", b.cfg.reps, samples)
	return nil
}

// pipeThroughput runs the generator with os/exec and reads its stdout pipe
// in 64 KiB reads, discarding them.
func (b *bench) pipeThroughput(ctx context.Context, n int64) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, b.bins.gen, "lines", strconv.FormatInt(n, 10))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	got, rerr := drain(stdout, nil)
	werr := cmd.Wait()
	d := time.Since(start)
	switch {
	case rerr != nil:
		return 0, rerr
	case werr != nil:
		return 0, werr
	case got != n:
		return 0, fmt.Errorf("read %d bytes, want %d", got, n)
	}
	return d, nil
}

// serverThroughput runs the generator through the server and reads the
// body in 64 KiB reads, discarding them.
func (b *bench) serverThroughput(ctx context.Context, c *client, n int64) (time.Duration, error) {
	body := processBody("throughput", b.bins.gen, "lines", strconv.FormatInt(n, 10))
	start := time.Now()
	got, err := c.run(ctx, body, nil)
	d := time.Since(start)
	switch {
	case err != nil:
		return 0, err
	case got != n:
		return 0, fmt.Errorf("streamed %d bytes, want %d", got, n)
	}
	return d, nil
}
