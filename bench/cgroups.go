package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// cgroupsPhase measures the cost of a cgroup per run: the spawn rate of two
// fresh servers side by side, one with --cgroups=auto (each run in a
// cgroup of its own, made before its start and removed at its end) and one
// with --cgroups=off (a process group only), at each concurrency. The two
// are measured in turns, on then off, twice, and the better turn of each
// kept, so that a slow moment of the shared machine does not fall on one
// side only. The ratio is on / off.
func (b *bench) cgroupsPhase(ctx context.Context) error {
	type side struct {
		mode string
		srv  *server
		c    *client
		best map[int]float64
	}
	var sides []*side
	defer func() {
		for _, s := range sides {
			s.c.close()
			s.srv.stop(b.rep)
			s.srv.logSummary(b.rep)
		}
	}()
	for _, mode := range []string{"auto", "off"} {
		dir := filepath.Join(b.tmp, "cgroups-"+mode)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		srv, err := startServer(ctx, b.bins.rexec, dir, "--cgroups", mode)
		if err != nil {
			return err
		}
		srv.name = "cgroups " + mode
		got := srv.cgroupMode()
		progress("cgroups: rexec pid %d with --cgroups=%s runs in mode %s", srv.pid, mode, got)
		if mode == "auto" && (got == "" || got == "off") {
			b.rep.note("cgroups: this machine offers no cgroups to the server (mode %q): the phase compares off with off", got)
		}
		s := &side{mode: got, srv: srv, c: newClient(srv.url, 16), best: map[int]float64{}}
		sides = append(sides, s)
		warm := min(b.cfg.dur/5, time.Second)
		rateOf(ctx, warm, 2, b.viaServer(s.c, "warm", 2)).check(b.rep, "rexec warm-up, cgroups "+mode)
	}
	for turn := 0; turn < 2; turn++ {
		for _, conc := range b.cfg.concurrency {
			for _, s := range sides {
				r := rateOf(ctx, b.cfg.dur, conc, b.viaServer(s.c, fmt.Sprintf("t%d-", turn), conc))
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				r.check(b.rep, fmt.Sprintf("cgroups %s c=%d", s.mode, conc))
				s.best[conc] = max(s.best[conc], r.perSec())
			}
		}
	}
	on, off := sides[0], sides[1]
	for _, conc := range b.cfg.concurrency {
		b.rep.compare(fmt.Sprintf("spawn `true` c=%d, cgroup (%s) / none (runs/s)", conc, on.mode), "%.0f", on.best[conc], off.best[conc])
	}
	return nil
}
