package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"time"
)

// latency measures how long a line takes from the child's write(2) to the
// client: the child writes its clock (CLOCK_REALTIME, same machine) into
// each line and the reader subtracts it from its own clock on receipt. The
// ceiling is the same child read straight from a pipe in-process: what the
// service adds is its pump, channel, HTTP chunking and the socket.
func (b *bench) latency(ctx context.Context) error {
	timeout := time.Duration(b.cfg.lines)*b.cfg.every + 30*time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := []string{"ticks", strconv.Itoa(b.cfg.lines), b.cfg.every.String()}

	ceil, err := b.pipeLatency(ctx, args)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	c := newClient(b.srv.url, 1)
	defer c.close()
	ours, err := serverLatency(ctx, c, processBody("latency", b.bins.gen, args...))
	if err != nil {
		return fmt.Errorf("ours: %w", err)
	}
	for _, lost := range []struct {
		what string
		got  int
	}{{"ceiling", len(ceil)}, {"ours", len(ours)}} {
		if lost.got != b.cfg.lines {
			b.rep.problem("line latency %s: %d lines read, want %d", lost.what, lost.got, b.cfg.lines)
		}
	}
	slices.Sort(ceil)
	slices.Sort(ours)
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", 50}, {"p90", 90}, {"p99", 99}, {"max", 100}} {
		b.rep.compare(fmt.Sprintf("line latency %s (ms)", p.name), "%.3f",
			ms(percentile(ours, p.q)), ms(percentile(ceil, p.q)))
	}
	b.rep.note("line latency: %d lines, one every %s, each from its own write(2)", b.cfg.lines, b.cfg.every)
	return nil
}

// pipeLatency runs the ticking child with os/exec and reads its pipe.
func (b *bench) pipeLatency(ctx context.Context, args []string) ([]time.Duration, error) {
	cmd := exec.CommandContext(ctx, b.bins.gen, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	lat, rerr := readLatencies(stdout)
	werr := cmd.Wait()
	if rerr != nil {
		return lat, rerr
	}
	return lat, werr
}

// serverLatency runs the ticking child through the server and reads the
// streamed body as it comes.
func serverLatency(ctx context.Context, c *client, body []byte) ([]time.Duration, error) {
	resp, err := c.start(ctx, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	lat, err := readLatencies(resp.Body)
	if err != nil {
		return lat, err
	}
	return lat, finish(resp)
}

// readLatencies reads timestamped lines from r as they arrive and returns,
// for each, the time between its timestamp and its receipt.
func readLatencies(r io.Reader) ([]time.Duration, error) {
	br := bufio.NewReaderSize(r, 4096)
	var lat []time.Duration
	for {
		line, err := br.ReadSlice('\n')
		now := time.Now().UnixNano()
		if err == io.EOF && len(line) == 0 {
			return lat, nil
		}
		if err != nil {
			return lat, err
		}
		ts, perr := strconv.ParseInt(string(bytes.TrimSpace(line)), 10, 64)
		if perr != nil {
			return lat, fmt.Errorf("line %d: %q is not a timestamp", len(lat)+1, line)
		}
		lat = append(lat, time.Duration(now-ts))
	}
}
