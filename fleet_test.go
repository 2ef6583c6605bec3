//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The fleet, end to end: three rexec processes on this machine, routed to
// each other on loopback ports, forming one embedded JetStream cluster.

// fleetExectab is the exectab every host of the test fleets offers.
const fleetExectab = `
-s=2 -m=200 work /bin/sleep 0.2
-m=3 capped /bin/sleep 60
-m=50 long /bin/sleep 60
lines /bin/sh -c "for i in 1 2 3 4 5 6 7 8; do echo line$i; sleep 0.15; done"
echo /bin/echo @@1
`

// fleetHost is one rexec process of a test fleet.
type fleetHost struct {
	name, url string
	token     string // sent as the bearer token, when set
	args      []string
	cmd       *exec.Cmd
	log       *syncBuffer
}

// freeLoopbackPorts returns n ports of 127.0.0.1 that were free a moment
// ago.
func freeLoopbackPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// startFleet starts n hosts, h0...h(n-1), with extra flags, and waits
// until each listens.
func startFleet(t *testing.T, n int, extra ...string) []*fleetHost {
	t.Helper()
	return startFleetWith(t, n, nil, extra...)
}

// startFleetWith is startFleet with flags of each host's own (per, when
// not nil).
func startFleetWith(t *testing.T, n int, per func(i int) []string, extra ...string) []*fleetHost {
	t.Helper()
	dir := t.TempDir()
	tab := filepath.Join(dir, "exectab")
	if err := os.WriteFile(tab, []byte(fleetExectab), 0o644); err != nil {
		t.Fatal(err)
	}
	ports := freeLoopbackPorts(t, 2*n)
	hosts := make([]*fleetHost, n)
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+j]))
			}
		}
		h := &fleetHost{name: fmt.Sprintf("h%d", i)}
		h.args = []string{"serve", "-p", fmt.Sprint(ports[i]), "--kill-grace", "1s",
			"--scripts", tab, "--data-dir", filepath.Join(dir, h.name),
			"--fleet-name", "test", "--fleet-host", h.name, "--fleet-down-after", "800ms"}
		if n > 1 { // else a fleet of one: no routes
			h.args = append(h.args, "--fleet-listen", fmt.Sprintf("127.0.0.1:%d", ports[n+i]), "--fleet-routes", strings.Join(routes, ","))
		}
		h.args = append(h.args, extra...)
		if per != nil {
			h.args = append(h.args, per(i)...)
		}
		h.url = fmt.Sprintf("http://127.0.0.1:%d", ports[i])
		hosts[i] = h
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() { h.start(t) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return hosts
}

// start runs the host's process and waits for its "listening" line.
func (h *fleetHost) start(t *testing.T) {
	h.cmd = rexecCmd(t, nil, h.args...)
	h.log = &syncBuffer{}
	logr, logw, err := os.Pipe()
	if err != nil {
		t.Error(err)
		return
	}
	h.cmd.Stderr = logw
	err = h.cmd.Start()
	logw.Close()
	if err != nil {
		t.Error(err)
		return
	}
	t.Cleanup(func() { logr.Close() })
	br := bufio.NewReader(logr)
	for {
		line, err := br.ReadBytes('\n')
		h.log.Write(line)
		if err != nil {
			t.Errorf("%s ended before listening: %v\n%s", h.name, err, h.log.String())
			return
		}
		if strings.Contains(string(line), `"message":"listening"`) {
			go io.Copy(h.log, br)
			return
		}
	}
}

// kill9 kills the host's process as a crash would.
func (h *fleetHost) kill9() {
	h.cmd.Process.Kill()
	h.cmd.Wait()
}

// call sends a request to the host and decodes its JSON answer.
func (h *fleetHost) call(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, h.name, err)
	}
	defer resp.Body.Close()
	var v map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s %s on %s: %d %q", method, path, h.name, resp.StatusCode, b)
	}
	return resp.StatusCode, v
}

func (h *fleetHost) submit(t *testing.T, body string) string {
	t.Helper()
	code, v := h.call(t, "POST", "/scripts/v1/run", body)
	if code != 200 {
		t.Fatalf("run %s on %s: %d %v", body, h.name, code, v)
	}
	return v["id"].(string)
}

