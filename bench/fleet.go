package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// fleetPhase measures a fleet of three rexec hosts on this machine (issue
// 17): three processes with --fleet-name, their route ports on loopback
// naming each other, forming one embedded JetStream cluster, next to a
// single host (--scripts alone) measured the same way in the same phase.
// The two are up together, each idle while the other is measured.
//
//   - queue: detached runs of `fast` (/bin/true, -s=1, the default) and of
//     `capped` (/bin/true, -s=4), their ends counted from one host's event
//     stream (GET /scripts/v1/events): first 10 one at a time (5 with
//     -quick), each from its submission to its end, the queue empty; then
//     8 workers submitting as fast as they are answered for -d,
//     round-robin over the three hosts in the fleet; then the backlog left
//     drains, nobody submitting, for as long again (5s at least), and what
//     is still queued is cancelled. The single host and the fleet take
//     turns. A -s is the fleet's, not each host's: the fleet's figure is
//     what the shared queue does with the same limit.
//   - lost: a run of `long` (sleep 60) pinned to h0; once it runs, h0 is
//     killed with SIGKILL, and h1 is asked for the run's status every 10 ms
//     until it says "ended":"lost", and for the history's page of done
//     runs until it holds the mark. h0 is then restarted on its data
//     directory (again a second later if it exits) and waited for until h1
//     sees it up. Three times (once with -quick).
//   - output: a run of `big` (head -c N /dev/zero | tr, 64 MB, 16 MB with
//     -quick) pinned to h0 and followed from h2 (GET
//     /scripts/v1/output/ID?follow=1), timed from the submission to the
//     output's end, then read again whole. Ceilings: the same on the
//     single host, followed from itself (its output file); the same
//     pipeline run by the bench into /dev/null.
//
// Every step is bounded in time; one that fails is reported as a problem
// and the phase goes on with the next where it can. Every process started
// is stopped at the end, and a lost run's process found still running
// after its host's restart is reported and killed. The hosts' warnings and
// errors are problems, but for those that echo the phase's own kill -9.
func (b *bench) fleetPhase(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	fb := &fleetBench{b: b, dir: filepath.Join(b.tmp, "fleet"), outBytes: 64_000_000, lostReps: 3, start: time.Now()}
	if b.cfg.quick {
		fb.outBytes, fb.lostReps = 16_000_000, 1
	}
	if err := os.MkdirAll(fb.dir, 0o700); err != nil {
		return err
	}
	fb.tab = filepath.Join(fb.dir, "exectab")
	if err := os.WriteFile(fb.tab, []byte(fleetExectab(fb.outBytes)), 0o600); err != nil {
		return err
	}
	fb.hc = &http.Client{Transport: &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ReadBufferSize:      64 << 10,
	}}
	defer fb.hc.CloseIdleConnections()
	defer fb.stopAll()

	// The single host and the fleet start together: the fleet's start
	// waits for its meta leader's election, a few seconds.
	var wg sync.WaitGroup
	var singleErr, fleetErr error
	wg.Go(func() { singleErr = fb.startSingle(ctx) })
	wg.Go(func() { fleetErr = fb.startFleet(ctx) })
	wg.Wait()
	if singleErr != nil {
		return fmt.Errorf("the single host: %w", singleErr)
	}
	if fleetErr != nil {
		b.rep.problem("fleet: %v: only the single host's figures follow", fleetErr)
		fb.hosts = nil
	}
	fb.queueRates(ctx)
	if ctx.Err() == nil && fb.hosts != nil {
		fb.timeToLost(ctx)
	}
	if ctx.Err() == nil {
		fb.outputThroughput(ctx)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// fleetExectab is the exectab of the single host and of every host of the
// fleet; the output of `big` is outBytes of 'x'.
func fleetExectab(outBytes int64) string {
	return fmt.Sprintf(`fast /bin/true
-s=4 capped /bin/true
long /bin/sleep 60
big /bin/sh -c "head -c %d /dev/zero | tr '\\0' x"
`, outBytes)
}

// fleetBigScript is the shell pipeline of `big`, run by the bench itself
// for the raw ceiling.
func fleetBigScript(outBytes int64) string {
	return fmt.Sprintf(`head -c %d /dev/zero | tr '\0' x`, outBytes)
}

// fleetMaxOutput is the --max-output of every host: more than `big` writes.
const fleetMaxOutput = "128MiB"

// fleetWait bounds the fleet's forming: every host listening (each waits
// for a quorum of the fleet before it listens) and seeing the three up.
const fleetWait = 60 * time.Second

// fleetBench is the phase's state: the processes and what they share.
type fleetBench struct {
	b        *bench
	dir, tab string
	outBytes int64
	lostReps int
	hc       *http.Client

	single *fleetProc
	hosts  []*fleetProc // h0, h1, h2; nil when the fleet did not form

	mu       sync.Mutex
	all      []*fleetProc // every process of the phase, for stopAll
	lostRuns []string     // the runs of `long`, whose processes outlive a kill -9 of their host
	kills    []time.Time  // of h0
	restarts []time.Time  // of h0, after a kill
	start    time.Time    // of the phase
	stopping time.Time    // when stopAll began

	orphansChecked int // restarts of h0 after which no process of a lost run was left
}

// fleetProc is one rexec of the phase, over its restarts.
type fleetProc struct {
	name  string
	dir   string   // its data directory; its logs beside it
	args  []string // rexec's flags but -p, -i
	srv   *server  // the process in force; nil once killed
	lives []*fleetLife
}

// fleetLife is one process of a fleetProc: a start, to its kill or stop.
type fleetLife struct {
	srv    *server
	killed bool // by the bench, SIGKILL

	mu     sync.Mutex
	warned []string // its warn, error and non-JSON lines, as logged
}

// startProc starts p's process (again), on 127.0.0.1 port 0, and waits up
// to wait for its "listening" line. Its log goes to a file of its own,
// numbered by its restarts, and its warnings and errors are kept for the
// phase's summary.
func (fb *fleetBench) startProc(ctx context.Context, p *fleetProc, wait time.Duration) error {
	life := &fleetLife{}
	spec := launchSpec{
		name:    fmt.Sprintf("fleet %s", p.name),
		logPath: filepath.Join(fb.dir, fmt.Sprintf("%s.%d.log", p.name, len(p.lives))),
		wait:    wait,
		onLine: func(raw []byte, level string) {
			switch level {
			case "warn", "error", "fatal", "panic", "not-json":
				life.mu.Lock()
				life.warned = append(life.warned, string(raw))
				life.mu.Unlock()
			}
		},
	}
	if len(p.lives) > 0 {
		spec.name += fmt.Sprintf(" (restart %d)", len(p.lives))
	}
	s, err := launch(ctx, fb.b.bins.rexec, spec, p.args...)
	if s == nil {
		return err
	}
	life.srv = s
	fb.mu.Lock()
	defer fb.mu.Unlock()
	p.lives = append(p.lives, life) // a start that failed too: its log is summed up
	if err != nil {
		return err
	}
	p.srv = s
	return nil
}

// startSingle starts the single host: --scripts, no fleet.
func (fb *fleetBench) startSingle(ctx context.Context) error {
	p := &fleetProc{name: "single", dir: filepath.Join(fb.dir, "single")}
	p.args = []string{"--scripts", fb.tab, "--data-dir", p.dir, "--max-output", fleetMaxOutput}
	fb.mu.Lock()
	fb.all = append(fb.all, p)
	fb.mu.Unlock()
	if err := fb.startProc(ctx, p, 30*time.Second); err != nil {
		return err
	}
	fb.single = p
	progress("fleet: single host pid %d on %s", p.srv.pid, p.srv.url)
	return nil
}

// startFleet starts h0, h1 and h2 at once, each naming the other two's
// route ports (free loopback ports picked by the bench), and waits until
// each lists the three up. The default --fleet-down-after (1.5s) holds.
func (fb *fleetBench) startFleet(ctx context.Context) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	hosts := make([]*fleetProc, 3)
	for i := range hosts {
		var routes []string
		for j, port := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", port))
			}
		}
		p := &fleetProc{name: fmt.Sprintf("h%d", i), dir: filepath.Join(fb.dir, fmt.Sprintf("h%d", i))}
		p.args = []string{"--scripts", fb.tab, "--data-dir", p.dir, "--max-output", fleetMaxOutput,
			"--fleet-name", "bench", "--fleet-host", p.name, "--fleet-listen", fmt.Sprintf("127.0.0.1:%d", ports[i]),
			"--fleet-routes", strings.Join(routes, ",")}
		hosts[i] = p
	}
	fb.mu.Lock()
	fb.all = append(fb.all, hosts...)
	fb.mu.Unlock()

	start := time.Now()
	ok := make([]bool, len(hosts))
	var wg sync.WaitGroup
	for i, p := range hosts {
		wg.Go(func() { ok[i] = fb.startRetrying(ctx, p, start, "at the fleet's start") })
	}
	wg.Wait()
	if slices.Contains(ok, false) {
		return errors.New("the fleet did not form")
	}
	listening := time.Since(start)
	for _, p := range hosts {
		wait := max(5*time.Second, fleetWait-time.Since(start))
		if err := fb.waitUntil(ctx, wait, 50*time.Millisecond, func() (bool, error) {
			up, err := fb.machinesUp(ctx, p.srv.url)
			return len(up) == len(hosts), err
		}); err != nil {
			return fmt.Errorf("the fleet did not form within %s: %s does not list the 3 hosts up: %w", fleetWait, p.name, err)
		}
	}
	fb.hosts = hosts
	progress("fleet: h0 h1 h2 pids %d %d %d on %s %s %s", hosts[0].srv.pid, hosts[1].srv.pid, hosts[2].srv.pid,
		hosts[0].srv.url, hosts[1].srv.url, hosts[2].srv.url)
	fb.b.rep.single("fleet: 3 hosts started at once -> all listening / all up on each (s)",
		fmt.Sprintf("%.1f / %.1f", listening.Seconds(), time.Since(start).Seconds()))
	return nil
}

