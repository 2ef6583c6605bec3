package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// pidScript prints the shell's pid, which exec makes the pid of sleep: the
// first line of the stream names the child, so it can be watched.
const pidScript = `echo $$; exec sleep 60`

// heldStreams measures what an idle stream costs the server (memory,
// threads, fds), then how quickly a client's disconnect gets its child
// killed, and finally that everything returns to the idle baseline.
func (b *bench) heldStreams(ctx context.Context) error {
	n, m := b.cfg.streams, b.cfg.kills
	pid := b.srv.pid
	c := newClient(b.srv.url, n)
	defer c.close()
	hc, streams, err := b.holdStreams(ctx, "held streams", pid, c, n, m, b.cfg.marginal)
	defer closeStreams(streams)
	idle, held := hc.idle, hc.held
	if held.rss != 0 { // measured, even if what came after failed
		b.rep.single(fmt.Sprintf("RSS per held stream, %d streams (KiB)", n), fmt.Sprintf("%.1f", hc.perStream()))
		b.rep.single("server threads idle -> streams held", fmt.Sprintf("%d -> %d", idle.threads, held.threads))
		b.rep.single("server fds idle -> streams held", fmt.Sprintf("%d -> %d", idle.fds, held.fds))
		b.rep.note("held streams: %d opened (16 at a time) in %s; idle %v; held %v",
			n, hc.opened.Round(time.Millisecond), idle, held)
	}
	if hc.more > 0 {
		b.rep.single(fmt.Sprintf("RSS per further held stream, %d -> %d streams (KiB)", n, n+hc.more),
			fmt.Sprintf("%.1f", hc.perFurther()))
		b.rep.note("held streams: %d more opened; held %v", hc.more, hc.heldMore)
	}
	if err != nil {
		return err
	}

	if err := b.disconnectLatency(streams[:m]); err != nil {
		return err
	}

	// The rest at once: how long until the server has reaped them all.
	for _, s := range streams[m:] {
		s.cancel()
	}
	took, left := waitNoChildren(pid, 15*time.Second)
	if left > 0 {
		b.rep.problem("held streams: %d children still there %s after their clients closed", left, took.Round(time.Millisecond))
	}
	b.rep.note("held streams: the other %d closed at once, all children reaped %s later",
		n-m, took.Round(time.Millisecond))
	closeStreams(streams)
	c.close()

	after, err := settle(pid, idle, 5*time.Second)
	if err != nil {
		return err
	}
	b.compareToIdle("after held streams", idle, after)
	return nil
}

// holdCost is what held streams cost a server, against its idle baseline.
type holdCost struct {
	n          int           // streams held
	idle, held procStats     // the server idle, and with the n streams
	opened     time.Duration // to open the n, 16 at a time
	dials      int64         // connections the client dialed for the n
	more       int           // further streams opened; 0 when not measured
	heldMore   procStats     // the server with n+more streams
	dialsMore  int64         // connections the client dialed for the more
}

// perStream is the server's RSS per held stream, in KiB.
func (h holdCost) perStream() float64 {
	return float64(h.held.rss-h.idle.rss) / float64(h.n) / 1024
}

// perFurther is the server's RSS per stream held past the first n, in KiB.
func (h holdCost) perFurther() float64 {
	return float64(h.heldMore.rss-h.held.rss) / float64(h.more) / 1024
}