func (h *fleetHost) status(t *testing.T, id string) map[string]any {
	t.Helper()
	code, v := h.call(t, "GET", "/scripts/v1/status/"+id, "")
	if code != 200 {
		t.Fatalf("status of %s on %s: %d %v", id, h.name, code, v)
	}
	return v
}

// statusOf is the run's status on the host, nil when it cannot be read:
// for goroutines other than the test's, which may not end the test.
func (h *fleetHost) statusOf(id string) map[string]any {
	resp, err := http.Get(h.url + "/scripts/v1/status/" + id)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var v map[string]any
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&v) != nil {
		return nil
	}
	return v
}

// waitUntil polls ok every 20ms until it holds, for at most within.
func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
	}
}

// running counts the detached runs of script in the host's process table
// (the broker's, which GET /metrics reads at each scrape).
func (h *fleetHost) running(t *testing.T, script string) int {
	t.Helper()
	resp, err := http.Get(h.url + "/metrics")
	if err != nil {
		t.Errorf("metrics of %s: %v", h.name, err)
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	want := `rexec_runs_running{kind="detached",script="` + script + `"} `
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

func TestFleetOfThree(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	hosts := startFleet(t, 3)
	a, b, c := hosts[0], hosts[1], hosts[2]
	defer func() {
		if t.Failed() {
			for _, h := range hosts {
				t.Logf("the log of %s:\n%s", h.name, h.log.String())
			}
		}
	}()

	t.Run("machines", func(t *testing.T) {
		for _, h := range hosts {
			waitUntil(t, 10*time.Second, h.name+" lists 3 hosts up", func() bool {
				_, v := h.call(t, "GET", "/fleet/v1/machines", "")
				ms, _ := v["machines"].([]any)
				up := 0
				for _, m := range ms {
					if m.(map[string]any)["up"] == true {
						up++
					}
				}
				return len(ms) == 3 && up == 3 && v["fleet"] == "test" && v["host"] == h.name
			})
		}
	})

	// One SSE stream on b, opened before the runs, sees them all.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", b.url+"/scripts/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("events on b: %v %v", resp, err)
	}
	defer resp.Body.Close()
	seen := map[string][]string{} // run -> states, as b's stream says
	var seenMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e struct{ Run, State string }
			if json.Unmarshal([]byte(data), &e) == nil && e.Run != "" {
				seenMu.Lock()
				seen[e.Run] = append(seen[e.Run], e.State)
				seenMu.Unlock()
			}
		}
	}()

	var ids []string
	t.Run("a fleet-wide -s=2", func(t *testing.T) {
		var most atomic.Int64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() { // each host's process table, as often as it answers
			defer close(sampled)
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := int64(0)
				for _, h := range hosts {
					n += int64(h.running(t, "work"))
				}
				if n > most.Load() {
					most.Store(n)
				}
			}
		}()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				// Not submit: t.Fatal belongs to the test's goroutine.
				resp, err := http.Post(hosts[i%3].url+"/scripts/v1/run", "application/json", strings.NewReader(`{"name":"work"}`))
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				var v struct{ ID string }
				if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&v) != nil {
					t.Errorf("a run of work on %s: %d", hosts[i%3].name, resp.StatusCode)
					return
				}
				mu.Lock()
				ids = append(ids, v.ID)
				mu.Unlock()
			})
		}
		wg.Wait()
		ranOn := map[string]int{}
		waitUntil(t, 90*time.Second, "50 runs done", func() bool {
			for _, id := range ids {
				if st := c.status(t, id); st["state"] != "done" {
					return false
				}
			}
			return true
		})
		close(stop)
		<-sampled
		for _, id := range ids {
			st := a.status(t, id)
			if st["ended"] != "exit" || st["exit_code"] != 0.0 {
				t.Errorf("run %s: %v", id, st)
			}
			ranOn[fmt.Sprint(st["host"])]++
		}
		t.Logf("at most %d running at once in the fleet; ran on %v", most.Load(), ranOn)
		if most.Load() > 2 {
			t.Errorf("%d runs of a -s=2 script ran at once in the fleet", most.Load())
		}
		if len(ranOn) < 2 {
			t.Errorf("the runs ran on %v only", ranOn)
		}
	})

	t.Run("one event stream sees every host's runs", func(t *testing.T) {
		waitUntil(t, 10*time.Second, "b's stream has every run's done", func() bool {
			seenMu.Lock()
			defer seenMu.Unlock()
			for _, id := range ids {
				if !slices.Contains(seen[id], "done") {
					return false
				}
			}
			return true
		})
	})

	t.Run("output followed from another host, resumed after a cut", func(t *testing.T) {
		id := c.submit(t, `{"name":"lines","host":"h0"}`)
		want := ""
		for i := 1; i <= 8; i++ {
			want += fmt.Sprintf("line%d\n", i)
		}
		// Read the first lines from c, then cut.
		resp, err := http.Get(c.url + "/scripts/v1/output/" + id + "?follow=1")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("follow: %v %v", resp, err)
		}
		br := bufio.NewReader(resp.Body)
		got := ""
		for range 3 {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			got += line
		}
		resp.Body.Close()
		resp, err = http.Get(fmt.Sprintf("%s/scripts/v1/output/%s?follow=1&offset=%d", c.url, id, len(got)))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("resume: %v %v", resp, err)
		}
		rest, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || got+string(rest) != want {
			t.Fatalf("followed %q + %q (%v), want %q", got, rest, err, want)
		}
		if st := c.status(t, id); st["host"] != "h0" {
			t.Errorf("a run for h0 ran on %v", st["host"])
		}
	})

	t.Run("history identical on every host", func(t *testing.T) {
		page := func(h *fleetHost) []any {
			_, v := h.call(t, "GET", "/scripts/v1/runs?limit=1000", "")
			return v["runs"].([]any)
		}
		waitUntil(t, 10*time.Second, "the same history on a, b and c", func() bool {
			pa, pb, pc := page(a), page(b), page(c)
			return len(pa) >= 51 && reflect.DeepEqual(pa, pb) && reflect.DeepEqual(pa, pc)
		})
	})

	t.Run("kill -9: lost within 2s, queued runs go on elsewhere", func(t *testing.T) {
		lost := a.submit(t, `{"name":"long","host":"h0"}`)
		waitUntil(t, 10*time.Second, "the long run running on a", func() bool { return b.status(t, lost)["state"] == "running" })
		var queued []string
		for range 4 {
			queued = append(queued, b.submit(t, `{"name":"work"}`))
		}
		killed := time.Now()
		a.kill9()
		// Each surviving host's status is polled on its own, so that one's
		// slow answer does not delay the other's reading. The 2 s of the
		// contract (with the default --fleet-down-after, 1.5 s) is measured
		// by the benchmark ("time to lost" in BENCHMARKS.md); a timed test
		// on a loaded 2-core machine would be flaky, so this one bounds it
		// at 5 s with these hosts' 800 ms and logs what it saw.
		var wg sync.WaitGroup
		for _, h := range []*fleetHost{b, c} {
			wg.Go(func() {
				for time.Since(killed) < 5*time.Second {
					if st := h.statusOf(lost); st != nil && st["ended"] == "lost" {
						t.Logf("lost on %s %s after the kill", h.name, time.Since(killed))
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
				t.Errorf("the run on the killed host not lost on %s within 5s", h.name)
			})
		}
		wg.Wait()
		waitUntil(t, 30*time.Second, "the queued runs done on b and c", func() bool {
			for _, id := range queued {
				if b.status(t, id)["state"] != "done" {
					return false
				}
			}
			return true
		})
		waitUntil(t, 30*time.Second, "the lost mark recorded", func() bool {
			_, v := b.call(t, "GET", "/scripts/v1/runs?state=done&limit=1000", "")
			for _, r := range v["runs"].([]any) {
				if r.(map[string]any)["id"] == lost {
					return r.(map[string]any)["ended"] == "lost"
				}
			}
			return false
		})

		t.Run("restarted, it rejoins and catches up", func(t *testing.T) {
			a.start(t)
			waitUntil(t, 30*time.Second, "a up again on b", func() bool {
				_, v := b.call(t, "GET", "/fleet/v1/machines", "")
				for _, m := range v["machines"].([]any) {
					if m.(map[string]any)["name"] == "h0" {
						return m.(map[string]any)["up"] == true
					}
				}
				return false
			})
			// The ends the others could not record while the streams
			// elected new leaders (h0 led some) are recorded when they
			// can: every host then shows the same.
			var differ []string
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				differ = differ[:0]
				for _, id := range append(queued, lost) {
					sa, sb, sc := a.status(t, id), b.status(t, id), c.status(t, id)
					if sa["state"] != "done" || sa["ended"] != sb["ended"] || sa["ended"] != sc["ended"] {
						differ = append(differ, fmt.Sprintf("run %s on the restarted host: %v; on b: %v; on c: %v", id, sa, sb, sc))
					}
				}
				if len(differ) == 0 || time.Now().After(deadline) {
					break
				}
			}
			for _, d := range differ {
				t.Error(d)
			}
			// A queued run ran: on b or c, or it had started on h0 before
			// the kill, and is lost with it; it never failed for the
			// fleet's trouble (start_failed).
			for _, id := range queued {
				if st := b.status(t, id); st["ended"] != "exit" && (st["ended"] != "lost" || st["host"] != "h0") {
					t.Errorf("queued run %s: %v", id, st)
				}
			}
		})
	})
}

func TestFleetFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "exectab")
	if err := os.WriteFile(tab, []byte("echo /bin/echo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--fleet-routes", "nats://127.0.0.1:6222"}, "need --fleet-name"},
		{[]string{"--label", "gpu"}, "need --fleet-name"},
		{[]string{"--fleet-name", "f"}, "needs --scripts"},
		{[]string{"--scripts", tab, "--fleet-name", "a.b"}, "--fleet-name"},
		{[]string{"--scripts", tab, "--fleet-name", "f", "--fleet-host", "x y"}, "--fleet-host"},
		{[]string{"--scripts", tab, "--fleet-name", "f", "--fleet-routes", "nats://10.0.0.2:6222", "--fleet-listen", "0.0.0.0:6222"}, "refusing to open the fleet's route port"},
		{[]string{"--scripts", tab, "--fleet-name", "f", "--fleet-listen", "127.0.0.1:6299", "--fleet-routes", "http://x:1"}, "nats://HOST:PORT"},
		{[]string{"--scripts", tab, "--fleet-name", "f", "--nats-url", "nats://x:4222", "--fleet-routes", "nats://y:6222"}, "--nats-url"},
		{[]string{"--scripts", tab, "--fleet-name", "f", "--label", "a b"}, "--label"},
		{[]string{"--scripts", tab, "--fleet-name", "f", "--fleet-replicas", "7"}, "--fleet-replicas"},
		{[]string{"--scripts", tab, "--fleet-name", "f", "--fleet-tls-cert", "x.crt"}, "--fleet-tls-key"},
		{[]string{"--scripts", tab, "--fleet-name", "f", "--fleet-listen", "127.0.0.1:6299"}, "--fleet-listen needs --fleet-routes"},
	} {
		r := rexec(t, nil, nil, append([]string{"serve", "-p", "0"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.err) {
			t.Errorf("serve %v: exit %d, stderr %q; want 2 and %q", tc.args, r.code, r.stderr, tc.err)
		}
	}
}

// TestFleetTargetsAndCancel: a run pinned to a host or to a label runs
// there; a bad target is refused; a cancel sent to any host reaches the
// run where it runs; -m counts the fleet's queue.
func TestFleetTargetsAndCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	hosts := startFleet(t, 3)
	a, b, c := hosts[0], hosts[1], hosts[2]
	for _, tc := range []struct{ body, code string }{
		{`{"name":"echo","args":["x"],"host":"nosuch"}`, "unknown_host"},
		{`{"name":"echo","args":["x"],"host":"a.b"}`, "invalid_request"},
		{`{"name":"echo","args":["x"],"labels":["a b"]}`, "invalid_request"},
	} {
		code, v := b.call(t, "POST", "/scripts/v1/run", tc.body)
		if code != 400 || v["errorcode"] != tc.code {
			t.Errorf("%s: %d %v, want 400 %s", tc.body, code, v, tc.code)
		}
	}
	// GET /process?fleet=1 on b lists an attached run of c's.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", c.url+"/process", strings.NewReader(`{"alias":"held","cmd":"sleep","args":["30"]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("an attached run on c: %v %v", resp, err)
	}
	defer resp.Body.Close()
	_, v := b.call(t, "GET", "/process?fleet=1", "")
	if runs, _ := v["runs"].([]any); len(runs) != 1 || runs[0].(map[string]any)["host"] != "h2" || runs[0].(map[string]any)["alias"] != "held" {
		t.Errorf("the fleet's attached runs, from b: %v", v)
	}
	if _, v := b.call(t, "GET", "/process", ""); len(v["runs"].([]any)) != 0 {
		t.Errorf("b's own attached runs: %v", v)
	}
	if code, v := b.call(t, "GET", "/process?fleet=maybe", ""); code != 400 {
		t.Errorf("?fleet=maybe: %d %v", code, v)
	}
	cancel()

	// Pinned to c, submitted on a: runs on c; cancelled from b.
	id := a.submit(t, `{"name":"long","host":"h2"}`)
	waitUntil(t, 10*time.Second, "the pinned run running", func() bool { return b.status(t, id)["state"] == "running" })
	if st := b.status(t, id); st["host"] != "h2" {
		t.Fatalf("a run pinned to h2 runs on %v", st["host"])
	}
	if code, v := b.call(t, "POST", "/scripts/v1/cancel/"+id, ""); code != 200 {
		t.Fatalf("cancel from b: %d %v", code, v)
	}
	waitUntil(t, 10*time.Second, "the run cancelled", func() bool { return a.status(t, id)["ended"] == "cancelled" })
	if code, v := c.call(t, "POST", "/scripts/v1/cancel/"+id, ""); code != 409 || v["errorcode"] != "already_done" {
		t.Errorf("cancel of a done run: %d %v", code, v)
	}
	// A run needing a label no host carries waits, and is cancelled from
	// the queue by another host.
	id = a.submit(t, `{"name":"echo","args":["x"],"labels":["gpu"]}`)
	time.Sleep(500 * time.Millisecond)
	if st := c.status(t, id); st["state"] != "queued" {
		t.Fatalf("a run for a label nobody has: %v", st)
	}
	if code, v := c.call(t, "POST", "/scripts/v1/cancel/"+id, ""); code != 200 {
		t.Fatalf("cancel of a queued run from another host: %d %v", code, v)
	}
	waitUntil(t, 10*time.Second, "the queued run cancelled", func() bool { return b.status(t, id)["ended"] == "cancelled" })
}