// freePorts returns n ports of 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// machinesUp is the names of the hosts GET /fleet/v1/machines on base says
// are up.
func (fb *fleetBench) machinesUp(ctx context.Context, base string) ([]string, error) {
	var v struct {
		Machines []struct {
			Name string `json:"name"`
			Up   bool   `json:"up"`
		} `json:"machines"`
	}
	if _, err := fb.call(ctx, http.MethodGet, base+"/fleet/v1/machines", nil, &v); err != nil {
		return nil, err
	}
	var up []string
	for _, m := range v.Machines {
		if m.Up {
			up = append(up, m.Name)
		}
	}
	return up, nil
}

// call sends a request and decodes its JSON answer into v (when not nil).
// An answer other than 200 is a *statusError.
func (fb *fleetBench) call(ctx context.Context, method, u string, body any, v any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := fb.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, &statusError{code: resp.StatusCode, body: string(b)}
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return resp.StatusCode, fmt.Errorf("answer %.200q: %w", b, err)
		}
	}
	return resp.StatusCode, nil
}

// runStatus is what the phase reads of GET /scripts/v1/status/ID.
type runStatus struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	State           string `json:"state"`
	Ended           string `json:"ended"`
	ExitCode        *int   `json:"exit_code"`
	Host            string `json:"host"`
	OutputSize      int64  `json:"output_size"`
	OutputTruncated string `json:"output_truncated"`
}