// holdStreams warms up the server pid through c, takes its idle baseline,
// opens n streams of sleep 60 (the first m of which print their pid, see
// openStreams) and reads the server's footprint. With marginal, it then
// opens 4n more, reads the footprint again and closes those. It returns
// the n streams, still open: the caller closes them, also on an error.
// Problems are reported under what.
//
// The warm-up makes what the server sets up once for good part of the
// baseline, not of the streams: its /dev/null for children, and the pages
// of its own code that only held streams run (parking, hangup watching),
// which count in RSS once touched.
func (b *bench) holdStreams(ctx context.Context, what string, pid int, c *client, n, m int, marginal bool) (holdCost, []*held, error) {
	hc := holdCost{n: n}
	if err := newAliasRunner("warmup", "true").run(ctx, c, nil); err != nil {
		return hc, nil, fmt.Errorf("warm-up run: %w", err)
	}
	warm, err := openStreams(ctx, c, 16, 0, "warm")
	if err == nil {
		time.Sleep(300 * time.Millisecond)
	}
	closeStreams(warm)
	if err != nil {
		return hc, nil, fmt.Errorf("warm-up streams: %w", err)
	}
	if took, left := waitNoChildren(pid, 15*time.Second); left > 0 {
		return hc, nil, fmt.Errorf("warm-up streams: %d children still there %s after their clients closed", left, took)
	}
	c.close()
	if hc.idle, err = quiesce(pid); err != nil {
		return hc, nil, err
	}

	start := time.Now()
	dials := c.dials.Load()
	if c.proto == 2 && !c.connEach {
		// One connection first, which the streams then share: opened 16
		// at once on none, each would dial its own.
		if err := newAliasRunner("prime", "true").run(ctx, c, nil); err != nil {
			return hc, nil, fmt.Errorf("opening the HTTP/2 connection: %w", err)
		}
	}
	streams, err := openStreams(ctx, c, n, m, "hold")
	if err != nil {
		return hc, streams, err
	}
	hc.opened, hc.dials = time.Since(start), c.dials.Load()-dials
	time.Sleep(300 * time.Millisecond) // let the server's goroutines settle
	if hc.held, err = readStats(pid); err != nil {
		return hc, streams, err
	}
	if !marginal {
		return hc, streams, nil
	}

	// The figure above includes what does not grow with the streams: the
	// Go runtime lets its heap reach 4 MiB before its first collection, so
	// a few hundred streams' garbage stays resident. What each further
	// stream costs is the slope from n to 5n streams.
	dials = c.dials.Load()
	more, err := openStreams(ctx, c, 4*n, 0, "more")
	defer closeStreams(more)
	if err != nil {
		return hc, streams, err
	}
	hc.dialsMore = c.dials.Load() - dials
	time.Sleep(300 * time.Millisecond)
	if hc.heldMore, err = readStats(pid); err != nil {
		return hc, streams, err
	}
	hc.more = 4 * n
	closeStreams(more)
	if took, left := waitChildrenAtMost(pid, 15*time.Second, n); left > 0 {
		b.rep.problem("%s: %d more children than the %d held still there %s after their clients closed", what, left, n, took.Round(time.Millisecond))
	}
	return hc, streams, nil
}

// held is one open stream.
type held struct {
	resp   *http.Response
	cancel context.CancelFunc
	pid    int // the child's pid, for those that print it
}

