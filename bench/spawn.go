package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// spawn measures how many short runs per second go through the service, at
// each concurrency, against os/exec running the same command in-process.
// The ceiling is the kernel's fork/exec/wait plus Go's, with no HTTP, no
// broker and no streaming: what is left is the service's own cost per run.
func (b *bench) spawn(ctx context.Context) error {
	c := newClient(b.srv.url, 16)
	defer c.close()

	// Warm up both sides: connections, page cache, the server's pools.
	warm := min(b.cfg.dur/5, time.Second)
	rateOf(ctx, warm, 2, b.viaServer(c, "warm", 2)).check(b.rep, "rexec warm-up")
	rateOf(ctx, warm, 2, viaExec).check(b.rep, "os/exec warm-up")

	var ceiling8 float64
	for _, conc := range b.cfg.concurrency {
		ceil := rateOf(ctx, b.cfg.dur, conc, viaExec)
		ours := rateOf(ctx, b.cfg.dur, conc, b.viaServer(c, "w", conc))
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		b.rep.compare(fmt.Sprintf("spawn `true` c=%d (runs/s)", conc), "%.0f", ours.perSec(), ceil.perSec())
		ceil.check(b.rep, fmt.Sprintf("os/exec c=%d", conc))
		ours.check(b.rep, fmt.Sprintf("rexec c=%d", conc))
		if conc == 8 {
			ceiling8 = ceil.perSec()
		}
	}
	return b.spawnWrk(ctx, ceiling8)
}

// viaExec is one run of `true` with os/exec: the ceiling.
func viaExec(ctx context.Context, _ int, _ []byte) error {
	return exec.CommandContext(ctx, "true").Run()
}

// viaServer is one run of `true` through the server, for up to n workers.
// Worker i uses the alias prefix+i, one run after the other, on its
// keep-alive connection.
func (b *bench) viaServer(c *client, prefix string, n int) func(context.Context, int, []byte) error {
	runners := make([]*aliasRunner, n)
	for i := range runners {
		runners[i] = newAliasRunner(prefix+strconv.Itoa(i), "true")
	}
	return func(ctx context.Context, worker int, buf []byte) error {
		return runners[worker].run(ctx, c, buf)
	}
}

// rate is the outcome of a rate measure.
type rate struct {
	ok, failed int
	elapsed    time.Duration
	firstErr   error
}

func (r rate) perSec() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// check reports failed operations as a problem.
func (r rate) check(rep *report, what string) {
	if r.failed > 0 {
		rep.problem("%s: %d of %d runs failed, first: %v%s", what, r.failed, r.ok+r.failed, r.firstErr, hint(r.firstErr))
	}
}

// hint explains an error whose cause the benchmark knows.
func hint(err error) string {
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusConflict {
		return " (the worker's previous run under that alias had ended: the alias stayed taken; the worker moved to a fresh alias)"
	}
	return ""
}

// rateOf runs op in conc workers, each one after the other, for d, and
// counts the completed ones. Workers start no new op after d; the elapsed
// time runs until the last one is done, so every counted op is inside it.
func rateOf(ctx context.Context, d time.Duration, conc int, op func(ctx context.Context, worker int, buf []byte) error) rate {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second) // a stuck op fails
	defer cancel()
	var (
		mu  sync.Mutex
		res rate
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range conc {
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			var ok, failed int
			var first error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := op(ctx, w, buf); err != nil {
					failed++
					if first == nil {
						first = err
					}
					continue
				}
				ok++
			}
			mu.Lock()
			res.ok += ok
			res.failed += failed
			if res.firstErr == nil {
				res.firstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// wrkScript makes each of wrk's threads (one connection each) post runs of
// `true` under an alias of its own, and counts the responses that are not a
// 200 with Process-Exit-Code 0 (wrk parses trailers as headers).
const wrkScript = `
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

-- On a 409 (an alias still held although its run has ended) the thread
-- moves on to a fresh alias, as the Go workers do.
function make_request(gen)
  local body = string.format('{"alias":"wrk%d.%d","cmd":"true"}', id, gen)
  req = wrk.format("POST", "/process", {["Content-Type"] = "application/json"}, body)
end

function init(args)
  ok, bad, badstatus, gen = 0, 0, "", 0
  make_request(gen)
end

function request()
  return req
end

function response(status, headers, body)
  if status == 200 and headers["Process-Exit-Code"] == "0" then
    ok = ok + 1
  else
    bad = bad + 1
    if status == 409 then
      gen = gen + 1
      make_request(gen)
    end
    if badstatus == "" then
      badstatus = tostring(status) .. " exit=" .. tostring(headers["Process-Exit-Code"]) .. " " .. tostring(body)
    end
  end
end

function done(summary, latency, requests)
  local o, b, s = 0, 0, ""
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    b = b + t:get("bad")
    if s == "" then s = t:get("badstatus") end
  end
  io.write(string.format("BENCH ok=%d bad=%d first=%s\n", o, b, s))
end
`

// spawnWrk measures the concurrency-8 case with wrk, 8 threads of one
// connection each, when wrk is on PATH: a client that costs far less than
// Go's, so the figure is closer to the server's own limit.
func (b *bench) spawnWrk(ctx context.Context, ceiling float64) error {
	if b.cfg.noWrk {
		b.rep.note("wrk measure skipped (-no-wrk)")
		return nil
	}
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.rep.note("wrk not on PATH (Debian package wrk): the wrk measure is skipped")
		return nil
	}
	script := filepath.Join(b.tmp, "spawn.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.dur+30*time.Second)
	defer cancel()
	secs := max(1, int(b.cfg.dur.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, wrk, "-t8", "-c8", fmt.Sprintf("-d%ds", secs), "--timeout", "10s",
		"-s", script, b.srv.url+"/process")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("wrk: %v\n%s", err, out)
	}
	w, err := parseWrk(string(out))
	if err != nil {
		return fmt.Errorf("%v in wrk's output:\n%s", err, out)
	}
	// wrk's rate counts every response; only good ones count here.
	good := w.rps
	if w.ok+w.bad > 0 {
		good = w.rps * float64(w.ok) / float64(w.ok+w.bad)
	}
	b.rep.compare("spawn `true` c=8 wrk (runs/s)", "%.0f", good, ceiling)
	if w.bad > 0 || w.errors != "" {
		b.rep.problem("wrk: %d of %d responses not 200 with exit code 0 (first: %s)%s", w.bad, w.ok+w.bad, w.first, w.errors)
	}
	if w.ok == 0 {
		return errors.New("wrk counted no good response")
	}
	return nil
}

// wrkResult is what is read from wrk's output.
type wrkResult struct {
	rps     float64
	ok, bad int
	first   string
	errors  string // wrk's "Socket errors" and "Non-2xx" lines
}

func parseWrk(out string) (wrkResult, error) {
	var w wrkResult
	found := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			if err != nil {
				return w, err
			}
			w.rps, found = v, true
		case strings.HasPrefix(line, "BENCH "):
			fmt.Sscanf(line, "BENCH ok=%d bad=%d", &w.ok, &w.bad)
			if _, first, ok := strings.Cut(line, "first="); ok {
				w.first = first
			}
		case strings.HasPrefix(line, "Socket errors"), strings.HasPrefix(line, "Non-2xx"):
			w.errors += "; " + line
		}
	}
	if !found {
		return w, errors.New("no Requests/sec")
	}
	return w, nil
}
