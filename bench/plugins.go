package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The plugins phase runs the Go example plugin (examples/go-plugin, built
// by the phase) as two components of one plugin folder, both the same
// command: pluginSingle, one process shared by every session and kept a
// minute without a call; pluginOnce, one_for_one without a timeout, so a
// process per call.
const (
	pluginID     = "bench"
	pluginSingle = pluginID + "/single"
	pluginOnce   = pluginID + "/once"
	pluginExe    = "hello" // the command, in the plugin's folder

	pluginManifest = `# The Go example plugin, twice: written by the bench's plugins phase.
id: ` + pluginID + `
name: Bench
version: 0.0.0
description: examples/go-plugin, for go run ./bench -only plugins.
components:
  - name: Hello, shared
    type: cmd
    id: single
    command: ` + pluginExe + `
    strategy: singleton
    timeout: 1m
  - name: Hello, a process per call
    type: cmd
    id: once
    command: ` + pluginExe + `
    strategy: one_for_one
`
)

// The call every measure makes, and the result it must get.
const (
	pluginMethod = "hello"
	pluginParams = `{"name":"bench"}`
	pluginResult = `"hello, bench"`
)

// pluginsPhase measures plugin commands against a plain fork and exec of
// the same program, on a server of its own started with --plugins:
//
//   - calls per second of POST /plugins/v1/call/{session} to the singleton,
//     at each concurrency, each worker on a session of its own, all on the
//     one process; the ceiling is the same JSON-RPC exchange over the
//     stdin and stdout of one process the bench starts itself (at
//     concurrency above 1, the workers' requests share its pipe, told
//     apart by their ids as the server's client does), no HTTP; and, for
//     scale, GET /healthz on the same server, an HTTP round trip alone;
//   - the time of a one-shot POST /plugins/v1/call to the one_for_one
//     component, which starts a process, calls it and stops it; the
//     ceiling is os/exec starting the program, writing one request line,
//     reading one answer line, closing its stdin and waiting for it (the
//     server answers before its process has ended: the ceiling is also
//     timed to its answer line).
func (b *bench) pluginsPhase(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	began := time.Now()
	dir := filepath.Join(b.tmp, "plugins")
	plugDir := filepath.Join(dir, "plugins", pluginID)
	if err := os.MkdirAll(plugDir, 0o700); err != nil {
		return err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	exe := filepath.Join(plugDir, pluginExe)
	if err := goBuild(ctx, root, exe, "./examples/go-plugin"); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(plugDir, "manifest.yaml"), []byte(pluginManifest), 0o600); err != nil {
		return err
	}
	direct := directPlugin{exe: exe, dir: plugDir}

	srv, err := startServer(ctx, b.bins.rexec, dir, "--plugins", filepath.Join(dir, "plugins"))
	if err != nil {
		return err
	}
	srv.name = "plugins phase"
	progress("plugins: rexec pid %d listening on %s, --plugins %s", srv.pid, srv.addr, filepath.Join(dir, "plugins"))
	c := newClient(srv.url, 16)
	var sessions []string
	defer func() {
		// Stop the sessions, then the server, whose shutdown stops the
		// singleton; then make sure no process of the plugin is left.
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for _, s := range sessions {
			if _, err := c.pluginPost(stopCtx, "/plugins/v1/stop/"+s, nil); err != nil {
				b.rep.problem("plugins: stopping session %s: %v", s, err)
			}
		}
		cancel()
		c.close()
		srv.stop(b.rep)
		srv.logSummary(b.rep)
		if left := waitNoProcessOf(exe, 5*time.Second); len(left) > 0 {
			b.rep.problem("plugins: processes of %s still running after the server stopped: %v", exe, left)
		}
	}()

	conc := slices.Max(b.cfg.concurrency)
	var pid int
	sessions, pid, err = b.singletonSessions(ctx, c, conc)
	if err != nil {
		return fmt.Errorf("singleton: %w", err)
	}
	progress("plugins: singleton, %d sessions on pid %d, and the direct pipe, %s each", conc, pid, b.cfg.pluginDur)
	if err := b.singletonRates(ctx, c, sessions, direct); err != nil {
		return err
	}
	progress("plugins: one_for_one and fork-exec, %d calls each", b.cfg.pluginCalls)
	if err := b.oneForOne(ctx, c, direct); err != nil {
		return err
	}
	// Every one_for_one process has been told to stop once its call was
	// answered: only the singleton should be left.
	if took, left := waitChildrenAtMost(srv.pid, 5*time.Second, 1); left > 0 {
		b.rep.problem("plugins: %d one_for_one processes still there %s after the last call", left, took.Round(time.Millisecond))
	}
	b.rep.note("plugins: examples/go-plugin (jrpc2) as %s (singleton, timeout 1m: one process, pid %d, for the %d sessions) "+
		"and %s (one_for_one, no timeout: a process per call); method %q, params %s",
		pluginSingle, pid, conc, pluginOnce, pluginMethod, pluginParams)
	progress("plugins: measured in %s", time.Since(began).Round(100*time.Millisecond))
	return nil
}

// singletonSessions opens n sessions on the singleton and checks that they
// share one process, whose pid it returns.
func (b *bench) singletonSessions(ctx context.Context, c *client, n int) ([]string, int, error) {
	var sessions []string
	pid := 0
	start := []byte(`{"component":"` + pluginSingle + `"}`)
	for range n {
		a, err := c.pluginPost(ctx, "/plugins/v1/start", start)
		if err != nil {
			return sessions, 0, fmt.Errorf("start: %w", err)
		}
		if a.Session == "" {
			return sessions, 0, errors.New("start: no session in the answer")
		}
		sessions = append(sessions, a.Session)
		a, err = c.pluginPost(ctx, "/plugins/v1/call/"+a.Session, []byte(`{"method":"pid"}`))
		if err != nil {
			return sessions, 0, fmt.Errorf("call pid: %w", err)
		}
		p, err := strconv.Atoi(string(a.Result))
		switch {
		case err != nil:
			return sessions, 0, fmt.Errorf("call pid: result %s: %w", a.Result, err)
		case pid == 0:
			pid = p
		case p != pid:
			return sessions, 0, fmt.Errorf("session %d is on process %d, the first on %d: not one process", len(sessions), p, pid)
		}
	}
	return sessions, pid, nil
}

// singletonRates measures calls per second to the singleton at each
// concurrency, worker i on sessions[i], against one process of the plugin
// called over its pipe.
func (b *bench) singletonRates(ctx context.Context, c *client, sessions []string, direct directPlugin) error {
	p, err := direct.start(ctx)
	if err != nil {
		return fmt.Errorf("direct pipe: %w", err)
	}
	defer func() {
		if err := p.stop(); err != nil {
			b.rep.problem("plugins: the directly started process: %v", err)
		}
	}()
	body := []byte(`{"method":"` + pluginMethod + `","params":` + pluginParams + `}`)
	ours := func(ctx context.Context, w int, _ []byte) error {
		a, err := c.pluginPost(ctx, "/plugins/v1/call/"+sessions[w], body)
		if err != nil {
			return err
		}
		return checkResult(a.Result)
	}

	warm := min(b.cfg.pluginDur/5, 500*time.Millisecond)
	rateOf(ctx, warm, 1, p.roundTrip).check(b.rep, "plugins: direct pipe warm-up")
	rateOf(ctx, warm, min(2, len(sessions)), ours).check(b.rep, "plugins: singleton warm-up")
	for _, conc := range b.cfg.concurrency {
		ceilOp := p.roundTrip
		if conc > 1 || p.mux != nil {
			ceilOp = p.muxed().call
		}
		ceil := rateOf(ctx, b.cfg.pluginDur, conc, ceilOp)
		got := rateOf(ctx, b.cfg.pluginDur, conc, ours)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		b.rep.compare(fmt.Sprintf("plugin singleton c=%d (calls/s)", conc), "%.0f", got.perSec(), ceil.perSec())
		ceil.check(b.rep, fmt.Sprintf("plugins: direct pipe c=%d", conc))
		got.check(b.rep, fmt.Sprintf("plugins: singleton c=%d", conc))
		if got.ok == 0 {
			return fmt.Errorf("singleton c=%d: no call succeeded", conc)
		}
	}
	// What an HTTP round trip alone costs on this server: a call is one,
	// plus the plugin's exchange.
	hz := rateOf(ctx, b.cfg.pluginDur/3, 1, func(ctx context.Context, _ int, _ []byte) error { return c.get(ctx, "/healthz") })
	hz.check(b.rep, "plugins: GET /healthz")
	b.rep.single("GET /healthz c=1, the plugins' server (requests/s)", fmt.Sprintf("%.0f", hz.perSec()))
	return nil
}

// oneForOne times one-shot calls to the one_for_one component, one after
// the other, against a plain fork and exec of the plugin doing the same
// exchange. The two sides take turns in pluginBlocks blocks each, so that
// the machine's moods fall on both alike, each block after untimed calls
// (pluginWarmCalls before the first, pluginRewarmCalls before the others):
// not call by call, since a one_for_one process is stopped
// after its answer has been sent, and its end would fall on the ceiling's
// next call. The fork and exec is also timed to its answer line, the point
// at which the server answers.
func (b *bench) oneForOne(ctx context.Context, c *client, direct directPlugin) error {
	body := []byte(`{"component":"` + pluginOnce + `","method":"` + pluginMethod + `","params":` + pluginParams + `}`)
	ours := func(ctx context.Context) (time.Time, error) {
		a, err := c.pluginPost(ctx, "/plugins/v1/call", body)
		if err != nil {
			return time.Time{}, err
		}
		return time.Now(), checkResult(a.Result)
	}
	n := b.cfg.pluginCalls
	var got, ceil, ceilAnswer []time.Duration
	for i := range pluginBlocks {
		k := n*(i+1)/pluginBlocks - n*i/pluginBlocks // n in all
		warm := pluginWarmCalls
		if i > 0 {
			warm = pluginRewarmCalls
		}
		d, answer, err := timeCalls(ctx, warm, k, direct.forkExec)
		if err != nil {
			return fmt.Errorf("fork and exec: %w", err)
		}
		ceil, ceilAnswer = append(ceil, d...), append(ceilAnswer, answer...)
		if d, _, err = timeCalls(ctx, warm, k, ours); err != nil {
			return fmt.Errorf("one_for_one: %w", err)
		}
		got = append(got, d...)
	}
	slices.Sort(got)
	slices.Sort(ceil)
	slices.Sort(ceilAnswer)
	for _, q := range []struct {
		name string
		p    float64
	}{{"p50", 50}, {"p90", 90}} {
		b.rep.compare(fmt.Sprintf("plugin one_for_one call %s (ms)", q.name), "%.2f",
			ms(percentile(got, q.p)), ms(percentile(ceil, q.p)))
	}
	for _, q := range []struct {
		name string
		p    float64
	}{{"p50", 50}, {"p90", 90}} {
		b.rep.compare(fmt.Sprintf("plugin one_for_one call %s, ceiling to its answer (ms)", q.name), "%.2f",
			ms(percentile(got, q.p)), ms(percentile(ceilAnswer, q.p)))
	}
	b.rep.compare("plugin one_for_one, one after another (calls/s)", "%.0f", perSecond(got), perSecond(ceil))
	b.rep.note("plugins: one_for_one: %d one-shot POST /plugins/v1/call (start a process, call, stop it), one after another, "+
		"in %d blocks taking turns with the ceiling's, after %d untimed (%d before each later block); ceiling: os/exec start, "+
		"write one request line, read one answer line, close stdin, wait (\"to its answer\": start to the answer line read)",
		n, pluginBlocks, pluginWarmCalls, pluginRewarmCalls)
	return nil
}

// pluginBlocks is how many blocks each side of oneForOne is timed in;
// pluginWarmCalls are made untimed before its first, pluginRewarmCalls
// before each of the others.
const (
	pluginBlocks      = 4
	pluginWarmCalls   = 5
	pluginRewarmCalls = 2
)

// timeCalls makes warm untimed calls of op, then n timed ones
// one after the other, and returns their durations: to the end of each
// call, and to the time op returns, at which the answer came. It stops at
// the first failure.
func timeCalls(ctx context.Context, warm, n int, op func(context.Context) (time.Time, error)) (end, answer []time.Duration, err error) {
	one := func() (time.Duration, time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		start := time.Now()
		answered, err := op(ctx)
		return time.Since(start), answered.Sub(start), err
	}
	for range warm {
		if _, _, err := one(); err != nil {
			return nil, nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	for i := range n {
		took, toAnswer, err := one()
		if err != nil {
			return nil, nil, fmt.Errorf("call %d of %d: %w", i+1, n, err)
		}
		end, answer = append(end, took), append(answer, toAnswer)
	}
	return end, answer, nil
}

// perSecond is how many calls of durations d, one after the other, fit in
// a second.
func perSecond(d []time.Duration) float64 {
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	if sum <= 0 {
		return 0
	}
	return float64(len(d)) / sum.Seconds()
}

// pluginAnswer is what /plugins/v1 answers: a session (start) or a
// result (call).
type pluginAnswer struct {
	Session string          `json:"session"`
	Result  json.RawMessage `json:"result"`
}

// pluginPost posts body (JSON, or nil for none) to path and decodes the
// answer. Any status but 200 is a *statusError.
func (c *client) pluginPost(ctx context.Context, path string, body []byte) (pluginAnswer, error) {
	var a pluginAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, bytes.NewReader(body))
	if err != nil {
		return a, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return a, fmt.Errorf("decoding the answer to %s: %w", path, err)
	}
	// Read to EOF, so that the connection is kept.
	_, err = io.Copy(io.Discard, resp.Body)
	return a, err
}

// checkResult checks a call's result against pluginResult.
func checkResult(res json.RawMessage) error {
	if string(bytes.TrimSpace(res)) != pluginResult {
		return fmt.Errorf("result %s, want %s", res, pluginResult)
	}
	return nil
}

// rpcAnswer is the plugin's answer line, as the ceilings read it.
type rpcAnswer struct {
	ID     int64           `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// check checks the answer to the request id.
func (a rpcAnswer) check(id int64) error {
	switch {
	case a.Error != nil:
		return fmt.Errorf("the plugin answered an error: %s", a.Error)
	case a.ID != id:
		return fmt.Errorf("answer to id %d, want %d", a.ID, id)
	}
	return checkResult(a.Result)
}

// rpcRequest is the request line of call id, newline included.
func rpcRequest(id int64) []byte {
	b := []byte(`{"jsonrpc":"2.0","id":`)
	b = strconv.AppendInt(b, id, 10)
	return append(b, `,"method":"`+pluginMethod+`","params":`+pluginParams+"}\n"...)
}

// directPlugin runs the plugin's program from the bench itself, as the
// server would: in its folder, with an environment of PWD alone (a
// component without env inherits nothing).
type directPlugin struct {
	exe, dir string
}

func (d directPlugin) command(ctx context.Context) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.exe)
	cmd.Dir = d.dir
	cmd.Env = []string{"PWD=" + d.dir}
	return cmd
}

// forkExec is one call the plain way: start the program, write one
// request line, read one answer line, close its stdin and wait for it. It
// returns when the answer line was read.
func (d directPlugin) forkExec(ctx context.Context) (time.Time, error) {
	cmd := d.command(ctx)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return time.Time{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return time.Time{}, err
	}
	if err := cmd.Start(); err != nil {
		return time.Time{}, err
	}
	line, err := func() ([]byte, error) {
		if _, err := stdin.Write(rpcRequest(1)); err != nil {
			return nil, err
		}
		return bufio.NewReader(stdout).ReadBytes('\n')
	}()
	answered := time.Now()
	stdin.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return answered, err
	}
	if err := cmd.Wait(); err != nil {
		return answered, fmt.Errorf("the plugin exited: %w", err)
	}
	var a rpcAnswer
	if err := json.Unmarshal(line, &a); err != nil {
		return answered, fmt.Errorf("answer %q: %w", line, err)
	}
	return answered, a.check(1)
}

// pipePlugin is one long-lived process of the plugin, called over its
// stdin and stdout: one call at a time with roundTrip, or by many
// workers at once through muxed (after which roundTrip may no longer be
// used).
type pipePlugin struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	nextID int64
	mux    *pipeMux
}

// start starts a process of the plugin. It is killed should the bench die
// before it stops it.
func (d directPlugin) start(ctx context.Context) (*pipePlugin, error) {
	cmd := d.command(ctx)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &pipePlugin{cmd: cmd, stdin: stdin, stdout: bufio.NewReaderSize(stdout, 64<<10)}, nil
}

// roundTrip writes one request and reads its answer, on the caller's
// goroutine: the rateOf op of concurrency 1.
func (p *pipePlugin) roundTrip(_ context.Context, _ int, _ []byte) error {
	p.nextID++
	if _, err := p.stdin.Write(rpcRequest(p.nextID)); err != nil {
		return err
	}
	line, err := p.stdout.ReadBytes('\n')
	if err != nil {
		return err
	}
	var a rpcAnswer
	if err := json.Unmarshal(line, &a); err != nil {
		return fmt.Errorf("answer %q: %w", line, err)
	}
	return a.check(p.nextID)
}

// muxed returns the process's multiplexer, started at the first use.
func (p *pipePlugin) muxed() *pipeMux {
	if p.mux == nil {
		p.mux = &pipeMux{w: p.stdin, nextID: p.nextID, waiting: map[int64]chan rpcAnswer{}, done: make(chan struct{})}
		go p.mux.read(p.stdout)
	}
	return p.mux
}

// stop closes the process's stdin, on which it exits, and waits for it;
// after 5 s it is killed. A multiplexed process's reader is done by then.
func (p *pipePlugin) stop() error {
	p.stdin.Close()
	t := time.AfterFunc(5*time.Second, func() { p.cmd.Process.Kill() })
	if p.mux != nil {
		// Its stdout ends as it exits: the reads are over before Wait
		// closes the pipe.
		<-p.mux.done
	}
	err := p.cmd.Wait()
	if !t.Stop() {
		return fmt.Errorf("pid %d did not exit within 5s of its stdin closing: killed", p.cmd.Process.Pid)
	}
	if err != nil {
		return fmt.Errorf("pid %d: %w", p.cmd.Process.Pid, err)
	}
	return nil
}

// pipeMux lets many workers call one process at once over its pipe: each
// request line is written whole under a lock, with an id of its own, and
// one reader hands each answer to the worker waiting for its id.
type pipeMux struct {
	w       io.Writer
	wmu     sync.Mutex
	mu      sync.Mutex // guards nextID, waiting and err
	nextID  int64
	waiting map[int64]chan rpcAnswer
	err     error         // why the reader stopped
	done    chan struct{} // closed once the reader has stopped
}

// call is one call, the rateOf op of concurrency above 1.
func (m *pipeMux) call(ctx context.Context, _ int, _ []byte) error {
	ch := make(chan rpcAnswer, 1)
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return m.err
	}
	m.nextID++
	id := m.nextID
	m.waiting[id] = ch
	m.mu.Unlock()

	m.wmu.Lock()
	_, err := m.w.Write(rpcRequest(id))
	m.wmu.Unlock()
	if err != nil {
		m.forget(id)
		return err
	}
	select {
	case a, ok := <-ch:
		if !ok {
			return m.err
		}
		return a.check(id)
	case <-ctx.Done():
		m.forget(id)
		return context.Cause(ctx)
	}
}

func (m *pipeMux) forget(id int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.waiting, id)
}

// read hands each answer line to the call waiting for its id, until the
// process's stdout ends; the calls still waiting then fail.
func (m *pipeMux) read(r *bufio.Reader) {
	defer close(m.done)
	for {
		line, err := r.ReadBytes('\n')
		var a rpcAnswer
		if err == nil {
			if uerr := json.Unmarshal(line, &a); uerr != nil {
				err = fmt.Errorf("answer %q: %w", line, uerr)
			}
		}
		m.mu.Lock()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the plugin's stdout ended")
			}
			m.err = err
			for id, ch := range m.waiting {
				close(ch)
				delete(m.waiting, id)
			}
			m.mu.Unlock()
			return
		}
		ch := m.waiting[a.ID]
		delete(m.waiting, a.ID)
		m.mu.Unlock()
		if ch != nil {
			ch <- a
		}
	}
}

// waitNoProcessOf polls until no process runs the program exe, or d
// passes, and returns the pids of those left.
func waitNoProcessOf(exe string, d time.Duration) []int {
	start := time.Now()
	for {
		left := processesOf(exe)
		if len(left) == 0 || time.Since(start) > d {
			return left
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processesOf lists the processes whose executable is exe, zombies
// aside (their exe link is gone).
func processesOf(exe string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && strings.TrimSuffix(target, " (deleted)") == exe {
			pids = append(pids, pid)
		}
	}
	return pids
}