// TestFleetGuestKeys: a guest key made on one host works on every host,
// and deleted on another it works nowhere.
func TestFleetGuestKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	hosts := startFleet(t, 3, "--token", "admin-token")
	for _, h := range hosts {
		h.token = "admin-token"
	}
	a, b, c := hosts[0], hosts[1], hosts[2]
	code, v := a.call(t, "POST", "/scripts/v1/guest/create", `{"run":true,"status":true,"name":"echo"}`)
	if code != 200 {
		t.Fatalf("guest/create on a: %d %v", code, v)
	}
	key, id := v["info"].(map[string]any)["apikey"].(string), v["id"].(string)
	guest := func(h *fleetHost) *fleetHost { return &fleetHost{name: h.name, url: h.url, token: key} }
	for _, h := range []*fleetHost{b, c} {
		waitUntil(t, 5*time.Second, "the key working on "+h.name, func() bool {
			code, _ := guest(h).call(t, "POST", "/scripts/v1/run", `{"name":"echo","args":["hi"]}`)
			return code == 200
		})
		if code, v := guest(h).call(t, "POST", "/scripts/v1/run", `{"name":"work"}`); code != 403 {
			t.Errorf("the key for echo runs work on %s: %d %v", h.name, code, v)
		}
	}
	if code, v := c.call(t, "POST", "/scripts/v1/guest/delete/"+id, ""); code != 200 {
		t.Fatalf("guest/delete on c: %d %v", code, v)
	}
	for _, h := range hosts {
		waitUntil(t, 5*time.Second, "the key refused on "+h.name, func() bool {
			code, _ := guest(h).call(t, "POST", "/scripts/v1/run", `{"name":"echo","args":["hi"]}`)
			return code == 401
		})
	}
}

