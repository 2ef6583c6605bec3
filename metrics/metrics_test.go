package metrics_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/metrics"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	testchild.Main()
	goleak.VerifyTestMain(m, testchild.LeakOptions()...)
}

const token = "metrics-test-token-s3cr3t"

// exectab is a catalogue of lines whose EXE is the test binary.
func exectab(t *testing.T, lines ...string) *atomic.Pointer[catalog.Catalog] {
	t.Helper()
	cat, err := catalog.Parse(strings.NewReader(exectabText(lines...)))
	if err != nil {
		t.Fatal(err)
	}
	var p atomic.Pointer[catalog.Catalog]
	p.Store(cat)
	return &p
}

func exectabText(lines ...string) string {
	exe, _ := testchild.Command("")
	return strings.ReplaceAll(strings.Join(lines, "\n"), "EXE", "'"+exe+"'") + "\n"
}

// families is a scrape, parsed.
type families map[string]*dto.MetricFamily

// scrape reads url's /metrics (with the token when auth) and parses it as
// Prometheus's text format.
func scrape(t *testing.T, url string, auth bool) families {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	if auth {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// labelsOf renders a series' labels as "k=v,k=v", sorted.
func labelsOf(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// norm sorts the pairs of "k=v,k=v" as labelsOf does.
func norm(l string) string {
	if l == "" {
		return l
	}
	parts := strings.Split(l, ",")
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// values maps each series of family name to its value (a histogram's: its
// count), by labelsOf.
func (f families) values(name string) map[string]float64 {
	out := map[string]float64{}
	mf := f[name]
	if mf == nil {
		return out
	}
	for _, m := range mf.GetMetric() {
		var v float64
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			v = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v = m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			v = float64(m.GetHistogram().GetSampleCount())
		default:
			v = m.GetUntyped().GetValue()
		}
		out[labelsOf(m)] = v
	}
	return out
}

// expect checks that every series of family name has the value want gives
// it (0 when want has none), and that every series want names exists.
func (f families) expect(t *testing.T, name string, want map[string]float64) {
	t.Helper()
	got := f.values(name)
	normal := map[string]float64{}
	for l, v := range want {
		normal[norm(l)] = v
	}
	want = normal
	for l, v := range got {
		if v != want[l] {
			t.Errorf("%s{%s} = %v, want %v", name, l, v, want[l])
		}
	}
	for l, v := range want {
		if _, ok := got[l]; !ok {
			t.Errorf("%s{%s} missing, want %v", name, l, v)
		}
	}
}

// eventually scrapes until family name's series l has value want.
func eventually(t *testing.T, url, name, l string, want float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, ok := scrape(t, url, true).values(name)[norm(l)]
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %v (present %v), want %v", name, l, got, ok, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startRun posts an attached run; the caller reads and closes the body.
func startRun(t *testing.T, ctx context.Context, url string, body map[string]any) *http.Response {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/process", strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// run posts an attached run to its end and returns its status, output and
// trailers.
func run(t *testing.T, url string, body map[string]any) (int, string, http.Header) {
	t.Helper()
	resp := startRun(t, context.Background(), url, body)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(out), resp.Trailer
}

// call makes a /scripts/v1 request with the token and decodes its answer.
func call(t *testing.T, method, url string, body any) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %v %v", method, url, resp.StatusCode, a, err)
	}
	return a
}

func waitDone(t *testing.T, url, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		a := call(t, "GET", url+"/scripts/v1/status/"+id, nil)
		if a["state"] == "done" {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s not done: %v", id, a)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetrics runs a known mix of runs, refusals and monitors on a real
// server and checks what GET /metrics says of them, exactly.
func TestMetrics(t *testing.T) {
	scripts := exectab(t,
		"-e=TESTCHILD=echo echo EXE @@1",
		"-e=TESTCHILD=exit code EXE @@1",
		"-e=TESTCHILD=selfkill die EXE 9",
		"-e=TESTCHILD=hang wait EXE",
		"-e=TESTCHILD=hang -s=1 one EXE",
	)
	s := testserver.Start(t, node.Config{Scripts: scripts, EventReplay: 100, EventQueue: 64,
		Web:      webapi.Config{Token: token, Monitors: webapi.MonitorLimits{Names: 1}},
		Detached: detached.Config{Tick: 50 * time.Millisecond}})
	exe, _ := testchild.Command("")
	// What the test sends that no label may carry.
	secrets := []string{"alias-zebra", "arg-quokka", "arg-detached", "cmd-walrus", exe, token, "wrong-token"}

	// Attached runs: exit 0, exit 3, a signal, a timeout (ad-hoc), a start
	// that fails (ad-hoc), a disconnect.
	if code, out, tr := run(t, s.URL, map[string]any{"alias": "alias-zebra-1", "script": "echo", "args": []string{"arg-quokka-5521"}}); code != 200 ||
		out != "arg-quokka-5521\n" || tr.Get("Process-Exit-Code") != "0" {
		t.Fatalf("echo: %d %q %v", code, out, tr)
	}
	if code, _, tr := run(t, s.URL, map[string]any{"alias": "alias-zebra-2", "script": "code", "args": []string{"3"}}); code != 200 || tr.Get("Process-Exit-Code") != "3" {
		t.Fatalf("code: %d %v", code, tr)
	}
	if code, out, tr := run(t, s.URL, map[string]any{"alias": "alias-zebra-3", "script": "die"}); code != 200 || out != "dying\n" || tr.Get("Process-Signal") != "SIGKILL" {
		t.Fatalf("die: %d %q %v", code, out, tr)
	}
	path, env := testchild.Command("hang")
	name, val, _ := strings.Cut(env, "=")
	// Its output is not checked: on a loaded machine the timeout may come
	// before the fake child has printed anything.
	code, timedOut, tr := run(t, s.URL, map[string]any{"alias": "alias-zebra-4", "cmd": path, "envs": map[string]string{name: val}, "timeout": "100ms"})
	if code != 200 || tr.Get("Process-Signal") != "SIGTERM" {
		t.Fatalf("timeout: %d %q %v", code, timedOut, tr)
	}
	if code, _, _ := run(t, s.URL, map[string]any{"alias": "alias-zebra-6", "cmd": "/nonexistent/cmd-walrus"}); code != 404 {
		t.Fatalf("failed start: %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	resp := startRun(t, ctx, s.URL, map[string]any{"alias": "alias-zebra-5", "script": "wait"})
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("wait: %q %v", line, err)
	}
	t.Run("while a stream is held", func(t *testing.T) {
		eventually(t, s.URL, "rexec_streams_parked", "", 1) // quiet for --park-after
		f := scrape(t, s.URL, true)
		f.expect(t, "rexec_streams_held", map[string]float64{"": 1})
		if v := f.values("rexec_runs_running")[norm("kind=attached,script=wait")]; v != 1 {
			t.Errorf("running wait = %v", v)
		}
	})
	cancel()
	resp.Body.Close()
	eventually(t, s.URL, "rexec_runs_ended_total", "kind=attached,script=wait,ended=disconnect", 1)

	// Detached runs: one that exits 0; one that runs and one queued behind
	// it (-s=1), both cancelled.
	id := call(t, "POST", s.URL+"/scripts/v1/run", map[string]any{"name": "echo", "args": []string{"arg-detached-9911"}})["id"].(string)
	if a := waitDone(t, s.URL, id); a["exit_code"] != float64(0) {
		t.Fatalf("detached echo: %v", a)
	}
	running := call(t, "POST", s.URL+"/scripts/v1/run", map[string]any{"name": "one"})["id"].(string)
	queued := call(t, "POST", s.URL+"/scripts/v1/run", map[string]any{"name": "one"})["id"].(string)
	t.Run("while a detached run runs and one is queued", func(t *testing.T) {
		eventually(t, s.URL, "rexec_runs_running", "kind=detached,script=one", 1)
		f := scrape(t, s.URL, true)
		f.expect(t, "rexec_runs_queued", map[string]float64{"script=one": 1, "script=echo": 0, "script=code": 0,
			"script=die": 0, "script=wait": 0})
	})
	call(t, "POST", s.URL+"/scripts/v1/cancel/"+queued, nil)
	call(t, "POST", s.URL+"/scripts/v1/cancel/"+running, nil)
	waitDone(t, s.URL, queued)
	waitDone(t, s.URL, running)

	// Refusals: a wrong token, a foreign Host.
	req, _ := http.NewRequest("GET", s.URL+"/process", nil)
	req.Header.Set("Authorization", "Bearer wrong-token")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("wrong token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ = http.NewRequest("GET", s.URL+"/process", nil)
	req.Host = "evil.example"
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("foreign host: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Monitors: an event stream its client closes; a WebSocket the server
	// drops for asking for a second name (--monitor-names 1).
	ectx, ecancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ectx, "GET", s.URL+"/scripts/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	eresp, err := http.DefaultClient.Do(req)
	if err != nil || eresp.StatusCode != 200 {
		t.Fatalf("events: %v %v", eresp, err)
	}
	if line, err := bufio.NewReader(eresp.Body).ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
		t.Fatalf("events: %q %v", line, err)
	}
	eventually(t, s.URL, "rexec_monitors_open", "type=events", 1)
	ecancel()
	eresp.Body.Close()
	eventually(t, s.URL, "rexec_monitors_open", "type=events", 0)

	wctx, wcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer wcancel()
	c, _, err := websocket.Dial(wctx, "ws"+strings.TrimPrefix(s.URL, "http")+"/scripts/v1/monitor",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(wctx, websocket.MessageText, []byte(`{"name":"echo"}`))
	if _, _, err := c.Read(wctx); err != nil {
		t.Fatal(err)
	}
	c.Write(wctx, websocket.MessageText, []byte(`{"name":"code"}`))
	if _, _, err := c.Read(wctx); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("second name: %v", err)
	}
	eventually(t, s.URL, "rexec_monitors_open", "type=websocket", 0)

	f := scrape(t, s.URL, true)
	t.Run("runs", func(t *testing.T) {
		f.expect(t, "rexec_runs_started_total", map[string]float64{
			"kind=attached,script=echo": 1, "kind=attached,script=code": 1, "kind=attached,script=die": 1,
			"kind=attached,script=": 1, "kind=attached,script=wait": 1,
			"kind=detached,script=echo": 1, "kind=detached,script=one": 1,
		})
		want := map[string]float64{
			"kind=attached,script=echo,ended=exit_zero":    1,
			"kind=attached,script=code,ended=exit_nonzero": 1,
			"kind=attached,script=die,ended=signal":        1,
			"kind=attached,script=,ended=timeout":          1,
			"kind=attached,script=,ended=start_failed":     1,
			"kind=attached,script=wait,ended=disconnect":   1,
			"kind=detached,script=echo,ended=exit_zero":    1,
			"kind=detached,script=one,ended=cancelled":     2, // one running, one queued
		}
		// Every (kind, script) counted shows every way to end, at 0 or more.
		for _, ks := range []string{"kind=attached,script=echo", "kind=attached,script=code", "kind=attached,script=die",
			"kind=attached,script=", "kind=attached,script=wait", "kind=detached,script=echo", "kind=detached,script=one"} {
			for _, e := range []string{"exit_zero", "exit_nonzero", "signal", "timeout", "disconnect", "shutdown", "cancelled", "start_failed"} {
				if _, ok := want[ks+",ended="+e]; !ok {
					want[ks+",ended="+e] = 0
				}
			}
		}
		f.expect(t, "rexec_runs_ended_total", want)
		f.expect(t, "rexec_run_duration_seconds", map[string]float64{
			"kind=attached,script=echo": 1, "kind=attached,script=code": 1, "kind=attached,script=die": 1,
			"kind=attached,script=": 1, "kind=attached,script=wait": 1,
			"kind=detached,script=echo": 1, "kind=detached,script=one": 1,
		})
		f.expect(t, "rexec_spawn_failures_total", map[string]float64{
			"kind=attached,reason=start_failed": 1, "kind=attached,reason=no_resources": 0,
			"kind=detached,reason=start_failed": 0, "kind=detached,reason=no_resources": 0,
		})
		zero := map[string]float64{"kind=attached,script=": 0}
		for _, sc := range []string{"echo", "code", "die", "wait", "one"} {
			zero["kind=attached,script="+sc] = 0
			zero["kind=detached,script="+sc] = 0
		}
		f.expect(t, "rexec_runs_running", zero)
		f.expect(t, "rexec_runs_queued", map[string]float64{"script=one": 0, "script=echo": 0, "script=code": 0,
			"script=die": 0, "script=wait": 0})
	})
	t.Run("streams", func(t *testing.T) {
		f.expect(t, "rexec_streams_held", map[string]float64{"": 0})
		f.expect(t, "rexec_streams_parked", map[string]float64{"": 0})
		// arg-quokka-5521\n, dying\n, what the timed-out run printed
		// (ready\n, or nothing yet), ready\n.
		f.expect(t, "rexec_stream_bytes_total", map[string]float64{"": float64(16 + 6 + len(timedOut) + 6)})
	})
	t.Run("refusals", func(t *testing.T) {
		f.expect(t, "rexec_auth_refusals_total", map[string]float64{"reason=unauthorized": 1, "reason=forbidden_host": 1,
			"reason=forbidden": 0, "reason=forbidden_origin": 0, "reason=other": 0})
	})
	t.Run("monitors", func(t *testing.T) {
		f.expect(t, "rexec_monitors_connected_total", map[string]float64{"type=events": 1, "type=websocket": 1})
		f.expect(t, "rexec_monitors_open", map[string]float64{"type=events": 0, "type=websocket": 0})
		want := map[string]float64{"type=websocket,reason=too_many_names": 1}
		for _, ty := range []string{"events", "websocket"} {
			for _, r := range metrics.DropReasons {
				if _, ok := want["type="+ty+",reason="+r]; !ok {
					want["type="+ty+",reason="+r] = 0
				}
			}
		}
		f.expect(t, "rexec_monitors_dropped_total", want)
	})
	t.Run("build_info", func(t *testing.T) {
		mf := f["rexec_build_info"]
		if mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("rexec_build_info: %v", mf)
		}
		l := labelsOf(mf.GetMetric()[0])
		if !strings.Contains(l, "goversion="+runtime.Version()) || !strings.Contains(l, "version=") || !strings.Contains(l, "revision=") {
			t.Fatalf("rexec_build_info labels %s", l)
		}
	})
	t.Run("go and process", func(t *testing.T) {
		for _, name := range []string{"go_goroutines", "process_open_fds", "process_resident_memory_bytes"} {
			if f[name] == nil {
				t.Errorf("%s missing", name)
			}
		}
	})
	t.Run("no label carries what a client sent", func(t *testing.T) {
		for name, mf := range f {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					for _, sec := range secrets {
						if strings.Contains(l.GetValue(), sec) {
							t.Errorf("%s{%s}: label %s holds %q", name, labelsOf(m), l.GetName(), sec)
						}
					}
				}
			}
		}
	})
}

// TestMetricsAuth: GET /metrics needs the token, as every request does; a
// guest key is not enough.
func TestMetricsAuth(t *testing.T) {
	s := testserver.Start(t, node.Config{Scripts: exectab(t, "-e=TESTCHILD=echo echo EXE"), Web: webapi.Config{Token: token}})
	get := func(header ...string) int {
		req, _ := http.NewRequest("GET", s.URL+"/metrics", nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != 401 {
		t.Errorf("without a token: %d", code)
	}
	if code := get("Authorization", "Bearer nope"); code != 401 {
		t.Errorf("a wrong token: %d", code)
	}
	g := call(t, "POST", s.URL+"/scripts/v1/guest/create", map[string]any{"name": "echo", "status": true, "monitor": true})
	key := g["info"].(map[string]any)["apikey"].(string)
	if code := get("Authorization", "Bearer "+key); code != 403 {
		t.Errorf("a guest key: %d", code)
	}
	if code := get("Authorization", "Bearer "+token, "Origin", "https://evil.example"); code != 403 {
		t.Errorf("from another site's page: %d", code)
	}
	req, _ := http.NewRequest("POST", s.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Errorf("POST: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	scrape(t, s.URL, true).expect(t, "rexec_auth_refusals_total", map[string]float64{"reason=unauthorized": 2,
		"reason=forbidden": 1, "reason=forbidden_origin": 1, "reason=forbidden_host": 0, "reason=other": 0})
}

// TestMetricsAddr: --metrics-addr serves /metrics, and only it, without the
// token, still checking Host; the main address still needs the token; the
// listener closes with the node.
func TestMetricsAddr(t *testing.T) {
	s := testserver.Start(t, node.Config{Web: webapi.Config{Token: token, MetricsAddr: "127.0.0.1:0"}})
	addr := s.MetricsAddr()
	if addr == "" || addr == s.Addr() {
		t.Fatalf("metrics address %q (main %q)", addr, s.Addr())
	}
	murl := "http://" + addr
	f := scrape(t, murl, false)
	if f["rexec_build_info"] == nil || f["rexec_runs_running"] == nil {
		t.Fatalf("metrics without the token: %v", f)
	}
	get := func(url, host string) int {
		req, _ := http.NewRequest("GET", url, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		url, host string
		want      int
	}{
		{murl + "/process", "", 404},
		{murl + "/healthz", "", 404},
		{murl + "/metrics", "evil.example", 403},
		{s.URL + "/metrics", "", 401},
	} {
		if got := get(tc.url, tc.host); got != tc.want {
			t.Errorf("GET %s (Host %q): %d, want %d", tc.url, tc.host, got, tc.want)
		}
	}
	if !strings.Contains(s.Logs.String(), "serving GET /metrics without a token") {
		t.Errorf("no log line for the metrics address: %s", s.Logs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("%s still accepts after Close", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Logf("dial after Close: %v", err)
	}
}

// TestMetricsAddrInUse: a --metrics-addr that cannot be had fails the
// start, and leaves nothing open.
func TestMetricsAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	n := node.New(node.Config{Web: webapi.Config{Addr: "127.0.0.1:0", MetricsAddr: ln.Addr().String()}})
	if err := n.Open(); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Fatalf("Open = %v", err)
	}
}

// TestMetricsReload: a reload that removes a script drops its series.
func TestMetricsReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "exectab")
	write := func(lines ...string) {
		if err := os.WriteFile(file, []byte(exectabText(lines...)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("-e=TESTCHILD=echo gone EXE", "-e=TESTCHILD=echo kept EXE")
	s := testserver.Start(t, node.Config{ScriptsFile: file, Web: webapi.Config{Token: token}})
	for _, sc := range []string{"gone", "kept"} {
		if code, _, _ := run(t, s.URL, map[string]any{"alias": "r-" + sc, "script": sc}); code != 200 {
			t.Fatalf("%s: %d", sc, code)
		}
	}
	hasScript := func(f families, script string) []string {
		var where []string
		for name, mf := range f {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "script" && l.GetValue() == script {
						where = append(where, name+"{"+labelsOf(m)+"}")
					}
				}
			}
		}
		return where
	}
	if f := scrape(t, s.URL, true); len(hasScript(f, "gone")) == 0 || len(hasScript(f, "kept")) == 0 {
		t.Fatalf("before the reload: gone %v, kept %v", hasScript(f, "gone"), hasScript(f, "kept"))
	}
	write("-e=TESTCHILD=echo kept EXE")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	f := scrape(t, s.URL, true)
	if where := hasScript(f, "gone"); len(where) > 0 {
		t.Errorf("series of a removed script: %v", where)
	}
	if v := f.values("rexec_runs_started_total")[norm("kind=attached,script=kept")]; v != 1 {
		t.Errorf("kept: started %v", v)
	}
}

func TestEndOf(t *testing.T) {
	for _, tc := range []struct {
		st   child.Status
		want string
	}{
		{child.Status{Reason: child.ReasonExit, Code: 0}, "exit_zero"},
		{child.Status{Reason: child.ReasonExit, Code: 3}, "exit_nonzero"},
		{child.Status{Reason: child.ReasonExit, Code: -1, Signal: syscall.SIGSEGV}, "signal"},
		{child.Status{Reason: child.ReasonTimeout, Code: -1, Signal: syscall.SIGTERM}, "timeout"},
		{child.Status{Reason: child.ReasonTimeout, Code: 0}, "timeout"}, // ended by its own handler of SIGTERM
		{child.Status{Reason: child.ReasonDisconnect, Code: -1, Signal: syscall.SIGTERM}, "disconnect"},
		{child.Status{Reason: child.ReasonShutdown, Code: 7}, "shutdown"},
		{child.Status{Reason: child.ReasonCancelled, Code: -1, Signal: syscall.SIGKILL}, "cancelled"},
	} {
		if got := metrics.EndOf(tc.st).String(); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.st, got, tc.want)
		}
	}
}

// TestNil: a part given no metrics counts nothing, and does not fail.
func TestNil(t *testing.T) {
	var r *metrics.Runs
	r.Started(metrics.Attached, "x")
	r.Ended(metrics.Detached, "x", child.Status{})
	r.EndedUnstarted(metrics.Attached, "", metrics.StartFailed)
	r.SpawnFailed(metrics.Attached, child.ErrStartFailed)
	r.KeepScripts(nil)
	var s *metrics.Streams
	s.Held(1)
	s.Parked(1)
	s.Wrote(10)
	var w *metrics.Web
	w.Refused("unauthorized")
	w.MonitorOpened(metrics.WebSocket)()
	w.MonitorDropped(metrics.EventStream, "too_slow")
	var m *metrics.Metrics
	if err := m.Watch(metrics.Census{}); err != nil {
		t.Fatal(err)
	}
}

// TestBoundedLabels: a reason outside the fixed sets counts as "other",
// never as itself.
func TestBoundedLabels(t *testing.T) {
	m := metrics.New()
	m.Web.Refused("made-up-code")
	m.Web.MonitorDropped(metrics.WebSocket, "made-up-reason")
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	f := families{}
	for _, mf := range fams {
		f[mf.GetName()] = mf
	}
	if v := f.values("rexec_auth_refusals_total")["reason=other"]; v != 1 {
		t.Errorf("refusal of an unknown code: other = %v", v)
	}
	if v := f.values("rexec_monitors_dropped_total")[norm("type=websocket,reason=other")]; v != 1 {
		t.Errorf("drop for an unknown reason: other = %v", v)
	}
	for name, mf := range f {
		for _, m := range mf.GetMetric() {
			if strings.Contains(labelsOf(m), "made-up") {
				t.Errorf("%s{%s}", name, labelsOf(m))
			}
		}
	}
}

// TestHotPathAllocs: counting a run's start, its bytes and its end
// allocates nothing once its script's series are resolved: the spawn and
// stream paths stay as they were.
func TestHotPathAllocs(t *testing.T) {
	m := metrics.New()
	st := child.Status{Reason: child.ReasonExit, Duration: 3 * time.Millisecond}
	m.Runs.Started(metrics.Attached, "echo")
	m.Runs.Ended(metrics.Attached, "echo", st)
	if n := testing.AllocsPerRun(1000, func() {
		m.Runs.Started(metrics.Attached, "echo")
		m.Streams.Held(1)
		m.Streams.Wrote(4096)
		m.Streams.Parked(1)
		m.Streams.Parked(-1)
		m.Streams.Held(-1)
		m.Runs.Ended(metrics.Attached, "echo", st)
	}); n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
}

// BenchmarkRunCounts is the cost the metrics add to one attached run.
func BenchmarkRunCounts(b *testing.B) {
	m := metrics.New()
	st := child.Status{Reason: child.ReasonExit, Duration: 3 * time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Runs.Started(metrics.Attached, "echo")
			m.Streams.Held(1)
			m.Streams.Wrote(100)
			m.Streams.Held(-1)
			m.Runs.Ended(metrics.Attached, "echo", st)
		}
	})
}