// submit posts a detached run of script, on host when not "", to base,
// and returns its id.
func (fb *fleetBench) submit(ctx context.Context, base, script, host string) (string, error) {
	body := map[string]any{"name": script}
	if host != "" {
		body["host"] = host
	}
	var v struct {
		ID string `json:"id"`
	}
	if _, err := fb.call(ctx, http.MethodPost, base+"/scripts/v1/run", body, &v); err != nil {
		return "", err
	}
	if v.ID == "" {
		return "", errors.New("the answer has no id")
	}
	return v.ID, nil
}

func (fb *fleetBench) status(ctx context.Context, base, id string) (runStatus, error) {
	var st runStatus
	_, err := fb.call(ctx, http.MethodGet, base+"/scripts/v1/status/"+id, nil, &st)
	return st, err
}

// waitUntil calls ok every interval until it holds, for at most within.
// The last error of ok, if any, is in the error of a wait that timed out.
func (fb *fleetBench) waitUntil(ctx context.Context, within, interval time.Duration, ok func() (bool, error)) error {
	deadline := time.Now().Add(within)
	var last error
	for {
		done, err := ok()
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("not within %s (last error: %v)", within, last)
			}
			return fmt.Errorf("not within %s", within)
		}
		time.Sleep(interval)
	}
}

// ---- runs per second through the queue

// queueScripts are the scripts whose runs per second are measured.
var queueScripts = []struct{ name, what string }{
	{"fast", "`true`, -s=1"},
	{"capped", "`true`, -s=4"},
}

// queueResult is one measure of runs per second through a queue.
type queueResult struct {
	submitted, refused, failed int
	firstErr                   error
	elapsed                    time.Duration
	done                       int // ends seen on the event stream within elapsed
	notExit                    int // of which not "ended":"exit" with exit code 0
	firstNotExit               string
	backlog                    int             // submitted but not ended when the submitters stopped
	drain                      time.Duration   // from then until the last ended, or the drain's bound
	drainDone                  int             // ends seen within drain
	cancelled                  int             // runs still queued after the drain's bound, cancelled
	streamErr                  string          // the event stream's error or drop, if any
	seq                        []time.Duration // one run at a time, submission to end, sorted
}

// seqRuns is how many runs are timed one at a time.
func (fb *fleetBench) seqRuns() int {
	if fb.b.cfg.quick {
		return 5
	}
	return 10
}

func (r queueResult) perSec(n int) float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(n) / r.elapsed.Seconds()
}

// drainPerSec is the rate of the ends after the submitters stopped: the
// queue's own pace, nobody submitting.
func (r queueResult) drainPerSec() float64 {
	if r.drain <= 0 || r.drainDone == 0 {
		return 0
	}
	return float64(r.drainDone) / r.drain.Seconds()
}

// queueRates measures each script on the single host and on the fleet, in
// turns.
func (fb *fleetBench) queueRates(ctx context.Context) {
	for _, sc := range queueScripts {
		single, err := fb.queueRate(ctx, []*fleetProc{fb.single}, sc.name)
		if err != nil {
			fb.b.rep.problem("fleet: queue %s on the single host: %v", sc.name, err)
			continue
		}
		fb.checkQueue("single host", sc.name, single)
		if fb.hosts == nil {
			fb.b.rep.single(fmt.Sprintf("fleet: single host, %s (%s): submitted / completed while / after (runs/s)", sc.name, sc.what),
				fmt.Sprintf("%.0f / %.0f / %.0f", single.perSec(single.submitted), single.perSec(single.done), single.drainPerSec()))
			continue
		}
		fleet, err := fb.queueRate(ctx, fb.hosts, sc.name)
		if err != nil {
			fb.b.rep.problem("fleet: queue %s on the fleet: %v", sc.name, err)
			continue
		}
		fb.checkQueue("fleet", sc.name, fleet)
		fb.b.rep.compare(fmt.Sprintf("fleet: %s (%s) submitted, 3 hosts / 1 (runs/s)", sc.name, sc.what), "%.0f",
			fleet.perSec(fleet.submitted), single.perSec(single.submitted))
		fb.b.rep.compare(fmt.Sprintf("fleet: %s (%s) completed while submitting, 3 hosts / 1 (runs/s)", sc.name, sc.what), "%.0f",
			fleet.perSec(fleet.done), single.perSec(single.done))
		fb.b.rep.compare(fmt.Sprintf("fleet: %s (%s) completed after, the backlog alone, 3 hosts / 1 (runs/s)", sc.name, sc.what), "%.0f",
			fleet.drainPerSec(), single.drainPerSec())
		fb.b.rep.compare(fmt.Sprintf("fleet: %s (%s) one at a time, submitted -> ended p50, 3 hosts / 1 (ms)", sc.name, sc.what), "%.1f",
			ms(percentile(fleet.seq, 50)), ms(percentile(single.seq, 50)))
		fb.b.rep.note("fleet: %s: single host %s; fleet %s", sc.name, single.describe(), fleet.describe())
	}
}

func (r queueResult) describe() string {
	s := fmt.Sprintf("one at a time %.0f-%.0f ms (%d runs); then %d submitted and %d ended in %.1fs",
		ms(percentile(r.seq, 0)), ms(percentile(r.seq, 100)), len(r.seq), r.submitted, r.done, r.elapsed.Seconds())
	if r.refused > 0 {
		s += fmt.Sprintf(", %d refused (429)", r.refused)
	}
	if r.backlog > 0 {
		s += fmt.Sprintf(", %d left queued", r.backlog)
		if r.cancelled > 0 {
			s += fmt.Sprintf(" (%d ended in the drain's %.1fs, %d cancelled then)", r.drainDone, r.drain.Seconds(), r.cancelled)
		} else {
			s += fmt.Sprintf(" (drained in %.1fs)", r.drain.Seconds())
		}
	}
	return s
}