// openStreams opens n streams, 16 at a time, each running sleep 60 under an
// alias of its own, and returns once each has its 200 and headers. The
// first m print their pid first; it is read.
func openStreams(ctx context.Context, c *client, n, m int, prefix string) ([]*held, error) {
	streams := make([]*held, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			streams[i], errs[i] = openStream(ctx, c, prefix, i, i < m)
		})
	}
	wg.Wait()
	// Keep the ones that opened, so that the caller closes them.
	var ok []*held
	for _, s := range streams {
		if s != nil {
			ok = append(ok, s)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ok, fmt.Errorf("%d of %d streams failed to open: %w", n-len(ok), n, firstErr(errs))
	}
	return ok, nil
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func openStream(ctx context.Context, c *client, prefix string, i int, withPid bool) (*held, error) {
	sctx, cancel := context.WithCancel(ctx)
	alias := prefix + strconv.Itoa(i)
	body := processBody(alias, "sleep", "60")
	if withPid {
		body = processBody(alias, "sh", "-c", pidScript)
	}
	// Bound the wait for the headers and the pid line, not the stream.
	timer := time.AfterFunc(15*time.Second, cancel)
	defer timer.Stop()
	resp, err := c.start(sctx, body)
	if err != nil {
		cancel()
		return nil, err
	}
	h := &held{resp: resp, cancel: cancel}
	if withPid {
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err == nil {
			h.pid, err = strconv.Atoi(strings.TrimSpace(line))
		}
		if err != nil || h.pid <= 0 {
			cancel()
			resp.Body.Close()
			return nil, fmt.Errorf("stream %d: reading its pid: %q, %v", i, line, err)
		}
	}
	if !timer.Stop() {
		resp.Body.Close()
		return nil, fmt.Errorf("stream %d: took more than 15s to open", i)
	}
	return h, nil
}

func closeStreams(streams []*held) {
	for _, s := range streams {
		s.cancel()
		s.resp.Body.Close()
	}
}

// disconnectLatency closes the given streams one at a time and times, for
// each, how long after the close its child has exited (its pidfd turns
// readable) and has been reaped by the server (the pid no longer exists).
func (b *bench) disconnectLatency(streams []*held) error {
	var exited, reaped []time.Duration
	for _, s := range streams {
		e, r, err := timeDisconnect(s)
		if err != nil {
			return err
		}
		exited = append(exited, e)
		reaped = append(reaped, r)
	}
	if len(exited) == 0 {
		return nil
	}
	slices.Sort(exited)
	slices.Sort(reaped)
	for _, x := range []struct {
		what string
		d    []time.Duration
	}{{"exited", exited}, {"reaped", reaped}} {
		b.rep.single(fmt.Sprintf("disconnect -> child %s p50/max (ms)", x.what),
			fmt.Sprintf("%.2f / %.2f", ms(percentile(x.d, 50)), ms(percentile(x.d, 100))))
	}
	b.rep.note("disconnect: %d streams of `%s` closed one by one; exit seen on a pidfd, reap when the pid stops existing",
		len(streams), pidScript)
	return nil
}

// timeDisconnect cancels s's request, which closes its connection, and
// times its child's exit and reap.
func timeDisconnect(s *held) (exited, reaped time.Duration, err error) {
	fd, err := unix.PidfdOpen(s.pid, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("pidfd_open(%d): %w", s.pid, err)
	}
	defer unix.Close(fd)
	start := time.Now()
	s.cancel() // the transport closes the connection at once
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 10_000)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		if n == 0 {
			return 0, 0, fmt.Errorf("child %d still running 10s after its client closed", s.pid)
		}
		break
	}
	exited = time.Since(start)
	// A zombie can still be signalled; once reaped its pid is gone.
	for unix.PidfdSendSignal(fd, 0, nil, 0) == nil {
		if time.Since(start) > 10*time.Second {
			return 0, 0, fmt.Errorf("child %d not reaped 10s after its client closed", s.pid)
		}
		time.Sleep(50 * time.Microsecond)
	}
	return exited, time.Since(start), nil
}

// quiesce waits, up to 3s, until the server's fd count holds still for a
// few samples (connections closed by a previous phase are closed on its
// side asynchronously) and returns its stats: an idle baseline.
func quiesce(pid int) (procStats, error) {
	var last procStats
	stable := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && stable < 3; {
		time.Sleep(50 * time.Millisecond)
		st, err := readStats(pid)
		if err != nil {
			return st, err
		}
		if st.fds == last.fds {
			stable++
		} else {
			stable = 0
		}
		last = st
	}
	last.targets = fdTargets(pid)
	return last, nil
}

// compareToIdle reports the server's footprint against its idle baseline.
// More fds than at idle is a leak; threads and RSS may grow once with load
// (Go keeps its threads and returns memory lazily), so they are shown.
func (b *bench) compareToIdle(when string, idle, now procStats) {
	b.rep.single(when+": RSS, threads, fds vs idle",
		fmt.Sprintf("%+.1f MiB, %+d, %+d", float64(now.rss-idle.rss)/(1<<20), now.threads-idle.threads, now.fds-idle.fds))
	if now.fds > idle.fds {
		b.rep.problem("%s: the server holds %d fds, %d at idle (%v); more of: %s",
			when, now.fds, idle.fds, now, fdGrowth(idle.targets, now.targets))
	}
	if left := childrenOf(b.srv.pid); len(left) > 0 {
		b.rep.problem("%s: the server still has %d children: %v", when, len(left), left)
	}
}