// TestFleetLabelsTimesAndCaps: a run asking for a label runs on the host
// that carries it; a run queued for later starts then, not before; -m
// counts the runs queued in the whole fleet.
func TestFleetLabelsTimesAndCaps(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	hosts := startFleetWith(t, 3, func(i int) []string {
		if i == 1 {
			return []string{"--label", "gpu", "--label", "zone=eu"}
		}
		return nil
	})
	a, b, c := hosts[0], hosts[1], hosts[2]
	waitUntil(t, 10*time.Second, "a lists b's labels", func() bool {
		_, v := a.call(t, "GET", "/fleet/v1/machines", "")
		for _, m := range v["machines"].([]any) {
			if m := m.(map[string]any); m["name"] == "h1" {
				l, _ := m["labels"].([]any)
				return len(l) == 2 && m["up"] == true
			}
		}
		return false
	})
	for range 3 {
		id := c.submit(t, `{"name":"echo","args":["x"],"labels":["gpu","zone=eu"]}`)
		waitUntil(t, 10*time.Second, "the labelled run done", func() bool { return a.status(t, id)["state"] == "done" })
		if st := a.status(t, id); st["host"] != "h1" {
			t.Errorf("a run for gpu and zone=eu ran on %v", st["host"])
		}
	}

	// A run queued for 2 s from now starts then.
	at := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	id := a.submit(t, fmt.Sprintf(`{"name":"echo","args":["later"],"queue":%d}`, at.Unix()))
	if st := b.status(t, id); st["state"] != "queued" || st["waiting"] != "start_time" {
		t.Errorf("a run for later, on b: %v", st)
	}
	waitUntil(t, 15*time.Second, "the run for later done", func() bool { return c.status(t, id)["state"] == "done" })
	if started := c.status(t, id)["started"].(float64); started < float64(at.Unix()) {
		t.Errorf("a run queued for %d started at %v", at.Unix(), started)
	}

	// -m=3 of capped: three running or queued in the fleet; the fourth,
	// on any host, is refused.
	var ids []string
	for i := range 3 {
		ids = append(ids, hosts[i].submit(t, `{"name":"capped"}`))
	}
	time.Sleep(300 * time.Millisecond)
	for _, h := range hosts {
		if code, v := h.call(t, "POST", "/scripts/v1/run", `{"name":"capped"}`); code != 429 || v["errorcode"] != "queue_full" {
			t.Errorf("a fourth capped run on %s: %d %v", h.name, code, v)
		}
	}
	for _, id := range ids {
		b.call(t, "POST", "/scripts/v1/cancel/"+id, "")
	}
}