// checkQueue reports what went wrong in a measure.
func (fb *fleetBench) checkQueue(where, script string, r queueResult) {
	if r.failed > 0 {
		fb.b.rep.problem("fleet: %s, %s: %d of %d submissions failed, first: %v", where, script, r.failed, r.submitted+r.failed, r.firstErr)
	}
	if r.notExit > 0 {
		fb.b.rep.problem("fleet: %s, %s: %d runs did not end with exit 0, first: %s", where, script, r.notExit, r.firstNotExit)
	}
	if r.streamErr != "" {
		fb.b.rep.problem("fleet: %s, %s: the event stream: %s", where, script, r.streamErr)
	}
}

// queueRate submits runs of script for -d from 8 workers, round-robin over
// procs, and counts the ends from the event stream of procs[0]. What is
// left queued then gets a bound to drain (as long as the measure, at least
// 5s), after which it is cancelled, so that the next measure starts from
// an empty queue.
func (fb *fleetBench) queueRate(ctx context.Context, procs []*fleetProc, script string) (queueResult, error) {
	var res queueResult
	ev, err := fb.openEvents(ctx, procs[0].srv.url, script)
	if err != nil {
		return res, err
	}
	defer ev.close()

	// Warm up: a run per worker, through each host, and their ends on
	// the stream, which also shows that the stream sees them.
	const workers = 8
	for i := range workers {
		if _, err := fb.submit(ctx, procs[i%len(procs)].srv.url, script, ""); err != nil {
			return res, fmt.Errorf("warm-up: %w", err)
		}
	}
	if err := ev.waitDone(ctx, workers, 30*time.Second); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}

	// One run at a time: from its submission to its end on the stream,
	// the queue empty.
	for i := range fb.seqRuns() {
		before := ev.snapshot().done
		t := time.Now()
		if _, err := fb.submit(ctx, procs[i%len(procs)].srv.url, script, ""); err != nil {
			return res, fmt.Errorf("one run at a time: %w", err)
		}
		if err := ev.waitDone(ctx, before+1, 30*time.Second); err != nil {
			return res, fmt.Errorf("one run at a time: %w", err)
		}
		res.seq = append(res.seq, time.Since(t))
	}
	slices.Sort(res.seq)

	base := ev.snapshot()
	var (
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(fb.b.cfg.dur)
	for range workers {
		wg.Go(func() {
			var ok, refused, failed int
			var first error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				p := procs[int(next.Add(1)-1)%len(procs)]
				_, err := fb.submit(ctx, p.srv.url, script, "")
				var se *statusError
				switch {
				case err == nil:
					ok++
				case errors.As(err, &se) && se.code == http.StatusTooManyRequests:
					refused++
					time.Sleep(5 * time.Millisecond)
				default:
					failed++
					if first == nil {
						first = err
					}
				}
			}
			mu.Lock()
			res.submitted += ok
			res.refused += refused
			res.failed += failed
			if res.firstErr == nil {
				res.firstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	end := ev.snapshot()
	res.done = end.done - base.done
	res.backlog = max(0, res.submitted-res.done)

	// Drain: the queue alone, nobody submitting. Then cancel what is
	// left.
	drainStart := time.Now()
	derr := ev.waitDone(ctx, base.done+res.submitted, max(5*time.Second, fb.b.cfg.dur))
	res.drain, res.drainDone = time.Since(drainStart), ev.snapshot().done-end.done
	if derr != nil {
		n, err := fb.cancelQueued(ctx, procs[0].srv.url, script)
		res.cancelled = n
		if err != nil {
			return res, fmt.Errorf("cancelling the %d runs left: %w", res.backlog, err)
		}
	}
	final := ev.snapshot()
	res.notExit, res.firstNotExit = final.notExit-base.notExit, final.firstNotExit
	if res.cancelled > 0 {
		res.notExit -= final.cancelled - base.cancelled
	}
	res.streamErr = final.err
	return res, nil
}

// cancelQueued cancels the runs of script that the queue still holds, and
// waits until none is queued or running. It returns how many it cancelled.
func (fb *fleetBench) cancelQueued(ctx context.Context, base, script string) (int, error) {
	cancelled := 0
	err := fb.waitUntil(ctx, 60*time.Second, 100*time.Millisecond, func() (bool, error) {
		var v struct {
			Queued  map[string]runStatus `json:"queued"`
			Running map[string]runStatus `json:"running"`
		}
		if _, err := fb.call(ctx, http.MethodGet, base+"/scripts/v1/status", nil, &v); err != nil {
			return false, err
		}
		var ids []string
		for id, st := range v.Queued {
			if st.Name == script || st.Name == "" {
				ids = append(ids, id)
			}
		}
		busy := len(ids)
		for _, st := range v.Running {
			if st.Name == script || st.Name == "" {
				busy++
			}
		}
		if busy == 0 {
			return true, nil
		}
		var n atomic.Int64
		var wg sync.WaitGroup
		work := make(chan string)
		for range 8 {
			wg.Go(func() {
				for id := range work {
					if _, err := fb.call(ctx, http.MethodPost, base+"/scripts/v1/cancel/"+id, map[string]any{}, nil); err == nil {
						n.Add(1)
					}
				}
			})
		}
		for _, id := range ids {
			work <- id
		}
		close(work)
		wg.Wait()
		cancelled += int(n.Load())
		return false, nil
	})
	return cancelled, err
}

// events counts the ends of runs on one host's event stream.
type events struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	counts  eventCounts
	changed chan struct{} // closed and replaced at each end
}

// eventCounts are the counts of an event stream at one moment.
type eventCounts struct {
	done, notExit, cancelled int
	firstNotExit             string
	err                      string // an `event: error` or `event: lost`, or the stream's end
}

// openEvents opens GET /scripts/v1/events?name=script on base.
func (fb *fleetBench) openEvents(ctx context.Context, base, script string) (*events, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/scripts/v1/events?name="+url.QueryEscape(script), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := fb.hc.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("events: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("events: %w", &statusError{code: resp.StatusCode, body: string(b)})
	}
	e := &events{cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	go func() {
		defer close(e.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		kind := ""
		for sc.Scan() {
			line := sc.Text()
			if k, ok := strings.CutPrefix(line, "event: "); ok {
				kind = k
				continue
			}
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				if line == "" {
					kind = ""
				}
				continue
			}
			if kind == "error" || kind == "lost" {
				e.mu.Lock()
				if e.counts.err == "" {
					e.counts.err = fmt.Sprintf("event: %s: %s", kind, data)
				}
				e.mu.Unlock()
				continue
			}
			var ev struct {
				Run      string `json:"run"`
				State    string `json:"state"`
				Ended    string `json:"ended"`
				ExitCode *int   `json:"exit_code"`
			}
			if json.Unmarshal([]byte(data), &ev) != nil || ev.State != "done" {
				continue
			}
			e.mu.Lock()
			e.counts.done++
			if ev.Ended == "cancelled" {
				e.counts.cancelled++
			}
			if ev.Ended != "exit" || ev.ExitCode == nil || *ev.ExitCode != 0 {
				e.counts.notExit++
				if e.counts.firstNotExit == "" {
					e.counts.firstNotExit = data
				}
			}
			close(e.changed)
			e.changed = make(chan struct{})
			e.mu.Unlock()
		}
		if ctx.Err() == nil {
			e.mu.Lock()
			if e.counts.err == "" {
				e.counts.err = fmt.Sprintf("the stream ended (%v)", sc.Err())
			}
			e.mu.Unlock()
		}
	}()
	return e, nil
}

func (e *events) snapshot() eventCounts {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counts
}

// waitDone waits until the stream has seen n ends in all.
func (e *events) waitDone(ctx context.Context, n int, within time.Duration) error {
	t := time.NewTimer(within)
	defer t.Stop()
	for {
		e.mu.Lock()
		c, changed := e.counts, e.changed
		e.mu.Unlock()
		if c.done >= n {
			return nil
		}
		if c.err != "" {
			return fmt.Errorf("the event stream: %s", c.err)
		}
		select {
		case <-changed:
		case <-e.done:
			e.mu.Lock()
			err := e.counts.err
			e.mu.Unlock()
			return fmt.Errorf("the event stream: %s", err)
		case <-t.C:
			return fmt.Errorf("%d ends of %d seen on the event stream within %s", c.done, n, within)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func (e *events) close() {
	e.cancel()
	<-e.done
}

// ---- output through the stream

// outputResult is one run of `big` followed to its end.
type outputResult struct {
	bytes      int64
	first, all time.Duration // from the submission to the first byte, to the end
	status     runStatus
	readBack   time.Duration // reading it whole again once done, without follow
	notFound   int           // 404s of the host followed from, which did not know the run yet
	unknownFor time.Duration // from the submission to the follow's 200, when there were 404s
}

func (r outputResult) mbps() float64 {
	if r.all <= 0 {
		return 0
	}
	return float64(r.bytes) / 1e6 / r.all.Seconds()
}

// outputThroughput times `big` followed from h2 while it runs on h0,
// against the single host followed from itself and the raw pipeline into
// /dev/null.
func (fb *fleetBench) outputThroughput(ctx context.Context) {
	mb := fb.outBytes / 1_000_000
	var raw time.Duration
	for range 3 {
		start := time.Now()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", fleetBigScript(fb.outBytes))
		if err := cmd.Run(); err != nil {
			fb.b.rep.problem("fleet: the raw pipeline of `big`: %v", err)
			return
		}
		if d := time.Since(start); raw == 0 || d < raw {
			raw = d
		}
	}
	rawMBps := float64(fb.outBytes) / 1e6 / raw.Seconds()

	var single outputResult
	for i := range 2 { // the better of two
		r, err := fb.followRun(ctx, fb.single.srv.url, fb.single.srv.url, "")
		if err != nil {
			fb.b.rep.problem("fleet: `big` on the single host: %v", err)
			return
		}
		if r.bytes != fb.outBytes {
			fb.b.rep.problem("fleet: `big` on the single host: followed %d bytes, want %d (status: %+v)", r.bytes, fb.outBytes, r.status)
		}
		if i == 0 || r.mbps() > single.mbps() {
			single = r
		}
	}
	fb.b.rep.compare(fmt.Sprintf("fleet: output %d MB, single host, followed from itself / raw (MB/s)", mb), "%.0f", single.mbps(), rawMBps)
	if fb.hosts == nil {
		return
	}
	h0, h2 := fb.hosts[0], fb.hosts[2]
	r, err := fb.followRun(ctx, h0.srv.url, h2.srv.url, h0.name)
	if err != nil {
		fb.b.rep.problem("fleet: `big` on h0 followed from h2: %v", err)
		return
	}
	what := fmt.Sprintf("%d MB", mb)
	if r.bytes != fb.outBytes {
		what = fmt.Sprintf("%.1f of %d MB", float64(r.bytes)/1e6, mb)
		fb.b.rep.note("fleet: `big` on h0 followed from h2: %d bytes of %d arrived, output_size %d, output_truncated %q, ended %q",
			r.bytes, fb.outBytes, r.status.OutputSize, r.status.OutputTruncated, r.status.Ended)
	}
	if r.notFound > 0 {
		fb.b.rep.note("fleet: `big`, submitted to h0: h2 answered its output with 404 (no run with this id) %d times, for %.0f ms after the submission",
			r.notFound, ms(r.unknownFor))
	}
	if r.status.Host != h0.name {
		fb.b.rep.problem("fleet: `big` pinned to h0 ran on %q", r.status.Host)
	}
	fb.b.rep.compare(fmt.Sprintf("fleet: output %s, on h0 followed from h2 / single host (MB/s)", what), "%.0f", r.mbps(), single.mbps())
	fb.b.rep.compare(fmt.Sprintf("fleet: output %s, on h0 followed from h2 / raw (MB/s)", what), "%.0f", r.mbps(), rawMBps)
	fb.b.rep.compare(fmt.Sprintf("fleet: output %s read again once done, from h2 / single host (MB/s)", what), "%.0f",
		r.readBackMBps(), single.readBackMBps())
	fb.b.rep.note("fleet: output: first byte %.0f ms (single host %.0f ms) and end %.0f ms (single host %.0f ms) after the submission; "+
		"the raw pipeline took %.0f ms, best of 3; the single host's is the better of 2",
		ms(r.first), ms(single.first), ms(r.all), ms(single.all), ms(raw))
}

// followRun submits `big` to base (on host, when not ""), follows its
// output from follow until its end, and reads its status there.
func (fb *fleetBench) followRun(ctx context.Context, base, follow, host string) (outputResult, error) {
	var r outputResult
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	id, err := fb.submit(ctx, base, "big", host)
	if err != nil {
		return r, err
	}
	// The host followed from may not know the run yet (its copy of the
	// history applies the fleet's log a moment later): 404 is asked
	// again, every 10 ms, for up to 10s.
	submitted := time.Now()
	var resp *http.Response
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, follow+"/scripts/v1/output/"+id+"?follow=1", nil)
		if err != nil {
			return r, err
		}
		resp, err = fb.hc.Do(req)
		if err != nil {
			return r, err
		}
		if resp.StatusCode == http.StatusOK {
			break
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || time.Since(submitted) > 10*time.Second {
			return r, &statusError{code: resp.StatusCode, body: string(b)}
		}
		r.notFound++
		time.Sleep(10 * time.Millisecond)
	}
	if r.notFound > 0 {
		r.unknownFor = time.Since(submitted)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 && r.bytes == 0 {
			r.first = time.Since(start)
		}
		r.bytes += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return r, fmt.Errorf("after %d bytes: %w", r.bytes, err)
		}
	}
	r.all = time.Since(start)
	if end := resp.Trailer.Get("Rexec-Output-End"); end != strconv.FormatInt(r.bytes, 10) {
		return r, fmt.Errorf("read %d bytes, trailer Rexec-Output-End %q", r.bytes, end)
	}
	if err := fb.waitUntil(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
		st, err := fb.status(ctx, follow, id)
		r.status = st
		return err == nil && st.State == "done", err
	}); err != nil {
		return r, fmt.Errorf("its status: %w", err)
	}
	if r.status.Ended != "exit" || r.status.ExitCode == nil || *r.status.ExitCode != 0 {
		return r, fmt.Errorf("ended %q, exit code %v", r.status.Ended, r.status.ExitCode)
	}
	// Read it again, whole, now that it is done: the reading alone.
	start = time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, follow+"/scripts/v1/output/"+id, nil)
	if err != nil {
		return r, err
	}
	resp2, err := fb.hc.Do(req)
	if err != nil {
		return r, fmt.Errorf("reading it again: %w", err)
	}
	defer resp2.Body.Close()
	n, err := drain(resp2.Body, buf)
	if err != nil || resp2.StatusCode != http.StatusOK || n != r.bytes {
		return r, fmt.Errorf("reading it again: HTTP %d, %d bytes of %d (%v)", resp2.StatusCode, n, r.bytes, err)
	}
	r.readBack = time.Since(start)
	return r, nil
}

func (r outputResult) readBackMBps() float64 {
	if r.readBack <= 0 {
		return 0
	}
	return float64(r.bytes) / 1e6 / r.readBack.Seconds()
}

// ---- time to lost

// timeToLost kills h0 under a running run, fleet.lostReps times, and times
// how long h1 takes to call it lost, in its status and in its history.
// A round after the first is run only while the phase has run for less
// than fleetLostBudget.
func (fb *fleetBench) timeToLost(ctx context.Context) {
	h0, h1 := fb.hosts[0], fb.hosts[1]
	var lost, hist, back []time.Duration // by round; 0: not measured
	for round := range fb.lostReps {
		if round > 0 && time.Since(fb.start) > fleetLostBudget {
			fb.b.rep.note("fleet: lost: %d rounds of %d, the phase having run %.0fs", round, fb.lostReps, time.Since(fb.start).Seconds())
			break
		}
		l, h, err := fb.loseOne(ctx, h0, h1)
		lost, hist = append(lost, l), append(hist, h)
		if err != nil {
			fb.b.rep.problem("fleet: lost, round %d: %v", round+1, err)
		}
		if h0.srv != nil {
			break // not killed: nothing to restart, nothing to repeat
		}
		// Restart h0 on its data directory, at once, as a supervisor
		// would, and again a second later if it exits, and wait until
		// h1 sees it.
		start := time.Now()
		fb.mu.Lock()
		fb.restarts = append(fb.restarts, start)
		fb.mu.Unlock()
		if !fb.startRetrying(ctx, h0, start, fmt.Sprintf("again, %.1fs after its kill -9", time.Since(fb.lastKill()).Seconds())) {
			break
		}
		if err := fb.waitUntil(ctx, fleetWait, 20*time.Millisecond, func() (bool, error) {
			up, err := fb.machinesUp(ctx, h1.srv.url)
			return slices.Contains(up, h0.name), err
		}); err != nil {
			fb.b.rep.problem("fleet: h0 restarted, but h1 does not see it up: %v", err)
			break
		}
		back = append(back, time.Since(start))
		fb.checkOrphans(ctx)
	}
	list := func(ds []time.Duration) string {
		var s []string
		for _, d := range ds {
			if d == 0 {
				s = append(s, "-")
			} else {
				s = append(s, fmt.Sprintf("%.0f", ms(d)))
			}
		}
		return strings.Join(s, ", ")
	}
	if len(lost) > 0 {
		fb.b.rep.single("fleet: kill -9 h0 -> run `lost` in h1's status, each round (ms)", list(lost))
		fb.b.rep.single("fleet: kill -9 h0 -> run `lost` in h1's history, each round (ms)", list(hist))
	}
	if len(back) > 0 {
		fb.b.rep.single("fleet: h0 restarted -> up on h1, each round (ms)", list(back))
	}
	fb.b.rep.note("fleet: lost: --fleet-down-after 1.5s (the default); h1's status polled every 10 ms, its history "+
		"(GET /scripts/v1/runs?state=done&name=long) every 50 ms, for at most %s; after %d of h0's restarts no process of a lost run was left",
		fleetHistoryWait, fb.orphansChecked)
}

// fleetLostBudget is how long the phase may have run for a further round
// of the lost measure to start; fleetHistoryWait how long the lost mark
// is waited for in the history.
const (
	fleetLostBudget  = 150 * time.Second
	fleetHistoryWait = 30 * time.Second
)

// startRetrying starts p, and again a second later each time it exits
// before it listens (as a supervisor would), until fleetWait after start.
// Each failed start is a problem, with the error it exited with. It says
// whether p runs.
func (fb *fleetBench) startRetrying(ctx context.Context, p *fleetProc, start time.Time, when string) bool {
	for attempt := 1; ; attempt++ {
		err := fb.startProc(ctx, p, fleetWait-time.Since(start))
		if err == nil {
			if attempt > 1 {
				fb.b.rep.problem("fleet: %s listened %s at its attempt %d, %.1fs after the first", p.name, when, attempt, time.Since(start).Seconds())
			}
			return true
		}
		last := p.lives[len(p.lives)-1]
		fb.b.rep.problem("fleet: starting %s %s (attempt %d, %.1fs in): %v%s", p.name, when,
			attempt, time.Since(start).Seconds(), err, last.lastWords())
		// Exit status 2 is a refused configuration (a flag this rexec
		// does not have): starting it again changes nothing.
		if ctx.Err() != nil || time.Since(start) > fleetWait-time.Second || attempt == 5 || last.srv.exitCode() == 2 {
			return false
		}
		time.Sleep(time.Second)
	}
}

func (fb *fleetBench) lastKill() time.Time {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.kills[len(fb.kills)-1]
}

// exitCode is the exit status of a process that exited, -1 otherwise.
func (s *server) exitCode() int {
	select {
	case <-s.exited:
		return s.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// lastWords is what a process that exited wrote that is not JSON (the
// error it exited with, a panic), its first line, after ": ".
func (l *fleetLife) lastWords() string {
	<-l.srv.exited
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.warned {
		if !json.Valid([]byte(line)) {
			return ": " + line
		}
	}
	return ""
}

// loseOne submits `long` pinned to h0, waits until it runs, kills h0 and
// times the lost mark on h1. A duration is 0 when it was not measured.
func (fb *fleetBench) loseOne(ctx context.Context, h0, h1 *fleetProc) (lost, hist time.Duration, err error) {
	id, err := fb.submit(ctx, h1.srv.url, "long", h0.name)
	if err != nil {
		return 0, 0, err
	}
	fb.mu.Lock()
	fb.lostRuns = append(fb.lostRuns, id)
	fb.mu.Unlock()
	var st runStatus
	if err := fb.waitUntil(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
		var err error
		st, err = fb.status(ctx, h1.srv.url, id)
		return err == nil && st.State == "running", err
	}); err != nil {
		return 0, 0, fmt.Errorf("the run of `long` on h0 not running (status %+v): %w", st, err)
	}
	if st.Host != h0.name {
		return 0, 0, fmt.Errorf("the run of `long` pinned to h0 runs on %q", st.Host)
	}
	killed := fb.kill9(h0)

	var wg sync.WaitGroup
	var lostErr, histErr error
	wg.Go(func() {
		lostErr = fb.waitUntil(ctx, 30*time.Second, 10*time.Millisecond, func() (bool, error) {
			st, err := fb.status(ctx, h1.srv.url, id)
			return err == nil && st.Ended == "lost", err
		})
		if lostErr == nil {
			lost = time.Since(killed)
		}
	})
	wg.Go(func() {
		histErr = fb.waitUntil(ctx, fleetHistoryWait, 50*time.Millisecond, func() (bool, error) {
			var p struct {
				Runs []runStatus `json:"runs"`
			}
			if _, err := fb.call(ctx, http.MethodGet, h1.srv.url+"/scripts/v1/runs?state=done&name=long&limit=20", nil, &p); err != nil {
				return false, err
			}
			for _, r := range p.Runs {
				if r.ID == id {
					return r.Ended == "lost", nil
				}
			}
			return false, nil
		})
		if histErr == nil {
			hist = time.Since(killed)
		}
	})
	wg.Wait()
	if lostErr != nil {
		return lost, hist, fmt.Errorf("run %s not lost in h1's status: %w", id, lostErr)
	}
	if histErr != nil {
		return lost, hist, fmt.Errorf("run %s not lost in h1's history: %w", id, histErr)
	}
	return lost, hist, nil
}

// kill9 kills p's process with SIGKILL, as a crash would, and returns the
// time of the kill.
func (fb *fleetBench) kill9(p *fleetProc) time.Time {
	s := p.srv
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	t := time.Now()
	s.cmd.Process.Kill()
	<-s.exited
	fb.mu.Lock()
	p.lives[len(p.lives)-1].killed = true
	p.srv = nil
	fb.kills = append(fb.kills, t)
	fb.mu.Unlock()
	return t
}

// checkOrphans reports (and kills) the processes of lost runs still
// running: after a kill -9 of its host, a run's process is left behind,
// and its host's restart is what should end it.
func (fb *fleetBench) checkOrphans(ctx context.Context) {
	fb.mu.Lock()
	ids := slices.Clone(fb.lostRuns)
	fb.mu.Unlock()
	// The restart kills them as it recovers, before it listens; give it
	// a moment all the same.
	var left map[int]string
	fb.waitUntil(ctx, 5*time.Second, 100*time.Millisecond, func() (bool, error) {
		left = processesOfRuns(ids)
		return len(left) == 0, nil
	})
	for pid, id := range left {
		fb.b.rep.problem("fleet: the process of lost run %s (pid %d) still runs after its host's restart: killed by the bench", id, pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(left) == 0 {
		fb.orphansChecked++
	}
}

// processesOfRuns returns the processes whose environment has
// REXEC_RUN_ID set to one of ids, by pid.
func processesOfRuns(ids []string) map[int]string {
	found := map[int]string{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return found
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("REXEC_RUN_ID=")); ok && slices.Contains(ids, string(v)) {
				found[pid] = string(v)
			}
		}
	}
	return found
}

// ---- the end

// stopAll stops every process of the phase still running (SIGTERM, all at
// once: a fleet's hosts stop together), sums up their logs, and kills the
// processes of lost runs left behind.
func (fb *fleetBench) stopAll() {
	fb.mu.Lock()
	procs := slices.Clone(fb.all)
	fb.stopping = time.Now()
	fb.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		if p.srv != nil {
			wg.Go(func() { p.srv.stop(fb.b.rep) })
		}
	}
	wg.Wait()
	for _, p := range procs {
		for _, l := range p.lives {
			fb.summarize(l)
		}
	}
	fb.mu.Lock()
	ids := slices.Clone(fb.lostRuns)
	fb.mu.Unlock()
	for pid, id := range processesOfRuns(ids) {
		fb.b.rep.problem("fleet: the process of run %s (pid %d) outlived every host: killed by the bench", id, pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// fleetExpected are the warnings a host logs, by message, for what the
// phase does on purpose: kill h0 under a run, and write output faster than
// the stream takes it.
var fleetExpected = []string{
	"fleet: run lost with its host: not run again",
	"the output stream did not keep up with a run's output: it is cut",
}

// fleetAfterKill is how long after a kill -9 of h0, or its restart, the
// hosts' warnings and errors are taken as their echoes: routes failing,
// consumers and leaders moving, the host found down, its run found
// interrupted by the restart.
const fleetAfterKill = 20 * time.Second

// summarize notes a process's log: lines by level, runs ended by reason,
// and its warnings and errors by message. Those the phase causes on
// purpose, or logged within fleetAfterKill of a kill -9 of h0 or of its
// restart, are noted;
// the others are problems, one for each message (and error), with how
// many times it came and its first line.
func (fb *fleetBench) summarize(l *fleetLife) {
	s := l.srv
	<-s.exited
	s.mu.Lock()
	fb.b.rep.note("%s log: %s; detached runs ended here, by script and end: %s", s.label(), tally(s.levels), tally(s.runs))
	s.mu.Unlock()
	if l.killed {
		fb.b.rep.note("%s was killed by the bench (SIGKILL): its log in %s", s.label(), s.logPath)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	type group struct {
		n     int
		first string
	}
	expected, other := map[string]*group{}, map[string]*group{}
	var order []string
	for _, line := range l.warned {
		var ll struct {
			Level   string    `json:"level"`
			Message string    `json:"message"`
			Error   string    `json:"error"`
			Time    time.Time `json:"time"`
		}
		if json.Unmarshal([]byte(line), &ll) != nil {
			// An error it exited with, a panic and its stack: one
			// problem, its first line shown.
			ll.Level, ll.Message = "not-json", "lines not JSON (an error it exited with, a panic)"
		}
		key := ll.Level + ": " + ll.Message
		m, isExpected := expected, slices.Contains(fleetExpected, ll.Message) || fb.afterKill(ll.Time)
		if !isExpected {
			m = other
			if ll.Error != "" {
				key += " (" + ll.Error + ")"
			}
		}
		g := m[key]
		if g == nil {
			g = &group{first: line}
			m[key] = g
			if !isExpected {
				order = append(order, key)
			}
		}
		g.n++
	}
	if len(expected) > 0 {
		keys := make([]string, 0, len(expected))
		for k := range expected {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%q x%d", k, expected[k].n))
		}
		fb.b.rep.note("%s logged, as expected in this phase (within %s of a kill -9 of h0 or its restart, or a message the phase causes): %s",
			s.label(), fleetAfterKill, strings.Join(parts, ", "))
	}
	for _, k := range order {
		fb.b.rep.problem("%s logged %d x %s; the first: %s", s.label(), other[k].n, k, other[k].first)
	}
}

// afterKill says whether a log line of time t (to the second, as the log
// gives it) came within fleetAfterKill of a kill -9 of h0 or of its
// restart, and before the phase began to stop the hosts.
func (fb *fleetBench) afterKill(t time.Time) bool {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if !fb.stopping.IsZero() && !t.Before(fb.stopping.Truncate(time.Second)) {
		return false // the shutdown's own
	}
	for _, k := range slices.Concat(fb.kills, fb.restarts) {
		if !t.Before(k.Truncate(time.Second)) && t.Before(k.Add(fleetAfterKill)) {
			return true
		}
	}
	return false
}