// A host killed while it ran a run, and started again before any other
// host could mark the run lost (here: no other host at all), marks it lost
// itself, as the fleet would have: never interrupted, never run again; and
// no process of the run is left.
func TestFleetHostKilledAndBack(t *testing.T) {
	if testing.Short() {
		t.Skip("a fleet's server")
	}
	a := startFleet(t, 1)[0]
	id := a.submit(t, `{"name":"long"}`)
	waitUntil(t, 10*time.Second, "the run running", func() bool { return a.status(t, id)["state"] == "running" })
	a.kill9()
	a.start(t)
	if t.Failed() {
		t.FailNow()
	}
	if st := a.status(t, id); st["state"] != "done" || st["ended"] != "lost" || st["host"] != "h0" {
		t.Errorf("the run of the killed host, after its restart: %v", st)
	}
	waitUntil(t, 10*time.Second, "the run's process gone", func() bool { return runProcesses(id) == 0 })
	resp, err := http.Get(a.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `rexec_runs_ended_total{ended="lost",kind="detached",script="long"} 1`) {
		var ended []string
		for l := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(l, "rexec_runs_ended_total") {
				ended = append(ended, l)
			}
		}
		t.Errorf("the lost run is not counted: %v", ended)
	}
}

// runProcesses counts the processes of run id: those with its
// REXEC_RUN_ID in their environment.
func runProcesses(id string) int {
	n := 0
	envs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, f := range envs {
		b, err := os.ReadFile(f)
		if err == nil && slices.Contains(strings.Split(string(b), "\x00"), "REXEC_RUN_ID="+id) {
			n++
		}
	}
	return n
}
